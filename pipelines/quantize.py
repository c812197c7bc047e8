"""Quantized TFLite exports (`export --format tflite --quantize MODE`): converter settings, the model's own data
for calibration and for the metric check, and the TFLite file as a predictor for the task's evaluate path.

A quantized file answers like the Keras model only approximately (int8 steps are 1/256 of a tensor's range),
so the element-wise parity tolerance does not judge it: its primary test metric, computed exactly as
`python -m pipelines evaluate` computes it (`Task.evaluation_data` on the model's own test split, then the
task's `evaluate`), is set beside the Keras model's, and the export is refused when it loses more than
`--max-metric-drop` of it.
"""

import dataclasses
import math

import numpy as np

MODES = ("float16", "int8", "dynamic")
# The largest loss of the primary test metric, as a fraction of the Keras model's figure: relative, so one default
# suits every task's scale (accuracies and AUCs in [0, 1], BLEU in [0, 100], a remaining-life RMSE in cycles, where
# an absolute 0.01 would be 0.01 cycles). 1% is the loss usually accepted for post-training quantization; scoring
# the same split twice is deterministic, so any loss is the quantization's, not noise.
MAX_METRIC_DROP = 0.01
# Calibration examples for int8: the converter's documentation suggests a few hundred; each runs once through the
# float model while converting, and more (2,000 for fraud_detection) moved no figure measured here.
REPRESENTATIVE_EXAMPLES = 200
FALLBACK = "dynamic"  # what int8 falls back to when an operator has no integer kernel


@dataclasses.dataclass
class Request:
    """A quantized export asked for, with what it reads of the model's own data (`Task.evaluation_data`).

    Attributes:
        mode (str): one of `MODES`.
        max_metric_drop (float): the largest relative loss of the primary test metric that passes.
        config (tasks.base.TaskConfig): the model's logged config (its data source, seed and fractions).
        test (tasks.base.Splits): its test split, on which both metrics are computed.
        train (tasks.base.Splits | None): its training split (as `test`), for int8's calibration; else None.
    """

    mode: str
    max_metric_drop: float
    config: object
    test: object
    train: object = None


def check_options(export_format, mode, max_metric_drop):
    """Raises:
    ValueError: `--quantize` with a format other than tflite or an unknown mode, `--max-metric-drop` without
        `--quantize` or below 0.
    """
    if mode is None:
        if max_metric_drop is not None:
            raise ValueError("--max-metric-drop judges quantized exports only; add --quantize float16|int8|dynamic.")
        return
    if mode not in MODES:
        raise ValueError(f"unknown --quantize '{mode}'; use one of {', '.join(MODES)}.")
    if export_format != "tflite":
        raise ValueError(f"--quantize applies to --format tflite, not {export_format}; use --format tflite.")
    if max_metric_drop is not None and not max_metric_drop >= 0:
        raise ValueError(f"--max-metric-drop {max_metric_drop} must be 0 or more: a fraction of the metric, e.g. 0.01.")


def request(task, info, config, mode, max_metric_drop=None):
    """Reads what a quantized export needs of the model's own data: its test split, and for int8 its training split.

    Args:
        task (tasks.base.Task): the task.
        info (FittedState): the model's info (a fraud blend's trees are left out: no export carries them).
        config (tasks.base.TaskConfig): the model's logged config.
        mode (str): one of `MODES`.
        max_metric_drop (float | None): `--max-metric-drop`; None is `MAX_METRIC_DROP`.

    Returns:
        Request

    Raises:
        ValueError: the model's data source cannot be read any more (one line naming it).
    """
    if getattr(info, "blend", None):  # a detector's (`DetectionState`)
        info = info.updated({"blend": None})
    try:
        test = task.evaluation_data(config, info, "test")
        train = task.evaluation_data(config, info, "train") if mode == "int8" else None
    except (ValueError, FileNotFoundError, OSError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        calibrated = " and int8 calibrated on its training split" if mode == "int8" else ""
        raise ValueError(
            f"{task.name}: a quantized export is checked on the model's test split{calibrated}, but its data "
            f"'{config.data}' cannot be read ({first[:200]}); make that source readable again, or export without "
            "--quantize."
        ) from None
    return Request(mode, MAX_METRIC_DROP if max_metric_drop is None else max_metric_drop, config, test, train)


def representative(task, model, asked, dtypes):
    """Up to `REPRESENTATIVE_EXAMPLES` model inputs of the model's training examples, one example each, as the
    task's own scoring path (`Task.outputs`) feeds the model: the tensors the quantized file will meet.

    Args:
        task (tasks.base.Task): the task.
        model (keras.Model): the logged Keras model.
        asked (Request): an int8 request, its `train` read.
        dtypes (dict[str, np.dtype]): the exported graph's input dtype by input name.

    Returns:
        list[dict[str, np.ndarray]]: one feed per example, each a batch of one.
    """
    from pipelines.serving_model import BatchPredictor

    config, names = asked.config, list(dtypes)
    # the examples training drew (its max_examples cap, same seed), then a seeded choice of them
    chosen = asked.train.test.cap(config.max_examples, config.seed).cap(REPRESENTATIVE_EXAMPLES, config.seed)
    recorder = _Recorder(BatchPredictor(model), names)
    task.outputs(recorder, dataclasses.replace(asked.train, test=chosen), "test", config)
    rows = [
        {name: np.asarray(feed[name][index : index + 1], dtype=dtypes[name]) for name in names}
        for feed in recorder.feeds
        for index in range(len(feed[names[0]]))
    ]
    # a decoder fed step by step (translation) records several rows per example: keep a seeded choice of them all
    keep = np.sort(np.random.default_rng(config.seed).permutation(len(rows))[:REPRESENTATIVE_EXAMPLES])
    return [rows[index] for index in keep]


def configure(converter, mode, samples):
    """Sets a `tf.lite.TFLiteConverter` to quantize as `mode`.

    float16 stores weights in float16 (computed in float32); dynamic stores weights in int8 and quantizes
    activations on the fly (float inputs and outputs); int8 quantizes weights and activations with ranges
    calibrated on `samples`, with integer kernels only and int8 inputs and outputs wherever they are float
    (integer inputs, token or category ids, stay as they are).

    Args:
        converter (tf.lite.TFLiteConverter): built on the tensor-input graph, built-in operators only.
        mode (str): one of `MODES`.
        samples (list[dict] | None): int8's representative feeds (`representative`).
    """
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        converter.representative_dataset = lambda: iter(samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # the converter turns float inputs and outputs only: integer inputs (token or category ids) stay as they are
        converter.inference_input_type = converter.inference_output_type = tf.int8


def float_operators(content):
    """The operators of a converted int8 file that compute in float: the converter keeps an operator without an
    integer kernel in float, between DEQUANTIZE and QUANTIZE, rather than failing, so such a file is no
    full-integer model (integer-only accelerators and microcontrollers cannot run it).

    Args:
        content (bytes): the TFLite flatbuffer.

    Returns:
        list[str]: their operator names, sorted, without duplicates (empty for a full-integer file).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    floats = {item["index"] for item in interpreter.get_tensor_details() if item["dtype"] == np.float32}
    return sorted(
        {
            operator["op_name"]
            for operator in interpreter._get_ops_details()  # the only listing of operators the runtime offers
            if operator["op_name"] != "DEQUANTIZE" and floats.intersection(operator["outputs"])
        }
    )


def attempts(mode):
    """The modes to convert with, in order: int8, then `FALLBACK` when an operator has no integer kernel."""
    return (mode, FALLBACK) if mode == "int8" else (mode,)


class LiteRunner:
    """A TFLite file's serving signature on the model's tensors: float inputs the file takes as integers are
    quantized with the file's scale and zero point, integer outputs dequantized, so it answers like the model.

    Attributes:
        inputs (dict[str, dict]): the file's input details by name (dtype, shape_signature, quantization).
        outputs (dict[str, dict]): its output details by name.
    """

    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        self.signature = Interpreter(model_path=str(path)).get_signature_runner()
        self.inputs = self.signature.get_input_details()
        self.outputs = self.signature.get_output_details()

    def __call__(self, feed):
        """Returns:
        dict[str, np.ndarray]: the outputs by name, in float where the file quantizes them.
        """
        answered = self.signature(**{name: _quantized(feed[name], detail) for name, detail in self.inputs.items()})
        return {name: _dequantized(value, self.outputs[name]) for name, value in answered.items()}

    def interface(self):
        """Returns:
        dict: how to quantize each integer-quantized input and read each such output (empty when none is).
        """
        described = {}
        for role, details, rule in (
            ("inputs", self.inputs, "q = clip(round(x / scale) + zero_point, -128, 127), as int8"),
            ("outputs", self.outputs, "x = (q - zero_point) * scale"),
        ):
            quantized = {
                name: {"dtype": np.dtype(detail["dtype"]).name, "scale": scale, "zero_point": zero_point, "rule": rule}
                for name, detail in details.items()
                for scale, zero_point in [detail["quantization"]]
                if scale
            }
            if quantized:
                described[role] = quantized
        return described


def _quantized(value, detail):
    """An input as the file takes it: in its dtype, quantized with its scale and zero point where it has them."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if not scale:
        return np.asarray(value, dtype)
    limits = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(value, "float32") / scale) + zero_point, limits.min, limits.max).astype(dtype)


def _dequantized(value, detail):
    """An output as the Keras model answers it: dequantized where the file quantizes it."""
    scale, zero_point = detail["quantization"]
    return (value.astype("float32") - zero_point) * np.float32(scale) if scale else value


class LitePredictor:
    """The TFLite file in the Keras model's place for a task's `evaluate`: every inference (`predict`,
    `predict_on_batch`, a call) runs the file; what evaluate reads of the model's structure (its layers and
    tensors, for figures) is the Keras model's, as `BatchPredictor` forwards it."""

    def __init__(self, runner, model):
        self.runner, self.model = runner, model

    def __getattr__(self, name):
        if name in ("runner", "model"):  # not set yet (a copy being built): no recursion through ourselves
            raise AttributeError(name)
        return getattr(self.model, name)

    def __call__(self, x, training=False):
        return self.predict_on_batch(x)

    def predict(self, x, batch_size=None, verbose=0):
        """Same answers as `keras.Model.predict` on arrays (or dicts of arrays), `batch_size` rows per call."""
        import keras

        leaves = keras.tree.flatten(x)
        size = batch_size or 32  # Keras' default
        parts = [
            self.predict_on_batch(keras.tree.map_structure(lambda leaf, start=start: leaf[start : start + size], x))
            for start in range(0, len(leaves[0]), size)
        ]
        return keras.tree.map_structure(lambda *pieces: np.concatenate(pieces), *parts)

    def predict_on_batch(self, x):
        answered = self.runner(_feed(x, list(self.runner.inputs)))
        if isinstance(self.model.output, dict):
            return answered
        values = [answered[name] for name in self.model.output_names]
        return values[0] if len(values) == 1 else values


class _Recorder(LitePredictor):
    """The Keras model (a `BatchPredictor`) answering, each batch it is fed kept as a dict by input name."""

    def __init__(self, model, names):
        super().__init__(None, model)
        self.names, self.feeds = names, []

    def predict_on_batch(self, x):
        self.feeds.append(_feed(x, self.names))
        return self.model.predict_on_batch(x)


def _feed(x, names):
    """A batch as the task feeds the model (a dict by input name, or the one input's array) -> a dict by name."""
    return {name: np.asarray(x[name]) for name in names} if isinstance(x, dict) else {names[0]: np.asarray(x)}


def compare(task, model, runner, asked):
    """The primary test metric of the Keras model and of the TFLite file, each scored as `evaluate` scores it.

    Args:
        task (tasks.base.Task): the task.
        model (keras.Model): the logged Keras model.
        runner (LiteRunner): the quantized file.
        asked (Request): the request, its test split read.

    Returns:
        dict: `metric` (its name), `metric_keras`, `metric_export`, `metric_difference` (export - Keras),
        `metric_drop` (the loss in the metric's direction as a fraction of the Keras figure, absolute when that
        is 0; negative when the export scores better), `max_metric_drop` and `test_examples`.

    Raises:
        ValueError: the test split gives no finite value of the metric.
    """
    from pipelines.serving_model import BatchPredictor

    keras_figure = _metric(task, BatchPredictor(model), asked)
    export_figure = _metric(task, LitePredictor(runner, model), asked)
    difference = export_figure - keras_figure
    return {
        "metric": task.primary_metric,
        "metric_keras": keras_figure,
        "metric_export": export_figure,
        "metric_difference": difference,
        # + 0.0: no loss prints as 0.0, not -0.0
        "metric_drop": (-difference if task.higher_is_better else difference) / (abs(keras_figure) or 1.0) + 0.0,
        "max_metric_drop": asked.max_metric_drop,
        "test_examples": len(asked.test.test),
    }


def _metric(task, predictor, asked):
    """The task's primary metric of `predictor` on the test split, as `pipelines.evaluate` computes it."""
    from shared import plots

    evaluation = task.evaluate(predictor, asked.test, asked.config)
    plots.close(evaluation.figures.values())  # drawn by the task's evaluate, not needed here
    figure = float(evaluation.metrics[task.primary_metric])
    if not math.isfinite(figure):
        raise ValueError(
            f"{task.name}: the model's test split gives no {task.primary_metric} ({figure}) to check a quantized "
            "export against; export without --quantize."
        )
    return figure
