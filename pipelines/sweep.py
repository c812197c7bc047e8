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
"""

import dataclasses
import math

from pipelines import config as config_module
from shared import constraints

KINDS = ("log", "float", "int", "choice")
FORMS = {  # the specs a field of each type takes; bool and str fields take choices only
    float: "[log, LOW, HIGH] with 0 < LOW < HIGH, [float, LOW, HIGH], [int, LOW, HIGH] or [choice, VALUE, ...]",
    int: "[int, LOW, HIGH], [log, LOW, HIGH] with 0 < LOW < HIGH, or [choice, VALUE, ...], in integers",
}
FIXED = ("data", "seed")  # trials compare configs on the same data and seed; varying these would compare noise
LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "rmse")  # name parts of metrics a sweep minimises


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
    model_uri: str  # models:/TASK/VERSION of the registered best model
    failed: int  # trials that raised or gave no finite validation value
    promotion: object  # shared.tracking.Promotion: whether the best model became @champion, and why
    verdict: object = None  # shared.baselines.Verdict: the best trial's model against its baselines


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


def sweep(task, config, trials, experiment=None, promote="if-better"):
    """Runs `trials` Optuna trials of `task` around `config` and registers the best trial's model.

    Args:
        task (tasks.base.Task): the task.
        config (tasks.base.TaskConfig): the resolved config; trials replace its searched fields.
        trials (int): how many configs to train.
        experiment (str | None): MLflow experiment; default the task's name.
        promote (str): champion policy for the registered best model: if-better, always or never.

    Returns:
        SweepResult

    Raises:
        ValueError: a bad search space or trial count (before anything trains), or every trial failed.
    """
    if trials < 1:
        raise ValueError(f"--trials must be at least 1, got {trials}.")
    dimensions = parse_space(type(config), config.search_space)

    import keras
    import optuna
    import pandas as pd

    from pipelines import runner
    from shared import tracking

    tracking.check_policy(promote)

    monitor = task.watched(config)
    minimise = minimises(task, monitor)
    # TPE seeded by the config's seed: the same command proposes the same trials.
    study = optuna.create_study(
        direction="minimize" if minimise else "maximize", sampler=optuna.samplers.TPESampler(seed=config.seed)
    )
    results = {}

    def objective(trial):
        trial_config = dataclasses.replace(
            config, **{dimension.name: dimension.suggest(trial) for dimension in dimensions}
        )
        # TPE repeats configs of small choice-only spaces; training is deterministic, so reuse the value
        for previous in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if previous.params == trial.params:
                trial.set_user_attr("same_as", previous.number)
                return previous.value
        keras.utils.clear_session()  # drop the previous trial's graphs so memory stays flat over a sweep
        try:
            result = runner.run(task, trial_config, experiment, trial=trial.number)
        except Exception as error:
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:300])
            raise
        results[trial.number] = result
        trial.set_user_attr("run_id", result.run_id)
        return best_validation(result.history, monitor, minimise)

    params = config_module.flatten(config)
    with tracking.run(task, params, experiment, run_name=f"{task.name}-sweep", tags={"sweep": "true"}) as active:
        # catch: a failing trial (its MLflow run already marked FAILED) must not end the sweep
        study.optimize(objective, n_trials=trials, catch=(Exception,))
        table = pd.DataFrame(
            [
                {
                    "trial": trial.number,
                    "state": trial.state.name,
                    monitor: trial.value,
                    **trial.params,
                    **{name: trial.user_attrs.get(name, "") for name in ("run_id", "same_as", "error")},
                }
                for trial in study.trials
            ]
        )
        tracking.log_results(texts={"trials.csv": table.to_csv(index=False)})
        completed = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
        if not completed:
            raise ValueError(
                f"all {trials} trials of the {task.name} sweep failed (first: "
                f"{table['error'].iloc[0] or 'no finite ' + monitor}); check the config with "
                f"`python -m pipelines run {task.name} --quick`."
            )
        best = study.best_trial
        trained = best.user_attrs.get("same_as", best.number)  # the trial that trained the best config
        result = results[trained]
        version, promotion = runner.register_chosen(task, result, config, promote)
        tracking.log_results(
            params={
                "sweep_trials": trials,
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
        model_uri=f"models:/{task.name}/{version}",
        failed=len(study.trials) - len(completed),
        promotion=promotion,
        verdict=result.verdict,
    )
