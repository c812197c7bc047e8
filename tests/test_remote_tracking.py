"""A tracking server: every task trains against `mlflow server` over HTTP and loads back from it.

The server runs on 127.0.0.1 with a SQLite backend and an artifact folder in a temp folder, as a
shared server would with a database and an object store. One server serves the whole module.
"""

import sys

import mlflow
import pandas as pd
import pytest

import tasks
from pipelines import cli
from pipelines.serving_fuzz import free_port, raw_input
from shared import tracking
from tests.conftest import background_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Yields the URL of an `mlflow server` and the folder holding its database and artifacts."""
    folder = tmp_path_factory.mktemp("server")
    url = f"http://127.0.0.1:{free_port()}"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        url.rsplit(":", 1)[1],
        "--workers",
        "1",
    ]
    with background_server(command, f"{url}/health", folder / "server.log", cwd=folder):
        yield url, folder


@pytest.mark.slow
@pytest.mark.parametrize("name", tasks.names())
def test_every_task_trains_against_a_tracking_server_and_loads_back_from_it(name, server, tmp_path, monkeypatch):
    url, folder = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.delenv(tracking.TRUST_CODE_ENV, raising=False)  # each task's own layers load in safe mode
    assert cli.main(["run", name, "--quick"]) == 0
    task = tasks.get(name)
    uri = f"models:/{name}/latest"
    model = tracking.load(uri)
    (answer,) = model.predict(pd.DataFrame({task.input_column: [raw_input(task, tmp_path, uri)]}))
    assert answer[task.answer_key] not in (None, "", [])
    # The server keeps the run's artifacts (the model, the plots) in its own folder.
    experiment = mlflow.MlflowClient(tracking_uri=url).get_experiment_by_name(name).experiment_id
    stored = {path.name for path in (folder / "artifacts" / experiment).rglob("*")}
    assert {"model.keras", "MLmodel", "training_curves.png"} <= stored
