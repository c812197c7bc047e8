"""Property-based fuzzing of whole runs: Hypothesis strategies drawn from the constraints every task declares, and
a worker process that runs each drawn command, so that a native crash fails one example instead of the test run.

Run as a script, this file is the worker: it reads one JSON command line (the `python -m pipelines` arguments) per
line on stdin, runs it in-process (TensorFlow is imported once, not once per example), and answers one JSON line:
the exit code, what it printed on stderr, any traceback, and the MLflow runs the command created with their states.
"""

import contextlib
import dataclasses
import io
import json
import os
import pathlib
import subprocess
import sys
import time
import traceback
import typing

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Fields whose drawn values would make a run long or change what runs, not what is checked: the epoch and
# example budget of every drawn run (200 training examples: seconds on 2 cores; quick runs keep 200-6000), and
# the portfolio settings that train several models.
FIXED = {"epochs": 1, "max_examples": 200, "budget_minutes": 0.0, "portfolio_average": 0}
SMALL_SIDE = 32  # the largest drawn size where 0 means "the data's own" (image and tile sides, paddings): CIFAR's


def strategy(rule, kind, base):
    """A Hypothesis strategy for one declared constraint, within what the rule allows and near a small run's size.

    Args:
        rule (object): a `shared.constraints` rule (Range, OneOf, Each).
        kind (type): the field's type (int, float, tuple...).
        base (object): the field's value in a quick run, or its default where that is 0.

    Returns:
        hypothesis.strategies.SearchStrategy
    """
    from hypothesis import strategies

    from shared import constraints

    if isinstance(rule, constraints.OneOf):
        return strategies.sampled_from(rule.choices)
    if isinstance(rule, constraints.Each):
        return strategies.lists(strategy(rule.rule, int, max(base or (8,))), max_size=3).map(tuple)
    low = rule.low if rule.low is not None else 0
    if kind is int:
        low = int(low) + (1 if rule.low_open else 0)
        # counts and sizes up to the quick run's own (a width, a vocabulary): larger ones only take longer
        high = base if base else SMALL_SIDE
        if rule.high is not None:
            high = min(high, int(rule.high) - (1 if rule.high_open else 0))
        return strategies.integers(low, max(low, high))
    # rates and strengths: up to 1, or 4x the default where that is more; the ends of a closed range included
    high = rule.high if rule.high is not None else max(1.0, 4 * (base or 0))
    return strategies.floats(
        low, high, exclude_min=rule.low_open, exclude_max=rule.high_open, allow_nan=False, allow_infinity=False
    )


def config_strategy(task, every_field=False):
    """Draws `--set` assignments for the fields of `task`'s config that declare a constraint.

    Args:
        task (tasks.base.Task): the task.
        every_field (bool): draw every such field (Hypothesis' first draw is then each field at its simplest: the
            low end of its range, its first choice), rather than a drawn subset (whose first draw is the defaults).

    Returns:
        hypothesis.strategies.SearchStrategy: lists of `key=value` strings that `resolve` accepts, the fixed budget
        (`FIXED`) last.
    """
    from hypothesis import strategies

    from shared import constraints

    kinds = typing.get_type_hints(task.config_class)  # without extras: int, float, tuple, str
    defaults = {field.name: field.default for field in dataclasses.fields(task.config_class)}
    quick = task.quick_overrides
    drawn = {}
    for name, rules in constraints.declared(task.config_class).items():
        if name in FIXED:
            continue
        # a quick run's value, else the default (a quick run turns some off: augmentation copies), else SMALL_SIDE
        first = strategy(rules[0], kinds[name], quick.get(name) or defaults[name])
        drawn[name] = first.filter(lambda value, rules=rules: all(rule.allows(value) for rule in rules))
    fixed = [f"{name}={value}" for name, value in FIXED.items()]
    chosen = strategies.fixed_dictionaries(drawn) if every_field else strategies.fixed_dictionaries({}, optional=drawn)
    return chosen.map(
        lambda values: [f"{name}={_yaml(value)}" for name, value in sorted(values.items())] + fixed
    ).filter(lambda assignments: _accepted(task, assignments))


def _accepted(task, assignments):
    """Whether `resolve` accepts the assignments (the cross-field rules a draw may break: fractions summing to 1)."""
    from pipelines import config

    try:
        config.resolve(task, quick=True, assignments=assignments)
    except ValueError:
        return False
    return True


def _yaml(value):
    """A value as `--set` reads it (YAML): lists in brackets, floats in full precision."""
    if isinstance(value, tuple):
        return "[" + ",".join(map(str, value)) + "]"
    return repr(value) if isinstance(value, float) else str(value)


class Worker:
    """A worker process (this file as a script) that runs commands for a test, restarted after it dies."""

    def __init__(self, store):
        self.store, self.process = store, None

    def run(self, arguments):
        """Runs one `python -m pipelines` command in the worker.

        Returns:
            dict: `code` (the exit code; None when the command raised or the worker died), `stderr`, `traceback`,
            `runs` (state by run id of the runs the command created), `seconds` and, when the worker died, `died`
            with its exit status.
        """
        if self.process is None or self.process.poll() is not None:
            env = {
                **os.environ,
                "MLFLOW_TRACKING_URI": self.store,
                "PYTHONPATH": str(ROOT),
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                "TF_CPP_MIN_LOG_LEVEL": "2",
            }
            self.process = subprocess.Popen(
                [sys.executable, __file__],
                cwd=ROOT,
                env=env,
                text=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        self.process.stdin.write(json.dumps(arguments) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            return {"code": None, "died": self.process.wait(), "stderr": "", "traceback": "", "runs": {}, "seconds": 0}
        return json.loads(line)

    def close(self):
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


def check_outcome(arguments, result, task):
    """Asserts a command either finished with a registered model or stopped with exit 2 and a one-line error before
    any run was created; never a traceback, a native crash or a run left RUNNING.

    Args:
        arguments (list[str]): the command, shown in every failure so that it can become a regression test.
        result (dict): the worker's answer (`Worker.run`).
        task (str): the task the command runs.
    """
    command = "python -m pipelines " + " ".join(arguments)
    assert "died" not in result, f"native crash (exit status {result['died']}) in: {command}"
    assert not result["traceback"], f"traceback in: {command}\n{result['traceback']}"
    assert "RUNNING" not in result["runs"].values(), f"a run was left RUNNING by: {command}"
    lines = [line for line in result["stderr"].splitlines() if line.startswith("error: ")]
    if result["code"] == 2:
        assert len(lines) == 1 and "\n" not in lines[0], f"not one error line from: {command}\n{result['stderr']}"
        assert not result["runs"], f"exit 2 after creating run(s) {result['runs']}: {command}\n{lines[0]}"
        return
    assert result["code"] == 0, f"exit {result['code']} from: {command}\n{result['stderr'][-2000:]}"
    assert f"model models:/{task}/" in result["stderr"], f"no registered model from: {command}"
    assert set(result["runs"].values()) == {"FINISHED"}, f"runs {result['runs']} from: {command}"


def _serve():
    """The worker loop (see the module docstring)."""
    import mlflow

    from pipelines import cli

    channel = os.fdopen(os.dup(1), "w")  # answers only: native code that writes to descriptor 1 goes to stderr
    os.dup2(2, 1)
    client = mlflow.MlflowClient()

    def runs():
        experiments = [experiment.experiment_id for experiment in client.search_experiments()]
        return {run.info.run_id: run.info.status for run in client.search_runs(experiments)} if experiments else {}

    for line in sys.stdin:
        arguments = json.loads(line)
        before, stderr, failure, code, started = runs(), io.StringIO(), "", None, time.perf_counter()
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stderr):
                code = cli.main(arguments)
        except BaseException:  # blind on purpose: every escape is what the fuzz reports, SystemExit included
            failure = traceback.format_exc()
        after = runs()
        created = {run: state for run, state in after.items() if run not in before}
        print(
            json.dumps(
                {
                    "code": code,
                    "stderr": stderr.getvalue(),
                    "traceback": failure,
                    "runs": created,
                    "seconds": time.perf_counter() - started,
                }
            ),
            file=channel,
            flush=True,
        )


if __name__ == "__main__":
    _serve()
