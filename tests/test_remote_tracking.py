"""A tracking server: train against `mlflow server` over HTTP and load the model back from it.

The server runs on 127.0.0.1 with a SQLite backend and an artifact folder in a temp folder, as a
shared server would with a database and an object store.
"""

import sys

import numpy as np
import pandas as pd
import pytest

from pipelines import cli
from shared import images, tracking
from tests.conftest import background_server, free_port


@pytest.mark.slow
def test_a_task_trains_against_a_tracking_server_and_loads_back_from_it(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
               "--port", url.rsplit(":", 1)[1], "--workers", "1"]
    with background_server(command, f"{url}/health", tmp_path / "server.log", cwd=tmp_path):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        assert cli.main(["run", "vision_classification", "--quick", "--set", "max_examples=200"]) == 0
        model = tracking.load("models:/vision_classification/latest")
        image = tmp_path / "digit.png"
        images.save_png(np.zeros((8, 8, 1)), image)
        answer, = model.predict(pd.DataFrame({"image": [str(image)]}))
    assert answer["label"] in [str(digit) for digit in range(10)] and 0 <= answer["probability"] <= 1
    # The server keeps the run's artifacts (the model, the plots) in its own folder; the client wrote no store.
    stored = {path.name for path in (tmp_path / "artifacts").rglob("*")}
    assert {"model.keras", "MLmodel", "training_curves.png"} <= stored
    assert sorted(path.name for path in tmp_path.rglob("*.db")) == ["server.db"]
