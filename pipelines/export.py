"""`python -m pipelines export`: a logged model as a TF Serving SavedModel, a TFLite (LiteRT) file or ONNX.

What each task puts in the graph comes from its `serving_signature` method (a `tasks.base.ServingSignature`);
this module is the same for every task. Every export is checked before it is logged: the exported artifact and the
logged Keras model run on the model's logged input example, and their outputs must agree within
`TOLERANCE`. A quantized TFLite export (`--quantize`, `pipelines.quantize`) is judged by its primary test metric
instead, which may lose at most `--max-metric-drop` of the Keras model's.
"""

import contextlib
import io
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time

import numpy as np

import tasks
from pipelines import quantize

FORMATS = ("saved_model", "tflite", "onnx")
TOLERANCE = 1e-3  # largest absolute difference of float outputs that passes the parity check
FILES = {"saved_model": "", "tflite": "model.tflite", "onnx": "model.onnx"}  # the artifact inside --output


class ParityError(ValueError):
    """The exported artifact does not answer like the logged model."""


def command(arguments):
    import keras

    from pipelines import config as config_module
    from shared import tracking

    task = tasks.get(arguments.task)
    if arguments.format not in FORMATS:
        raise ValueError(f"unknown --format '{arguments.format}'; use one of {', '.join(FORMATS)}.")
    quantize.check_options(arguments.format, arguments.quantize, arguments.max_metric_drop)
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"export needs the TensorFlow backend (this process runs {keras.backend.backend()}); run it "
            "with KERAS_BACKEND=tensorflow: models trained on any backend load there."
        )
    output = pathlib.Path(arguments.output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"--output '{output}' exists and is not an empty folder; name a new folder.")
    logged = tracking.logged_model(arguments.model, task)
    asked = None
    if arguments.quantize:  # read before anything is written: a source that is gone stops the export here
        config = config_module.resolve(task, base=tracking.run_config(logged.run_id))
        asked = quantize.request(task, logged.info, config, arguments.quantize, arguments.max_metric_drop)
    with _removed_on_failure(output, asked is not None):
        result = export(task, logged, arguments.format, output, asked)
        if result.get("fallback_reason"):
            print(
                f"{task.name}: warning: full-integer int8 conversion failed ({result['fallback_reason']}); the "
                f"export holds {quantize.FALLBACK}-range quantization instead (int8 weights; float activations, "
                "inputs and outputs)",
                file=sys.stderr,
            )
        if asked and not result["parity"]:
            print(json.dumps(result))
            held = result["quantized_as"]
            raise ParityError(
                f"metric check failed: the {task.name} tflite {held} export's test {result['metric']} is "
                f"{result['metric_export']:.4g} against the Keras model's {result['metric_keras']:.4g}, a loss of "
                f"{result['metric_drop']:.2%} of it (> --max-metric-drop {asked.max_metric_drop:g}); nothing was "
                "kept or logged: allow more with --max-metric-drop, or "
                + ("export without --quantize" if held == "float16" else "try --quantize float16")
            )
    if not result["parity"]:
        print(json.dumps(result))
        raise ParityError(
            f"parity check failed: the {task.name} {arguments.format} export's outputs differ from the "
            f"logged model's by up to {result['max_abs_diff']:.3g} (> {TOLERANCE:g}) on "
            f"{result['examples']} inputs; it stays in {output} and was not logged"
        )
    logged_format = f"{arguments.format}_{result['quantized_as']}" if asked else arguments.format
    result["logged_as"] = tracking.log_export(logged.run_id, output, logged_format)
    blend = getattr(logged.info, "blend", None)  # a detector's (`DetectionState`)
    result["blend_weight_not_exported"] = blend["weight"] if blend else 0.0
    print(json.dumps(result))
    if blend:  # no export format carries the scikit-learn trees; the parity check is with the Keras model alone
        print(
            f"{task.name}: the {arguments.format} export holds the neural model alone; the logged model also "
            f"blends in {len(blend['trees']['trees'])} gradient-boosted trees at weight {blend['weight']} "
            f"(info.json 'blend', shared/trees.py scores them), so its scores differ",
            file=sys.stderr,
        )
    if not result["preprocessing_in_graph"]:
        print(
            f"{task.name}: the {arguments.format} export takes the model's tensors; prepare them as "
            f"{output / 'preprocessing.json'} states",
            file=sys.stderr,
        )


def export(task, logged, export_format, output, asked=None):
    """Writes the export into `output`, checks its parity with the Keras model and describes it.

    Args:
        task (tasks.base.Task): the task.
        logged (shared.tracking.LoggedModel): the model, its info and input example.
        export_format (str): one of `FORMATS`.
        output (pathlib.Path): a new or empty folder.
        asked (pipelines.quantize.Request | None): a quantized TFLite export, its data read.

    Returns:
        dict: `task`, `format`, `path`, `size_bytes`, `max_abs_diff`, `top_label_agreement`, `parity` (True when
        `max_abs_diff` is within `TOLERANCE`; for a quantized export, when its test metric loses at most
        `max_metric_drop`), `latency_ms_per_example`, `examples` (how many inputs the check ran) and
        `preprocessing_in_graph`; a quantized export adds `quantize` (the mode asked), `quantized_as` (the mode
        the file holds), `fallback_reason` (why int8 fell back, else empty) and `pipelines.quantize.compare`'s
        metric figures.

    Raises:
        ValueError: the model cannot be expressed in the format (the message names the task and why).
    """
    serving = task.serving_signature(logged.model, logged.info)
    if serving.unsupported:
        raise ValueError(f"{task.name}: the model cannot be exported as {export_format}: {serving.unsupported}")
    raw = serving.examples(logged.example) if serving.examples else logged.example
    tensors = _as_dict(logged.model, serving.prepare(raw))
    expected = _outputs(logged.model, logged.model(_model_call_input(logged.model, tensors), training=False))
    in_graph = export_format == "saved_model" and serving.raw_inputs is not None
    specs = _tensor_specs(logged.model, serving.tensor_shapes)
    samples = None
    if asked and asked.mode == "int8":
        dtypes = {name: spec.dtype.as_numpy_dtype for name, spec in specs.items()}
        samples = quantize.representative(task, logged.model, asked, dtypes)
    output.mkdir(parents=True, exist_ok=True)
    path = output / FILES[export_format]
    quantized = {}
    try:
        if export_format == "saved_model":
            run = _saved_model(logged.model, serving, specs, in_graph, path)
        elif export_format == "tflite":
            run, held, fallback = _tflite(logged.model, specs, path, asked and asked.mode, samples)
            if asked:
                quantized = {"quantize": asked.mode, "quantized_as": held, "fallback_reason": fallback}
        else:
            run = _onnx(logged.model, specs, path)
    except (ValueError, TypeError, RuntimeError, NotImplementedError, ImportError) as error:
        raise ValueError(f"{task.name}: the model cannot be exported as {export_format}: {_reason(error)}") from None
    feed = serving.raw_feed(raw) if in_graph else tensors
    answered, latency = _timed(run, feed, len(raw))
    difference, agreement = _compare(expected, answered, task.name, export_format)
    if asked:
        quantized.update(quantize.compare(task, logged.model, run, asked))
    stated = {"mode": quantized["quantized_as"], **run.interface()} if asked else None
    _describe(output, task, serving, specs, expected, export_format, in_graph, stated)
    return {
        "task": task.name,
        "format": export_format,
        "path": str(path),
        "size_bytes": _size(path),
        "max_abs_diff": difference,
        "top_label_agreement": agreement,
        # a quantized file's outputs move by design (int8 steps): its test metric decides instead
        "parity": quantized["metric_drop"] <= asked.max_metric_drop if asked else difference <= TOLERANCE,
        "latency_ms_per_example": round(latency, 4),
        "examples": len(raw),
        "preprocessing_in_graph": in_graph,
        **quantized,
    }


@contextlib.contextmanager
def _removed_on_failure(output, remove):
    """Deletes what the block wrote into `output` when it raises (with `remove`), so no half-checked export stays:
    the folder itself when the export created it, else its contents."""
    existed = output.exists()
    try:
        yield
    except BaseException:
        if remove:
            shutil.rmtree(output, ignore_errors=True)
            if existed:
                output.mkdir()
        raise


def _as_dict(model, prepared):
    """The prepared model inputs as a dict by input name."""
    if isinstance(prepared, dict):
        return {name: np.asarray(value) for name, value in prepared.items()}
    (name,) = _input_names(model)
    return {name: np.asarray(prepared)}


def _input_names(model):
    return list(model.input) if isinstance(model.input, dict) else [model.input.name]


def _model_call_input(model, tensors):
    """What the Keras model takes: its dict, or the single tensor."""
    return tensors if isinstance(model.input, dict) else next(iter(tensors.values()))


def _outputs(model, value):
    """Model outputs as a dict of numpy arrays by output name."""
    if isinstance(value, dict):
        return {name: np.asarray(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return {name: np.asarray(item) for name, item in zip(model.output_names, value)}
    return {model.output_names[0]: np.asarray(value)}


def _tensor_specs(model, shapes):
    """tf.TensorSpec per model input, by name, with the shapes a task fixes."""
    import tensorflow as tf

    inputs = model.input if isinstance(model.input, dict) else {model.input.name: model.input}
    return {
        name: tf.TensorSpec(shapes.get(name, tensor.shape), tensor.dtype, name=name) for name, tensor in inputs.items()
    }


def _tensor_function(model, specs):
    """The model on its tensor inputs, as a function of a dict of tensors returning a dict by output name."""
    import tensorflow as tf

    def serve(inputs):
        value = model(inputs if isinstance(model.input, dict) else inputs[next(iter(specs))], training=False)
        if isinstance(value, dict):
            return value
        values = value if isinstance(value, (list, tuple)) else [value]
        return {name: tf.convert_to_tensor(item) for name, item in zip(model.output_names, values)}

    return serve


def _write_saved_model(model, function, signature, resources, path):
    """Writes a SavedModel whose `serving_default` is `function` on one dict argument."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    for resource in resources:
        archive.track(resource)
    archive.add_endpoint("serve", function, input_signature=[signature])
    archive.write_out(str(path), verbose=False)


def _saved_model(model, serving, specs, in_graph, path):
    import tensorflow as tf

    tensor_function = _tensor_function(model, specs)
    if in_graph:
        signature = {
            name: tf.TensorSpec(shape, dtype, name=name) for name, (shape, dtype) in serving.raw_inputs.items()
        }

        def function(raw):
            prepared = serving.raw_graph(raw)
            return tensor_function(prepared if isinstance(prepared, dict) else {next(iter(specs)): prepared})
    else:
        signature, function = specs, tensor_function
    _write_saved_model(model, function, signature, serving.resources if in_graph else [], path)
    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]
    return lambda feed: {
        name: value.numpy() for name, value in serve(**{key: tf.constant(item) for key, item in feed.items()}).items()
    }


def _tflite(model, specs, path, mode=None, samples=None):
    """Converts the tensor-input graph with LiteRT's built-in operators only, so the file runs on the plain
    LiteRT runtime (phones, microcontrollers), without TensorFlow's op library.

    Args:
        model (keras.Model): the Keras model.
        specs (dict[str, tf.TensorSpec]): its tensor inputs.
        path (pathlib.Path): the file to write.
        mode (str | None): a `pipelines.quantize.MODES` quantization, or None for float32.
        samples (list[dict] | None): int8's representative feeds.

    Returns:
        tuple[pipelines.quantize.LiteRunner, str, str]: the file's runner, the quantization it holds (empty for
        none) and why int8 fell back to `quantize.FALLBACK` (empty when it did not).
    """
    import tensorflow as tf

    modes, fallback = quantize.attempts(mode) if mode else ("",), ""
    with tempfile.TemporaryDirectory() as folder:
        graph = _unrolled(model, specs)
        _write_saved_model(graph, _tensor_function(graph, specs), specs, [], folder)
        for held in modes:
            converter = tf.lite.TFLiteConverter.from_saved_model(folder)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            if held:
                quantize.configure(converter, held, samples)
            try:
                with _converter_silenced():
                    content = converter.convert()
                floating = quantize.float_operators(content) if held == "int8" else []
                if floating:
                    raise ValueError(f"operator(s) {', '.join(floating)} have no integer kernel")
            except Exception as error:  # the converter raises its own ConverterError, not a ValueError
                if held == modes[-1]:
                    raise ValueError(_reason(error)) from None
                fallback = _reason(error)
                continue
            path.write_bytes(content)
            break
    return quantize.LiteRunner(path), held, fallback


def _unrolled(model, specs):
    """The model with its recurrent layers unrolled over their fixed number of steps, the same weights.

    A recurrent layer runs a while loop over tensor lists, which LiteRT's built-in operators cannot
    express; unrolled, each step is plain operators. Models without recurrent layers come back as they are.
    """
    import keras

    def recurrent(layer):
        return isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))

    if not any(recurrent(layer) for layer in model._flatten_layers()):
        return model
    if any(None in tuple(spec.shape)[1:] for spec in specs.values()):
        raise ValueError("its recurrent layers need a fixed sequence length to run on LiteRT's built-in operators")

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.Bidirectional):
            for key in ("layer", "backward_layer"):
                if key in config:
                    config[key]["config"]["unroll"] = True
        elif isinstance(layer, keras.layers.RNN):
            config["unroll"] = True
        cloned = layer.__class__.from_config(config)
        if isinstance(cloned, keras.layers.Bidirectional):
            # Keras' unrolled TensorFlow loop zeroes a backward layer's masked outputs by the mask in forward
            # order (keras-team/keras#17596), which zeroed real steps of padded texts. What reads these
            # sequences here respects the mask (masked max pooling, a next recurrent layer), so masked steps
            # may keep their carried value; the parity check catches a model whose next layer does not.
            cloned.backward_layer.zero_output_for_mask = False
        return cloned

    inputs = {
        name: keras.Input(tuple(spec.shape)[1:], dtype=spec.dtype.name, name=name) for name, spec in specs.items()
    }
    graph = keras.models.clone_model(
        model,
        inputs if isinstance(model.input, dict) else next(iter(inputs.values())),
        clone_function=lambda layer: clone(layer) if recurrent(layer) else layer,
    )
    graph.set_weights(model.get_weights())
    return graph


@contextlib.contextmanager
def _converter_silenced():
    """Keeps what converters print (native logs, TensorFlow's Python warnings about graph collections) off the
    terminal inside the block; their exceptions still say what failed."""
    import logging

    saved = os.dup(2)
    tensorflow_logger = logging.getLogger("tensorflow")
    level = tensorflow_logger.level
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        tensorflow_logger.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        tensorflow_logger.setLevel(level)
        os.dup2(saved, 2)
        os.close(saved)


def _reason(error):
    """One line saying why an export failed: the converter's line naming the operation, or the cause Keras
    reports under its `Exception encountered when calling LAYER.call()`, else the first line."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line] or [type(error).__name__]
    named = [line for line in lines if "op" in line.lower() and ("not supported" in line or "failed" in line)]
    if named:
        return named[0][:300]
    if lines[0].startswith("Exception encountered when calling") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"[:300]
    return lines[0][:300]


def _onnx(model, specs, path):
    """The tensor-input graph through Keras' ONNX export (tf2onnx on the TensorFlow backend), run by ONNX Runtime."""
    import onnxruntime

    with _converter_silenced():
        model.export(
            str(path),
            format="onnx",
            verbose=False,
            input_signature=[dict(specs)] if isinstance(model.input, dict) else [next(iter(specs.values()))],
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [item.name for item in session.get_inputs()]
    produced = [item.name for item in session.get_outputs()]
    expected = sorted(model.output) if isinstance(model.output, dict) else model.output_names  # tf2onnx's order
    names = produced if set(produced) == set(expected) else expected  # a single output is named Identity:0

    def run(feed):
        arrays = [
            np.asarray(feed[name.split(":")[0]], dtype=specs[name.split(":")[0]].dtype.as_numpy_dtype)
            for name in inputs
        ]
        return dict(zip(names, session.run(None, dict(zip(inputs, arrays)))))

    return run


def _timed(run, feed, count, repeats=5):
    """Runs the artifact once to warm up, then `repeats` times; returns its answer and the median ms per input."""
    answered = run(feed)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(feed)
        times.append(time.perf_counter() - started)
    return answered, 1000 * float(np.median(times)) / max(1, count)


def _compare(expected, answered, name, export_format):
    """Returns the largest absolute difference of float outputs and the agreement of their top labels."""
    missing = sorted(set(expected) - set(answered))
    if missing:
        raise ParityError(
            f"{name}: the {export_format} export lacks output(s) {missing}; it answers {sorted(answered)}."
        )
    difference, agreements = 0.0, []
    for key, value in expected.items():
        got = np.asarray(answered[key]).reshape(value.shape)
        finite = np.isfinite(value)
        if not np.array_equal(finite, np.isfinite(got)):
            return float("inf"), None
        difference = max(difference, float(np.max(np.abs(value[finite] - got[finite]), initial=0.0)))
        if value.ndim >= 2 and value.shape[-1] > 1:
            agreements.append(float(np.mean(value.argmax(-1) == got.argmax(-1))))
    return difference, min(agreements) if agreements else None


def _describe(output, task, serving, specs, expected, export_format, in_graph, quantized=None):
    """Writes `preprocessing.json` (inputs, outputs, the preprocessing contract) and the task's files.

    `quantized` states a quantized file's mode and, from `pipelines.quantize.LiteRunner.interface`, its integer
    inputs and outputs with their scale and zero point.
    """

    def spec(shape, dtype):
        return {"shape": [None if size is None else int(size) for size in shape], "dtype": str(dtype)}

    if in_graph:
        inputs = {name: spec(shape, dtype) for name, (shape, dtype) in serving.raw_inputs.items()}
    else:
        inputs = {name: spec(item.shape, item.dtype.name) for name, item in specs.items()}
    contract = {
        "task": task.name,
        "format": export_format,
        "inputs": inputs,
        "outputs": {name: spec((None, *value.shape[1:]), value.dtype) for name, value in expected.items()},
        "preprocessing_in_graph": in_graph,
        **serving.preprocessing,
    }
    if quantized:
        for role in ("inputs", "outputs"):
            for name, item in quantized.get(role, {}).items():
                contract[role][name]["dtype"] = item["dtype"]
        contract["quantization"] = quantized
    if in_graph:
        contract["steps"] = [
            "none: the graph takes raw_input and does the steps below itself",
            *contract.get("steps", []),
        ]
    (output / "preprocessing.json").write_text(
        json.dumps(contract, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    for file_name, lines in serving.files.items():
        (output / file_name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _size(path):
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
    return path.stat().st_size
