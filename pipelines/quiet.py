"""Keeps the known start-up noise of TensorFlow, LiteRT and MLflow off the terminal; real warnings still show.

TensorFlow 2.21 logs through absl before absl is initialised, which ignores `TF_CPP_MIN_LOG_LEVEL`: its
native lines (`I0000 ... port.cc`, `E0000 ... cuInit`, `NodeDef mentions attribute
use_unbounded_threadpool`) can only be filtered where they are written, on file descriptor 2. So
`install` points descriptor 2 at a pipe that a thread copies to the terminal, minus the known lines;
Python's own `sys.stderr` keeps writing to the terminal directly (progress bars stay progress bars).
Python warnings and MLflow log records are filtered by message.
"""

import atexit
import logging
import os
import re
import sys
import threading
import warnings

# Native lines that say nothing actionable on a CPU machine: absl's banner, every INFO line
# (I<date>), and errors about GPUs that do not exist or graph attributes newer than the runtime.
NATIVE_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|I\d{4} [\d:. ]+\d+ \S+\.cc:\d+\]"
    rb"|[EW]\d{4} [\d:. ]+\d+ (cuda_platform|cuda_executor|cuda_dnn|cuda_blas|cuda_fft|cudart_stub)\.cc:\d+\]"
    rb"|E\d{4} [\d:. ]+\d+ node_def_util\.cc:\d+\] NodeDef mentions attribute use_unbounded_threadpool"
    rb"|E\d{4} [\d:. ]+\d+ util\.cc:\d+\] oneDNN supports DT_BOOL only on platforms with AVX-512"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags"
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU)"
)
# Python warnings and log records about how this project uses MLflow and Keras, by design.
PYTHON_NOISE = re.compile(
    r"(\x1b\[\d+(;\d+)*m)?(Add type hints to the `predict` method"  # our predict takes several raw-input types
    r"|Any type hint is inferred as AnyType"
    r"|Passing a Python object as `python_model` causes it to be serialized using CloudPickle"  # docs/serving.md
    r"|In the future `np.object` will be defined"  # Keras' own tf2onnx patch probing numpy
    r"|\d+ out of the last \d+ calls to .* triggered tf.function retracing)"
)  # a portfolio builds several models
RAW_ENV = "PIPELINES_RAW_STDERR"  # set to 1 to see every line TensorFlow and MLflow write


def install():
    """Filters the known noise for the rest of the process; call before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the lines absl writes after it is initialised
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # bars for copying local files
    if os.environ.get(RAW_ENV, "").strip() in ("1", "true", "yes"):
        return
    _filter_python()
    _filter_native()


def _filter_python():
    show = warnings.showwarning

    # MLflow raises some warnings inside its own `catch_warnings` with a "once" filter, which outranks
    # filterwarnings; the hook decides last.
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not PYTHON_NOISE.match(str(message)):
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    for name in ("mlflow.pyfunc", "tensorflow"):
        logging.getLogger(name).addFilter(lambda record: not PYTHON_NOISE.match(record.getMessage()))


def _filter_native():
    try:
        sys.stderr.flush()
        terminal = os.dup(2)
        reader, writer = os.pipe()
    except OSError:  # no descriptor 2 (a daemon): nothing to filter
        return
    os.dup2(writer, 2)
    os.close(writer)
    sys.stderr = os.fdopen(
        os.dup(terminal), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="backslashreplace"
    )
    pump = threading.Thread(target=_copy, args=(reader, terminal), name="stderr-filter", daemon=True)
    pump.start()

    def drain():
        os.dup2(terminal, 2)  # closes the pipe's last writer in this process, so the thread sees its end
        pump.join(timeout=2)

    atexit.register(drain)


def _copy(reader, terminal):
    """Copies native stderr lines to the terminal, without the noise."""
    pending = b""
    while chunk := os.read(reader, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        kept = [line + b"\n" for line in lines if not NATIVE_NOISE.match(line)]
        if kept:
            os.write(terminal, b"".join(kept))
    if pending and not NATIVE_NOISE.match(pending):
        os.write(terminal, pending)
