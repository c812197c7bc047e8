"""`python -m pipelines evaluate`: a trained model scored on labelled data with the model's own preprocessing.

For every task a `--quick` model is trained on the embedded data, then evaluated through the CLI on its own
test split (the figure must equal the `test_<metric>` training logged: the same examples, the same
preprocessing, the same `Task.evaluate`) and on the whole source. Neither evaluation touches the registry.
"""

import json

import mlflow
import numpy as np
import pytest

import tasks
from pipelines import cli, runner
from shared import tracking
from shared.data import examples
from tests.conftest import resolve

FAST = ("vision_classification",)  # in the default suite (under 30 s); the others are slow-marked


def _evaluate(capsys, *arguments):
    """Runs `evaluate` through the CLI; returns its exit code and JSON line (None when it failed)."""
    capsys.readouterr()
    code = cli.main(["evaluate", *arguments])
    out = capsys.readouterr().out.strip()
    return code, json.loads(out) if code == 0 else None


@pytest.mark.parametrize(
    "task_name", [name if name in FAST else pytest.param(name, marks=pytest.mark.slow) for name in tasks.names()]
)
def test_evaluate_matches_training_on_its_test_split_and_leaves_the_registry_alone(task_name, tracking_store, capsys):
    task, resolved = resolve(task_name)
    trained = runner.run(task, resolved)
    client = mlflow.MlflowClient()
    # the registered version, champion or not: a quick model that learned nothing is never promoted
    uri, version = trained.model_uri, trained.model_uri.rsplit("/", 1)[1]
    aliases = client.get_registered_model(task.name).aliases

    code, result = _evaluate(capsys, task.name, "--model", uri, "--data", "embedded", "--split", "test")
    assert code == 0
    assert set(result) >= {"task", "model", "data", "metrics", "run_id"}
    assert (result["task"], result["model"], result["data"]) == (task.name, uri, "embedded")
    metric = task.primary_metric
    assert result["metrics"][metric] == pytest.approx(trained.metrics[metric], abs=1e-4)  # parity with training
    assert ("ece" in result["metrics"]) == ("ece" in trained.metrics)  # a classifier's calibration too
    if "ece" in trained.metrics:
        assert result["metrics"]["ece"] == pytest.approx(trained.metrics["ece"], abs=1e-4)
    robust = [name for name in trained.metrics if name.startswith("robust_accuracy_")]
    assert sorted(robust) == sorted(name for name in result["metrics"] if name.startswith("robust_accuracy_"))
    for name in robust:  # the same seeded sample and perturbations
        assert result["metrics"][name] == pytest.approx(trained.metrics[name], abs=1e-4), name
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    explained = [item.path for item in client.list_artifacts(result["run_id"], "plots/explain")]
    assert explained == ([f"plots/explain/{task.explain_kind}.png"] if task.explain_kind else [])
    assert run.info.experiment_id == client.get_experiment_by_name(task.name).experiment_id
    assert run.data.tags["evaluation_of"] == uri and run.data.tags["evaluated_model_version"] == version
    assert run.data.tags["data_source"] == "embedded"
    assert run.data.metrics[f"eval_{metric}"] == pytest.approx(result["metrics"][metric])

    code, whole = _evaluate(capsys, task.name, "--model", uri, "--data", "embedded")
    assert code == 0 and np.isfinite(whole["metrics"][metric]) and whole["examples"] > result["examples"]

    assert client.get_registered_model(task.name).aliases == aliases
    assert len(client.search_model_versions(f"name='{task.name}'")) == 1  # nothing registered
    assert tracking.runs(task.name)["run_id"].tolist() == [trained.run_id]  # compare lists training runs only


def test_a_bad_source_or_model_is_one_named_line_and_leaves_no_run(tracking_store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as `python -m pipelines` sets it (quiet.py)
    task, resolved = resolve("vision_classification", "max_examples=200")
    runner.run(task, resolved)
    client = mlflow.MlflowClient()
    experiment_id = client.get_experiment_by_name(task.name).experiment_id
    before = {found.info.run_id for found in client.search_runs([experiment_id])}
    capsys.readouterr()
    for arguments, expected in (
        (["--model", "models:/vision_classification/1", "--data", str(tmp_path / "missing")], "does not exist"),
        (["--model", "models:/vision_classification/9", "--data", "embedded"], "no model at"),
        (
            ["--model", "models:/vision_classification/1", "--data", "embedded", "--split", "holdout"],
            "unknown --split 'holdout'",
        ),
    ):
        assert cli.main(["evaluate", "vision_classification", *arguments]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith("error: ") and expected in error[0], error
    runs = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
    assert {found.info.run_id for found in runs} == before
    assert all(found.info.status != "RUNNING" for found in runs)


def test_join_concatenates_an_index_decoded_alike_and_chains_parts_decoded_apart():
    def double(dataset):
        return dataset.map(lambda features, targets: (features * 2, targets))

    first = examples.Examples(np.arange(3.0), np.zeros(3, "int64"), decode=double)
    joined = examples.join([first, first.subset(np.arange(2)), first.subset(np.arange(0))])
    assert isinstance(joined, examples.Examples) and len(joined) == 5
    other = examples.Examples(np.arange(2.0), np.ones(2, "int64"))
    chained = examples.join([first, other])
    features, targets = chained.sample(10)
    assert features.tolist() == [0, 2, 4, 0, 1] and targets.tolist() == [0, 0, 0, 1, 1]
    assert len(chained) == 5 and chained.targets.tolist() == targets.tolist()
    capped = chained.cap(3, seed=0)  # a seeded choice across the parts, each decoded its own way
    assert len(capped) == 3 and capped.cap(3, seed=0) is capped and chained.cap(0, seed=0) is chained
    assert set(capped.sample(3)[0].tolist()) <= {0, 2, 4, 1}
    assert capped.targets.tolist() == sorted(capped.targets.tolist())  # kept in order
    assert len(examples.empty_like(first)) == 0
