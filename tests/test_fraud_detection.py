"""fraud_detection: embedded run end to end, raw-row prediction, data paths and every bad input of the issue."""

import json
import pathlib

import mlflow
import numpy as np
import pandas as pd
import pytest

import tasks
from pipelines import cli, runner
from shared import tracking, trees
from shared.data import tfds as tfds_source
from tasks.fraud_detection import _transactions
from tests.conftest import resolve, shared_data

TASK = "fraud_detection"
FEATURES = ["amount", "merchant_category", "hour", "distance_km", "card_present", "customer_age", "transactions_24h"]


@pytest.fixture(scope="module")
def trained(module_store):
    """One quick embedded run shared by the tests that need a logged model."""
    task, resolved = resolve(TASK, "epochs=3")
    return task, runner.run(task, resolved)


def _rows(frame):
    """DataFrame -> JSON-friendly row dicts (as a client would send them)."""
    return json.loads(frame.to_json(orient="records"))


def _table(tmp_path, frame, name="transactions.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_embedded_run_logs_detector_metrics_baseline_and_threshold(trained):
    task, result = trained
    metrics = result.metrics
    assert metrics["pr_auc"] > 0.3  # chance is the 0.5% prevalence
    assert metrics["roc_auc"] > 0.8
    assert 0.0 <= metrics["threshold"] <= 1.0
    for key in ("baseline_hgb_pr_auc", "recall_at_precision", "expected_cost", "f1", "pr_auc_minus_baseline"):
        assert key in metrics
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(result.run_id)}
    assert {"threshold_table.csv", "threshold.txt", "plots"} <= artifacts
    plots = {item.path for item in mlflow.MlflowClient().list_artifacts(result.run_id, "plots")}
    assert {"plots/pr_curve.png", "plots/roc_curve.png", "plots/confusion_matrix.png"} <= plots
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["synthetic"] == "true"


def test_latest_model_scores_raw_rows_and_ranks_fraud_higher(trained):
    frame = _transactions(4000, seed=7)
    model = tracking.load("models:/fraud_detection/latest")
    rows = _rows(frame)
    answers = model.predict(pd.DataFrame({"row": rows}))
    probabilities = np.array([answer["fraud_probability"] for answer in answers])
    assert set(answers[0]) == {"fraud_probability", "fraud", "threshold"}
    assert probabilities[frame["Class"] == 1].mean() > probabilities[frame["Class"] == 0].mean()
    as_text = model.predict(pd.DataFrame({"row": [json.dumps(rows[0])]}))  # a JSON string works too
    assert as_text[0]["fraud_probability"] == answers[0]["fraud_probability"]


def test_the_logged_model_serves_the_blend_that_validation_chose(trained):
    task, result = trained
    model = tracking.load("models:/fraud_detection/latest")
    info, keras_model = model.unwrap_python_model().info, model.unwrap_python_model().model
    blend = info.blend
    assert result.metrics["blend_weight"] == (blend["weight"] if blend else 0.0)
    rows = _rows(_transactions(300, seed=5)[FEATURES])
    served = np.array([answer["fraud_probability"] for answer in model.predict(pd.DataFrame({"row": rows}))])
    features = task.prepare_inputs(info, rows)
    alone = keras_model.predict(features, verbose=0).reshape(-1)
    expected = (
        alone
        if not blend
        else (
            (1 - blend["weight"]) * alone
            + blend["weight"] * trees.predict_proba(blend["trees"], task.baseline_table(features))
        )
    )
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_blend_without_its_baseline_is_refused_before_training():
    with pytest.raises(ValueError, match="set baseline=true, or blend=false"):
        resolve(TASK, "baseline=false", quick=False)
    _, resolved = resolve(TASK, "baseline=false", "blend=false", quick=False)
    assert resolved.blend is False


def test_predict_cli_reads_csv_rows_and_json_objects(trained, tmp_path, capsys):
    path = _table(tmp_path, _transactions(200, seed=3).head(3))
    record = json.dumps(dict(_rows(_transactions(200, seed=3)[FEATURES])[0], amount=950.0))
    assert cli.main(["predict", "fraud_detection", "--model", "models:/fraud_detection/latest", str(path), record]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["input"] for line in lines[:3]] == [f"{path}:{row}" for row in (1, 2, 3)]
    assert len(lines) == 4 and all(isinstance(line["fraud"], bool) for line in lines)


def test_runs_and_predict_explain_explain_the_numeric_columns(trained, tmp_path, capsys):
    task, result = trained
    logged = mlflow.MlflowClient().list_artifacts(result.run_id, "plots/explain")
    assert [item.path for item in logged] == ["plots/explain/table.png"]
    path = _table(tmp_path, _transactions(200, seed=3).head(2))
    assert cli.main(["predict", TASK, "--model", f"models:/{TASK}/latest", "--explain", str(path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    numeric = set(FEATURES) - {"merchant_category"}
    for line in lines:
        explanation = line["explanation"]
        assert explanation["method"] == "integrated_gradients" and explanation["output"] == "fraud_probability"
        weights = list(explanation["weights"].values())
        assert set(explanation["weights"]) == numeric and weights == sorted(weights, key=abs, reverse=True)
    assert not (tmp_path / "explanations").exists()  # a table's explanation writes no file


def test_predict_csv_of_rows_writes_one_row_each_with_errors_in_their_rows(trained, tmp_path, capsys):
    frame = _transactions(200, seed=3)[FEATURES].head(5).astype({"amount": object})
    frame.loc[2, "amount"] = "lots"
    path = _table(tmp_path, frame)
    output = tmp_path / "scores.csv"
    assert (
        cli.main(
            [
                "predict",
                "fraud_detection",
                "--model",
                "models:/fraud_detection@champion",
                "--output",
                str(output),
                str(path),
            ]
        )
        == 1
    )
    assert "5 rows, 1 errors" in capsys.readouterr().err
    rows = pd.read_csv(output, keep_default_na=False, dtype=str).to_dict("records")
    assert [row["input"] for row in rows] == [f"{path}:{row}" for row in range(1, 6)]
    assert "column 'amount' must be numeric" in rows[2]["error"] and rows[2]["fraud_probability"] == ""
    for row in rows[:2] + rows[3:]:
        assert row["error"] == "" and 0 <= float(row["fraud_probability"]) <= 1 and row["fraud"] in ("true", "false")


def test_monitor_finds_no_drift_on_the_test_split_and_names_a_shifted_column(trained, tmp_path, capsys):
    from shared.data.splits import carve

    task, result = trained
    config = resolve(TASK, "epochs=3")[1]
    frame = task.embedded(config).frame
    test = frame.iloc[carve((np.arange(len(frame)), frame["Class"].to_numpy()), config)[2].features[:2000]]
    shifted = test.assign(amount=test["amount"] * 3 + 50)  # prices in another currency
    model = ["--model", result.model_uri]
    assert cli.main(["monitor", TASK, *model, "--data", str(_table(tmp_path, test))]) == 0
    unchanged = json.loads(capsys.readouterr().out)
    assert unchanged["drift"] is False and unchanged["reference_examples"] == 1000
    assert {row["feature"] for row in unchanged["rows"]} == set(FEATURES)
    shifted_path = _table(tmp_path, shifted, "shifted.csv")
    assert cli.main(["monitor", TASK, *model, "--data", str(shifted_path), "--output", str(tmp_path / "report")]) == 1
    found = json.loads(capsys.readouterr().out)
    assert found["drifted"] == ["amount"] and found["worst"][0] == "amount"
    amount = next(row for row in found["rows"] if row["feature"] == "amount")
    assert amount["value"] > 1 > 0.2 == amount["threshold"] and amount["ks_p_value"] < 1e-6
    assert "| amount | psi |" in (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "plots" / "quantiles_amount.png").stat().st_size > 0
    run = mlflow.get_run(found["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["monitor_of"] == result.model_uri
    assert run.data.metrics["drift"] == 1 and run.data.metrics["drift_amount_psi"] == pytest.approx(amount["value"])
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(found["run_id"], "monitor")}
    assert "monitor/report.md" in artifacts
    # a model saved before monitoring existed: one line that says how to compute the statistics instead
    old = pathlib.Path(mlflow.artifacts.download_artifacts(f"{result.model_uri}", dst_path=str(tmp_path / "old")))
    next(old.rglob(tracking.DRIFT_REFERENCE)).unlink()
    assert cli.main(["monitor", TASK, "--model", str(old), "--data", str(shifted_path)]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "saved without drift statistics" in message and "--reference SOURCE" in message


def test_predict_row_with_missing_column_fails_and_extra_column_warns(trained):
    task = tasks.get(TASK)
    model = tracking.load("models:/fraud_detection/latest")
    row = _rows(_transactions(200, seed=3)[FEATURES])[0]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['amount'\]"):
        model.predict(pd.DataFrame({"row": [{key: value for key, value in row.items() if key != "amount"}]}))
    with pytest.warns(UserWarning, match="note"):
        task.predict_raw(model.unwrap_python_model().model, model.unwrap_python_model().info, [dict(row, note="x")])


def test_csv_source_detects_columns_imputes_and_drops(tmp_path):
    frame = _transactions(3000, seed=1).drop(columns="timestamp")
    frame["transaction_id"] = np.arange(len(frame))
    frame.loc[5, "amount"] = np.nan  # missing numbers are imputed with the training median
    task, resolved = resolve(TASK, "drop_columns=[transaction_id]", data=_table(tmp_path, frame), quick=False)
    splits = task.load_data(resolved)
    spec = splits.info.preprocessing
    assert [item["name"] for item in spec["categorical"]] == ["merchant_category"]
    assert "transaction_id" not in [item["name"] for item in spec["numeric"]]
    assert np.isfinite(splits.train.features["numeric"]).all()
    assert sum(len(part) for part in (splits.train, splits.validation, splits.test)) == len(frame)


def test_time_ordered_split_tests_on_the_newest_rows(tmp_path):
    frame = _transactions(3000, seed=2)
    task, resolved = resolve(TASK, "time_column=timestamp", data=_table(tmp_path, frame), quick=False)
    splits = task.load_data(resolved)
    assert "timestamp" in splits.info.ignored_columns
    expected = frame.sort_values("timestamp", kind="stable")["Class"].to_numpy()[-len(splits.test.targets) :]
    np.testing.assert_array_equal(splits.test.targets, expected)


def test_oversampling_raises_the_training_fraud_ratio(tmp_path):
    task, resolved = resolve(TASK, "oversample=0.2", quick=False)
    splits = task.load_data(resolved)
    labels = splits.train.targets
    assert labels.sum() / (labels == 0).sum() == pytest.approx(0.2, abs=0.01)


def test_tfds_source_reads_a_features_label_table(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda timeout=3.0: True)
    task, resolved = resolve(TASK, data="tfds:german_credit_numeric", quick=False)
    with tfds.testing.mock_data(num_examples=200):
        splits = task.load_data(resolved)
    assert splits.train.features["numeric"].shape[1] == 24
    assert set(np.unique(splits.train.targets)) == {0, 1}


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda frame: frame.drop(columns="Class"),
            r"missing column\(s\) \['Class'\]; found columns: timestamp, amount",
        ),
        (lambda frame: frame.assign(Class=0), "has only class 0"),
        (lambda frame: frame.assign(Class=frame["Class"].replace(1, 2)), "must be binary"),
        (
            lambda frame: frame.assign(amount=frame["amount"].astype(object).where(frame.index != 9, "12,5")),
            r"column 'amount' must be numeric, but data row 10 holds '12,5'",
        ),
        (
            lambda frame: frame.assign(hour=frame["hour"].astype(float).where(frame.index != 4, np.inf)),
            "column 'hour' holds an infinite value at data row 5",
        ),
        (
            lambda frame: frame.assign(Class=frame["Class"].astype(float).where(frame.index != 3, np.nan)),
            "target column 'Class' is empty at data row 4",
        ),
    ],
)
def test_bad_tables_fail_with_one_line_errors(tmp_path, change, message):
    task, resolved = resolve(TASK, data=_table(tmp_path, change(_transactions(2000, seed=4))), quick=False)
    with pytest.raises(ValueError, match=message) as error:
        task.load_data(resolved)
    assert "\n" not in str(error.value)


def test_bad_predict_arguments_and_unknown_columns_fail(tmp_path):
    task, resolved = resolve(
        TASK, "drop_columns=[nope]", data=_table(tmp_path, _transactions(2000, seed=4)), quick=False
    )
    with pytest.raises(ValueError, match="is not a CSV/JSONL/Parquet file, a .json file or a JSON object"):
        task.cli_inputs(["not json"])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['nope'\]"):
        task.load_data(resolved)


@pytest.mark.slow
def test_real_credit_card_subset_beats_chance_by_far(tracking_store):
    path = shared_data("creditcard_fraud/creditcard_4000normal_492fraud.csv")
    result = runner.run(*resolve(TASK, "drop_columns=[Time]", "epochs=10", data=path, quick=False))
    assert result.metrics["pr_auc"] > 0.9 and result.metrics["baseline_hgb_pr_auc"] > 0.9
