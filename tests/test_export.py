"""`python -m pipelines export`: SavedModel, TFLite and ONNX artifacts that answer like the logged model.

The default tests share one cheap vision_classification training; the slow test exports every task's
`--quick` model in every format.
"""

import contextlib
import io
import json

import mlflow
import numpy as np
import pandas as pd
import pytest

import tasks
from pipelines import cli, export
from shared import images, tracking
from tasks.base import Task


@pytest.fixture(scope="module")
def digits_model(module_store):
    """A cheap vision_classification training; returns its registered model URI."""
    with contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["run", "vision_classification", "--quick", "--set", "max_examples=200"]) == 0
    return "models:/vision_classification/1"


def exported(task, model, export_format, folder):
    """Runs the export command; returns its exit code, its JSON line (or None) and its stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["export", task, "--model", model, "--format", export_format, "--output", str(folder)])
    lines = out.getvalue().splitlines()
    assert len(lines) <= 1, lines
    return code, json.loads(lines[0]) if lines else None, err.getvalue()


def test_saved_model_takes_encoded_images_and_answers_like_the_logged_model(digits_model, tmp_path):
    import tensorflow as tf

    code, result, _ = exported("vision_classification", digits_model, "saved_model", tmp_path / "sm")
    assert code == 0 and result["parity"] and result["max_abs_diff"] <= export.TOLERANCE
    assert result["top_label_agreement"] == 1.0 and result["preprocessing_in_graph"] and result["examples"] == 2
    assert result["size_bytes"] > 0 and result["latency_ms_per_example"] > 0 and result["path"] == str(tmp_path / "sm")
    contract = json.loads((tmp_path / "sm" / "preprocessing.json").read_text())
    assert contract["inputs"] == {"image": {"shape": [None], "dtype": "string"}}
    assert contract["class_names"] == [str(digit) for digit in range(10)]
    picture = np.random.default_rng(0).random((8, 8, 1))
    images.save_png(picture, tmp_path / "digit.png")
    serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    probabilities = serve(image=tf.constant([(tmp_path / "digit.png").read_bytes()]))["probabilities"].numpy()
    (answer,) = mlflow.pyfunc.load_model(digits_model).predict(pd.DataFrame({"image": [str(tmp_path / "digit.png")]}))
    assert str(probabilities.argmax()) == answer["label"]
    assert probabilities.max() == pytest.approx(answer["probability"], abs=1e-5)
    version = mlflow.MlflowClient().get_model_version("vision_classification", "1")
    assert version.tags["export.saved_model"] == result["logged_as"] == f"runs:/{version.run_id}/exports/saved_model"
    mlflow.artifacts.download_artifacts(result["logged_as"], dst_path=str(tmp_path / "logged"))
    assert {"saved_model.pb", "preprocessing.json", "variables"} <= {
        path.name for path in (tmp_path / "logged").rglob("*")
    }


def test_tflite_runs_on_the_litert_interpreter_with_the_stated_preprocessing(digits_model, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    code, result, err = exported("vision_classification", digits_model, "tflite", tmp_path / "lite")
    assert code == 0 and result["parity"] and not result["preprocessing_in_graph"]
    assert "prepare them as" in err and "preprocessing.json" in err
    contract = json.loads((tmp_path / "lite" / "preprocessing.json").read_text())
    assert contract["inputs"] == {"image": {"shape": [None, 8, 8, 1], "dtype": "float32"}}
    assert any("resize to 8x8" in step for step in contract["steps"])
    runner = Interpreter(model_path=result["path"]).get_signature_runner()
    picture = np.random.default_rng(1).random((1, 8, 8, 1)).astype("float32")
    probabilities = runner(image=picture)["probabilities"]
    (answer,) = mlflow.pyfunc.load_model(digits_model).predict({"image": [picture[0].tolist()]})
    assert str(probabilities.argmax()) == answer["label"] and result["task"] == "vision_classification"
    assert mlflow.MlflowClient().get_model_version("vision_classification", "1").tags["export.tflite"]


def test_a_parity_failure_exits_2_with_a_named_error_and_logs_nothing(digits_model, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # any difference, even 0, now fails
    code, result, err = exported("vision_classification", digits_model, "onnx", tmp_path / "onnx")
    assert code == 2 and result is not None and not result["parity"]
    assert err.startswith("error: parity check failed: the vision_classification onnx export") and err.count("\n") == 1
    assert "export.onnx" not in mlflow.MlflowClient().get_model_version("vision_classification", "1").tags


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["vision_classification", "--format", "coreml"], "unknown --format 'coreml'; use one of saved_model, tflite"),
        (["nlp_sentiment", "--format", "tflite"], "is a vision_classification model, not nlp_sentiment"),
    ],
)
def test_bad_requests_are_one_line_errors(digits_model, tmp_path, arguments, message, capsys):
    task, *options = arguments
    assert cli.main(["export", task, "--model", digits_model, *options, "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1


def test_a_non_empty_output_folder_is_refused(digits_model, tmp_path, capsys):
    (tmp_path / "taken.txt").write_text("mine")
    assert (
        cli.main(
            [
                "export",
                "vision_classification",
                "--model",
                digits_model,
                "--format",
                "tflite",
                "--output",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "exists and is not an empty folder" in capsys.readouterr().err


@pytest.mark.parametrize("export_format", export.FORMATS)
def test_a_new_task_exports_with_prepare_inputs_alone(export_format, tmp_path):
    import keras

    class Rows(Task):  # no serving_signature(): the default puts the model on its tensor input
        name = "toy_rows"

        def prepare_inputs(self, info, inputs):
            return np.asarray(inputs, "float32")

    inputs = keras.Input((3,), name="row")
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="scores")(inputs))
    logged = tracking.LoggedModel(model, {}, [[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]], run_id="")
    result = export.export(Rows(), logged, export_format, tmp_path)
    assert result["parity"] and result["examples"] == 2 and not result["preprocessing_in_graph"]
    contract = json.loads((tmp_path / "preprocessing.json").read_text())
    assert contract["inputs"] == {"row": {"shape": [None, 3], "dtype": "float32"}}
    assert contract["outputs"] == {"scores": {"shape": [None, 2], "dtype": "float32"}}


@pytest.mark.slow
@pytest.mark.parametrize("name", tasks.names())
def test_every_task_exports_in_every_format_or_says_why(name, module_store, tmp_path, capsys):
    assert cli.main(["run", name, "--quick", "--promote", "always"]) == 0
    produced = {}
    for export_format in export.FORMATS:
        code, result, err = exported(name, f"models:/{name}@champion", export_format, tmp_path / export_format)
        if code == 0:
            assert result["parity"] and result["max_abs_diff"] <= export.TOLERANCE, result
            assert (tmp_path / export_format / "preprocessing.json").is_file()
            produced[export_format] = result
        else:
            assert err.startswith(f"error: {name}: ") and err.count("\n") == 1, err
    capsys.readouterr()
    must = (
        {"saved_model", "tflite"}
        if name in ("vision_classification", "medical_imaging", "nlp_sentiment", "speech", "fraud_detection")
        else set()
    )
    assert must <= set(produced), (name, sorted(produced))
    assert produced.get("saved_model", {}).get("preprocessing_in_graph", False) == (
        name in ("vision_classification", "medical_imaging", "nlp_sentiment", "fraud_detection")
    )
