"""A budgeted portfolio: try a task's few declared configurations, keep the one validation prefers.

`--set budget_minutes=N` (or a `--preset`) turns `run` into this: each candidate of `Task.portfolio` (3-6
diverse configurations, the task's defaults first) trains in order on the training split as a nested MLflow
run, and is scored on the validation split by the
task's primary metric (`shared.baselines.chooser`; classification's balanced accuracy where the primary metric
has no scorer). On small data one validation split is too noisy
to choose on, so each candidate is scored by k-fold cross-validation over training + validation instead and
the chosen one retrained on the training split. The defaults train in full, as a run without a budget would, so
that a preset never ends below them; each later candidate is stopped when its share of what is left of the budget
is spent, and skipped when nothing is left. With `portfolio_average` the best few are also averaged into
one model, kept when validation prefers it. The parent run holds the leaderboard (`leaderboard.csv`) and the
winner's figures, and registers the winner's model: one registered version, promoted as any run's.

Test figures are logged for every candidate but never read to choose.
"""

import dataclasses
import json
import math
import time

import numpy as np

from pipelines import config as config_module
from shared import baselines

# Presets: named budgets, documented in docs/sweeps_and_scaling.md. fast is today's single run; balanced tries the
# portfolio in about the time the benchmark figures need on the shared sets; best also averages the three best
# candidates.
PRESETS = {
    "fast": {"budget_minutes": 0.0},
    "balanced": {"budget_minutes": 10.0},
    "best": {"budget_minutes": 45.0, "portfolio_average": 3},
}
FOLDS = 5  # k of the cross-validation that replaces one validation split on small data
# Below this many training + validation examples, a validation split of 15% holds under ~250 examples: the
# standard error of an accuracy near 0.8 is then ~0.025, larger than most gaps between candidates.
CROSS_VALIDATE_BELOW = 1500


@dataclasses.dataclass
class PortfolioResult:
    """What a finished portfolio returns to the CLI and tests.

    Attributes:
        run_id (str): the portfolio's (parent) run.
        chosen (str): the winning candidate's name.
        validation (float): its validation figure (cross-validated mean on small data).
        metric (str): the figure candidates were chosen by (`validation_<name>`).
        leaderboard (list[dict]): one row per candidate, in the order tried.
        metrics (dict): the winner's test metrics.
        model_uri (str): `models:/TASK/VERSION` of the registered winner.
        promotion (shared.tracking.Promotion): whether it became @champion, and why.
        verdict (shared.baselines.Verdict): the winner against its baselines.
    """

    run_id: str
    chosen: str
    validation: float
    metric: str
    leaderboard: list
    metrics: dict
    model_uri: str
    promotion: object
    verdict: object


def candidates(task, config):
    """The portfolio's configurations: each candidate's settings over `config`, duplicates dropped.

    A candidate's settings give way to those the user chose (values other than the task's defaults), so that
    `--set epochs=5 --preset balanced` trains every candidate for 5 epochs.

    Returns:
        list[tuple[str, TaskConfig]]: (name, config) pairs in the task's order, the defaults first.
    """
    defaults = task.config_class()
    chosen = {
        name
        for name in config_module.field_types(task.config_class)
        if getattr(config, name) != getattr(defaults, name)
    }
    found, seen = [], []
    for name, settings in task.portfolio(config):
        kept = {key: value for key, value in settings.items() if key not in chosen}
        candidate = dataclasses.replace(config, budget_minutes=0.0, portfolio_average=0, **kept)
        if candidate not in seen:
            found.append((name, candidate))
            seen.append(candidate)
    return found


def run(task, config, experiment=None, promote="if-better"):
    """Trains the portfolio of `task` within `config.budget_minutes` and registers the candidate validation prefers.

    Args:
        task (tasks.base.Task): the task.
        config (tasks.base.TaskConfig): the resolved config; `budget_minutes` > 0.
        experiment (str | None): MLflow experiment; default the task's name.
        promote (str): champion policy for the registered winner.

    Returns:
        PortfolioResult

    Raises:
        ValueError: a bad policy, or every candidate failed.
    """
    import keras
    import pandas as pd

    from pipelines import runner
    from shared import tracking

    tracking.check_policy(promote)
    tried = candidates(task, config)
    deadline = time.monotonic() + 60 * config.budget_minutes
    rows, results = [], {}
    with tracking.run(
        task, config_module.flatten(config), experiment, run_name=f"{task.name}-portfolio", tags={"portfolio": "true"}
    ) as active:
        for index, (name, candidate) in enumerate(tried):
            left = deadline - time.monotonic()
            if index and left <= 0:
                rows.append({"candidate": name, "state": "skipped: budget spent", "settings": _settings(candidate)})
                continue
            keras.utils.clear_session()  # drop the previous candidate's graphs so memory stays flat
            try:
                result, score, spread = _score(task, candidate, experiment, index, max(left, 0) / (len(tried) - index))
            except Exception as error:  # a failing candidate (its run marked FAILED) must not end the portfolio
                rows.append(
                    {
                        "candidate": name,
                        "state": f"failed: {type(error).__name__}: {error}"[:300],
                        "settings": _settings(candidate),
                    }
                )
                continue
            results[name] = result
            rows.append(_row(task, name, result, score, spread, _settings(candidate)))
        done = [row for row in rows if row["state"] == "complete" and math.isfinite(row["validation"])]
        if not done:
            raise ValueError(
                f"every candidate of the {task.name} portfolio failed (first: {rows[0]['state']}); check "
                f"the config with `python -m pipelines run {task.name} --quick`."
            )
        scorer = baselines.chooser(results[done[0]["candidate"]].verdict.scorers, task.primary_metric)
        ranked = sorted(done, key=lambda row: row["validation"], reverse=scorer.higher_is_better)
        best = ranked[0]  # sorted() is stable: a tie keeps the earlier candidate, the defaults first
        members = [row["candidate"] for row in ranked[: config.portfolio_average]]
        if len(members) > 1:
            averaged = _average(
                task,
                dict(tried)[members[0]],
                experiment,
                [results[name] for name in members],
                len(tried),
                rows,
                members,
            )
            if averaged is not None:
                results["average"] = averaged[0]
                if scorer.gain(averaged[1]["validation"], best["validation"]) > 0:
                    best = averaged[1]
        result = results[best["candidate"]]
        version, promotion = runner.register_chosen(task, result, config, promote)
        metric = f"validation_{scorer.name}"
        tracking.log_results(
            params={"portfolio_candidates": len(tried), "portfolio_metric": metric},
            metrics={metric: best["validation"], **{f"test_{name}": value for name, value in result.metrics.items()}},
            tags={
                "portfolio_chosen": best["candidate"],
                "best_run_id": result.run_id,
                "registered_version": version,
                **result.verdict.tags,
            },
            texts={"leaderboard.csv": pd.DataFrame(rows).to_csv(index=False)},
        )
        runner.log_card(task, active.info.run_id, version)
    return PortfolioResult(
        run_id=active.info.run_id,
        chosen=best["candidate"],
        validation=best["validation"],
        metric=metric,
        leaderboard=rows,
        metrics=result.metrics,
        model_uri=f"models:/{task.name}/{version}",
        promotion=promotion,
        verdict=result.verdict,
    )


def _settings(config):
    """The config fields a candidate sets beyond the task's defaults, as compact JSON for the leaderboard."""
    defaults = dataclasses.asdict(type(config)())
    return json.dumps(
        {
            key: value
            for key, value in dataclasses.asdict(config).items()
            if value != defaults.get(key) and key != "search_space"
        },
        default=str,
    )


def _row(task, name, result, score, spread, settings):
    """A leaderboard row for a trained candidate."""
    return {
        "candidate": name,
        "state": "complete",
        "validation": score,
        "validation_sd": spread,
        "test": result.metrics.get(task.primary_metric),
        "train_seconds": round(result.train_seconds, 1),
        "run_id": result.run_id,
        "settings": settings,
    }


def _score(task, candidate, experiment, index, seconds):
    """Trains one candidate as a nested run and scores it on validation (cross-validated on small data).

    The candidate's training stops when its `seconds` are spent, except the defaults' (index 0), which train in
    full as `fast` would, so that a preset never ends below them (translation's defaults alone need about 10
    minutes); on small data the folds that score the defaults still share their seconds, as every candidate's do.

    Returns:
        tuple[RunResult, float, float]: the run, its validation figure and the spread over folds (NaN: one split).
    """
    from pipelines import runner
    from shared import regularization

    # k folds and the final training share the candidate's time on small data
    folds = runner.cross_validate(task, candidate, FOLDS, CROSS_VALIDATE_BELOW, seconds / (FOLDS + 1))
    limit = math.inf if index == 0 else seconds / (FOLDS + 1) if folds else seconds
    result = runner.run(
        task, candidate, experiment, trial=index, naming="candidate", callbacks=[regularization.time_limit(limit)]
    )
    if folds:
        return result, float(np.mean(folds)), float(np.std(folds))
    return result, _validation(task, result), math.nan


def _validation(task, result):
    """A trained candidate's validation figure, by the scorer that chooses (`shared.baselines.chooser`)."""
    scorer = baselines.chooser(result.verdict.scorers, task.primary_metric)
    return result.verdict.validation.get(f"validation_{scorer.name}", math.nan)


def _average(task, config, experiment, members, index, rows, names):
    """Averages the members' outputs into one model, evaluated and logged as a candidate of its own.

    Returns:
        tuple[RunResult, dict] | None: the ensemble's run and leaderboard row, or None when the members' inputs
        differ (the reason goes to the leaderboard).
    """
    from pipelines import runner

    try:
        result = runner.run(
            task, config, experiment, trial=index, naming="candidate", members=[member.model for member in members]
        )
    except ValueError as error:
        rows.append({"candidate": "average", "state": f"failed: {error}"[:300], "settings": json.dumps(names)})
        return None
    score = _validation(task, result)
    row = _row(task, "average", result, score, math.nan, json.dumps(names))
    rows.append(row)
    return (result, row) if math.isfinite(score) else None
