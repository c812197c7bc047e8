"""`python -m pipelines sweep`: tune a task's config with Optuna, every trial a nested MLflow run.

The search space is the config's `search_space`, a mapping of config field -> spec:

    [log, LOW, HIGH]      log-uniform, 0 < LOW < HIGH (learning rates, decays)
    [float, LOW, HIGH]    uniform
    [int, LOW, HIGH]      uniform integers
    [choice, VALUE, ...]  one of the values

On an int field every numeric spec draws integers. Trials maximise or minimise the best validation
value of the task's `monitor` during `fit` (the epoch early stopping restores), never a test figure;
so a knob that changes how the monitored loss is computed (focal_gamma, dice_weight, label_smoothing,
l2) makes trials incomparable and does not belong in a space monitored on val_loss.

Each trial is a complete `runner.run` nested under the sweep's run, with its model logged but not
registered; the sweep then registers the best trial's logged model by URI. Training dominates a
trial's cost, so this costs a model upload per trial instead of retraining the winner, and the
registered model is exactly the one whose validation value won.

With `--storage` and `--study`, every process started with the same two shares one study (a journal file on a
shared file system, or a PostgreSQL or MySQL database): the process that creates the study starts the sweep's
MLflow run and records its id in the study, the others nest their trials under it; each records a heartbeat
while it trains, so a trial whose process died is failed and its config queued again; and when the study holds
its trials, the process that finished the last one registers the best (see `sweep`).
"""

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import socket
import sys
import time
import warnings
import zlib

import optuna
from optuna.storages import journal
from optuna.storages._heartbeat import BaseHeartbeat  # Optuna's heartbeat interface has no public name in 5.0
from optuna.trial import TrialState

from pipelines import config as config_module
from shared import constraints

KINDS = ("log", "float", "int", "choice")
FORMS = {  # the specs a field of each type takes; bool and str fields take choices only
    float: "[log, LOW, HIGH] with 0 < LOW < HIGH, [float, LOW, HIGH], [int, LOW, HIGH] or [choice, VALUE, ...]",
    int: "[int, LOW, HIGH], [log, LOW, HIGH] with 0 < LOW < HIGH, or [choice, VALUE, ...], in integers",
}
FIXED = ("data", "seed")  # trials compare configs on the same data and seed; varying these would compare noise
LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "rmse")  # name parts of metrics a sweep minimises
DEFAULT_TRIALS = 20  # enough for TPE to leave its 10 random start-up trials and refine around the best
DATABASES = ("postgresql", "mysql")  # --storage URL schemes served by Optuna's RDBStorage (a +DRIVER may follow)
# Default --heartbeat, as in Optuna's own heartbeat example: a write per minute per worker is nothing to the
# storage, and a dead worker's trial is retried two minutes later, little against trials of many minutes.
HEARTBEAT_SECONDS = 60
GRACE_BEATS = 2  # a running trial is stale after two missed heartbeats: Optuna's default grace period
# A config whose trial killed its worker twice (out of memory, say) would likely kill a third; it stays FAILED.
MAX_RETRIES = 2
TABLE_ATTEMPTS = 3  # a worker that collides creating Optuna's tables in a new database tries again (`open_storage`)
POLL_SECONDS = 5  # how often a worker with no trial to take looks for finished, stale and retried trials
JOIN_SECONDS = 300  # how long a joining worker waits for the study's creator to start the sweep's MLflow run
# Study user attributes: the sweep's settings (compared with each joining worker's), the id of its MLflow run,
# and the registered version of its best model.
SETUP, PARENT, REGISTERED = "setup", "mlflow_run_id", "registered_version"
# Trial user attributes: the worker that ran it, the run it trained (for whichever worker registers the best),
# and a mark on a trial that found the study already holding its trials.
WORKER, RESULT, SURPLUS = "worker", "result", "surplus"
# Optuna 5.0 calls heartbeats and their retry callback experimental and warns on every use; the pinned version
# is the one tested here.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched config field, validated.

    Attributes:
        name (str): the config field.
        kind (str): one of KINDS.
        values (tuple): (LOW, HIGH), or the choices.
        field_type (type): the field's declared type, which every drawn value is converted to.
    """

    name: str
    kind: str
    values: tuple
    field_type: type

    def suggest(self, trial):
        """Returns:
        object: the value an Optuna trial draws for this field.
        """
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        low, high = self.values
        if self.kind == "int" or self.field_type is int:
            return self.field_type(trial.suggest_int(self.name, low, high, log=self.kind == "log"))
        return trial.suggest_float(self.name, low, high, log=self.kind == "log")


@dataclasses.dataclass
class SweepResult:
    """What a finished sweep returns to the CLI and tests."""

    run_id: str  # the sweep's (parent) run
    best_trial: int
    best_value: float  # the best trial's best validation value of the task's monitor
    best_params: dict  # the searched fields' values in the best trial
    metrics: dict  # the best trial's test metrics
    model_uri: str  # models:/TASK/VERSION of the registered best model; empty until its registrar has registered it
    failed: int  # trials that raised or gave no finite validation value
    promotion: object  # shared.tracking.Promotion: whether the best model became @champion; None in other workers
    verdict: object = None  # shared.baselines.Verdict: the best trial's model against its baselines
    registrar: str = ""  # the worker (HOST:PID) that registers the best model


def parse_space(config_class, space):
    """Validates a search space against the config's fields.

    Args:
        config_class (type): the task's `TaskConfig` subclass.
        space (dict): config field -> spec (see the module docstring).

    Returns:
        list[Dimension]

    Raises:
        ValueError: an empty space, a field that cannot be searched, or a malformed spec; the
            message names the field and the expected form.
    """
    if not space:
        raise ValueError(
            "search_space is empty; give at least one field, e.g. in a --config YAML file "
            "`search_space: {learning_rate: [log, 1e-4, 1e-2]}`."
        )
    types = config_module.field_types(config_class)
    searchable = sorted(name for name, kind in types.items() if kind in (int, float, bool, str) and name not in FIXED)
    rules = constraints.declared(config_class)
    dimensions = []
    for name, spec in space.items():
        if name not in searchable:
            raise ValueError(
                f"search_space: '{name}' is not a searchable config field; searchable fields: {', '.join(searchable)}."
            )
        dimension = _dimension(name, spec, types[name])
        # a range's ends (and every choice) must be values the field accepts, or trials would fail one by one
        for value in dimension.values:
            for rule in rules.get(name, ()):
                if not rule.allows(value):
                    raise ValueError(f"search_space['{name}']: {value!r} is not allowed; it must be {rule.describe()}.")
        dimensions.append(dimension)
    return dimensions


def _dimension(name, spec, field_type):
    malformed = ValueError(
        f"search_space['{name}'] ({field_type.__name__} field) must be "
        f"{FORMS.get(field_type, '[choice, VALUE, ...]')}; got {spec!r}."
    )
    if not isinstance(spec, (list, tuple)) or len(spec) < 2 or spec[0] not in KINDS:
        raise malformed
    kind, *values = spec
    if kind == "choice":
        try:
            return Dimension(
                name, kind, tuple(config_module.coerce(name, value, field_type) for value in values), field_type
            )
        except ValueError:
            raise malformed from None
    values = [config_module.as_number(value) for value in values]
    numbers = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values)
    integers = all(isinstance(value, int) for value in values)
    if (
        field_type not in (int, float)
        or len(values) != 2
        or not numbers
        or not values[0] < values[1]
        or ((kind == "int" or field_type is int) and not integers)
        or (kind == "log" and values[0] <= 0)
    ):
        raise malformed
    return Dimension(name, kind, tuple(values), field_type)


def minimises(task, monitor):
    """Returns:
    bool: True when the monitored validation metric is better lower (a loss, an error).
    """
    metric = monitor.removeprefix("val_")
    return any(part in LOWER_IS_BETTER for part in metric.split("_")) or (
        metric == task.primary_metric and not task.higher_is_better
    )


def best_validation(history, monitor, minimise):
    """Returns the best finite value of `monitor` over the epochs of `fit`, or NaN when there is none.

    Raises:
        ValueError: `fit` logged no such metric.
    """
    if monitor not in history:
        raise ValueError(
            f"fit logged no '{monitor}' to optimise (it logged {', '.join(sorted(history))}); "
            "choose one with --set monitor=NAME."
        )
    finite = [value for value in history[monitor] if math.isfinite(value)]
    if not finite:
        return math.nan
    return min(finite) if minimise else max(finite)


def check_storage(storage, study_name):
    """Validates `--storage` and `--study` before anything is opened.

    Args:
        storage (str | None): a journal file's path, or a postgresql:// or mysql:// URL; None for a sweep in this
            process alone.
        study_name (str | None): the shared study's name, given with `storage`.

    Returns:
        str: the storage's kind: memory, journal, postgresql or mysql.

    Raises:
        ValueError: one without the other, SQLite or another unknown URL scheme, or a journal path that is a folder
            or lies in a missing one.
    """
    if (storage is None) != (study_name is None):
        raise ValueError(
            "--storage and --study go together: give every worker of a shared sweep the same two "
            "(or neither, for a sweep in this process alone)."
        )
    if storage is None:
        return "memory"
    if "://" in storage:
        scheme = storage.split("://", 1)[0].split("+", 1)[0]
        if scheme == "sqlite":
            raise ValueError(
                "--storage: SQLite cannot serve several sweep workers (each write locks the whole database, and its "
                "file locks fail on network file systems); give a journal file path on a shared file system or a "
                "postgresql:// or mysql:// URL."
            )
        if scheme not in DATABASES:
            raise ValueError(
                f"--storage: unknown scheme '{scheme}://'; give a journal file path on a shared file system or a "
                "postgresql:// or mysql:// URL."
            )
        return scheme
    path = pathlib.Path(storage)
    if path.is_dir() or not path.parent.is_dir():
        raise ValueError(
            f"--storage {storage} must be a journal file's path in an existing folder that every worker mounts, "
            f"e.g. /shared/sweeps/{study_name}.journal."
        )
    return "journal"


class HeartbeatJournal(journal.JournalStorage, BaseHeartbeat):
    """A journal file storage whose running trials record heartbeats, which Optuna 5.0 does for RDBStorage only.

    Through Optuna's heartbeat interface, `Study.optimize` beats for the trial it runs and fails stale trials before
    asking for a new one, on a journal file as on a database. The beats are the workers' clock readings (RDBStorage
    uses the database server's), so the workers' clocks must agree to well within the grace period, as NTP keeps them.

    Args:
        path (str): the journal file.
        interval (int): seconds between a running trial's heartbeats.
        stale_callback (Callable): called with the study and each trial failed as stale.
    """

    def __init__(self, path, interval, stale_callback):
        super().__init__(journal.JournalFileBackend(path))
        self._interval = interval
        self._stale_callback = stale_callback

    def record_heartbeat(self, trial_id):
        # a trial failed as stale while its worker was paused takes no beat; the worker learns it when it reports
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, "heartbeat", time.time())

    def _get_stale_trial_ids(self, study_id):
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [
            trial._trial_id
            for trial in running
            if now - trial.system_attrs.get("heartbeat", trial.datetime_start.timestamp())
            > GRACE_BEATS * self._interval
        ]

    def get_heartbeat_interval(self):
        return self._interval

    def get_heartbeat_stale_trial_callback(self):
        return self._stale_callback


def recover(study, trial):
    """Optuna calls this for each trial it fails as stale (no heartbeat for GRACE_BEATS intervals): its worker died.
    Queues the trial's config again as a new trial (at most MAX_RETRIES times) and marks its MLflow run KILLED."""
    # first, and before any import: until the retry is queued, the study looks done to the workers (`work`)
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, trial)
    if PARENT in study.user_attrs:  # a study used outside `sweep` has no MLflow runs to end
        from pipelines import runner
        from shared import tracking

        tracking.kill_nested(study.user_attrs[PARENT], {runner.NESTED_TAGS["trial"]: trial.number})


def open_storage(storage, heartbeat):
    """Opens the storage `--storage` names (validated by `check_storage`), its running trials beating every
    `heartbeat` seconds and stale ones retried by `recover`.

    Returns:
        optuna.storages.BaseStorage | None: None for a study in this process alone.

    Raises:
        ValueError: a database URL whose Python driver is not installed, or which cannot be connected to.
    """
    if storage is None:
        return None
    if "://" not in storage:
        return HeartbeatJournal(storage, heartbeat, recover)
    import sqlalchemy

    for attempt in range(1, TABLE_ATTEMPTS + 1):
        try:
            return optuna.storages.RDBStorage(
                storage,
                heartbeat_interval=heartbeat,
                grace_period=GRACE_BEATS * heartbeat,
                heartbeat_stale_trial_callback=recover,
            )
        except ImportError as error:
            raise ValueError(
                f"--storage {storage.split('://')[0]}://: its Python driver is missing ({error.__cause__}); "
                "`pip install -r requirements.txt` installs psycopg for postgresql://, and mysql:// needs "
                "e.g. `pip install PyMySQL` and a mysql+pymysql:// URL."
            ) from None
        except sqlalchemy.exc.OperationalError as error:
            raise ValueError(
                f"--storage {storage.split('://')[0]}://: cannot connect ({str(error.orig).strip().splitlines()[0]}); "
                "check the URL's host, port, user, password and database, which must exist."
            ) from None
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # workers started together on a new database all create Optuna's tables: all but one collide, and
            # find the tables made when they try again
            if attempt == TABLE_ATTEMPTS:
                raise
            time.sleep(attempt)


def open_study(storage, study_name, direction, sampler, heartbeat):
    """Creates the study, or loads it when another worker created it first.

    Args:
        storage (str | None): see `open_storage`.
        study_name (str | None): the shared study's name.
        direction (str): minimize or maximize.
        sampler (optuna.samplers.BaseSampler): this worker's sampler.
        heartbeat (int): seconds between a running trial's heartbeats.

    Returns:
        tuple[optuna.Study, bool]: the study, and whether this worker created it (it starts the sweep's MLflow run).
    """
    opened = open_storage(storage, heartbeat)
    try:
        return optuna.create_study(storage=opened, study_name=study_name, direction=direction, sampler=sampler), True
    except optuna.exceptions.DuplicatedStudyError:  # every storage creates a study atomically: one worker wins
        return optuna.load_study(study_name=study_name, storage=opened, sampler=sampler), False


def join(study, created, setup, trials):
    """Records the sweep's settings in a study this worker created; in a study another worker created, checks them
    and waits until its creator has started the sweep's MLflow run.

    Args:
        study (optuna.Study): the study.
        created (bool): this worker created it.
        setup (dict): this worker's task, `--experiment`, `--promote` and flattened config, as JSON values.
        trials (int | None): this worker's `--trials`.

    Returns:
        int: the study's trials.

    Raises:
        ValueError: settings that differ from the study's, or a creator that started no MLflow run in JOIN_SECONDS.
    """
    if created:
        study.set_user_attr(SETUP, {**setup, "--trials": trials or DEFAULT_TRIALS})
        return trials or DEFAULT_TRIALS
    mine = setup if trials is None else {**setup, "--trials": trials}
    deadline = time.monotonic() + JOIN_SECONDS
    while True:
        recorded = study.user_attrs
        if SETUP in recorded:
            theirs = dict(recorded[SETUP])
            if trials is None:  # a worker without --trials takes the study's
                theirs.pop("--trials")
            differing = sorted(name for name in {**mine, **theirs} if mine.get(name) != theirs.get(name))
            if differing:
                raise ValueError(
                    f"this worker's settings differ from study '{study.study_name}' in: {', '.join(differing)}; "
                    "start every worker with the same task, --data, --seed, --set, --config, --experiment and "
                    "--promote, and the same --trials or none."
                )
            if PARENT in recorded:
                return recorded[SETUP]["--trials"]
        if time.monotonic() > deadline:
            raise ValueError(
                f"study '{study.study_name}' has no sweep run after {JOIN_SECONDS} s: the worker that created it "
                "stopped before starting one; start the sweep under a new --study name."
            )
        time.sleep(1)


def worker_id():
    """Returns:
    str: this process's id in a shared study, HOST:PID.
    """
    return f"{socket.gethostname()}:{os.getpid()}"


def _died(trial):
    """Whether the trial's worker stopped mid-trial: it failed without an error of its own (Optuna failed it as
    stale, or its worker was interrupted)."""
    return trial.state == TrialState.FAIL and "error" not in trial.user_attrs


def _counted(trials):
    """The trials that make up the study's --trials: all but those beyond them and those retried (their retry
    counts in their place; a trial whose worker died stays counted while its retry is being queued, so no worker
    draws a new config for the same place).

    Returns:
        list[optuna.trial.FrozenTrial]
    """
    retried = {number for trial in trials for number in trial.system_attrs.get("retry_history", ())}
    return [trial for trial in trials if not trial.user_attrs.get(SURPLUS) and trial.number not in retried]


def _states(trials):
    """Returns:
    list[tuple]: each trial's number and state, to tell whether a study changed between two looks.
    """
    return [(trial.number, trial.state) for trial in trials]


def done(trials, budget):
    """Returns:
    bool: `trials` hold `budget` that count and none is running or waiting.
    """
    busy = (TrialState.RUNNING, TrialState.WAITING)
    return len(_counted(trials)) >= budget and not any(trial.state in busy for trial in trials)


def registrar(trials):
    """The worker that registers a finished study's best model: the one that finished the last trial, by the
    completion times the storage holds (ties: the higher trial number). Every worker reads the same stored times, so
    all name the same one. Left out: trials failed as stale, whose worker is gone, and surplus ones, which a worker
    may still add after another has found the study done (any trial made then is surplus).

    Returns:
        str: its HOST:PID; empty for a study without finished trials.
    """
    finished = [trial for trial in _counted(trials) if trial.state.is_finished() and not _died(trial)]
    if not finished:
        return ""
    return max(finished, key=lambda trial: (trial.datetime_complete, trial.number)).user_attrs.get(WORKER, "")


def work(study, train, budget, worker, poll=POLL_SECONDS):
    """Runs trials of `study` in this worker until the study holds `budget` trials and none is running or waiting,
    failing the trials of dead workers (by their heartbeats) while it waits for the others' trials.

    A worker takes a trial while fewer than `budget` trials count or a retry is waiting. When two workers take the
    last place at once, the one whose trial has the higher number finds `budget` trials ahead of it and prunes it
    unrun (user attribute `surplus`).

    Args:
        study (optuna.Study): the study.
        train (Callable): trial -> validation value; a trial that raises FAILS, with its `error` user attribute set.
        budget (int): the study's trials.
        worker (str): this worker's id, recorded on each trial it runs (user attribute `worker`).
        poll (float): seconds between looks at the study while other workers' trials run.

    Returns:
        list[optuna.trial.FrozenTrial]: the study's trials once done.
    """

    def objective(trial):
        trial.set_user_attr(WORKER, worker)
        ahead = [other for other in _counted(study.get_trials(deepcopy=False)) if other.number < trial.number]
        if len(ahead) >= budget:
            trial.set_user_attr(SURPLUS, True)
            trial.set_user_attr("error", f"not run: the study already held its {budget} trials")
            raise optuna.TrialPruned(f"the study already holds its {budget} trials")
        return train(trial)

    waiting = False
    while True:
        trials = study.get_trials(deepcopy=False)
        if len(_counted(trials)) < budget or any(trial.state == TrialState.WAITING for trial in trials):
            try:
                # catch: a failing trial (its MLflow run already marked FAILED) must not end the sweep
                study.optimize(objective, n_trials=1, catch=(Exception,))
            except optuna.exceptions.UpdateFinishedTrialError as error:
                # this worker was paused past the grace period: another failed its trial and queued it again
                warnings.warn(f"{error}; another worker queued its config again.", RuntimeWarning, stacklevel=2)
            continue
        if done(trials, budget):
            # a trial failed as stale is queued again a moment after it is failed: look once more a poll later, so
            # that no worker takes that moment for the study's end
            time.sleep(poll)
            settled = study.get_trials(deepcopy=False)
            if _states(settled) == _states(trials):
                return settled
            continue
        if not waiting:
            print(f"sweep worker {worker}: no trial left to take; waiting for other workers' trials", file=sys.stderr)
            waiting = True
        optuna.storages.fail_stale_trials(study)
        time.sleep(poll)


def _record(result):
    """What a trial keeps of the run it trained, for whichever worker registers the study's best (`_recorded`)."""
    return {
        "run": {
            "run_id": result.run_id,
            "model_uri": result.model_uri,
            "metrics": {name: float(value) for name, value in result.metrics.items()},
            "train_seconds": result.train_seconds,
            "train_examples": result.train_examples,
            "weights_sha256": result.weights_sha256,
        },
        "verdict": {name: getattr(result.verdict, name) for name in ("refusal", "summary", "warnings")},
    }


def _recorded(trial):
    """Returns:
    runner.RunResult: the run a trial trained (`_record`), without its history or model.
    """
    from pipelines import runner
    from shared import baselines

    kept = trial.user_attrs[RESULT]
    return runner.RunResult(
        **kept["run"], history={}, verdict=baselines.Verdict(metrics={}, validation={}, **kept["verdict"])
    )


def sweep(
    task,
    config,
    trials=None,
    experiment=None,
    promote="if-better",
    storage=None,
    study_name=None,
    heartbeat=None,
):
    """Runs Optuna trials of `task` around `config` and registers the best trial's model.

    With `storage` and `study_name`, this process is one worker of the study that every process started with the
    same two shares: the one that creates it starts the sweep's MLflow run (`join`), each takes trials until the
    study holds `trials` and none is running, retrying those of dead workers (`work`), and the one that finished
    the last trial registers the best (`registrar`). A worker started on a study already done registers its best
    only when no version is recorded (its registrar died first); otherwise it reports the study.

    Args:
        task (tasks.base.Task): the task.
        config (tasks.base.TaskConfig): the resolved config; trials replace its searched fields.
        trials (int | None): how many configs the study trains; default DEFAULT_TRIALS, or a joined study's.
        experiment (str | None): MLflow experiment; default the task's name.
        promote (str): champion policy for the registered best model: if-better, always or never.
        storage (str | None): a journal file's path or a postgresql:// or mysql:// URL (`check_storage`); None: a
            study in this process alone.
        study_name (str | None): the shared study's name, with `storage`.
        heartbeat (int | None): seconds between a running trial's heartbeats in `storage` (default
            HEARTBEAT_SECONDS); a trial that misses GRACE_BEATS is failed and its config retried.

    Returns:
        SweepResult

    Raises:
        ValueError: a bad search space, trial count, storage or heartbeat, or settings that differ from a joined
            study's (before anything trains), or every trial failed.
    """
    if trials is not None and trials < 1:
        raise ValueError(f"--trials must be at least 1, got {trials}.")
    heartbeat = HEARTBEAT_SECONDS if heartbeat is None else heartbeat
    if heartbeat < 1:
        raise ValueError(f"--heartbeat must be at least 1 second, got {heartbeat}.")
    check_storage(storage, study_name)
    dimensions = parse_space(type(config), config.search_space)

    import keras
    import pandas as pd

    from pipelines import runner
    from shared import tracking

    tracking.check_policy(promote)

    monitor = task.watched(config)
    minimise = minimises(task, monitor)
    worker = worker_id()
    # TPE seeded by the config's seed: the same command proposes the same trials. A worker of a shared study adds
    # its id's CRC-32, so that workers draw different start-up configs.
    seed = config.seed if storage is None else (config.seed + zlib.crc32(worker.encode())) % 2**32
    study, created = open_study(
        storage, study_name, "minimize" if minimise else "maximize", optuna.samplers.TPESampler(seed=seed), heartbeat
    )
    params = config_module.flatten(config)
    setup = {"task": task.name, "--experiment": experiment or task.name, "--promote": promote}
    budget = join(study, created, {**setup, **json.loads(json.dumps(params, default=str))}, trials)
    first = study.get_trials(deepcopy=False)

    def train(trial):
        trial_config = dataclasses.replace(
            config, **{dimension.name: dimension.suggest(trial) for dimension in dimensions}
        )
        # TPE repeats configs of small choice-only spaces; training is deterministic, so reuse the value
        for previous in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if previous.params == trial.params:
                trial.set_user_attr("same_as", previous.number)
                return previous.value
        keras.utils.clear_session()  # drop the previous trial's graphs so memory stays flat over a sweep
        try:
            result = runner.run(task, trial_config, experiment, trial=trial.number)
        except Exception as error:
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:300])
            raise
        trial.set_user_attr(RESULT, _record(result))
        value = best_validation(result.history, monitor, minimise)
        if math.isnan(value):
            trial.set_user_attr("error", f"no finite {monitor}")
        return value

    parent = study.user_attrs.get(PARENT)
    with contextlib.ExitStack() as stack:
        try:
            active = stack.enter_context(
                tracking.run(
                    task,
                    params,
                    experiment,
                    run_id=parent,
                    run_name=f"{task.name}-sweep",
                    tags={"sweep": "true", "sweep_study": study.study_name},
                )
            )
        except ValueError:  # the parent run is not in this worker's MLflow store
            raise ValueError(
                f"study '{study.study_name}' logs to sweep run {parent}, which MLflow store {tracking.tracking_uri()} "
                "does not hold; give every worker the same MLFLOW_TRACKING_URI."
            ) from None
        if created:
            study.set_user_attr(PARENT, active.info.run_id)
        # no other worker to wait for in memory; else looking more often than heartbeats are written finds nothing
        final = work(study, train, budget, worker, poll=0 if storage is None else min(POLL_SECONDS, heartbeat))
        late = done(first, budget) and _states(final) == _states(first)  # started on a done study: took no part
        registers = REGISTERED not in study.user_attrs and (late or registrar(final) == worker)
        table = pd.DataFrame(
            [
                {
                    "trial": trial.number,
                    "state": trial.state.name,
                    monitor: trial.value,
                    **trial.params,
                    "run_id": trial.user_attrs.get(RESULT, {}).get("run", {}).get("run_id", ""),
                    "same_as": trial.user_attrs.get("same_as", ""),
                    "error": trial.user_attrs.get("error", "its worker stopped mid-trial" if _died(trial) else ""),
                    "worker": trial.user_attrs.get(WORKER, ""),
                    "retry_of": trial.system_attrs.get("failed_trial", ""),
                }
                for trial in final
            ]
        )
        if registers:
            tracking.log_results(texts={"trials.csv": table.to_csv(index=False)})
        completed = [trial for trial in final if trial.state == TrialState.COMPLETE]
        if not completed:
            raise ValueError(
                f"all {budget} trials of the {task.name} sweep failed (first: "
                f"{table['error'].iloc[0] or 'no finite ' + monitor}); check the config with "
                f"`python -m pipelines run {task.name} --quick`."
            )
        best = (min if minimise else max)(completed, key=lambda trial: trial.value)  # ties: the lowest number
        trained = best.user_attrs.get("same_as", best.number)  # the trial that trained the best config
        result = _recorded(next(trial for trial in final if trial.number == trained))
        version, promotion = study.user_attrs.get(REGISTERED), None
        if registers:
            version, promotion = runner.register_chosen(task, result, config, promote)
            study.set_user_attr(REGISTERED, version)
            tracking.log_results(
                params={
                    "sweep_trials": budget,
                    "sweep_objective": monitor,
                    "sweep_direction": study.direction.name.lower(),
                    **{f"best_{name}": value for name, value in best.params.items()},
                },
                metrics={
                    f"best_{monitor}": best.value,
                    **{f"test_{name}": value for name, value in result.metrics.items()},
                },
                tags={"best_trial": trained, "best_run_id": result.run_id, "registered_version": version},
            )
            runner.log_card(task, active.info.run_id, version)
    return SweepResult(
        run_id=active.info.run_id,
        best_trial=trained,
        best_value=best.value,
        best_params=best.params,
        metrics=result.metrics,
        model_uri=f"models:/{task.name}/{version}" if version else "",
        failed=sum(1 for trial in _counted(final) if trial.state == TrialState.FAIL),
        promotion=promotion,
        verdict=result.verdict,
        registrar=worker if registers else registrar(final),
    )
