"""Shared fixtures: a throwaway MLflow store per test, and the path to the team's real datasets."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def tracking_store(tmp_path, monkeypatch):
    """Points MLflow at a fresh SQLite store under tmp_path; returns its URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


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
