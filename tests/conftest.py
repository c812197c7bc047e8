"""Shared fixtures and helpers: a throwaway MLflow store per test, the path to the team's real datasets,
and MLflow servers run in the background."""

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def tracking_store(tmp_path, monkeypatch):
    """Points MLflow at a fresh SQLite store under tmp_path; returns its URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def resolver(task_name):
    """Returns `resolve(*assignments, data_source=None) -> (task, config)` for one task's tests."""
    import tasks
    from pipelines import config

    def resolve(*assignments, data_source=None):
        task = tasks.get(task_name)
        return task, config.resolve(task, assignments=list(assignments), data=data_source)

    return resolve


def shared_data(relative):
    """Returns the path of a dataset in ../shared/data, or skips the test with the reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real-data test: {path} is absent (the team's ../shared/data folder is not beside this clone)")
    return path


@pytest.fixture(scope="module")
def module_store(tmp_path_factory):
    """A fresh MLflow store for a whole test module, for one training that its tests share."""
    with pytest.MonkeyPatch.context() as patch:
        uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


def free_port():
    """Returns:
        int: a TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def background_server(command, probe_url, log_path, env=None, cwd=None, timeout=300):
    """Runs a server command (`mlflow server`, `mlflow models serve`) until the block ends.

    Args:
        command (list[str]): the command line.
        probe_url (str): a URL that answers once the server is up (/ping, /health).
        log_path (pathlib.Path): where the server's output goes; shown when it fails to come up.
        env (dict | None): the server's environment (default: this process's).
        cwd (pathlib.Path | None): its working directory.
        timeout (float): seconds to wait for `probe_url`.
    """
    with open(log_path, "wb") as log:  # the server's own process group, so its workers stop with it
        server = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`{' '.join(command[2:5])}` did not come up:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(probe_url, timeout=5):
                    break
            except OSError:
                time.sleep(1)
        yield
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def raw_input(task, folder, model_uri=None):
    """A raw input as an application sends it: a file path for images and audio, otherwise the model's
    logged input example (a sentence, a record, a unit's history, a user id).

    Args:
        task (tasks.base.Task): the task whose model answers.
        folder (pathlib.Path): where the model's files and the input file go.
        model_uri (str | None): the logged model (default: the task's `@champion`).
    """
    import mlflow
    import numpy as np

    from shared import images, tracking

    tracking._connect()
    local = pathlib.Path(mlflow.artifacts.download_artifacts(model_uri or f"models:/{task.name}@champion",
                                                             dst_path=str(folder / "model")))
    example = mlflow.models.Model.load(str(local)).load_input_example(str(local))[task.input_column].iloc[0]
    if task.input_column == "image":
        path = folder / "input.png"
        images.save_png(np.asarray(example, "float32"), path)
        return str(path)
    if task.input_column == "audio":
        import soundfile

        info = json.loads(next(local.rglob("info.json")).read_text())
        path = folder / "input.wav"
        soundfile.write(path, np.asarray(example, "float32"), info["features"]["sample_rate"])
        return str(path)
    return example
