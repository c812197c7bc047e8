"""The only door to MLflow: store location, run lifecycle, logging, the raw-input model, registry.

Store: `MLFLOW_TRACKING_URI` when set, otherwise a SQLite database `mlruns/mlflow.db` with artifacts
in `mlruns/artifacts/` at the project root (MLflow 3 needs a database-backed store for the model
registry; a bare folder store is deprecated). Open it with
`mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db` from the project root.
"""

import contextlib
import json
import logging
import os
import pathlib
import platform
import subprocess
import tempfile
import warnings

import mlflow
import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parents[1]
STORE = ROOT / "mlruns"
MODEL_NAME = "model"  # artifact name of the logged model inside a run
logger = logging.getLogger(__name__)
# Our predict takes several raw-input types by design (paths, bytes, arrays, strings, records).
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method.*")


def tracking_uri():
    """Returns:
        str: `MLFLOW_TRACKING_URI` if set, else the project's SQLite store.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{STORE / 'mlflow.db'}"


def _connect():
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        pathlib.Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


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
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _versions():
    import keras
    import sklearn
    import tensorflow as tf

    return {
        "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
        "keras_backend": keras.backend.backend(), "mlflow": mlflow.__version__, "numpy": np.__version__,
        "scikit-learn": sklearn.__version__, "pandas": pd.__version__,
    }


@contextlib.contextmanager
def run(task, params, experiment=None, run_name=None, tags=None):
    """Starts a run in the task's experiment, logs params and tags, and ends it.

    Started while another run is active (a sweep's trial inside the sweep), the run nests under it.
    An exception inside marks the run FAILED (KeyboardInterrupt: KILLED) and propagates;
    a run is never left RUNNING.

    Args:
        task (tasks.base.Task): the task.
        params (dict): the flattened config.
        experiment (str | None): experiment name; default the task's name.
        run_name (str | None): default `TASK-DATA`.
        tags (dict | None): extra tags.

    Yields:
        mlflow.ActiveRun
    """
    _connect()
    experiment_id = _experiment_id(experiment or task.name)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name or f"{task.name}-{params.get('data', '')}",
                          nested=mlflow.active_run() is not None) as active:
        mlflow.log_params(params)
        mlflow.set_tags({"task": task.name, "data_source": params.get("data", ""), "git_commit": _git_commit(),
                         "primary_metric": f"test_{task.primary_metric}",
                         **{f"version.{name}": value for name, value in _versions().items()}, **(tags or {})})
        yield active


def log_results(params=None, metrics=None, tags=None, texts=None):
    """Logs to the active run: params, metrics, tags, and text artifacts (file name -> content)."""
    mlflow.log_params(params or {})
    mlflow.log_metrics(metrics or {})
    mlflow.set_tags(tags or {})
    for name, text in (texts or {}).items():
        mlflow.log_text(text, name)


def log_dataset(splits):
    """Logs the training and test data as MLflow dataset inputs and tags the run with their origin."""
    mlflow.set_tags({"data_source": splits.source, "synthetic": str(splits.synthetic).lower(),
                     "dataset": splits.name})
    for context, (features, targets) in (("training", splits.train), ("testing", splits.test)):
        dataset = mlflow.data.from_numpy(features, targets=targets, source=_source(splits.source),
                                         name=f"{splits.name}-{context}")
        mlflow.log_input(dataset, context=context)


def _source(source):
    """An MLflow dataset source: code for embedded data, the TFDS catalogue page, or the file URI."""
    if source == "embedded":
        from mlflow.data.code_dataset_source import CodeDatasetSource

        return CodeDatasetSource(tags={"generator": "embedded"})
    if source.startswith("tfds:"):
        name = source.removeprefix("tfds:").split(":")[0]
        return f"https://www.tensorflow.org/datasets/catalog/{name.split('/')[0]}"
    kind, separator, rest = source.partition(":")
    return pathlib.Path(rest if separator and len(kind) > 1 else source).resolve().as_uri()


def epoch_logger():
    """Returns a Keras callback that logs every epoch's train and validation metrics as they happen."""
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            mlflow.log_metrics({name: float(value) for name, value in (logs or {}).items()}, step=epoch)

    return EpochLogger()


def log_evaluation(evaluation, history, model, config_yaml):
    """Logs test metrics (`test_<name>`), figures, texts, the config YAML, the model summary and curves."""
    from shared import plots

    mlflow.log_metrics({f"test_{name}": value for name, value in evaluation.metrics.items()})
    if evaluation.params:
        mlflow.log_params(evaluation.params)
    figures = dict(evaluation.figures, training_curves=plots.training_curves(history))
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{name}.png")
    plots.close(figures.values())
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
    texts = dict(evaluation.texts, **{"config.yaml": config_yaml, "model_summary.txt": "\n".join(lines)})
    for name, text in texts.items():
        mlflow.log_text(text, name)


class TaskModel(mlflow.pyfunc.PythonModel):
    """The logged model: raw inputs in, JSON-friendly answers out, preprocessing included.

    It loads the Keras model and the data description saved at training time and hands raw
    inputs to the task's `predict_raw`, the same code path as `python -m pipelines predict`.
    """

    def load_context(self, context):
        import keras

        from tasks import get

        with open(context.artifacts["info"], encoding="utf-8") as handle:
            self.info = json.load(handle)
        self.task = get(self.info["task"])
        self.model = keras.models.load_model(context.artifacts["keras_model"], compile=False,
                                             custom_objects=self.task.custom_objects())

    def predict(self, context, model_input, params=None):
        return self.task.predict_raw(self.model, self.info, raw_inputs(model_input, self.task.input_column))


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


def log_model(task, model, info, input_example, register=True):
    """Logs the raw-input model with signature and input example, and registers it as the task's name.

    Args:
        task (tasks.base.Task): the task, whose name the model is registered under.
        model (keras.Model): the trained model.
        info (dict): `Splits.info`, saved beside the model for its predictor.
        input_example (list): raw inputs logged as the model's example.
        register (bool): False logs the model without registering it (a sweep registers only its best).

    Returns:
        mlflow.models.model.ModelInfo
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    with tempfile.TemporaryDirectory() as folder:
        keras_path = os.path.join(folder, "model.keras")
        info_path = os.path.join(folder, "info.json")
        model.save(keras_path)
        with open(info_path, "w", encoding="utf-8") as handle:
            json.dump(dict(info, task=task.name), handle, indent=1)
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=TaskModel(),
            artifacts={"keras_model": keras_path, "info": info_path},
            code_paths=[str(ROOT / "tasks"), str(ROOT / "shared")],
            signature=ModelSignature(inputs=Schema([ColSpec(AnyType(), task.input_column)])),
            input_example=pd.DataFrame({task.input_column: input_example}),
            pip_requirements=str(ROOT / "requirements.txt"),
            registered_model_name=task.name if register else None,
        )


def register(model_uri, name):
    """Registers an already logged model (a sweep's best trial) as a new version of `name`.

    Returns:
        str: the new version number.
    """
    return mlflow.register_model(model_uri, name).version


def load(uri):
    """Loads a logged model by `models:/NAME/VERSION|latest`, `models:/NAME@ALIAS` or `runs:/ID/model`.

    Raises:
        ValueError: nothing is logged at that URI.
    """
    _connect()
    try:
        return mlflow.pyfunc.load_model(uri)
    except (mlflow.exceptions.MlflowException, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"no model at '{uri}' in store {tracking_uri()} ({first_line[:200]}); train one with "
            "`python -m pipelines run TASK` or list runs with `python -m pipelines compare`."
        ) from None


def runs(experiments):
    """Returns the runs of the named experiments as a DataFrame (params, metrics, tags, times)."""
    _connect()
    return mlflow.search_runs(experiment_names=list(experiments), order_by=["attributes.start_time DESC"])
