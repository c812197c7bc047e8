"""Continued training (`run TASK --init-from URI --data NEW`, `pipelines.continued`): a logged model trained further
on new data from its own weights and preprocessing, its old examples replayed and its forgetting measured.

An image model trained once on the embedded digits serves the fast tests: training starts from its very weights,
keeps its class names, replays the expected count of its examples, logs its forgetting and lineage, and is gated on
the champion's test set; incompatible data and settings stop before a run exists. Text and tables are slow-marked.
"""

import keras
import mlflow
import numpy as np
import pytest

import tasks
from pipelines import cli, runner
from shared import tracking
from tests.conftest import resolve

TINY = ("epochs=2", "max_examples=300", "explain_count=0")  # a few seconds: what the weights and figures need


def _digits_npz(path, labels_shift=0):
    """The embedded digits' second half as a Keras-style .npz, its labels shifted by `labels_shift`."""
    from sklearn import datasets

    digits = datasets.load_digits()
    images, labels = digits.images[900:] / 16.0, digits.target[900:] + labels_shift
    np.savez(path, x_train=images[:600], y_train=labels[:600], x_test=images[600:], y_test=labels[600:])
    return str(path)


class _FirstWeights(keras.callbacks.Callback):
    """Keeps the model's weights as training begins."""

    def on_train_begin(self, logs=None):
        self.weights = self.model.get_weights()


@pytest.fixture(scope="module")
def logged_digits_model(module_store):
    """A vision_classification model logged as `run` logs one (its config.yaml and info), untrained: what the checks
    that stop a continued run before it starts read, in a second rather than a training's half minute."""
    import yaml

    from pipelines import config as config_module, serving_model

    task, config = resolve("vision_classification")
    info = task.load_data(config).info
    with tracking.run(task, config_module.flatten(config)):
        tracking.log_results(texts={"config.yaml": yaml.safe_dump(config_module.flatten(config))})
        logged = tracking.log_model(task, task.build_model(config, info), info, [[0.0]], serving_model.ServingModel())
    return f"models:/vision_classification/{logged.registered_model_version}"


@pytest.fixture(scope="module")
def digits_champion(module_store):
    """A vision_classification champion on the embedded digits (no temperature: its weights are the trained ones)."""
    task, config = resolve("vision_classification", *TINY, "temperature_scaling=false")
    return runner.run(task, config, promote="always")


@pytest.mark.slow
def test_continued_training_starts_from_the_model_replays_and_measures_forgetting(digits_champion, tmp_path):
    uri = "models:/vision_classification@champion"
    task, config = resolve(
        "vision_classification",
        f"init_from={uri}",
        "replay_fraction=0.5",
        "epochs=1",
        data=_digits_npz(tmp_path / "new.npz"),
    )
    assert (config.base_filters, config.max_examples) == (32, 600)  # the model's settings, --quick's on top
    init = tracking.logged_model(uri, task)  # before the run, whose model may become the champion
    first = _FirstWeights()
    result = runner.run(task, config, callbacks=[first])

    assert all(np.array_equal(a, b) for a, b in zip(first.weights, init.model.get_weights()))
    continued = tracking.logged_model(result.model_uri, task)
    for key in ("class_names", "image_size", "channels"):
        assert getattr(continued.info, key) == getattr(init.info, key)
    run = mlflow.MlflowClient().get_run(result.run_id)
    tags, metrics = run.data.tags, run.data.metrics
    assert run.data.params["init_from"] == uri and tags["init_run_id"] == digits_champion.run_id
    assert [item.model_id for item in run.inputs.model_inputs] == [init.model_id]  # lineage in the UI
    new_examples = 600 * 0.85  # the npz's training pool less the carved validation share (its test split is its own)
    assert int(tags["replay_examples"]) == pytest.approx(0.5 * new_examples, abs=1)
    assert int(tags["examples.training"]) == pytest.approx(1.5 * new_examples, abs=2)
    assert metrics["init_test_accuracy"] > 0.5  # the old test split, read again and scored by the new model
    old = digits_champion.metrics["accuracy"]
    assert metrics["forgetting_accuracy"] == pytest.approx(old - metrics["init_test_accuracy"])
    assert "on the champion's test set" in tags["promotion_reason"]


def test_incompatible_data_or_settings_stop_in_one_line_before_a_run(logged_digits_model, tmp_path, capsys):
    uri = logged_digits_model
    client = mlflow.MlflowClient()
    before = {
        found.info.run_id
        for found in client.search_runs([client.get_experiment_by_name("vision_classification").experiment_id])
    }
    shifted = _digits_npz(tmp_path / "shifted.npz", labels_shift=1)
    for arguments, expected in (
        (["vision_classification", "--data", shifted], "class(es) ['10'] that the model was not trained on"),
        (["vision_classification", "--set", "base_filters=16"], "base_filters=16 (the model's: 32) build other layers"),
        (["medical_imaging"], "is a vision_classification model, not medical_imaging"),
    ):
        capsys.readouterr()
        assert cli.main(["run", *arguments, "--quick", "--init-from", uri]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert expected in err[-1] and err[-1].startswith("error: "), err[-1]
    assert cli.main(["run", "vision_classification", "--set", "replay_fraction=0.2"]) == 2
    assert "give it with --init-from URI" in capsys.readouterr().err
    after = {
        found.info.run_id
        for found in client.search_runs([client.get_experiment_by_name("vision_classification").experiment_id])
    }
    assert after == before and tasks.get("medical_imaging")


@pytest.mark.slow
def test_a_text_model_keeps_its_vocabulary_and_refuses_a_new_label(module_store, tmp_path, capsys):
    import pandas as pd

    task, config = resolve("nlp_sentiment", "epochs=1", "max_examples=600", "explain_count=0")
    trained = runner.run(task, config, promote="always")
    uri = f"runs:/{trained.run_id}/model"
    init = tracking.logged_model(uri, task)
    task, config = resolve("nlp_sentiment", f"init_from={uri}", "epochs=1", "max_examples=600", "seed=1")
    result = runner.run(task, config, promote="never")  # other generated reviews: words the model never counted
    continued = tracking.logged_model(result.model_uri, task)
    assert continued.info.vocabulary == init.info.vocabulary  # not counted again on the new texts
    metrics = mlflow.MlflowClient().get_run(result.run_id).data.metrics
    assert metrics["forgetting_accuracy"] == pytest.approx(trained.metrics["accuracy"] - metrics["init_test_accuracy"])

    table = tmp_path / "reviews.csv"
    pd.DataFrame(
        {"text": ["a fine film", "dull and long", "so so"] * 20, "label": ["positive", "negative", "neutral"] * 20}
    ).to_csv(table, index=False)
    capsys.readouterr()
    assert cli.main(["run", "nlp_sentiment", "--init-from", uri, "--data", str(table)]) == 2
    assert "class(es) ['neutral'] that the model was not trained on" in capsys.readouterr().err


@pytest.mark.slow
def test_a_table_model_refuses_a_new_column_and_says_when_its_data_is_gone(module_store, tmp_path, capsys):
    from tasks.fraud_detection import _transactions

    old, new, wider = tmp_path / "old.csv", tmp_path / "new.csv", tmp_path / "wider.csv"
    _transactions(6000, 0, fraud_rate=0.05).to_csv(old, index=False)
    _transactions(6000, 1, fraud_rate=0.05).to_csv(new, index=False)
    _transactions(6000, 1, fraud_rate=0.05).assign(branch="north").to_csv(wider, index=False)
    task, config = resolve("fraud_detection", "explain_count=0", "temperature_scaling=false", data=old)
    trained = runner.run(task, config, promote="always")
    uri = "models:/fraud_detection@champion"
    init = tracking.logged_model(uri, task)

    task, config = resolve("fraud_detection", f"init_from={uri}", "replay_fraction=0.25", data=new)
    first = _FirstWeights()
    result = runner.run(task, config, callbacks=[first], promote="never")
    assert all(np.array_equal(a, b) for a, b in zip(first.weights, init.model.get_weights()))
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert int(run.data.tags["replay_examples"]) == pytest.approx(
        0.25 * int(run.data.tags["examples.training"]) / 1.25, abs=1
    )
    forgetting = run.data.metrics["forgetting_pr_auc"]
    assert forgetting == pytest.approx(trained.metrics["pr_auc"] - run.data.metrics["init_test_pr_auc"])

    capsys.readouterr()
    assert cli.main(["run", "fraud_detection", "--quick", "--init-from", uri, "--data", str(wider)]) == 2
    assert "not trained on column(s) ['branch']" in capsys.readouterr().err

    old.unlink()  # the original data is gone: the run goes on without replay or forgetting, and says why
    task, config = resolve("fraud_detection", f"init_from={uri}", "replay_fraction=0.25", data=new)
    with pytest.warns(UserWarning, match="training without replay"):
        tags = mlflow.MlflowClient().get_run(runner.run(task, config, promote="never").run_id).data.tags
    assert "is not readable" in tags["replay_skipped"] and tags["forgetting_skipped"] == tags["replay_skipped"]
