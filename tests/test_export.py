"""`python -m pipelines export`: SavedModel, TFLite and ONNX artifacts that answer like the logged model.

The default tests share one cheap vision_classification training; the slow tests export every task's
`--quick` model in every format, and quantize every task's TFLite export.
"""

import contextlib
import io
import json
import math

import mlflow
import numpy as np
import pandas as pd
import pytest

import tasks
from pipelines import cli, export, quantize
from shared import images, tracking
from shared.data import examples
from shared.fitted_state import FittedState, LabelledState
from tasks.base import ClassificationTask, Splits, Task, TaskConfig


@pytest.fixture(scope="module")
def digits_model(module_store):
    """A cheap vision_classification training; returns its registered model URI."""
    with contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["run", "vision_classification", "--quick", "--set", "max_examples=200"]) == 0
    return "models:/vision_classification/1"


def exported(task, model, export_format, folder, *options):
    """Runs the export command with `options`; returns its exit code, its JSON line (or None) and its stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(
            ["export", task, "--model", model, "--format", export_format, "--output", str(folder), *options]
        )
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


@pytest.mark.parametrize("mode", ["float16", "int8"])
def test_a_quantized_tflite_runs_on_litert_and_reports_both_test_metrics(digits_model, tmp_path, mode):
    from ai_edge_litert.interpreter import Interpreter

    # the quick model is barely trained, so int8 may lose more than the default: this test is about the report
    code, result, _ = exported(
        "vision_classification", digits_model, "tflite", tmp_path / mode, "--quantize", mode, "--max-metric-drop", "1"
    )
    assert code == 0 and result["parity"] and result["quantize"] == result["quantized_as"] == mode
    assert result["metric"] == "accuracy" and result["test_examples"] == 270 and result["max_metric_drop"] == 1
    assert result["metric_difference"] == pytest.approx(result["metric_export"] - result["metric_keras"])
    assert result["metric_drop"] == pytest.approx(-result["metric_difference"] / result["metric_keras"])
    version = mlflow.MlflowClient().get_model_version("vision_classification", "1")
    assert version.tags[f"export.tflite_{mode}"] == result["logged_as"] and result["logged_as"].endswith(mode)
    runner = Interpreter(model_path=result["path"]).get_signature_runner()
    contract = json.loads((tmp_path / mode / "preprocessing.json").read_text())
    assert contract["quantization"]["mode"] == mode
    picture = np.random.default_rng(2).random((3, 8, 8, 1)).astype("float32")
    if mode == "float16":
        assert runner.get_input_details()["image"]["dtype"] == np.float32
        assert contract["inputs"]["image"]["dtype"] == "float32"
        assert abs(result["metric_difference"]) <= 1 / 270  # float16 weights change at most one test answer
        probabilities = runner(image=picture)["probabilities"]
    else:  # int8 in and out, with the scale and zero point preprocessing.json states
        stated = contract["quantization"]
        assert contract["inputs"]["image"]["dtype"] == contract["outputs"]["probabilities"]["dtype"] == "int8"
        assert runner.get_input_details()["image"]["dtype"] == np.int8
        scale, zero_point = stated["inputs"]["image"]["scale"], stated["inputs"]["image"]["zero_point"]
        answer = runner(image=np.clip(np.round(picture / scale) + zero_point, -128, 127).astype("int8"))
        out = stated["outputs"]["probabilities"]
        probabilities = (answer["probabilities"].astype("float32") - out["zero_point"]) * out["scale"]
    assert probabilities.shape == (3, 10) and np.allclose(probabilities.sum(axis=1), 1.0, atol=0.05)


def test_a_quantized_export_losing_more_than_max_metric_drop_fails_and_keeps_nothing(
    digits_model, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as the command line sets it

    def figure(task, predictor, asked):
        """The export scores 0.3 where the Keras model scores 0.6: half of it lost."""
        return 0.3 if isinstance(predictor, quantize.LitePredictor) else 0.6

    monkeypatch.setattr(quantize, "_metric", figure)
    tags = mlflow.MlflowClient().get_model_version("vision_classification", "1").tags
    code, result, err = exported(
        "vision_classification", digits_model, "tflite", tmp_path / "lost", "--quantize", "float16"
    )
    assert code == 2 and not result["parity"] and result["metric_drop"] == pytest.approx(0.5)
    assert err == (
        "error: metric check failed: the vision_classification tflite float16 export's test accuracy is 0.3 against "
        "the Keras model's 0.6, a loss of 50.00% of it (> --max-metric-drop 0.01); nothing was kept or logged: "
        "allow more with --max-metric-drop, or export without --quantize\n"
    )
    assert not (tmp_path / "lost").exists()
    assert mlflow.MlflowClient().get_model_version("vision_classification", "1").tags == tags


def test_a_quantized_export_whose_data_is_gone_stops_before_writing(digits_model, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as the command line sets it

    def gone(self, config, info, split="all"):
        raise FileNotFoundError("[Errno 2] No such file or directory: 'digits/'")

    monkeypatch.setattr(type(tasks.get("vision_classification")), "evaluation_data", gone)
    code, result, err = exported("vision_classification", digits_model, "tflite", tmp_path / "q", "--quantize", "int8")
    assert code == 2 and result is None and not (tmp_path / "q").exists()
    assert err == (
        "error: vision_classification: a quantized export is checked on the model's test split and int8 calibrated "
        "on its training split, but its data 'embedded' cannot be read ([Errno 2] No such file or directory: "
        "'digits/'); make that source readable again, or export without --quantize.\n"
    )


def test_a_failed_quantized_export_empties_the_folder_it_was_given(tmp_path):
    (tmp_path / "given").mkdir()
    with pytest.raises(ValueError, match="half-written"):
        with export._removed_on_failure(tmp_path / "given", remove=True):
            (tmp_path / "given" / "model.tflite").write_bytes(b"partial")
            raise ValueError("half-written")
    assert (tmp_path / "given").is_dir() and not any((tmp_path / "given").iterdir())


def test_int8_falls_back_to_dynamic_when_an_operator_has_no_integer_kernel(tmp_path):
    import keras

    class Waves(ClassificationTask):  # cos has a float kernel in LiteRT and no integer one
        name = "toy_waves"

        def prepare_inputs(self, info, inputs):
            return np.asarray(inputs, "float32")

    inputs = keras.Input((3,), name="row")
    hidden = keras.layers.Activation(keras.ops.cos)(keras.layers.Dense(4)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="probabilities")(hidden))
    rows = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    split = examples.Examples(rows, (rows[:, 0] > 0).astype("int64"))
    info = LabelledState(class_names=["low", "high"])
    splits = Splits(split, split, split, info, "toy", "toy", True, fitted=True)
    asked = quantize.Request("int8", quantize.MAX_METRIC_DROP, TaskConfig(), test=splits, train=splits)
    logged = tracking.LoggedModel(model, info, rows[:2].tolist(), run_id="")
    result = export.export(Waves(), logged, "tflite", tmp_path, asked)
    assert result["quantize"] == "int8" and result["quantized_as"] == "dynamic"
    assert result["fallback_reason"] == "operator(s) COS have no integer kernel"
    assert json.loads((tmp_path / "preprocessing.json").read_text())["quantization"] == {"mode": "dynamic"}
    assert math.isfinite(result["metric_export"]) and result["test_examples"] == 40


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["vision_classification", "--format", "coreml"], "unknown --format 'coreml'; use one of saved_model, tflite"),
        (["nlp_sentiment", "--format", "tflite"], "is a vision_classification model, not nlp_sentiment"),
        (["vision_classification", "--format", "onnx", "--quantize", "int8"], "--quantize applies to --format tflite"),
        (["vision_classification", "--format", "tflite", "--quantize", "int4"], "use one of float16, int8, dynamic"),
        (["vision_classification", "--format", "tflite", "--max-metric-drop", "0.1"], "add --quantize"),
        (
            ["vision_classification", "--format", "tflite", "--quantize", "int8", "--max-metric-drop", "-0.1"],
            "--max-metric-drop -0.1 must be 0 or more",
        ),
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
    logged = tracking.LoggedModel(model, FittedState(), [[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]], run_id="")
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
        code, result, err = exported(name, f"models:/{name}/latest", export_format, tmp_path / export_format)
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


@pytest.mark.slow
@pytest.mark.parametrize("name", tasks.names())
def test_every_task_quantizes_its_tflite_export_and_checks_its_test_metric(name, module_store, tmp_path, capsys):
    from pipelines import evaluate

    sized = ["--set", "image_size=32"] if name == "vision_segmentation" else []  # its U-Net exports at a fixed size
    assert cli.main(["run", name, "--quick", *sized]) == 0
    task, model = tasks.get(name), f"models:/{name}/latest"
    reports, contracts = {}, {}
    for mode in ("float16", "int8"):
        options = ("--quantize", mode, "--max-metric-drop", "1000")  # a quick model may lose much: see the next check
        code, result, err = exported(name, model, "tflite", tmp_path / mode, *options)
        assert code == 0 and result["parity"] and result["quantize"] == mode, err
        assert result["metric"] == task.primary_metric and math.isfinite(result["metric_export"])
        assert result["metric_difference"] == pytest.approx(result["metric_export"] - result["metric_keras"])
        assert (result["quantized_as"] == "dynamic") == ("warning: full-integer int8 conversion failed" in err)
        quantize.LiteRunner(result["path"])  # the file loads in the LiteRT interpreter
        reports[mode] = result
        contracts[mode] = json.loads((tmp_path / mode / "preprocessing.json").read_text())
    integer = reports["int8"]["quantized_as"] == "int8"
    for input_name, spec in contracts["float16"]["inputs"].items():  # float inputs become int8, ids stay as they are
        wanted = "int8" if integer and spec["dtype"] == "float32" else spec["dtype"]
        assert contracts["int8"]["inputs"][input_name]["dtype"] == wanted, (input_name, contracts["int8"]["inputs"])
    # the Keras model's figure is the one `evaluate --split test` computes on the model's own data
    scored = evaluate.evaluate(task, model, "embedded", split="test")
    assert scored["metrics"][task.primary_metric] == pytest.approx(reports["int8"]["metric_keras"])
    # with no loss allowed, int8 passes exactly when it lost nothing, and a failure keeps nothing
    strict = ("--quantize", "int8", "--max-metric-drop", "0")
    code, result, err = exported(name, model, "tflite", tmp_path / "strict", *strict)
    lost = reports["int8"]["metric_drop"] > 0
    assert code == (2 if lost else 0) and result["metric_drop"] == pytest.approx(reports["int8"]["metric_drop"])
    assert (tmp_path / "strict").exists() != lost
    assert not lost or err.splitlines()[-1].startswith(f"error: metric check failed: the {name} tflite ")
    capsys.readouterr()


def test_unrolled_bidirectional_layers_answer_as_the_model_on_padded_texts():
    """keras-team/keras#17596: unrolled, a backward layer zeroed real steps of padded sequences."""
    import keras
    import tensorflow as tf

    from shared import text_layers

    tokens = keras.Input((None,), dtype="int64")
    x = keras.layers.Embedding(50, 8, mask_zero=True)(tokens)
    x = keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True))(x)
    model = keras.Model(tokens, text_layers.layers()["MaskedMaxPooling"]()(x))
    padded = np.zeros((2, 5), "int64")
    for row, length in enumerate((2, 5)):
        padded[row, :length] = np.arange(1, length + 1)
    unrolled = export._unrolled(model, {"tokens": tf.TensorSpec((None, 5), tf.int64)})
    np.testing.assert_allclose(unrolled(padded), model(padded), atol=1e-6)
