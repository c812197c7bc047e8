"""Loading models safely: Python code inside a Keras file is refused unless the user opts in.

The models here are saved as MLflow pyfunc folders (no store needed): `tracking.load` and
`python -m pipelines predict` accept a local model path like any model URI.
"""

import json

import keras
import mlflow
import numpy as np
import pytest

import tasks
from pipelines import cli, serving_model
from shared import tracking
from tasks.base import Task

TOY = "toy_security"


class Toy(Task):
    """A task whose raw inputs are comma-separated numbers and whose answer is the model's output."""

    name = TOY
    input_column = "numbers"

    def predict_raw(self, model, info, inputs):
        values = np.array([[float(value) for value in raw.split(",")] for raw in inputs], "float32")
        return [{"output": row.tolist()} for row in model.predict(values, verbose=0)]


class Unregistered(keras.layers.Layer):
    """A custom layer no task declares and nobody registered."""

    def call(self, inputs):
        return inputs + 1.0


@pytest.fixture
def saved(tmp_path, monkeypatch):
    """Registers the toy task; returns a function saving a Keras model as a pyfunc model folder."""
    monkeypatch.setitem(tasks.TASKS, TOY, Toy)
    # The store is never opened (the models are local folders), so a plain folder URI suffices.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "store").as_uri())
    monkeypatch.setenv(tracking.TRUST_CODE_ENV, "0")  # and restored after the test, even if the CLI sets it

    def save(layer):
        inputs = keras.Input((3,))
        model = keras.Model(inputs, layer(inputs))
        keras_path, info_path = tmp_path / f"{layer.name}.keras", tmp_path / "info.json"
        model.save(keras_path)
        info_path.write_text(json.dumps({"task": TOY}))
        folder = tmp_path / f"{layer.name}-model"
        mlflow.pyfunc.save_model(
            str(folder),
            python_model=serving_model.ServingModel(),
            pip_requirements=[],
            artifacts={"keras_model": str(keras_path), "info": str(info_path)},
        )
        return str(folder)

    return save


def lambda_layer():
    return keras.layers.Lambda(lambda values: values * 2.0, name="doubling")


def test_a_lambda_layer_is_refused_in_one_line_naming_the_model_and_the_opt_in(saved, capsys):
    folder = saved(lambda_layer())
    capsys.readouterr()  # MLflow's warnings while saving
    assert cli.main(["predict", TOY, "--model", folder, "1,2,3"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"error: {folder}: refusing to load the {TOY} model")
    assert "Lambda layer" in error and "PIPELINES_TRUST_MODEL_CODE=1" in error and "--trust-model-code" in error


def test_the_cli_flag_trusts_the_code_and_predicts(saved, capsys):
    folder = saved(lambda_layer())
    assert cli.main(["predict", TOY, "--model", folder, "--trust-model-code", "1,2,3"]) == 0
    assert json.loads(capsys.readouterr().out) == {"input": "1,2,3", "output": [2.0, 4.0, 6.0]}


def test_the_environment_variable_trusts_the_code_in_plain_python(saved, monkeypatch):
    folder = saved(lambda_layer())
    with pytest.raises(ValueError, match="PIPELINES_TRUST_MODEL_CODE=1"):
        tracking.load(folder)
    monkeypatch.setenv(tracking.TRUST_CODE_ENV, "1")
    (answer,) = tracking.load(folder).predict({"numbers": ["1,0,-1"]})
    assert answer == {"output": [2.0, 0.0, -2.0]}


def test_an_unknown_custom_object_is_refused_even_when_trusted(saved, monkeypatch):
    folder = saved(Unregistered(name="unregistered"))
    for trust in ("0", "1"):  # the file names a class; Keras never imports code it names
        monkeypatch.setenv(tracking.TRUST_CODE_ENV, trust)
        with pytest.raises(
            ValueError,
            match=f"needs 'Unregistered', which is neither a Keras built-in nor one of the {TOY} task's layers",
        ):
            tracking.load(folder)
