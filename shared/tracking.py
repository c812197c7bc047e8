"""The only door to MLflow: store location, run lifecycle, logging the raw-input model, registry, champion.

Store: `MLFLOW_TRACKING_URI` when set, otherwise a SQLite database `mlruns/mlflow.db` with artifacts
in `mlruns/artifacts/` (MLflow 3 needs a database-backed store for the model registry; a bare folder
store is deprecated). `mlruns/` is at the project root when the code runs from a source checkout (a
clone, or `pip install -e .`), whatever the current folder; an installed copy (`pip install .`) lives
in site-packages, where nothing should be written, so its `mlruns/` is in the current folder, as MLflow's
own default is. Open it with `mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1`
from the folder that holds `mlruns/`.
"""

import contextlib
import dataclasses
import functools
import json
import logging
import os
import pathlib
import platform
import re
import subprocess
import tempfile
import warnings

import mlflow
import numpy as np
import pandas as pd

from shared.data.sources import split_source

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A source checkout has these beside the packages; an installed copy (site-packages) has neither.
CHECKOUT = (ROOT / "pyproject.toml").is_file() and (ROOT / "requirements.txt").is_file()
DISTRIBUTION = "keras-pipelines"  # the name pyproject.toml installs the packages under
MODEL_NAME = "model"  # artifact name of the logged model inside a run
DRIFT_REFERENCE = "drift_reference.json"  # the training data's drift statistics, beside a logged model's info.json
CHAMPION = "champion"  # the registered-model alias that serving and the examples load
PROMOTION_POLICIES = ("if-better", "always", "never")
# Set to 1 to load models whose Keras file carries Python code (a Lambda layer's bytecode).
TRUST_CODE_ENV = "PIPELINES_TRUST_MODEL_CODE"
# The base class of a logged Python model (`pipelines.serving_model.ServingModel`), so that no other module
# imports mlflow for it.
PythonModel = mlflow.pyfunc.PythonModel
# What a logged model carries as code: the task registry, the helpers and the serving model that loads them.
CODE_PACKAGES = ("tasks", "shared", "pipelines")
logger = logging.getLogger(__name__)
_muted = False  # True inside `run(enabled=False)`: every logging function below does nothing
_named_by_default = False  # the active run got `default_run_name`'s name, which `log_model` may refine


def default_store():
    """Returns:
    pathlib.Path: `mlruns/` at the project root in a source checkout, else in the current folder.
    """
    return (ROOT if CHECKOUT else pathlib.Path.cwd()) / "mlruns"


def tracking_uri():
    """Returns:
    str: `MLFLOW_TRACKING_URI` if set, else the SQLite database in `default_store()`.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{default_store() / 'mlflow.db'}"


def store_folder():
    """Returns:
    pathlib.Path: the local folder of the store: beside the SQLite database, else `mlruns/`.
    """
    uri = tracking_uri()
    return pathlib.Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else default_store()


def _connect():
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if uri.startswith("sqlite:///"):
        database = pathlib.Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(database.with_name(f"{database.name}.lock")):
            # Opening a new SQLite store creates and migrates its schema, which collides when several
            # runs start at once; one at a time, each process opens (and caches) both stores here.
            client = mlflow.MlflowClient()
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)


@contextlib.contextmanager
def _exclusive(path):
    """Holds an exclusive POSIX lock on the file `path` (created if missing) inside the block."""
    import fcntl

    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _experiment_id(name):
    """Gets or creates the experiment; with a SQLite store next to the DB its artifacts go beside it."""
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        location = (pathlib.Path(uri.removeprefix("sqlite:///")).parent / "artifacts" / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # another process created it first
        return client.get_experiment_by_name(name).experiment_id


def _git_commit():
    if not CHECKOUT:  # site-packages may sit inside some other repository
        return "unknown"
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _hardware():
    """The machine a run trains on, as tags: CPUs this process may use, GPUs TensorFlow sees, the architecture."""
    import tensorflow as tf

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpus": str(cpus), "gpus": str(len(tf.config.list_physical_devices("GPU"))), "machine": platform.machine()}


def _versions():
    import keras
    import sklearn
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "mlflow": mlflow.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
    }


@contextlib.contextmanager
def run(task, params, experiment=None, run_id=None, enabled=True, run_name=None, tags=None):
    """Starts (or reopens) a run in the task's experiment, logs params and tags, and ends it.

    Started while another run is active (a sweep's trial inside the sweep), the run nests under it.
    An exception inside marks the run FAILED (KeyboardInterrupt: KILLED) and propagates;
    a run is never left RUNNING.

    Args:
        task (tasks.base.Task): the task.
        params (dict): the flattened config.
        experiment (str | None): experiment name; default the task's name.
        run_id (str | None): an existing run to continue (a resumed training) instead of a new one.
        enabled (bool): False turns this module's logging functions into no-ops until the block
            ends, for processes of a multi-process training other than the one that logs.
        run_name (str | None): default `default_run_name(task, params)`, refined by `log_model` once the data is known.
        tags (dict | None): extra tags.

    Yields:
        mlflow.ActiveRun | None: None when not enabled.

    Raises:
        ValueError: `run_id` is not in the store.
    """
    global _muted, _named_by_default
    if not enabled:
        _muted = True
        try:
            yield None
        finally:
            _muted = False
        return
    _connect()
    if run_id is not None:
        try:
            mlflow.get_run(run_id)
        except mlflow.exceptions.MlflowException:
            raise ValueError(
                f"cannot resume run {run_id}: it is not in store {tracking_uri()}; "
                "run again without --resume to start afresh."
            ) from None
        starting = mlflow.start_run(run_id=run_id)
    else:
        starting = mlflow.start_run(
            experiment_id=_experiment_id(experiment or task.name),
            run_name=run_name or default_run_name(task, params),
            nested=mlflow.active_run() is not None,
        )
    _named_by_default = run_id is None and run_name is None
    with starting as active:
        mlflow.log_params(params)
        setting = f"{task.key_setting}={params.get(task.key_setting)}" if task.key_setting else ""
        mlflow.set_tags(
            {
                "task": task.name,
                "data_source": params.get("data", ""),
                "git_commit": _git_commit(),
                "key_setting": setting,
                "primary_metric": f"test_{task.primary_metric}",
                **{f"version.{name}": value for name, value in _versions().items()},
                **{f"hardware.{name}": value for name, value in _hardware().items()},
                **(tags or {}),
            }
        )
        yield active


def short_source(source):
    """A data source's short name: `embedded`, the TFDS dataset, or the file or folder name (`u.data`)."""
    kind, argument = split_source(source or "embedded")
    if kind == "embedded":
        return "embedded"
    if kind == "tfds":
        return argument.split(":")[0].replace("/", "_")
    return pathlib.PurePath(argument.rstrip("/")).name or source


def default_run_name(task, params, info=None):
    """A short, distinguishing run name: task, the task's key setting, the data's short name, e.g.
    `recommendation-two_tower-u.data`; the full source stays in the run's `data_source` tag."""
    parts = (task.name, task.run_setting(params, info), short_source(params.get("data", "")))
    return "-".join(str(part) for part in parts if part)


def _unless_muted(function):
    """Makes `function` return None without logging inside `run(enabled=False)`."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return None if _muted else function(*args, **kwargs)

    return wrapper


@_unless_muted
def set_tags(tags):
    """Tags the active run, e.g. with the settings in effect (precision, XLA, strategy)."""
    mlflow.set_tags(tags)


@_unless_muted
def log_results(params=None, metrics=None, tags=None, texts=None):
    """Logs to the active run: params, metrics, tags, and text artifacts (file name -> content)."""
    mlflow.log_params(params or {})
    mlflow.log_metrics(metrics or {})
    mlflow.set_tags(tags or {})
    for name, text in (texts or {}).items():
        mlflow.log_text(text, name)


@_unless_muted
def log_folder(folder, artifact_path):
    """Logs every file under `folder` to the active run, under `artifact_path` (a report and its figures)."""
    mlflow.log_artifacts(str(folder), artifact_path)


@_unless_muted
def log_dataset(splits):
    """Logs the training and test splits as MLflow dataset inputs, described (origin, examples, digest of
    the index) rather than copied, and tags the run with their origin and the test set's digest."""
    described = {
        context: split.describe()
        for context, split in (("training", splits.train), ("validation", splits.validation), ("testing", splits.test))
    }
    mlflow.set_tags(
        {
            "data_source": splits.source,
            "synthetic": str(splits.synthetic).lower(),
            "dataset": splits.name,
            "test_set_digest": described["testing"]["digest"],
            **{f"examples.{context}": str(value["examples"]) for context, value in described.items()},
        }
    )
    for context in ("training", "testing"):
        value = described[context]
        mlflow.log_input(
            _dataset(splits, context, value), context=context, tags={key: str(item) for key, item in value.items()}
        )


def _dataset(splits, context, described):
    """An MLflow dataset for one split, described (origin, examples, digest) rather than copied."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    source = _source(splits.source)
    if isinstance(source, str):
        with warnings.catch_warnings():  # a file URI matches two equivalent MLflow source types
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(source)
    return MetaDataset(source, name=f"{splits.name}-{context}", digest=described["digest"])


def _source(source):
    """An MLflow dataset source: code for embedded data, the TFDS catalogue page, or the file URI."""
    kind, argument = split_source(source)
    if kind == "embedded":
        from mlflow.data.code_dataset_source import CodeDatasetSource

        return CodeDatasetSource(tags={"generator": "embedded"})
    if kind == "tfds":
        return f"https://www.tensorflow.org/datasets/catalog/{argument.split(':')[0].split('/')[0]}"
    return pathlib.Path(argument).resolve().as_uri()


def epoch_logger():
    """Returns a Keras callback that logs every epoch's train and validation metrics as they happen."""
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            _log_metrics({name: float(value) for name, value in (logs or {}).items()}, step=epoch)

    return EpochLogger()


@_unless_muted
def _log_metrics(metrics, step):
    mlflow.log_metrics(metrics, step=step)


def _epoch_history():
    """The active run's per-epoch metrics as a Keras-style history, including epochs before a resume."""
    client = mlflow.MlflowClient()
    run_id = mlflow.active_run().info.run_id
    return {
        name: [
            metric.value for metric in sorted(client.get_metric_history(run_id, name), key=lambda metric: metric.step)
        ]
        for name in client.get_run(run_id).data.metrics
    }


@_unless_muted
def log_evaluation(evaluation, model, config_yaml):
    """Logs test metrics (`test_<name>`), figures, texts, the config YAML, the model summary and curves."""
    from shared import plots

    history = _epoch_history()
    mlflow.log_metrics({f"test_{name}": value for name, value in evaluation.metrics.items()})
    if evaluation.params:
        mlflow.log_params(evaluation.params)
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
    curves = {"training_curves": plots.training_curves(history)} if history else {}  # an ensemble trains no epoch
    _log_outputs(
        dict(evaluation.figures, **curves),
        dict(evaluation.texts, **{"config.yaml": config_yaml, "model_summary.txt": "\n".join(lines)}),
    )


def _log_outputs(figures, texts):
    """Logs figures as `plots/NAME.png` (then closes them) and texts under their file names."""
    from shared import plots

    for name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{name}.png")
    plots.close(figures.values())
    for name, text in texts.items():
        mlflow.log_text(text, name)


def trusts_model_code():
    """Returns:
    bool: the user opted in to loading Python code inside models (`PIPELINES_TRUST_MODEL_CODE=1`).
    """
    return os.environ.get(TRUST_CODE_ENV, "").strip().lower() in ("1", "true", "yes")


def load_keras(path, custom_objects, name):
    """Loads a saved Keras model without running Python code from the file, unless the user opted in.

    Keras safe mode refuses a Lambda layer's serialized bytecode. Classes resolve only to Keras
    built-ins, `custom_objects` and classes already imported and registered in this process, never
    to code named by the file. With `PIPELINES_TRUST_MODEL_CODE=1` safe mode is off.

    Args:
        path (str): the `.keras` file.
        custom_objects (dict): the task's own custom layers, by name.
        name (str): the model's name in error messages, e.g. its task.

    Returns:
        keras.Model: the model, uncompiled.

    Raises:
        ValueError: the file holds Python code and the user did not opt in, or it needs a class that is
            neither a Keras built-in nor registered here.
    """
    import keras

    trusted = trusts_model_code()
    try:
        return keras.models.load_model(path, compile=False, custom_objects=custom_objects, safe_mode=not trusted)
    except (ValueError, TypeError) as error:
        # Keras reports both refusals inside longer messages (an unknown class nested in a Functional
        # model arrives wrapped in the outer class's TypeError), so they are recognised by their wording.
        message = str(error)
        if not trusted and "Python lambda" in message:
            raise ValueError(
                f"refusing to load the {name} model: its Keras file contains a Lambda layer whose Python code "
                f"would run on loading; if you trust where this model comes from, set {TRUST_CODE_ENV}=1 "
                "(or pass --trust-model-code to `python -m pipelines predict`)."
            ) from None
        unknown = re.search(r"Could not (?:locate|deserialize) (?:class |function )?'([^']+)'", message)
        if unknown:
            raise ValueError(
                f"cannot load the {name} model: its Keras file needs '{unknown.group(1)}', which is neither a "
                f"Keras built-in nor one of the {name} task's layers; import the code that defines it (registered "
                "with keras.saving.register_keras_serializable) before loading, and only if you trust it."
            ) from None
        raise


def raw_inputs(model_input, column):
    """Extracts the list of raw inputs from what a pyfunc caller passes (DataFrame, dict, list, array)."""
    if isinstance(model_input, pd.DataFrame):
        values = model_input[column] if column in model_input else model_input.iloc[:, 0]
        return values.tolist()
    if isinstance(model_input, dict):
        value = model_input.get(column, next(iter(model_input.values())))
        return list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    if isinstance(model_input, (str, bytes)):
        return [model_input]
    return list(model_input)


@_unless_muted
def log_model(task, model, info, input_example, python_model, register=True, drift_reference=None):
    """Logs the raw-input model with signature and input example, and registers it as the task's name.

    Args:
        task (tasks.base.Task): the task, whose name the model is registered under.
        model (keras.Model): the trained model.
        info (FittedState): `Splits.info`, saved beside the model for its predictor.
        input_example (list): raw inputs logged as the model's example.
        python_model (PythonModel): what loads and answers for the model (`pipelines.serving_model.ServingModel`);
            it reads the artifacts `keras_model` and `info`.
        register (bool): False logs the model without registering it (a sweep registers only its best).
        drift_reference (dict | None): the training data's drift statistics (`shared.drift.reference`), saved beside
            `info.json` as `drift_reference.json` for `python -m pipelines monitor`; None: none (a task not monitored).

    Returns:
        mlflow.models.model.ModelInfo | None: None inside `run(enabled=False)`.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    with tempfile.TemporaryDirectory() as folder:
        keras_path = os.path.join(folder, "model.keras")
        info_path = os.path.join(folder, "info.json")
        model.save(keras_path)
        with open(info_path, "w", encoding="utf-8") as handle:
            json.dump(dict(info.to_json(), task=task.name), handle, indent=1)
        artifacts = {"keras_model": keras_path, "info": info_path}
        if drift_reference is not None:
            artifacts["drift_reference"] = os.path.join(folder, DRIFT_REFERENCE)
            with open(artifacts["drift_reference"], "w", encoding="utf-8") as handle:
                json.dump(drift_reference, handle)
        if _named_by_default:  # the data is known now: recommendation's `auto` model, say, is resolved
            params = mlflow.get_run(mlflow.active_run().info.run_id).data.params
            mlflow.set_tag("mlflow.runName", default_run_name(task, params, info))
        logged = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=python_model,
            artifacts=artifacts,
            code_paths=[str(ROOT / package) for package in CODE_PACKAGES],
            signature=ModelSignature(inputs=Schema([ColSpec(AnyType(), task.input_column)])),
            input_example=pd.DataFrame({task.input_column: input_example}),
            pip_requirements=_pip_requirements(),
            registered_model_name=task.name if register else None,
        )
    if register:
        describe_version(task.name, logged.registered_model_version, mlflow.active_run().info.run_id)
    return logged


def _pip_requirements():
    """What a logged model's environment installs: the runtime libraries `keras-pipelines` declares (not the test
    and lint tools), at the versions a checkout's requirements.txt pins, else at the installed versions (None,
    letting MLflow infer them, when an installed copy's metadata is missing).

    Returns:
        list[str] | None: `name==version` lines.
    """
    if CHECKOUT:
        import tomllib

        declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
        runtime = {_project_name(requirement) for requirement in declared}
        lines = (line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
        return [line for line in lines if line and _project_name(line) in runtime]
    from importlib import metadata

    try:
        declared = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return None
    pins = []
    for requirement in declared:
        if "extra ==" in requirement:  # optional extras (the test tools) are not needed to serve
            continue
        with contextlib.suppress(metadata.PackageNotFoundError):
            pins.append(f"{_project_name(requirement)}=={metadata.version(_project_name(requirement))}")
    return pins


def _project_name(requirement):
    """The normalised project name a requirement line starts with (`PyYAML>=6` -> `pyyaml`)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group()).lower()


def register(model_uri, name):
    """Registers an already logged model (a sweep's best trial) as a new version of `name`, described.

    Returns:
        str: the new version number.
    """
    version = mlflow.register_model(model_uri, name)
    describe_version(name, version.version, version.run_id)
    return version.version


VERSION_TAGS = ("data_source", "test_set_digest", "synthetic", "dataset", "key_setting")


def describe_version(name, version, run_id):
    """Writes what a registered version is into the registry: a description (task, data, test figure, key
    params, run) and tags `data_source`, `test_<primary metric>`, `test_set_digest`, `synthetic`, `dataset`,
    `key_setting`, `run_name`, so versions tell themselves apart in the UI and the client without opening runs.

    Args:
        name (str): the registered model (the task's name).
        version (str | int): the version.
        run_id (str): the run that logged it.
    """
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    metric = tags.get("primary_metric", "")
    value = metrics.get(metric)
    figure = f"{metric} {value:.4f}" if value is not None else f"no {metric or 'test metric'}"
    examples = ", ".join(
        f"{tags[f'examples.{role}']} {role}"
        for role in ("training", "validation", "testing")
        if f"examples.{role}" in tags
    )
    synthetic = " (synthetic)" if tags.get("synthetic") == "true" else ""
    settings = ", ".join(f"{key}={params[key]}" for key in ("epochs", "batch_size", "learning_rate") if key in params)
    if tags.get("key_setting"):
        settings = f"{tags['key_setting']}, {settings}"
    description = (
        f"{tags.get('task', name)} on {tags.get('data_source', '?')}{synthetic}: "
        f"{tags.get('dataset', '')} ({examples} examples). {figure}. {settings}. "
        f"Run {run.info.run_name} ({run_id})."
    )
    client.update_model_version(name, str(version), description=description)
    version_tags = {key: tags[key] for key in VERSION_TAGS if tags.get(key)}
    version_tags["run_name"] = run.info.run_name
    if value is not None:
        version_tags[metric] = f"{value:.6g}"
    for key, text in version_tags.items():
        client.set_model_version_tag(name, str(version), key, text)


def logged_run(run_id):
    """What a run logged, as plain values for `shared.model_card.render`.

    Returns:
        dict: `run_id`, `run_name`, `params`, `metrics` (latest values), `tags`, `datasets` (`context`, `name`,
        `digest`, `examples` and `path`, the local file or folder it was read from or None, of each dataset input),
        `artifacts` (path -> `runs:/` URI of every file) and `epochs`
        (steps of the training `loss` logged: epochs trained, resumed ones included).
    """
    _connect()
    client = mlflow.MlflowClient()
    found = client.get_run(run_id)
    datasets = []
    for item in found.inputs.dataset_inputs if found.inputs else []:
        described = {tag.key: tag.value for tag in item.tags}
        datasets.append(
            {
                "context": described.get("mlflow.data.context", ""),
                "name": item.dataset.name,
                "digest": item.dataset.digest,
                "examples": described.get("examples", "?"),
                "path": _source_path(item.dataset.source),
            }
        )
    return {
        "run_id": run_id,
        "run_name": found.info.run_name,
        "params": dict(found.data.params),
        "metrics": dict(found.data.metrics),
        "tags": dict(found.data.tags),
        "datasets": datasets,
        "artifacts": {path: f"runs:/{run_id}/{path}" for path in _artifact_paths(client, run_id)},
        "epochs": len(client.get_metric_history(run_id, "loss")),
    }


def _source_path(source):
    """The local path a logged dataset source (JSON, as `_source` logs it) names, or None (code, a web page)."""
    try:
        uri = json.loads(source).get("uri", "")
    except (TypeError, ValueError, AttributeError):
        return None
    return str(pathlib.Path(uri.removeprefix("file://"))) if uri.startswith("file://") else None


@_unless_muted
def log_lineage(tags, model_id=""):
    """Tags the active run with where its model started from (`init_run_id`, ...) and, in MLflow 3, logs that
    model as the run's model input, so the UI links the two.

    Args:
        tags (dict[str, str]): the lineage tags.
        model_id (str): the init model's MLflow 3 LoggedModel id, or empty.
    """
    from mlflow.entities import LoggedModelInput

    mlflow.set_tags(tags)
    if model_id:
        mlflow.log_input(model=LoggedModelInput(model_id))


def _artifact_paths(client, run_id, folder=None):
    """Every file's path among a run's artifacts, folders walked."""
    paths = []
    for item in client.list_artifacts(run_id, folder):
        paths += _artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return paths


def log_card(run_id, text, name=None, version=None):
    """Logs a model card as the run's `model_card.md` and, given a registered version, ends its description with
    the card's URI, so the registry leads to it.

    Args:
        run_id (str): the run the card describes.
        text (str): the card (`shared.model_card.render`).
        name (str | None): the registered model.
        version (str | int | None): its version that the run's model became.

    Returns:
        str: the card's URI, `runs:/RUN_ID/model_card.md`.
    """
    from shared import model_card

    client = mlflow.MlflowClient()
    client.log_text(run_id, text, model_card.FILE)
    uri = f"runs:/{run_id}/{model_card.FILE}"
    if version is not None:
        description = client.get_model_version(name, str(version)).description or ""
        client.update_model_version(name, str(version), description=f"{description} Model card: {uri}".strip())
    return uri


def load(uri, task=None):
    """Loads a logged model by `models:/NAME/VERSION|latest`, `models:/NAME@ALIAS` or `runs:/ID/model`.

    Args:
        uri (str): the model URI.
        task (tasks.base.Task | None): the task the model must belong to (None: any).

    Raises:
        ValueError: nothing is logged at that URI, a model of another task, or a Keras file holding code the
            user did not trust (see `load_keras`).
    """
    _connect()
    try:
        model = mlflow.pyfunc.load_model(uri)
    except (mlflow.exceptions.MlflowException, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"no model at '{uri}' in store {tracking_uri()} ({first_line[:200]}); train one with "
            "`python -m pipelines run TASK` or list runs with `python -m pipelines compare`."
        ) from None
    except ValueError as error:  # the serving model's load_context refused the Keras file; say which model
        raise ValueError(f"{uri}: {error}") from None
    if task is not None:
        _require_task(uri, getattr(getattr(model.unwrap_python_model(), "task", None), "name", None), task)
    return model


def _require_task(uri, found, task):
    """Raises a ValueError when the model at `uri`, of the task named `found`, is not a model of `task`."""
    if found != task.name:
        raise ValueError(
            f"the model at '{uri}' is a {found} model, not {task.name}; name the task {found} or give "
            f"a {task.name} model as --model."
        )


@dataclasses.dataclass
class LoggedModel:
    """A logged model's parts, for `python -m pipelines export`.

    Attributes:
        model (keras.Model): the Keras model, loaded as `load_keras` does (safe mode unless trusted).
        info (FittedState): the data description saved beside it.
        example (list): its logged input example, as raw inputs.
        run_id (str): the run that logged it.
        drift_reference (dict | None): its training data's drift statistics (see `log_model`); None for models
            logged before they were saved.
    """

    model: object
    info: dict
    example: list
    run_id: str
    model_id: str = ""  # MLflow 3's LoggedModel id (empty for models logged before MLflow 3)
    drift_reference: dict | None = None


def logged_model(uri, task):
    """Fetches the Keras model, info and input example behind a logged model URI (see `load`).

    Raises:
        ValueError: nothing at `uri`, a model of another task, or a Keras file the user did not trust.
    """
    _connect()
    try:
        local = pathlib.Path(mlflow.artifacts.download_artifacts(uri))
    except (mlflow.exceptions.MlflowException, OSError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"no model at '{uri}' in store {tracking_uri()} ({first_line[:200]}); list runs with "
            "`python -m pipelines compare`."
        ) from None
    metadata = mlflow.models.Model.load(str(local))
    saved = json.loads(next(local.rglob("info.json")).read_text(encoding="utf-8"))
    _require_task(uri, saved.get("task"), task)
    info = task.state_class.from_json(saved, f"{uri}'s info.json")
    example = metadata.load_input_example(str(local))
    try:
        model = load_keras(str(next(local.rglob("model.keras"))), task.custom_objects(), task.name)
    except ValueError as error:
        raise ValueError(f"{uri}: {error}") from None
    reference = next(local.rglob(DRIFT_REFERENCE), None)
    return LoggedModel(
        model,
        info,
        raw_inputs(example, task.input_column),
        metadata.run_id,
        getattr(metadata, "model_id", None) or "",
        json.loads(reference.read_text(encoding="utf-8")) if reference else None,
    )


def run_config(run_id):
    """The resolved config a training run used, as its `config.yaml` artifact holds it.

    Raises:
        ValueError: the run logged no config.yaml (it failed before its evaluation, or another tool logged it).
    """
    import yaml

    _connect()
    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")
    except (mlflow.exceptions.MlflowException, OSError):
        raise ValueError(
            f"run {run_id} logged no config.yaml, so the settings its model was trained with are "
            "unknown; evaluate a model logged by `python -m pipelines run`."
        ) from None
    return yaml.safe_load(text) or {}


def registered_version(uri):
    """Returns:
    tuple[str, str] | None: the registered model name and version a `models:/NAME/VERSION|latest` or
    `models:/NAME@ALIAS` URI stands for now; None for other URIs.
    """
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    if not uri.startswith("models:/"):
        return None
    _connect()
    found = get_model_name_and_version(mlflow.MlflowClient(), uri)
    return (found[0], str(found[1])) if len(found) == 2 else None


@_unless_muted
def log_model_evaluation(evaluation, splits, model_id=""):
    """Logs an evaluation of an already trained model to the active run.

    Metrics go as `eval_<name>`; the evaluated examples as the run's `evaluation` dataset input (with the
    model as the run's model input, in MLflow 3), figures under `plots/`, texts under their names. With a
    `model_id`, the metrics are linked to the logged model and the dataset too, so the model's page lists them.

    Args:
        evaluation (shared.evaluation.Evaluation): what `Task.evaluate` returned.
        splits (tasks.base.Splits): the evaluated data (`Task.evaluation_data`).
        model_id (str): the MLflow 3 LoggedModel id, or empty.
    """
    from mlflow.entities import LoggedModelInput

    described = splits.test.describe()
    dataset = _dataset(splits, "evaluation", described)
    mlflow.set_tags(
        {
            "synthetic": str(splits.synthetic).lower(),
            "dataset": splits.name,
            "eval_set_digest": described["digest"],
            "examples.evaluation": str(described["examples"]),
        }
    )
    mlflow.log_input(
        dataset,
        context="evaluation",
        tags={key: str(item) for key, item in described.items()},
        model=LoggedModelInput(model_id) if model_id else None,
    )
    mlflow.log_metrics(
        {f"eval_{name}": value for name, value in evaluation.metrics.items()},
        model_id=model_id or None,
        dataset=dataset,
    )
    if evaluation.params:
        mlflow.log_params({f"eval_{name}": value for name, value in evaluation.params.items()})
    _log_outputs(evaluation.figures, evaluation.texts)


def log_export(run_id, folder, export_format):
    """Logs an export as artifacts `exports/FORMAT/` of the model's run and tags the run's model versions.

    Returns:
        str: the artifact URI (`runs:/RUN_ID/exports/FORMAT`), the value of the versions' `export.FORMAT` tag.
    """
    client = mlflow.MlflowClient()
    client.log_artifacts(run_id, str(folder), f"exports/{export_format}")
    uri = f"runs:/{run_id}/exports/{export_format}"
    for version in client.search_model_versions(f"run_id='{run_id}'"):
        client.set_model_version_tag(version.name, version.version, f"export.{export_format}", uri)
    return uri


def kill_nested(parent_run_id, tags):
    """Marks KILLED the runs nested under `parent_run_id` that carry `tags` and are still RUNNING: their process
    died without ending them (a sweep trial whose worker was killed).

    Args:
        parent_run_id (str): the parent run.
        tags (dict): tag -> value the runs carry, e.g. {"sweep_trial": 3}.
    """
    _connect()
    client = mlflow.MlflowClient()
    filters = [f"tags.mlflow.parentRunId = '{parent_run_id}'", "attributes.status = 'RUNNING'"]
    filters += [f"tags.{name} = '{value}'" for name, value in tags.items()]
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    for found in client.search_runs([experiment_id], " AND ".join(filters)):
        client.set_terminated(found.info.run_id, "KILLED")


def runs(task_name=None, experiment=None, limit=None, run_ids=None):
    """Searches training runs across every experiment of the store, newest first (`evaluate` runs are left out).

    Args:
        task_name (str | None): only runs of this task (their `task` tag), whatever experiment holds them.
        experiment (str | None): only runs of the experiment with this name.
        limit (int | None): at most this many runs (the newest).
        run_ids (list[str] | None): only these runs.

    Returns:
        pandas.DataFrame: one row per run (params, metrics, tags, times) with an `experiment` column
        holding its experiment's name; empty when nothing matches.

    Raises:
        ValueError: `experiment` does not exist.
    """
    _connect()
    if experiment is None:
        names = {found.experiment_id: found.name for found in mlflow.search_experiments()}
    else:
        found = mlflow.MlflowClient().get_experiment_by_name(experiment)
        if found is None:
            raise ValueError(
                f"no experiment '{experiment}' in store {tracking_uri()}; leave out --experiment "
                "to search every experiment."
            )
        names = {found.experiment_id: found.name}
    if not names:
        return pd.DataFrame()
    filters = [f"tags.task = '{task_name}'"] if task_name else []
    if run_ids:
        filters.append(f"attributes.run_id IN ({', '.join(repr(str(run_id)) for run_id in run_ids)})")
    frame = mlflow.search_runs(
        experiment_ids=list(names),
        filter_string=" AND ".join(filters),
        max_results=limit or 100_000,
        order_by=["attributes.start_time DESC"],
    )
    if "tags.evaluation_of" in frame:  # `evaluate` runs score a model trained elsewhere: no training run
        frame = frame[frame["tags.evaluation_of"].isna()]
    if frame.empty:
        return pd.DataFrame()
    return frame.assign(experiment=frame["experiment_id"].map(names))


def check_policy(policy):
    """Returns `policy` when it is a known promotion policy.

    Raises:
        ValueError: an unknown policy; the message lists the valid ones.
    """
    if policy not in PROMOTION_POLICIES:
        raise ValueError(
            f"unknown --promote value '{policy}'; use one of {', '.join(PROMOTION_POLICIES)} (default if-better)."
        )
    return policy


@dataclasses.dataclass
class Promotion:
    """What `promote` decided for one registered model version.

    Attributes:
        version (str): the registered model version decided on.
        decision (str): "promoted" (the version now holds the `champion` alias) or "not_promoted".
        reason (str): why, in one sentence.
        previous (dict | None): the champion before the decision, as `champion` returns it.
    """

    version: str
    decision: str
    reason: str
    previous: dict | None

    @property
    def promoted(self):
        """bool: the version became champion."""
        return self.decision == "promoted"

    @property
    def message(self):
        """str: one line for the user, e.g. `version 3 promoted to @champion: no champion yet`."""
        return f"version {self.version} {'promoted' if self.promoted else 'not promoted'} to @{CHAMPION}: {self.reason}"


def champion(task):
    """Describes the version holding the task's `champion` alias.

    Args:
        task (tasks.base.Task): the task (its name is the registered model name).

    Returns:
        dict | None: `version`, `run_id`, `data_source`, `test_set_digest` (the version's tag, else its run's;
        None when neither has one) and `value` (the run's test primary metric, None when the run lacks it),
        or None when the task has no champion.
    """
    _connect()
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(task.name, CHAMPION)
    except mlflow.exceptions.MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # no model, or no alias
            return None
        raise
    data = client.get_run(version.run_id).data
    return {
        "version": str(version.version),
        "run_id": version.run_id,
        "data_source": data.tags.get("data_source"),
        "test_set_digest": version.tags.get("test_set_digest") or data.tags.get("test_set_digest"),
        "value": data.metrics.get(f"test_{task.primary_metric}"),
    }


def _decide(task, value, data_source, policy, previous, test_set_digest=None, refusal="", rescored=None):
    """Returns (promoted, reason) for a candidate with test primary metric `value` on `data_source`, measured on
    the test set whose index digest is `test_set_digest`; `refusal` says why it learned nothing (empty: it did);
    `rescored` is its figure on an earlier test set (see `promote`)."""
    if refusal and policy != "never":  # a model that learned nothing is served by no policy
        return False, f"no better than a trivial baseline: {refusal}"
    if policy != "if-better":
        return policy == "always", f"--promote {policy}"
    metric = f"test_{task.primary_metric}"
    if value is None:  # a mode measured by other figures (predictive_maintenance's classification)
        return False, f"this run has no {metric} to compare by; use --promote always to make it champion"
    if previous is None:
        return True, "no champion yet"
    where = ""
    if rescored and rescored["test_set_digest"] == previous["test_set_digest"]:
        # a continued model re-scored on the champion's own test examples: the two figures measure the same thing
        value, where = rescored["value"], " on the champion's test set"
        if value is None:
            return False, f"this run has no {metric} on the champion's test set to compare by"
    elif previous["data_source"] != data_source:
        # Figures measured on different data are not comparable, and a quick run on embedded data must
        # never silently replace a model trained on real data: switching source is an explicit choice.
        return False, (
            f"the champion (version {previous['version']}) was trained on data "
            f"'{previous['data_source']}', not '{data_source}'; use --promote always to switch"
        )
    elif previous["test_set_digest"] != test_set_digest:
        # Another split seed, test_fraction, split rule or max_examples draws other test examples (or another
        # protocol entirely): the two figures measure different things.
        return False, (
            f"not comparable: the champion was evaluated on a different test set (version "
            f"{previous['version']}: test_set_digest {previous['test_set_digest']}, this run: "
            f"{test_set_digest}); use --promote always to switch"
        )
    if previous["value"] is None:
        return False, f"the champion (version {previous['version']}) has no {metric} to compare with"
    better = value > previous["value"] if task.higher_is_better else value < previous["value"]
    return better, (
        f"{metric}{where} {value:.4f} {'beats' if better else 'does not beat'} "
        f"{previous['value']:.4f} of version {previous['version']}"
    )


def promote(task, run_id, version, value, data_source, policy="if-better", refusal="", rescored=None):
    """Moves the `champion` alias to a new model version when the policy says so, and logs the decision.

    With `if-better`, the version becomes champion when the task has no champion yet, or when the
    champion was trained on the same data source (tag `data_source`), evaluated on the same test set (tag
    `test_set_digest`, the digest of the test split's index) and the new test primary metric strictly
    beats it. A champion from another data source or test set is kept: `always` switches on purpose. A continued
    model's figure on an earlier test set (`rescored`) is compared instead when that set is the champion's.
    A version that did not clearly beat its trivial baselines on validation (`refusal`) is never promoted,
    whatever the policy.

    The run gets tags `promotion_decision`, `promotion_policy`, `promotion_reason` and, when a champion
    existed, `champion_previous_version`, `champion_previous_data_source`, `champion_previous_test_set_digest`
    and the metric `champion_previous_test_<primary metric>`.

    Args:
        task (tasks.base.Task): the task (registered model name and primary metric).
        run_id (str): the run that logged the version.
        version (str | int): the new registered model version.
        value (float | None): the run's test primary metric (None when the run has none).
        data_source (str): the run's data source, as in its `data_source` tag.
        policy (str): "if-better", "always" or "never".
        refusal (str): why the version learned nothing (`shared.baselines.Verdict.refusal`); empty when it did.
        rescored (dict | None): `test_set_digest` and `value`: the version's primary metric on the test set of
            the model it continued from (`pipelines.continued`); None for a model trained from scratch.

    Returns:
        Promotion

    Raises:
        ValueError: an unknown policy.
    """
    check_policy(policy)
    folder = store_folder()
    folder.mkdir(parents=True, exist_ok=True)
    # Two runs finishing at once would both read the old champion and the slower writer would win,
    # even with the worse figure; the lock orders them (processes of one machine; see docs/evaluation.md).
    client = mlflow.MlflowClient()
    digest = client.get_run(run_id).data.tags.get("test_set_digest")
    with _exclusive(folder / f"{task.name}.champion.lock"):
        previous = champion(task)
        promoted, reason = _decide(task, value, data_source, policy, previous, digest, refusal, rescored)
        if promoted:
            client.set_registered_model_alias(task.name, CHAMPION, str(version))
    tags = {
        "promotion_decision": "promoted" if promoted else "not_promoted",
        "promotion_policy": policy,
        "promotion_reason": reason,
    }
    if previous is not None:
        tags.update(
            champion_previous_version=previous["version"],
            champion_previous_data_source=previous["data_source"] or "",
            champion_previous_test_set_digest=previous["test_set_digest"] or "",
        )
        if previous["value"] is not None:
            client.log_metric(run_id, f"champion_previous_test_{task.primary_metric}", previous["value"])
    for key, text in tags.items():
        client.set_tag(run_id, key, text)
    return Promotion(version=str(version), decision=tags["promotion_decision"], reason=reason, previous=previous)


def model_versions(name):
    """Returns:
    dict[str, str]: registered version number by run id for the registered model `name`.
    """
    _connect()
    return {
        version.run_id: str(version.version)
        for version in mlflow.MlflowClient().search_model_versions(f"name='{name}'")
    }
