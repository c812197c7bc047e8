"""predictive_maintenance: embedded run end to end, C-MAPSS / CSV / AI4I paths, prediction from histories, bad
inputs."""

import dataclasses
import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines import cli, runner
from shared import tracking
from tasks.predictive_maintenance import CMAPSS_COLUMNS, _engines, nasa_score
from tests.conftest import resolve, shared_data

TASK = "predictive_maintenance"


@pytest.fixture(scope="module")
def trained(module_store):
    """One quick embedded run (CNN) shared by the tests that need a logged model."""
    task, resolved = resolve(TASK, "epochs=3", "max_examples=2000", "window=20")
    result = runner.run(task, resolved)
    return task, result


def _write_cmapss(folder, units=12, seed=0):
    """Writes a tiny C-MAPSS-format subset built from the embedded generator."""
    engines = _engines(units * 2, seed)
    table = pd.DataFrame(0.0, index=engines.index, columns=CMAPSS_COLUMNS)
    table[["unit", "cycle", "setting_1", "setting_2", "setting_3"]] = engines[
        ["unit", "cycle", "setting_1", "setting_2", "setting_3"]
    ]
    for index in range(1, 11):
        table[f"sensor_{index}"] = engines[f"sensor_{index}"]
    table[[f"sensor_{index}" for index in range(11, 22)]] = 7.5  # constant sensors, as in FD001
    train = table[table["unit"] <= units]
    test = table[table["unit"] > units].copy()
    test["unit"] -= units
    kept = test[test.groupby("unit").cumcount() < test.groupby("unit")["cycle"].transform("size") // 2]
    truth = test.groupby("unit")["cycle"].max() - kept.groupby("unit")["cycle"].max()
    for name, frame in (("train_FD001.txt", train), ("test_FD001.txt", kept)):
        frame.to_csv(folder / name, sep=" ", header=False, index=False)
    np.savetxt(folder / "RUL_FD001.txt", truth.to_numpy(), fmt="%d")
    return truth.to_numpy()


def test_embedded_run_beats_the_mean_and_logs_rul_plots(trained):
    task, result = trained
    assert result.metrics["r2"] > 0.0  # better than predicting the test mean
    assert result.metrics["rmse"] < 125
    assert {"mae", "nasa_score", "rmse_uncapped"} <= set(result.metrics)
    assert "ece" not in result.metrics  # RUL is no probability to calibrate
    plots = {item.path for item in mlflow.MlflowClient().list_artifacts(result.run_id, "plots")}
    assert {"plots/rul_per_unit.png", "plots/unit_life.png"} <= plots
    info = tracking.load("models:/predictive_maintenance/latest").unwrap_python_model().info
    assert {"sensor_9", "sensor_10", "setting_3"} <= set(info.constant_columns)


def test_latest_model_predicts_rul_from_a_history_and_from_rows(trained, tmp_path, capsys):
    engines = _engines(3, seed=11)
    history = json.loads(engines[engines["unit"] == 1].to_json(orient="records"))
    model = tracking.load("models:/predictive_maintenance/latest")
    answers = model.predict(pd.DataFrame({"history": [history[:60], history]}))
    assert all(answer["rul"] >= 0 for answer in answers)
    assert answers[0]["rul"] > answers[1]["rul"]  # the end of life is nearer after the whole history
    path = tmp_path / "engines.csv"
    engines[engines["unit"] <= 2].to_csv(path, index=False)
    assert (
        cli.main(["predict", "predictive_maintenance", "--model", "models:/predictive_maintenance/latest", str(path)])
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == (engines["unit"] <= 2).sum()
    assert lines[0]["unit"] == 1 and lines[0]["rows_seen"] == 1
    # batches never split a unit's history: small batches answer as one call on every row does
    assert (
        cli.main(
            [
                "predict",
                "predictive_maintenance",
                "--model",
                "models:/predictive_maintenance/latest",
                "--batch-size",
                "5",
                str(path),
            ]
        )
        == 0
    )
    assert [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()] == lines
    rows = json.loads(engines[engines["unit"] <= 2].to_json(orient="records"))
    assert [
        dict(answer, input=line["input"]) for answer, line in zip(model.predict(pd.DataFrame({"history": rows})), lines)
    ] == lines


def test_runs_and_predict_explain_name_the_sensors_and_time_steps_of_each_window(trained, tmp_path):
    task, result = trained
    logged = mlflow.MlflowClient().list_artifacts(result.run_id, "plots/explain")
    assert [item.path for item in logged] == ["plots/explain/sequence.png"]
    engines = _engines(2, seed=11)
    history = json.loads(engines[engines["unit"] == 1].to_json(orient="records"))
    served = tracking.load("models:/predictive_maintenance/latest").unwrap_python_model()
    plain = served.predict(None, pd.DataFrame({"history": [history, history[:5]]}))
    explained = served.predict(None, pd.DataFrame({"history": [history, *history[:5]]}), {"explain": str(tmp_path)})
    assert {key: explained[0][key] for key in plain[0]} == plain[0]  # explaining changes no answer
    assert explained[5]["rul"] == plain[1]["rul"]  # a loose row is explained from the window ending at it
    names = set(task.explanation_names(served.info))
    for answer in explained:
        explanation = answer["explanation"]
        assert explanation["method"] == "integrated_gradients" and explanation["output"] == "rul"
        assert set(explanation["sensors"]) <= names and len(explanation["sensors"]) == 5
        assert {int(step[2:]) for step in explanation["time_steps"]} <= set(range(20))  # t-0 ... t-19


def test_predict_rejects_missing_columns_and_rows_without_unit(trained):
    model = tracking.load("models:/predictive_maintenance/latest")
    row = json.loads(_engines(1, seed=2).head(1).to_json(orient="records"))[0]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['sensor_1'\]"):
        model.predict(pd.DataFrame({"history": [[{key: value for key, value in row.items() if key != "sensor_1"}]]}))
    with pytest.raises(ValueError, match="lack the unit column 'unit'"):
        model.predict(pd.DataFrame({"history": [{key: value for key, value in row.items() if key != "unit"}]}))


def test_hostile_rows_get_their_own_errors_and_the_others_are_answered(trained):
    model = tracking.load("models:/predictive_maintenance/latest")
    row = json.loads(_engines(1, seed=2).head(1).to_json(orient="records"))[0]
    rows = [
        row,
        dict(row, sensor_1=float("inf")),
        dict(row, sensor_1=10**400),
        dict(row, sensor_1=[1, 2]),
        dict(row, unit=[1]),
        dict(row, unit=float("nan")),
        dict(row, cycle="abc"),
        [1, 2],
        "{",
        "[" * 100_000,
        None,
        dict(row, sensor_1=float("nan")),
    ]
    answers = model.predict(pd.DataFrame({"history": rows}))
    assert [index for index, answer in enumerate(answers) if "rul" in answer] == [0, 11]  # NaN: a missing value
    for answer, message in zip(
        answers[1:11],
        [
            "infinite",
            "infinite",
            "must be numeric",
            "'unit' must be",
            "'unit' must be",
            "'cycle' must be a finite number",
            "must be a row",
            "not valid JSON",
            "not valid JSON",
            "must be a row",
        ],
    ):
        assert message in answer["error"] and "\n" not in answer["error"]


def test_cmapss_folder_scores_each_test_unit_on_its_last_window(tmp_path):
    truth = _write_cmapss(tmp_path)
    task, resolved = resolve(TASK, "window=20", data=tmp_path, quick=False)
    splits = task.load_data(resolved)
    assert splits.test.features.shape == (len(truth), 20, splits.info.feature_count)
    np.testing.assert_array_equal(splits.test.targets, truth)
    assert "sensor_11" in splits.info.constant_columns
    assert splits.train.targets.max() <= 125
    assert splits.name == "cmapss_fd001"


def test_real_cmapss_fd001_prepares_like_the_literature():
    folder = shared_data("cmapss_fd001")
    task, resolved = resolve(TASK, data=folder, quick=False)
    splits = task.load_data(resolved)
    assert splits.test.features.shape[:2] == (100, 30)
    kept = {item["name"] for item in splits.info.preprocessing["numeric"]}
    assert {"sensor_1", "sensor_5", "sensor_10", "sensor_16", "sensor_18", "sensor_19", "setting_3"}.isdisjoint(kept)


def test_generic_csv_classification_labels_failure_within_horizon(tmp_path):
    frame = _engines(30, seed=3).rename(columns={"unit": "machine", "cycle": "hour"})
    path = tmp_path / "machines.csv"
    frame.to_csv(path, index=False)
    task, resolved = resolve(
        TASK,
        "mode=classification",
        "unit_column=machine",
        "time_column=hour",
        "failure_horizon=25",
        "window=10",
        data=path,
        quick=False,
    )
    splits = task.load_data(resolved)
    assert set(np.unique(splits.train.targets)) == {0, 1}
    assert splits.train.targets.mean() == pytest.approx(26 / frame.groupby("machine").size().mean(), rel=0.2)


def test_ai4i_rows_are_independent_observations():
    path = shared_data("ai4i2020/ai4i2020.csv")
    task, resolved = resolve(
        TASK,
        "mode=classification",
        "unit_column=",
        "time_column=",
        "target_column=Machine failure",
        "drop_columns=[UDI, Product ID, TWF, HDF, PWF, OSF, RNF]",
        data=path,
        quick=False,
    )
    splits = task.load_data(resolved)
    assert splits.train.features.shape[1:] == (1, 5 + 4)  # five readings and Type one-hot (L, M, H + unseen)
    assert 0.02 < splits.test.targets.mean() < 0.05  # 339 failures in 10,000 rows, stratified


def test_independent_rows_carry_slice_keys_and_windows_of_units_refuse_them():
    path = shared_data("ai4i2020/ai4i2020.csv")
    settings = ["mode=classification", "unit_column=", "time_column=", "target_column=Machine failure"]
    task, resolved = resolve(TASK, *settings, "drop_columns=[UDI, Product ID, TWF, HDF, PWF, OSF, RNF]", data=path)
    splits = task.load_data(dataclasses.replace(resolved, slice_by="Type"))
    assert len(splits.test.groups) == len(splits.test) and set(splits.test.groups) == {"L", "M", "H"}
    task, resolved = resolve(TASK, "slice_by=unit")
    with pytest.raises(ValueError, match="slice_by needs independent rows"):
        task.load_data(resolved)


def test_nasa_score_punishes_late_predictions_more():
    assert nasa_score([50], [60]) > nasa_score([50], [40]) > 0
    assert nasa_score([50, 20], [50, 20]) == 0


@pytest.mark.parametrize(
    "change, assignments, message",
    [
        (
            lambda frame: frame.drop(columns="unit"),
            [],
            r"missing column\(s\) \['unit'\]; found columns: cycle, setting_1",
        ),
        (
            lambda frame: frame.assign(sensor_2=frame["sensor_2"].astype(object).where(frame.index != 6, "broken")),
            [],
            r"column 'sensor_2' must be numeric, but data row 7 holds 'broken'",
        ),
        (
            lambda frame: frame.assign(sensor_3=frame["sensor_3"].where(frame.index != 2, np.inf)),
            [],
            "column 'sensor_3' holds an infinite value at data row 3",
        ),
        (lambda frame: frame, ["mode=classification", "target_column=setting_3"], "must be binary"),
        (lambda frame: frame.assign(failed=0), ["mode=classification", "target_column=failed"], "has only class 0"),
        (lambda frame: frame, ["window=400"], "no unit is at least window=400 rows long"),
    ],
)
def test_bad_tables_fail_with_one_line_errors(tmp_path, change, assignments, message):
    path = tmp_path / "engines.csv"
    change(_engines(8, seed=5)).to_csv(path, index=False)
    task, resolved = resolve(TASK, *assignments, data=path, quick=False)
    with pytest.raises(ValueError, match=message) as error:
        task.load_data(resolved)
    assert "\n" not in str(error.value)


def test_missing_sensor_values_are_imputed_and_short_units_skipped_or_padded(tmp_path):
    frame = _engines(10, seed=6)
    frame.loc[frame.index[::50], "sensor_4"] = np.nan
    short = frame[frame["unit"] == 10].head(5)  # a unit shorter than the window
    frame = pd.concat([frame[frame["unit"] != 10], short])
    path = tmp_path / "engines.csv"
    frame.to_csv(path, index=False)
    task, resolved = resolve(TASK, "validation_fraction=0.2", "test_fraction=0.2", data=path, quick=False)
    with pytest.warns(UserWarning, match="shorter than window=30"):
        splits = task.load_data(resolved)
    assert np.isfinite(splits.train.features).all() and np.isfinite(splits.test.features).all()


def test_tfds_source_explains_there_is_none():
    task, resolved = resolve(TASK, data="tfds:anything", quick=False)
    with pytest.raises(ValueError, match="no TFDS dataset"):
        task.load_data(resolved)


@pytest.mark.slow
def test_ai4i_classification_runs_end_to_end_and_predicts_rows(tracking_store, tmp_path, capsys):
    path = shared_data("ai4i2020/ai4i2020.csv")
    task, resolved = resolve(
        TASK,
        "mode=classification",
        "unit_column=",
        "time_column=",
        "target_column=Machine failure",
        "epochs=5",
        "drop_columns=[UDI, Product ID, TWF, HDF, PWF, OSF, RNF]",
        data=path,
        quick=False,
    )
    result = runner.run(
        task,
        resolved,
    )
    assert result.metrics["pr_auc"] > 0.1  # chance is the 3.4% failure rate
    rows = tmp_path / "rows.csv"
    pd.read_csv(path).head(3).to_csv(rows, index=False)
    assert cli.main(["predict", "predictive_maintenance", "--model", result.model_uri, str(rows)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 3 and all(0 <= line["failure_probability"] <= 1 for line in lines)


def test_embedded_classification_mode_flags_the_end_of_life(tmp_path):
    task, resolved = resolve(TASK, "mode=classification", "failure_horizon=20", quick=False)
    splits = task.load_data(resolved)
    assert set(np.unique(splits.test.targets)) == {0, 1}
    assert splits.train.targets.dtype == np.int64
