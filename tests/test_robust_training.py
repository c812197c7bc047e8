"""Robust training: resuming killed runs, mixed precision and XLA settings, simultaneous runs on one store."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import mlflow
import pytest

import tasks
from pipelines import config
from shared import regularization, resume, tracking
from tests import test_speech
from tests.conftest import resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = [sys.executable, "-m", "pipelines", "run"]


def environment(tmp_path, **extra):
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", **extra)


def client_for(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)  # not the registry an earlier test set


def test_backup_without_resume_deletes_a_leftover(tmp_path):
    key = {"params": {"epochs": 3}, "experiment": None, "process": 0}
    resume.Backup(tmp_path, "task", key, resume=False).record("abc")
    with pytest.warns(RuntimeWarning, match="pass --resume to continue"):
        fresh = resume.Backup(tmp_path, "task", key, resume=False)
    assert fresh.run_id is None and not fresh.folder.exists()


def test_backup_resume_reads_the_recorded_run_of_the_same_settings_only(tmp_path):
    key = {"params": {"epochs": 3}, "experiment": None, "process": 0}
    resume.Backup(tmp_path, "task", key, resume=False).record("abc")
    assert resume.Backup(tmp_path, "task", key, resume=True).run_id == "abc"
    with pytest.warns(RuntimeWarning, match="starting a fresh run"):
        other = resume.Backup(tmp_path, "task", {**key, "params": {"epochs": 4}}, resume=True)
    assert other.run_id is None


def test_a_second_live_run_with_the_same_settings_keeps_no_backup(tmp_path):
    key = {"params": {"epochs": 3}, "experiment": None, "process": 0}
    live = resume.Backup(tmp_path, "task", key, resume=False)
    live.record("abc")
    with pytest.warns(RuntimeWarning, match="keeps no backup"):
        twin = resume.Backup(tmp_path, "task", key, resume=False)
    assert twin.callbacks() == [] and live.callbacks()
    twin.clear()
    assert live.folder.exists()  # the twin never touches the live run's backup
    with pytest.raises(ValueError, match="still training"):
        resume.Backup(tmp_path, "task", key, resume=True)
    live.clear()
    assert not live.folder.exists()


def test_resume_of_a_run_missing_from_the_store_says_how_to_start_afresh(tracking_store):
    task = tasks.get("vision_classification")
    with pytest.raises(ValueError, match="without --resume"):
        with tracking.run(task, {}, run_id="0" * 32):
            pass


def test_disabled_tracking_logs_nothing(tracking_store, tmp_path):
    task = tasks.get("vision_classification")
    with tracking.run(task, {"epochs": 1}, enabled=False) as active:
        tracking.set_tags({"weights_sha256": "x"})
        tracking.epoch_logger().on_epoch_end(0, {"loss": 1.0})
        assert active is None and tracking.log_model(task, None, {}, []) is None
    assert mlflow.active_run() is None and not (tmp_path / "mlflow.db").exists()


def test_jit_compile_values():
    task = tasks.get("vision_classification")
    assert regularization.jit_compile(config.resolve(task, assignments=["jit_compile=true"])) is True
    assert regularization.jit_compile(config.resolve(task)) == "auto"
    with pytest.raises(ValueError, match="jit_compile='always' is not allowed; it must be one of auto, true, false"):
        config.resolve(task, assignments=["jit_compile=always"])


@pytest.fixture
def mixed_float16():
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


# Only the model is checked, so speech featurises two repeats of its tests' short, low-rate clips (not six).
SMALL_DATA = {"speech": [*test_speech.SMALL, "embedded_repeats=2"]}


@pytest.mark.parametrize("name", tasks.names())
def test_every_model_outputs_float32_under_mixed_precision(name, mixed_float16, tracking_store):
    import keras

    task, settings = resolve(name, *SMALL_DATA.get(name, []))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = task.load_data(settings).info
    model = task.build_model(settings, info)
    assert any(layer.compute_dtype == "float16" for layer in model.layers)  # the policy took effect
    for output in keras.tree.flatten(model.outputs):
        assert output.dtype == "float32", f"{name}: output {output.name} is {output.dtype}"


def wait_for(path_pattern, folder, process, timeout=300):
    """Returns the first file matching the glob under folder, waiting while the process runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        found = sorted(folder.glob(path_pattern))
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no {path_pattern} under {folder} (process exit code {process.poll()})")


@pytest.mark.slow
@pytest.mark.parametrize("name", tasks.names())
def test_killed_run_resumes_from_its_last_epoch_in_the_same_mlflow_run(name, tmp_path):
    command = [*RUN, name, "--quick", "--set", "epochs=6", "--set", "early_stopping_patience=50"]
    first = subprocess.Popen(
        command, cwd=ROOT, env=environment(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        metadata = wait_for(f"backups/{name}-*/keras/training_metadata.json", tmp_path, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    run_id = json.loads((metadata.parents[1] / "run.json").read_text())["run_id"]
    client = client_for(tmp_path)
    assert client.get_run(run_id).info.status == "RUNNING"  # what kill -9 leaves behind
    before = {metric.step for metric in client.get_metric_history(run_id, "loss")}
    assert before and 5 not in before

    resumed = subprocess.run(
        [*command, "--resume"], cwd=ROOT, env=environment(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"run {run_id}" in resumed.stderr
    assert "Epoch 1/6" not in resumed.stderr  # started after the last completed epoch
    assert client.get_run(run_id).info.status == "FINISHED"
    steps = {metric.step for metric in client.get_metric_history(run_id, "loss")}
    assert steps == set(range(6))  # every epoch, numbered on from the killed run's
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
    assert not metadata.parents[1].exists()  # a finished run deletes its backup


@pytest.mark.slow
@pytest.mark.parametrize("name", tasks.names())
def test_mixed_precision_and_jit_compile_run_on_cpu_and_log_their_effective_values(name, tmp_path):
    completed = subprocess.run(
        [*RUN, name, "--quick", "--set", "precision=mixed_float16", "--set", "jit_compile=true"],
        cwd=ROOT,
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "precision=mixed_float16 needs a GPU or TPU" in completed.stderr
    run = client_for(tmp_path).search_runs([client_for(tmp_path).get_experiment_by_name(name).experiment_id])[0]
    assert run.data.params["precision"] == "mixed_float16" and run.data.params["jit_compile"] == "true"
    assert run.data.tags["effective.precision_policy"] == "float32"
    # Keras declines XLA on TensorFlow while deterministic ops are on (the runner turns them on for --seed)
    assert run.data.tags["effective.jit_compile"] == "false"
    assert f"test_{tasks.get(name).primary_metric}" in run.data.metrics


@pytest.mark.slow
def test_four_simultaneous_runs_on_one_sqlite_store_all_finish_and_register(tmp_path):
    processes = [
        subprocess.Popen(
            [*RUN, "fraud_detection", "--quick", "--seed", str(seed)],
            cwd=ROOT,
            env=environment(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(4)
    ]
    errors = [process.communicate(timeout=900)[1] for process in processes]
    for process, error in zip(processes, errors):
        assert process.returncode == 0, error[-3000:]
    client = client_for(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("fraud_detection").experiment_id])
    assert len(runs) == 4 and {run.info.status for run in runs} == {"FINISHED"}
    for run in runs:
        assert "test_pr_auc" in run.data.metrics and client.get_metric_history(run.info.run_id, "val_loss")
    versions = client.search_model_versions("name='fraud_detection'")
    assert sorted(int(version.version) for version in versions) == [1, 2, 3, 4]
    assert {version.run_id for version in versions} == {run.info.run_id for run in runs}
    champion = client.get_model_version_by_alias("fraud_detection", "champion")
    by_run = {run.info.run_id: run.data.metrics["test_pr_auc"] for run in runs}
    assert by_run[champion.run_id] == max(by_run.values())  # promotions one at a time: the best wins


@pytest.mark.slow
def test_every_task_at_once_on_one_sqlite_store_all_finish_and_register(tmp_path):
    names = tasks.names()
    processes = [
        subprocess.Popen(
            [*RUN, name, "--quick"],
            cwd=ROOT,
            env=environment(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    errors = [process.communicate(timeout=1800)[1] for process in processes]
    for name, process, error in zip(names, processes, errors):
        assert process.returncode == 0, f"{name}: {error[-3000:]}"
    client = client_for(tmp_path)
    for name in names:
        (run,) = client.search_runs([client.get_experiment_by_name(name).experiment_id])
        assert run.info.status == "FINISHED" and f"test_{tasks.get(name).primary_metric}" in run.data.metrics
        assert client.get_metric_history(run.info.run_id, "val_loss")
        (version,) = client.search_model_versions(f"name='{name}'")
        assert version.run_id == run.info.run_id
        assert client.get_model_version_by_alias(name, "champion").version == version.version
