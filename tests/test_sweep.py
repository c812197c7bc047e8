"""Sweeps: search-space validation, one-line CLI errors, a quick sweep's MLflow layout, and workers joining its
study once it is done (tests/test_distributed_sweep.py runs workers side by side)."""

import math

import pytest

import tasks
from pipelines import cli, config, sweep
from tests.conftest import resolve

TASK = "vision_classification"


@pytest.mark.parametrize("name", tasks.names())
def test_every_default_search_space_names_real_fields(name):
    task = tasks.get(name)
    dimensions = sweep.parse_space(task.config_class, task.config_class().search_space)
    assert {"learning_rate"} <= {dimension.name for dimension in dimensions}


@pytest.mark.parametrize(
    "space, expected",
    [
        ({"dropuot": ["float", 0, 1]}, "'dropuot' is not a searchable config field; searchable fields:"),
        ({"seed": ["int", 0, 9]}, "'seed' is not a searchable"),
        ({"search_space": ["choice", {}]}, "'search_space' is not a searchable"),
        ({"dropout": ["exp", 0, 1]}, "search_space['dropout'] (float field) must be [log, LOW, HIGH]"),
        ({"dropout": "0.3"}, "search_space['dropout'] (float field) must be"),
        ({"learning_rate": ["log", 0, 1e-2]}, "search_space['learning_rate']"),
        ({"dropout": ["float", 0.5, 0.1]}, "search_space['dropout']"),
        ({"base_filters": ["int", 8.5, 64]}, "search_space['base_filters'] (int field)"),
        ({"flip": ["float", 0, 1]}, "search_space['flip'] (str field) must be [choice, VALUE, ...]; got"),
        ({"precision": ["choice", "auto", "float8"]}, "search_space['precision']: 'float8' is not allowed"),
        ({"dropout": ["float", 0.1, 1.5]}, "search_space['dropout']: 1.5 is not allowed"),
        ({"dropout": ["choice"]}, "search_space['dropout']"),
        ({}, "search_space is empty"),
    ],
)
def test_bad_search_space_names_the_field_and_the_form(space, expected):
    with pytest.raises(ValueError) as raised:
        sweep.parse_space(tasks.get(TASK).config_class, space)
    assert expected in str(raised.value)


def test_specs_draw_values_of_the_field_type():
    import optuna

    space = {
        "learning_rate": ["log", 1e-4, 1e-2],
        "base_filters": ["log", 8, 64],
        "weight_decay": ["int", 0, 1],
        "flip": ["choice", "none", "horizontal"],
    }
    dimensions = sweep.parse_space(tasks.get(TASK).config_class, space)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    drawn = {dimension.name: dimension.suggest(trial) for dimension in dimensions}
    assert 1e-4 <= drawn["learning_rate"] <= 1e-2
    assert isinstance(drawn["base_filters"], int) and 8 <= drawn["base_filters"] <= 64
    assert isinstance(drawn["weight_decay"], float)
    assert drawn["flip"] in ("none", "horizontal")


def test_search_space_comes_from_yaml(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("search_space:\n  dropout: [float, 0.1, 0.3]\n  batch_size: [choice, 32, 64]\n")
    resolved = config.resolve(tasks.get(TASK), config_file=str(path))
    assert resolved.search_space == {"dropout": ["float", 0.1, 0.3], "batch_size": ["choice", 32, 64]}


def test_direction_follows_the_monitor():
    task = tasks.get(TASK)
    assert sweep.minimises(task, task.monitor)  # val_loss
    assert not sweep.minimises(task, "val_pr_auc")
    assert sweep.minimises(tasks.get("predictive_maintenance"), "val_rmse")


def test_best_validation_skips_diverged_epochs_and_names_missing_metrics():
    history = {"val_loss": [0.9, math.nan, 0.4, 0.5]}
    assert sweep.best_validation(history, "val_loss", minimise=True) == 0.4
    assert sweep.best_validation(history, "val_loss", minimise=False) == 0.9
    assert math.isnan(sweep.best_validation({"val_loss": [math.nan]}, "val_loss", minimise=True))
    with pytest.raises(ValueError, match="fit logged no 'val_auc'"):
        sweep.best_validation(history, "val_auc", minimise=False)


def test_bad_spec_through_the_cli_is_one_line_before_any_run(tracking_store, capsys):
    code = cli.main(["sweep", TASK, "--quick", "--trials", "2", "--set", "search_space={dropout: [exp, 0, 1]}"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.count("\n") == 0
    assert error.startswith("error: search_space['dropout'] (float field) must be [log, LOW, HIGH]")
    assert cli.main(["sweep", TASK, "--trials", "0"]) == 2
    assert "--trials must be at least 1" in capsys.readouterr().err


TINY = ["stages=1", "base_filters=8", "max_examples=300"]  # a smaller net than --quick's: traces and logs faster
SPACE = "search_space={learning_rate: [log, 1e-3, 1e-2], dropout: [float, 0.0, 0.5]}"


@pytest.fixture(scope="module")
def study_journal(tmp_path_factory):
    """The journal file of the quick sweep's study."""
    return str(tmp_path_factory.mktemp("study") / "digits.journal")


@pytest.fixture(scope="module")
def quick_sweep(module_store, study_journal):
    """One quick two-trial sweep of the digits task, shared by the layout tests: the one worker of a study in a
    journal file (a sweep in memory, as `test_failed_trials...` runs, goes through the same steps)."""
    import mlflow

    # heartbeat=1: a worker looks at the study once more a heartbeat after finding it done, before it ends
    result = sweep.sweep(
        *resolve(TASK, *TINY, SPACE), trials=2, storage=study_journal, study_name="digits", heartbeat=1
    )
    mlflow.set_tracking_uri(module_store)
    return result, mlflow.search_runs(experiment_names=[TASK]), mlflow.MlflowClient()


def test_sweep_is_one_parent_with_a_nested_run_per_trial(quick_sweep):
    result, runs, _ = quick_sweep
    parents = runs[runs["tags.sweep"] == "true"]
    assert list(parents["run_id"]) == [result.run_id]
    children = runs[runs["tags.mlflow.parentRunId"] == result.run_id]
    assert len(children) == 2 and len(runs) == 3
    assert set(children["status"]) == {"FINISHED"} and parents["status"].iloc[0] == "FINISHED"


def test_parent_logs_best_params_value_trials_table_and_test_metrics(quick_sweep):
    result, runs, client = quick_sweep
    parent = client.get_run(result.run_id)
    best = client.get_run(parent.data.tags["best_run_id"])
    for name, value in result.best_params.items():
        assert parent.data.params[f"best_{name}"] == str(value) == best.data.params[name]
    assert parent.data.params["sweep_direction"] == "minimize"
    assert parent.data.metrics["best_val_loss"] == pytest.approx(result.best_value)
    trials = runs[runs["tags.mlflow.parentRunId"] == result.run_id]["run_id"]
    per_trial = [min(metric.value for metric in client.get_metric_history(run, "val_loss")) for run in trials]
    assert result.best_value == pytest.approx(min(per_trial))  # validation, never test, picks the best
    assert parent.data.metrics["test_accuracy"] == best.data.metrics["test_accuracy"]
    table = client.download_artifacts(result.run_id, "trials.csv")
    with open(table, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines[0].startswith("trial,state,val_loss,") and len(lines) == 3


def test_only_the_best_trial_model_is_registered(quick_sweep):
    result, _, client = quick_sweep
    versions = client.search_model_versions(f"name='{TASK}'")
    assert len(versions) == 1
    assert result.model_uri == f"models:/{TASK}/{versions[0].version}"
    assert versions[0].run_id == client.get_run(result.run_id).data.tags["best_run_id"]


def test_the_parent_and_every_trial_log_a_model_card_and_the_version_links_the_parents(quick_sweep):
    result, runs, client = quick_sweep
    for run_id in runs["run_id"]:
        assert [item.path for item in client.list_artifacts(run_id) if item.path == "model_card.md"], run_id
    card = client.download_artifacts(result.run_id, "model_card.md")
    with open(card, encoding="utf-8") as handle:
        assert f"(run `{client.get_run(result.run_id).data.tags['best_run_id']}`)" in handle.read()
    version = client.get_model_version(TASK, result.model_uri.rsplit("/", 1)[1])
    assert version.description.endswith(f"Model card: runs:/{result.run_id}/model_card.md")


def test_failed_trials_are_marked_failed_and_the_sweep_goes_on(quick_sweep, monkeypatch, capsys):
    import mlflow

    calls = []

    def broken_model(self, config, info):
        calls.append(config)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(type(tasks.get(TASK)), "build_model", broken_model)
    assert cli.main(["sweep", TASK, "--quick", "--trials", "2", "--experiment", "broken_sweeps"]) == 2
    assert f"all 2 trials of the {TASK} sweep failed (first: RuntimeError: disk on fire)" in capsys.readouterr().err
    assert len(calls) == 2  # the first failure did not stop the sweep
    runs = mlflow.search_runs(experiment_names=["broken_sweeps"])
    parent = runs[runs["tags.sweep"] == "true"]
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]]
    assert list(parent["status"]) == ["FAILED"] and list(children["status"]) == ["FAILED", "FAILED"]
    assert len(quick_sweep[2].search_model_versions(f"name='{TASK}'")) == 1  # still only the good sweep's


def test_a_worker_started_on_the_finished_study_reports_it_and_neither_trains_nor_registers(
    quick_sweep, study_journal, monkeypatch
):
    import mlflow

    from pipelines import runner

    result, runs, client = quick_sweep
    monkeypatch.setattr(runner, "run", lambda *arguments, **options: pytest.fail("a trial trained"))
    again = sweep.sweep(*resolve(TASK, *TINY, SPACE), storage=study_journal, study_name="digits", heartbeat=1)
    assert (again.run_id, again.best_trial, again.model_uri) == (result.run_id, result.best_trial, result.model_uri)
    assert again.promotion is None and again.registrar == result.registrar
    assert len(mlflow.search_runs(experiment_names=[TASK])) == len(runs)  # no second sweep run
    assert len(client.search_model_versions(f"name='{TASK}'")) == 1


@pytest.mark.parametrize(
    "assignments, trials, differing",
    [(["epochs=7"], None, "epochs"), ([], 5, "--trials"), (["seed=3"], 2, "seed")],
)
def test_a_worker_with_other_settings_is_refused_before_it_trains(
    quick_sweep, study_journal, assignments, trials, differing
):
    with pytest.raises(ValueError, match=rf"differ from study 'digits' in: {differing}; start every worker"):
        sweep.sweep(*resolve(TASK, *TINY, SPACE, *assignments), trials, storage=study_journal, study_name="digits")


@pytest.mark.slow
@pytest.mark.parametrize("name", tasks.names())
def test_every_task_sweeps_its_own_search_space(name, tracking_store, capsys):
    import mlflow

    assert cli.main(["sweep", name, "--quick", "--trials", "2"]) == 0
    runs = mlflow.search_runs(experiment_names=[name])
    (parent,) = runs[runs["tags.sweep"] == "true"].itertuples()
    children = runs[runs["tags.mlflow.parentRunId"] == parent.run_id]
    assert len(children) == 2 and set(runs["status"]) == {"FINISHED"}
    assert f"metrics.test_{tasks.get(name).primary_metric}" in runs.columns
    (version,) = mlflow.MlflowClient().search_model_versions(f"name='{name}'")
    assert version.run_id == mlflow.get_run(parent.run_id).data.tags["best_run_id"]
    assert f"{name}: version 1 promoted to @champion" in capsys.readouterr().err
