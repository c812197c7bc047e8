"""Raw inputs at predict and serve time: encoded bytes, the file paths a model may read, bounded arrays, rows.

An image or audio model takes a file path, encoded bytes (`bytes` in Python; `{"b64": "..."}` in a
JSON request, the form TensorFlow Serving's REST API uses) or decoded numbers (an array or nested lists).

Paths. The local CLI and Python callers read any path they name. A served model reads a path only
under the folder the operator names in `PIPELINES_INPUT_ROOT`, after resolving `..` and symbolic
links, and no path at all when it is unset: whoever reaches an endpoint must not make the server open
its files, nor learn which exist (a missing file and a forbidden one get the same error). A model
counts as served under `mlflow models serve` and `mlflow models predict` (MLflow marks its scoring
server by environment variables and modules, see `serving`), or wherever `PIPELINES_SERVING=1` is
set (other servers wrapping `mlflow.pyfunc.load_model`). `PIPELINES_INPUT_ROOT` confines every
caller once set, the CLI included.
"""

import base64
import binascii
import json
import os
import sys
import warnings

import numpy as np

B64 = "b64"  # the JSON key of base64-encoded bytes: {"b64": "iVBORw0K..."}
INPUT_ROOT_ENV = "PIPELINES_INPUT_ROOT"
SERVING_ENV = "PIPELINES_SERVING"
# How MLflow's scoring server shows itself (MLflow internals, checked against MLflow by the tests):
# `mlflow models serve` starts uvicorn with the model path in this variable, the server app sets the
# second one when it starts (and `mlflow models predict` while it predicts), and uvicorn imports this module.
_MLFLOW_SERVER_MODEL_PATH = "__pyfunc_model_path__"
_MLFLOW_SERVING_FLAG = "_MLFLOW_IS_IN_SERVING_ENVIRONMENT"
_MLFLOW_SERVER_APP = "mlflow.pyfunc.scoring_server.app"
_SHOWN = 120  # characters of a caller's value echoed in an error


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def serving():
    """Returns:
    bool: this process answers requests for others: an MLflow scoring server or `PIPELINES_SERVING=1`.
    """
    # Any one signal is enough, so that a later MLflow renaming one of them still leaves paths closed.
    return (
        _flag(SERVING_ENV)
        or _flag(_MLFLOW_SERVING_FLAG)
        or bool(os.environ.get(_MLFLOW_SERVER_MODEL_PATH))
        or _MLFLOW_SERVER_APP in sys.modules
    )


def shown(value):
    """A caller's value as an error message quotes it: its repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text):,} characters)"


def file_input(raw, name):
    """Checks one raw input of an image or audio model and returns what its reader may open.

    Args:
        raw: a path, bytes, `{"b64": "..."}`, or an array / nested lists of numbers.
        name (str): how errors name the input, e.g. "input 3".

    Returns:
        str | bytes | list | np.ndarray: a path the caller may read (resolved under the input folder
        when one is set), the decoded bytes, or the array as given.

    Raises:
        ValueError: another type, invalid base64, or a path this process may not read.
    """
    if isinstance(raw, dict) and set(raw) == {B64} and isinstance(raw[B64], str):
        try:
            return base64.b64decode(raw[B64], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{name}: the '{B64}' value is not valid base64.") from None
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw)
    if isinstance(raw, (list, tuple, np.ndarray)):
        return raw
    if isinstance(raw, (str, os.PathLike)):
        return readable_path(os.fspath(raw), name)
    raise ValueError(
        f'{name}: expected a file path, encoded bytes ({{"{B64}": "BASE64"}} in JSON) or an array '
        f"of numbers; got {type(raw).__name__} {shown(raw)}."
    )


def readable_path(path, name):
    """Returns the path to open for `path`, or refuses it (see the module docstring for the rule).

    Raises:
        ValueError: a served model without an input folder, or no regular file at `path` inside the
            folder (missing, a `..` or symbolic-link escape, a folder, a device: one message for all).
    """
    root = os.environ.get(INPUT_ROOT_ENV, "").strip()
    if not root:
        if serving():
            raise ValueError(
                f"{name}: a served model reads no file paths; send the file's bytes as "
                f'{{"{B64}": "BASE64"}} (or the operator sets {INPUT_ROOT_ENV} to a folder it '
                "may read)."
            )
        return path
    refused = ValueError(
        f"{name}: no file {shown(path)} in the input folder ({INPUT_ROOT_ENV}); give a path "
        f'inside it, or send the file\'s bytes as {{"{B64}": "BASE64"}}.'
    )
    try:
        base = os.path.realpath(root)
        resolved = os.path.realpath(os.path.join(base, path))  # relative paths are relative to the folder
        inside = os.path.commonpath([base, resolved]) == base
    except (OSError, ValueError):  # a null byte, a name too long for the file system
        raise refused from None
    if not inside or not os.path.isfile(resolved):  # isfile: no folders, FIFOs or devices, which could block
        raise refused
    return resolved


def outline(raw, depth):
    """The shape of decoded numbers (an array, or nested lists as JSON brings them), read without copying.

    Nested lists are measured along their first elements, so an oversized or absurdly nested input can
    be refused before it is converted; raggedness shows later, in `numbers`.

    Args:
        raw (list | tuple | np.ndarray): the numbers.
        depth (int): the most dimensions the caller accepts; deeper nesting reports `depth + 1` dimensions.

    Returns:
        tuple[int, ...]: the sizes along each dimension.
    """
    if isinstance(raw, np.ndarray):
        return raw.shape
    shape, value = [], raw
    while isinstance(value, (list, tuple)) and len(shape) <= depth:
        shape.append(len(value))
        value = value[0] if value else None
    return tuple(shape)


def numbers(raw, name):
    """Converts decoded numbers to a float32 array (check its `outline` first).

    Raises:
        ValueError: ragged rows, values that are not numbers, NaN or infinity.
    """
    try:
        array = np.asarray(raw, dtype="float32")
    except (ValueError, TypeError, OverflowError):
        raise ValueError(
            f"{name}: not an array of numbers (rows of unequal length, or values that are not numbers)."
        ) from None
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: holds NaN or infinite values (or numbers beyond float32).")
    return array


def check_records(inputs, spec, ignored):
    """Parses raw rows (dicts or JSON object strings) and checks their columns against the training columns.

    Raises:
        ValueError: a row that is not an object, or a row missing feature columns (named).
    """
    expected = [item["name"] for item in spec["numeric"] + spec["categorical"]]
    records, unexpected = [], set()
    for position, raw in enumerate(inputs):
        record = parse_json(raw, position) if isinstance(raw, str) and raw.lstrip().startswith("{") else raw
        if not isinstance(record, dict):
            raise ValueError(
                f"predict input {position + 1} must be a row (a JSON object or CSV row), "
                f"got {type(record).__name__}: {str(record)[:80]}."
            )
        missing = [column for column in expected if column not in record]
        if missing:
            raise ValueError(f"predict input {position + 1} lacks column(s) {missing}; a row needs {expected}.")
        unexpected |= set(record) - set(expected) - set(ignored)
        records.append({column: record[column] for column in expected})
    if unexpected:
        warnings.warn(f"ignoring column(s) the model was not trained on: {sorted(unexpected)}", stacklevel=2)
    return records


def parse_json(raw, position):
    """Parses one predict input sent as JSON text (other values are returned as they are).

    Raises:
        ValueError: not valid JSON, or nested too deeply to parse; the message names the input.
    """
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"predict input {position + 1} is not valid JSON ({str(error)[:80]}).") from None
