"""Every registered task honours the contract the runner, CLI and MLflow registry rely on."""

import dataclasses
import inspect
import os
import subprocess
import sys

import pytest

import tasks
from tasks.base import INPUT_KINDS, TaskConfig
from tests.conftest import resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name", tasks.names())
def test_task_declares_name_metric_and_valid_quick_budget(name):
    task, resolved = resolve(name)
    assert task.name == name and task.primary_metric and task.input_column
    assert isinstance(task.tfds_name, str)  # empty only where TFDS has no dataset for the domain
    assert resolved.epochs <= 3
    assert issubclass(task.config_class, TaskConfig)


@pytest.mark.parametrize("name", tasks.names())
def test_task_declares_how_predict_reads_inputs_and_compare_shows_runs(name):
    task = tasks.get(name)
    assert task.input_kind in INPUT_KINDS and task.input_extensions
    assert all(extension.startswith(".") and extension == extension.lower() for extension in task.input_extensions)
    assert set(task.key_params) <= {field.name for field in dataclasses.fields(task.config_class)}


@pytest.mark.parametrize("name", tasks.names())
def test_task_names_only_registered_readers(name):
    from shared.data.sources import READERS

    task = tasks.get(name)
    assert task.readers and set(task.readers) <= set(READERS), set(task.readers) - set(READERS)


@pytest.mark.parametrize("name", tasks.names())
def test_every_config_default_says_why(name):
    config_class = tasks.get(name).config_class
    own = {field.name for field in dataclasses.fields(config_class)}
    for klass in config_class.__mro__:
        if not dataclasses.is_dataclass(klass):
            continue
        for line in inspect.getsource(klass).splitlines():
            stripped = line.strip()
            field_name = stripped.split(":")[0]
            if field_name in own and " = " in stripped:
                assert "#" in stripped, f"{klass.__name__}.{field_name} has no why-comment"


@pytest.mark.slow
@pytest.mark.parametrize("name", tasks.names())
def test_quick_run_on_jax_backend(name, tmp_path):
    environment = dict(os.environ, KERAS_BACKEND="jax", MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'm.db'}")
    completed = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", name, "--quick"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"test_{tasks.get(name).primary_metric}=" in completed.stderr
