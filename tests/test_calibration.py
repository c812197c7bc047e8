"""Calibration: `shared.evaluation.calibration` on synthetic probabilities (its binary and multi-class conventions),
which tasks output probabilities, and quick runs of three classifiers that must log `test_ece`, `test_brier` and the
reliability diagram."""

import types

import mlflow
import numpy as np
import pytest

import tasks
from pipelines import runner
from shared import evaluation, model_card
from tests.conftest import resolve

# The tasks whose test outputs are class probabilities (predictive_maintenance in its classification mode).
PROBABILISTIC = {
    "fraud_detection",
    "medical_imaging",
    "nlp_sentiment",
    "predictive_maintenance",
    "speech",
    "vision_classification",
}


def calibrated_binary(count, seed=0):
    """Positive-class probabilities and labels drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    scores = rng.random(count)
    return (rng.random(count) < scores).astype(int), scores


def calibrated_classes(count, classes=5, seed=0):
    """Class probabilities and labels drawn from them: calibrated by construction, the top class included."""
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.full(classes, 0.5), count)
    cumulative = probabilities.cumsum(axis=1)
    labels = np.minimum((rng.random((count, 1)) > cumulative).sum(axis=1), classes - 1)
    return labels, probabilities


def test_calibrated_probabilities_have_an_ece_near_zero():
    for labels, probabilities in (calibrated_binary(20000), calibrated_classes(20000)):
        result = evaluation.calibration(labels, probabilities)
        assert result.metrics["ece"] < 0.02 and set(result.figures) == {"reliability"}


def test_overconfident_probabilities_have_a_large_ece():
    labels, scores = calibrated_binary(20000)
    pushed = np.where(scores > 0.5, 0.99, 0.01)  # the right side, stated as near certainty
    assert evaluation.calibration(labels, pushed).metrics["ece"] > 0.2
    labels, probabilities = calibrated_classes(20000)
    sharpened = probabilities**6 / (probabilities**6).sum(axis=1, keepdims=True)
    assert evaluation.calibration(labels, sharpened).metrics["ece"] > 0.1


def test_binary_reads_the_positive_class_probability_however_it_is_shaped():
    labels, scores = np.array([0, 1, 1, 1]), np.array([0.1, 0.1, 0.9, 0.9])
    # bins 1 (0.1) and 13 (0.9) of 15: half the examples each, observed 0.5 and 1.0
    expected = {"ece": 0.5 * 0.4 + 0.5 * 0.1, "brier": (0.01 + 0.81 + 0.01 + 0.01) / 4}
    for shaped in (scores, scores[:, None], np.stack([1 - scores, scores], axis=1)):
        assert evaluation.calibration(labels, shaped).metrics == pytest.approx(expected)


def test_multi_class_reads_the_top_class_confidence_and_the_whole_vector_for_brier():
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    # the first is right at confidence 0.6, the second wrong at 0.7
    result = evaluation.calibration(np.array([0, 2]), probabilities)
    squared = (0.16 + 0.09 + 0.01) + (0.04 + 0.49 + 0.81)
    assert result.metrics == pytest.approx({"ece": 0.5 * 0.4 + 0.5 * 0.7, "brier": squared / 2})


def test_the_classifiers_and_only_they_declare_probabilities():
    for name in tasks.names():
        assert tasks.get(name).probabilistic(types.SimpleNamespace(mode="classification")) == (name in PROBABILISTIC), (
            name
        )
    maintenance = tasks.get("predictive_maintenance")
    assert not maintenance.probabilistic(types.SimpleNamespace(mode="regression"))


# Quick runs on embedded data: a detector (one sigmoid score), softmax classifiers of two classes and of more, and
# the detector of a task with a regression mode.
RUNS = {
    "fraud_detection": (),
    "nlp_sentiment": (),
    "speech": (),
    "predictive_maintenance": ("mode=classification",),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_quick_run_logs_its_calibration_and_its_card_shows_it(name, tracking_store):
    result = runner.run(*resolve(name, *RUNS[name]))
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert 0 <= run.data.metrics["test_ece"] <= 1 and 0 <= run.data.metrics["test_brier"] <= 2
    plots = {item.path for item in mlflow.MlflowClient().list_artifacts(result.run_id, "plots")}
    assert "plots/reliability.png" in plots
    card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/{model_card.FILE}")
    calibration = card.split("## Calibration")[1].split("## ")[0]
    assert "| `test_ece` |" in calibration and f"[plots/reliability.png](runs:/{result.run_id}/" in calibration
