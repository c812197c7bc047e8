"""Distributed sweeps: `sweep --storage --study` workers sharing one Optuna study.

The fast tests check the flags' one-line errors and the workers' protocol (budget, surplus, heartbeats, retries, the
registering worker) with processes whose trials only sleep; the slow ones run real `sweep` processes on a journal
file (one of them killed mid-trial) and on a PostgreSQL server the test starts.
"""

import contextlib
import datetime
import glob
import json
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import optuna
import pytest

from pipelines import cli, sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASK = "fraud_detection"
# A trial of a few seconds: one epoch on 1,000 examples, without the gradient-boosting baseline and its blend.
TINY = ["--quick", "--set", "epochs=1", "--set", "max_examples=1000", "--set", "baseline=false", "--set", "blend=false"]
HEARTBEAT = 2  # seconds: a killed worker's trial is failed and retried within a few seconds


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--storage", "sqlite:///study.db", "--study", "s"], "error: --storage: SQLite cannot serve several"),
        (["--storage", "redis://host/0", "--study", "s"], "error: --storage: unknown scheme 'redis://'"),
        (["--storage", "/no/such/folder/study.journal", "--study", "s"], "must be a journal file's path in an"),
        (["--storage", "study.journal"], "error: --storage and --study go together"),
        (["--study", "s"], "error: --storage and --study go together"),
        (["--storage", "study.journal", "--study", "s", "--heartbeat", "0"], "error: --heartbeat must be at least 1"),
    ],
)
def test_bad_storage_flags_fail_in_one_line_before_anything_opens(flags, expected, tracking_store, capsys):
    assert cli.main(["sweep", TASK, "--quick", *flags]) == 2
    error = capsys.readouterr().err.strip()
    assert expected in error and error.count("\n") == 0
    assert not pathlib.Path(tracking_store.removeprefix("sqlite:///")).exists()  # nothing was logged


# A worker of the protocol test: the real storage, loop and registrar rule around trials that only sleep.
PROTOCOL_WORKER = """
import json, os, sys, time
import optuna
from pipelines import sweep

def train(trial):
    x = trial.suggest_float("x", 0, 1)
    time.sleep(float(os.environ["TRIAL_SECONDS"]))
    return x

study, _ = sweep.open_study(sys.argv[1], "protocol", "minimize", optuna.samplers.RandomSampler(), heartbeat=1)
final = sweep.work(study, train, int(sys.argv[2]), sweep.worker_id(), poll=0.5)
print(json.dumps({"worker": sweep.worker_id(), "registrar": sweep.registrar(final)}))
"""


def _reader(storage, study_name):
    """Returns:
    Callable: () -> the trials of the study in `storage` (a journal file or a database URL), read as another worker
    would; None before the study exists.
    """
    if "://" in str(storage):
        opened = optuna.storages.RDBStorage(str(storage))
    else:
        opened = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(storage)))

    def trials():
        with contextlib.suppress(KeyError):
            return optuna.load_study(study_name=study_name, storage=opened).get_trials(deepcopy=False)

    return trials


def _wait_for(trials, found, timeout=180):
    """Returns the first trial of `trials()` for which `found(trial)` holds, polling until `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for trial in trials() or []:
            if found(trial):
                return trial
        time.sleep(0.1)
    pytest.fail(f"no such trial in {timeout} s")


def _running_in(process):
    """Returns:
    Callable: trial -> whether it is running in `process`.
    """
    return lambda trial: (
        trial.state == optuna.trial.TrialState.RUNNING
        and trial.user_attrs.get("worker", "").endswith(f":{process.pid}")
    )


@pytest.mark.parametrize("kind", ["journal", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_three_workers_share_a_study_and_retry_a_killed_workers_trial(kind, tmp_path, request):
    budget = 6
    storage = request.getfixturevalue("postgresql_url") if kind == "postgresql" else tmp_path / "protocol.journal"
    trials = _reader(storage, "protocol")

    def start(seconds):
        return subprocess.Popen(
            [sys.executable, "-c", PROTOCOL_WORKER, str(storage), str(budget)],
            cwd=ROOT,
            env={**os.environ, "TRIAL_SECONDS": seconds},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    victim = start("600")  # its trial outlasts the test: it can only end by the kill
    killed = _wait_for(trials, _running_in(victim)).number
    workers = [start("0.5"), start("0.5")]
    _wait_for(trials, lambda trial: any(_running_in(worker)(trial) for worker in workers))
    victim.kill()  # mid-trial, its heartbeat thread with it
    victim.communicate()
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        reports.append(json.loads(out.splitlines()[-1]))
    final = {trial.number: trial for trial in trials()}

    dead = final[killed]
    assert dead.state == optuna.trial.TrialState.FAIL and "error" not in dead.user_attrs
    (retry,) = [trial for trial in final.values() if trial.system_attrs.get("failed_trial") == killed]
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == dead.params
    counted = [trial for trial in final.values() if trial.number != killed and not trial.user_attrs.get("surplus")]
    assert len(counted) == budget and all(trial.state == optuna.trial.TrialState.COMPLETE for trial in counted)
    assert {trial.user_attrs["worker"] for trial in counted} == {report["worker"] for report in reports}
    # both survivors name the same registrar, one of them: the worker that finished the last trial
    assert reports[0]["registrar"] == reports[1]["registrar"] in {report["worker"] for report in reports}


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # `ask` plays the dead worker
def test_a_trial_finding_the_budget_taken_is_pruned_unrun_and_a_silent_trial_is_failed_and_retried(tmp_path):
    path = str(tmp_path / "study.journal")
    sampler = optuna.samplers.RandomSampler(seed=0)
    other, created = sweep.open_study(path, "s", "minimize", sampler, heartbeat=1)
    held = other.ask()  # the last place, taken by a worker that dies at once: no heartbeat ever
    drawn = held.suggest_float("x", 0, 1)
    mine, joined = sweep.open_study(path, "s", "minimize", sampler, heartbeat=1)
    assert created and not joined
    mine.enqueue_trial({"x": 0.5})  # a trial asked for while the other took the last place
    trained = []

    def train(trial):
        trained.append(trial.suggest_float("x", 0, 1))
        return 0.0

    final = sweep.work(mine, train, 1, "me:1", poll=0.2)
    assert [(trial.number, trial.state.name) for trial in final] == [(0, "FAIL"), (1, "PRUNED"), (2, "COMPLETE")]
    assert final[1].user_attrs["surplus"] and trained == [drawn]  # the retry of trial 0 trained its config
    assert final[2].system_attrs["failed_trial"] == 0 and sweep.registrar(final) == "me:1"


def test_the_registrar_finished_the_last_trial_and_retried_or_surplus_trials_leave_the_budget():
    def trial(number, state, worker, hour, **attrs):
        made = optuna.trial.create_trial(
            state=state,
            value=0.0 if state == COMPLETE else None,
            user_attrs={"worker": worker, **attrs},
            system_attrs={"retry_history": [1]} if number == 4 else None,
        )
        made.number, made.datetime_complete = number, datetime.datetime(2026, 1, 1, hour)
        return made

    COMPLETE, FAIL, PRUNED = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.FAIL,
        optuna.trial.TrialState.PRUNED,
    )
    trials = [
        trial(0, COMPLETE, "a:1", 10),
        trial(1, FAIL, "b:2", 12),  # its worker died: Optuna failed it as stale, later than the others finished
        trial(2, FAIL, "c:3", 11, error="RuntimeError: boom"),  # it raised: a failed trial of the budget
        trial(3, PRUNED, "a:1", 14, surplus=True, error="not run"),  # made after the study was done
    ]
    assert sweep.registrar(trials) == "c:3"  # the dead worker's trial and the surplus one are left out
    assert sweep.done(trials, 3) and not sweep.done(trials, 4)  # the unretried dead trial holds its place
    trials.append(trial(4, COMPLETE, "d:4", 13))  # the retry of trial 1 takes its place
    assert sweep.registrar(trials) == "d:4"
    assert sweep.done(trials, 3) and not sweep.done(trials, 4)


def _shared_sweep(storage, store, workers, trials, kill=False):
    """Runs `workers` `sweep` processes of the fraud task on one study in `storage`, logging to the MLflow `store`,
    and checks what they leave: one parent run, one finished run per trial, one registered model, registered once.
    With `kill`, the first process is killed as soon as a trial of its has started its MLflow run; that trial must
    be failed, its run marked KILLED and its config trained again.
    """
    import mlflow

    command = [sys.executable, "-m", "pipelines", "sweep", TASK, *TINY, "--trials", str(trials)]
    command += ["--storage", str(storage), "--study", "fraud", "--heartbeat", str(HEARTBEAT)]
    environment = {**os.environ, "MLFLOW_TRACKING_URI": store}
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    mlflow.set_tracking_uri(store)
    study_trials = _reader(storage, "fraud")

    def logging_trials():  # the victim's trials whose MLflow run has started
        if processes[0].poll() is not None:
            pytest.fail(
                f"the first worker ended before any trial of its started: {processes[0].communicate()[1][-3000:]}"
            )
        victim = [trial for trial in study_trials() or [] if _running_in(processes[0])(trial)]
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            started = mlflow.search_runs(experiment_names=[TASK], filter_string="attributes.status = 'RUNNING'")
            return [trial for trial in victim if str(trial.number) in set(started.get("tags.sweep_trial", []))]

    killed = None
    if kill:
        killed = _wait_for(logging_trials, lambda trial: True, timeout=600).number
        processes[0].kill()
        processes[0].communicate()
        processes = processes[1:]
    errors = []
    for process in processes:
        _, err = process.communicate(timeout=900)
        assert process.returncode == 0, err[-3000:]
        errors.append(err)

    runs = mlflow.search_runs(experiment_names=[TASK])
    (parent,) = runs[runs["tags.sweep"] == "true"].itertuples()
    assert parent.status == "FINISHED"
    children = runs[runs["tags.mlflow.parentRunId"] == parent.run_id]
    finished = children[children["status"] == "FINISHED"]["tags.sweep_trial"]
    assert len(finished) == trials and finished.is_unique
    assert list(children[children["status"] == "KILLED"]["tags.sweep_trial"]) == ([str(killed)] if kill else [])
    (version,) = mlflow.MlflowClient().search_model_versions(f"name='{TASK}'")
    assert version.run_id == mlflow.get_run(parent.run_id).data.tags["best_run_id"]
    assert sum(f"{TASK}: version {version.version} " in err for err in errors) == 1  # one worker registered it
    return killed


@pytest.mark.slow
def test_three_sweep_processes_share_a_journal_study_and_recover_a_killed_worker(tmp_path):
    journal = tmp_path / "fraud.journal"
    killed = _shared_sweep(journal, f"sqlite:///{tmp_path / 'mlflow.db'}", workers=3, trials=4, kill=True)
    trials = {trial.number: trial for trial in _reader(journal, "fraud")()}
    (retry,) = [trial for trial in trials.values() if trial.system_attrs.get("failed_trial") == killed]
    assert trials[killed].state.name == "FAIL" and retry.state.name == "COMPLETE"
    assert retry.params == trials[killed].params


@pytest.fixture
def postgresql_url():
    """A throwaway PostgreSQL server on a free local port, for the test's duration; yields its URL. Skips, saying
    why, where the server (Debian's `postgresql` package) or the Python driver (requirements.txt) is missing."""
    pytest.importorskip("psycopg", reason="postgresql:// needs the psycopg driver: pip install -r requirements.txt")
    # Debian's package keeps them off PATH, in /usr/lib/postgresql/VERSION/bin
    initdb, pg_ctl = (
        shutil.which(name) or next(reversed(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
        for name in ("initdb", "pg_ctl")
    )
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (Debian: apt-get install postgresql)")
    as_server = []
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no `postgres` user to run the PostgreSQL server as")
        as_server = ["runuser", "-u", "postgres", "--"]
    folder = tempfile.mkdtemp(prefix="sweep-postgresql-")  # pytest's tmp_path is closed to other users
    if as_server:
        shutil.chown(folder, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = f"{folder}/data"
    try:
        subprocess.run([*as_server, initdb, "-D", data, "-U", "sweeps", "--auth=trust"], cwd=folder, check=True)
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
        subprocess.run(
            [*as_server, pg_ctl, "-D", data, "-l", f"{folder}/log", "-o", options, "-w", "start"],
            cwd=folder,
            check=True,
        )
        yield f"postgresql://sweeps@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_server, pg_ctl, "-D", data, "-m", "immediate", "stop"], cwd=folder, check=False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_sweep_processes_share_a_postgresql_study(postgresql_url, tmp_path):
    _shared_sweep(postgresql_url, f"sqlite:///{tmp_path / 'mlflow.db'}", workers=2, trials=3)
    trials = _reader(postgresql_url, "fraud")()
    assert [trial.state.name for trial in trials if not trial.user_attrs.get("surplus")] == ["COMPLETE"] * 3
