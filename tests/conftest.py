"""Shared fixtures and helpers: a throwaway MLflow store per test, the path to the team's real datasets,
and MLflow servers run in the background."""

import contextlib
import os
import pathlib

import pytest
import threadpoolctl

from pipelines import serving_fuzz

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# xdist's workers share the cores: each takes its share for OpenMP and BLAS (the CLI subprocesses it starts inherit
# it), since scikit-learn's OpenMP threads spin-wait on cores another training keeps busy (a HistGradientBoosting
# fit of 8,000 rows: 0.6 s on one thread, 3.5-5.5 s on two with a training beside it)
SHARE = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(variable, str(SHARE))
threadpoolctl.threadpool_limits(SHARE)

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def tracking_store(tmp_path, monkeypatch):
    """Points MLflow at a fresh SQLite store under tmp_path; returns its URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def on_jax(code, timeout=300, **environment):
    """Runs Python `code` in a fresh process on the JAX backend from the clone's root, and returns its stdout.

    Args:
        code (str): the program, e.g. an import of a test module's check and a print of its result.
        timeout (int): seconds before the process is killed.
        **environment (str): more environment variables (a tracking store...).

    Raises:
        AssertionError: the process failed, with the end of its stderr.
    """
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=pathlib.Path(__file__).resolve().parents[1],
        env=dict(os.environ, KERAS_BACKEND="jax", **environment),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def resolve(task_name, *assignments, data=None, quick=True):
    """Resolves a task's config as `python -m pipelines run TASK [--quick] [--data DATA] --set KEY=VALUE...` does.

    Every task's tests resolve their configs here, and run them with `runner.run(*resolve(...))`.

    Args:
        task_name (str): a registered task.
        *assignments (str): `KEY=VALUE` settings, applied last.
        data (str | os.PathLike | None): the `--data` source; None keeps the config's (`embedded` unless set).
        quick (bool): apply the task's `--quick` budget first (few epochs and examples), as most tests want.

    Returns:
        tuple[tasks.base.Task, tasks.base.TaskConfig]: the task and its resolved config.
    """
    import tasks
    from pipelines import config

    task = tasks.get(task_name)
    source = None if data is None else str(data)
    return task, config.resolve(task, quick=quick, assignments=list(assignments), data=source)


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


@contextlib.contextmanager
def background_server(command, probe_url, log_path, env=None, cwd=None, timeout=300):
    """Runs a server command until the block ends (see `pipelines.serving_fuzz.background`); the test fails
    with the server's log when it does not come up."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(serving_fuzz.background(command, probe_url, log_path, env, cwd, timeout))
        except RuntimeError as error:
            pytest.fail(str(error))
        yield
