"""Temperature scaling: the fit recovers a known temperature, folding it into the output layer scales the model's
probabilities exactly, and a run keeps it only where validation calibration improves."""

import json
import pathlib

import mlflow
import numpy as np
import pytest

from pipelines import runner
from shared import temperature
from tests.conftest import resolve


def overconfident(classes, sharpen, count=4000, seed=0):
    """Labels drawn from softmax(logits) (or their sigmoid) and the probabilities of `sharpen` times those logits."""
    generator = np.random.default_rng(seed)
    if classes == 1:
        logits = generator.normal(0, 2, count)
        labels = (generator.random(count) < 1 / (1 + np.exp(-logits))).astype(int)
        return labels, 1 / (1 + np.exp(-sharpen * logits))
    logits = generator.normal(0, 2, (count, classes))
    true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([generator.choice(classes, p=row) for row in true])
    sharp = np.exp(sharpen * logits)
    return labels, sharp / sharp.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("classes", [1, 2, 5])
def test_the_fit_undoes_a_known_overconfidence(classes):
    labels, probabilities = overconfident(classes, sharpen=3.0)
    fitted = temperature.fit(labels, probabilities)
    assert fitted == pytest.approx(3.0, rel=0.15)
    scaled = temperature.apply(probabilities, fitted)
    assert scaled.shape == probabilities.shape
    assert temperature.negative_log_likelihood(labels, scaled) < temperature.negative_log_likelihood(
        labels, probabilities
    )
    if classes > 1:  # the winning class never changes
        assert (scaled.argmax(axis=1) == probabilities.argmax(axis=1)).all()


def test_the_held_out_ece_falls_for_an_overconfident_model_only():
    _, before, after = temperature.cross_fitted(*overconfident(5, sharpen=3.0, count=1000))
    assert after < before / 2
    _, before, after = temperature.cross_fitted(*overconfident(5, sharpen=1.0, count=1000))
    assert after > before - 0.01  # a calibrated model gains nothing a held-out half can see


@pytest.mark.parametrize("head", ["softmax", "sigmoid", "ensemble"])
def test_folding_into_the_output_layer_scales_the_models_probabilities(head):
    import keras

    from shared.heads import softmax_head

    inputs = keras.Input((6,))
    if head == "sigmoid":
        outputs = keras.layers.Dense(1, activation="sigmoid")(inputs)
    else:
        outputs = softmax_head([inputs, inputs] if head == "ensemble" else inputs, 0.0, 4)
    model = keras.Model(inputs, outputs)
    features = np.random.default_rng(0).normal(0, 3, (32, 6)).astype("float32")
    before = model.predict(features, verbose=0)
    layers = temperature.output_layers(model)
    assert len(layers) == (2 if head == "ensemble" else 1)
    temperature.fold(layers, 2.5)
    np.testing.assert_allclose(model.predict(features, verbose=0), temperature.apply(before, 2.5), atol=1e-5)


def test_a_regression_output_is_not_folded():
    import keras

    inputs = keras.Input((3,))
    assert temperature.output_layers(keras.Model(inputs, keras.layers.Dense(1)(inputs))) == []


def test_a_run_logs_its_temperature_and_serves_it(tracking_store):
    result = runner.run(*resolve("medical_imaging", "temperature_scaling=true"))
    metrics = mlflow.get_run(result.run_id).data.metrics
    assert temperature.BOUNDS[0] <= metrics["temperature"] <= temperature.BOUNDS[1]
    assert {"validation_ece_unscaled", "validation_ece_scaled"} <= set(metrics)
    local = pathlib.Path(mlflow.artifacts.download_artifacts(result.model_uri))
    info = json.loads(next(local.rglob("info.json")).read_text())
    assert info["temperature"] == pytest.approx(metrics["temperature"])
    task, settings = resolve("medical_imaging", "temperature_scaling=false")
    assert runner.temper(task, result.model, None, settings) == {}  # nothing fitted, nothing logged
