"""The run-and-report body shared by benchmark scripts: parse `--set` and `--seeds`, train on the team's
data once per seed, print one JSON line on stdout.

The line holds `task`, `data`, `seeds`, `metrics` (each metric's mean over the seeds), `metrics_sd`
(their sample standard deviation, 0 for one seed), `per_seed` (each seed's metrics and training
seconds), `train_seconds` (summed over every training), `examples_per_second` and `run_ids`.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@dataclasses.dataclass
class Protocol:
    """One training a benchmark reports.

    Attributes:
        label (str): prefixes its metric names (`LABEL_METRIC`); empty for a single protocol.
        data (pathlib.Path): a path under ../shared/data.
        settings (list[str]): `key=value` config overrides the benchmark states.
        keys (tuple[str, ...]): test metrics to report.
        probe (Callable | None): `(task, resolved config) -> Probe` for each training: a Keras callback that
            measures something during training (e.g. the time to reach a test figure, for reporting only).
    """

    label: str
    data: pathlib.Path
    settings: list
    keys: tuple
    probe: object = None


class Probe:
    """What a protocol's probe returns: a Keras callback (mixed in) with extra figures to report.

    Attributes:
        overhead_seconds (float): time the probe spent inside training, taken off the reported training time.
    """

    overhead_seconds = 0.0

    def report(self, result):
        """Returns:
        dict: extra metrics of the finished run (`result`: `pipelines.runner.RunResult`).
        """
        return {}


def run_and_report(task_name, data, settings, keys, description, backend=None):
    """Trains `task_name` on `data` with `settings` (+ `--set` flags) per seed and prints the chosen test metrics.

    Args:
        task_name (str): registered task.
        data (pathlib.Path): a path under ../shared/data.
        settings (list[str]): `key=value` config overrides the benchmark states.
        keys (tuple[str, ...]): metrics to report.
        description (str): the script's one-line summary, for `--help`.
        backend (str | None): the Keras backend the figures were measured with, unless KERAS_BACKEND is set.
    """
    run_protocols(task_name, [Protocol("", data, settings, keys)], description, backend=backend)


def parser(description):
    """Returns:
    argparse.ArgumentParser: a benchmark's command line with the options every task script takes, `--set` and
        `--seeds`; a script adds its own.
    """
    found = argparse.ArgumentParser(description=description)
    found.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    found.add_argument(
        "--seeds",
        type=parse_seeds,
        default=[0],
        metavar="S,S,...",
        help="train once per seed and report mean and sd over them (default: 0)",
    )
    return found


def parse_seeds(text):
    """Returns:
        list[int]: the seeds of a `--seeds` value such as `0,1,2`.

    Raises:
        argparse.ArgumentTypeError: the value is not comma-separated integers.
    """
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: give comma-separated integers, e.g. --seeds 0,1,2")
    return seeds


def summarise(per_seed):
    """Mean and sample standard deviation of each numeric metric over the seeds.

    Args:
        per_seed (list[dict]): one metrics dict per seed, same keys.

    Returns:
        tuple[dict, dict]: means and standard deviations (0 for one seed), rounded to 4 digits.
    """
    means, deviations = {}, {}
    for key in per_seed[0]:
        values = [metrics[key] for metrics in per_seed]
        if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
            means[key] = round(statistics.fmean(values), 4)
            deviations[key] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
    return means, deviations


def run_protocols(task_name, protocols, description, derive=None, backend=None):
    """Trains `task_name` once per protocol and seed and prints metrics (mean, sd, per seed) and train time.

    `--set` flags apply to every protocol, after its own settings; `--seeds` (default `0`) sets `seed`
    last, so it overrides a seed in either.

    Args:
        task_name (str): registered task.
        protocols (list[Protocol]): the trainings, in order.
        description (str): the script's one-line summary, for `--help`.
        derive (callable | None): metrics dict -> extra metrics (e.g. a ratio to a baseline, target checks);
            applied to each seed's metrics and to the means.
        backend (str | None): the Keras backend the figures were measured with, unless KERAS_BACKEND is set.
    """
    arguments = parser(description).parse_args()
    for protocol in protocols:
        if not protocol.data.exists():
            sys.exit(
                f"benchmark data {protocol.data} is absent (the team's ../shared/data folder must sit beside the repo)"
            )
    if backend:
        os.environ.setdefault("KERAS_BACKEND", backend)
    import tasks
    from pipelines import config, runner

    task = tasks.get(task_name)
    per_seed, seconds, examples, run_ids = {}, 0.0, 0, {}
    for seed in arguments.seeds:
        metrics, seed_seconds = {}, 0.0
        for protocol in protocols:
            overrides = protocol.settings + arguments.set + [f"seed={seed}"]
            resolved = config.resolve(task, data=str(protocol.data), assignments=overrides)
            print(f"benchmark {task_name} {protocol.label} on {protocol.data} with {overrides}", file=sys.stderr)
            probe = protocol.probe(task, resolved) if protocol.probe else None
            result = runner.run(
                task, resolved, experiment=f"benchmark_{task_name}", callbacks=(probe,) if probe else ()
            )
            prefix = f"{protocol.label}_" if protocol.label else ""
            metrics.update({f"{prefix}{key}": round(result.metrics[key], 4) for key in protocol.keys})
            if probe:
                metrics.update({f"{prefix}{key}": value for key, value in probe.report(result).items()})
            seed_seconds += result.train_seconds - (probe.overhead_seconds if probe else 0.0)
            examples += result.train_examples
            run_ids[f"{protocol.label or task_name}_seed{seed}"] = result.run_id
        metrics.update(derive(metrics) if derive else {})
        per_seed[str(seed)] = {**metrics, "train_seconds": round(seed_seconds, 1)}
        seconds += seed_seconds
        print(f"benchmark {task_name} seed {seed}: {json.dumps(per_seed[str(seed)])}", file=sys.stderr)
    means, deviations = summarise(
        [{key: value for key, value in metrics.items() if key != "train_seconds"} for metrics in per_seed.values()]
    )
    means.update(derive(means) if derive else {})
    print(
        json.dumps(
            {
                "task": task.name,
                "data": " + ".join(sorted({str(protocol.data.relative_to(ROOT.parent)) for protocol in protocols})),
                "seeds": arguments.seeds,
                "metrics": means,
                "metrics_sd": deviations,
                "per_seed": per_seed,
                "train_seconds": round(seconds, 1),
                "examples_per_second": round(examples / max(seconds, 1e-9), 1),
                "run_ids": run_ids,
            }
        )
    )


def over_seeds(seeds, one):
    """Runs a benchmark once per seed and combines the reports as `run_protocols` does.

    Args:
        seeds (list[int]): from `--seeds`.
        one (callable): seed -> the benchmark's JSON dict for that seed, with `metrics` and `train_seconds`.

    Returns:
        dict: one seed's report as it is; for several, the first seed's report (its curve and settings) with
        `metrics` the means, `metrics_sd`, `per_seed` (metrics, training seconds and, where the benchmark has
        one, its curve) and the total `train_seconds`.
    """
    reports = [one(seed) for seed in seeds]
    if len(reports) == 1:
        return reports[0]
    means, deviations = summarise([report["metrics"] for report in reports])
    return {
        **reports[0],
        "seeds": seeds,
        "metrics": means,
        "metrics_sd": deviations,
        "per_seed": {
            str(seed): {
                **report["metrics"],
                "train_seconds": report["train_seconds"],
                **({"curve": report["curve"]} if "curve" in report else {}),
            }
            for seed, report in zip(seeds, reports)
        },
        "train_seconds": round(sum(report["train_seconds"] for report in reports), 1),
    }


def time_budget(minutes):
    """A Keras callback that snapshots the weights at each training-time checkpoint and stops at the last.

    Training time is wall time since `fit` began, validation passes included (the runner's
    `train_seconds`), so the figures read "what N minutes of training give". A run whose epochs end
    before a checkpoint reports its final (best restored) weights there, at the time training ended.

    Args:
        minutes (list[float]): checkpoints in minutes, e.g. [2, 5, 10].

    Returns:
        keras.callbacks.Callback: after `fit`, its `snapshots` is a list of `(minutes asked, minutes
        trained, training steps, weights)` in checkpoint order.
    """
    import time

    import keras

    class TimeBudget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.pending, self.snapshots, self.started, self.steps = sorted(minutes), [], None, 0

        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            elapsed = (time.perf_counter() - self.started) / 60
            while self.pending and elapsed >= self.pending[0]:
                self.snapshots.append((self.pending.pop(0), elapsed, self.steps, self.model.get_weights()))
            if not self.pending:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            # Runs after EarlyStopping restored the best epoch: the weights that get logged.
            elapsed = (time.perf_counter() - self.started) / 60
            self.snapshots += [(asked, elapsed, self.steps, self.model.get_weights()) for asked in self.pending]
            self.pending = []

    return TimeBudget()


def curve(logged_model, snapshots, batch_size, score):
    """Scores the logged model (its own predictor, from raw inputs) with each snapshot's weights.

    Args:
        logged_model (mlflow.pyfunc.PyFuncModel): from `shared.tracking.load`.
        snapshots (list[tuple]): `time_budget(...).snapshots`.
        batch_size (int): examples per training step, for the throughput up to each checkpoint.
        score (callable): logged model -> dict of metrics.

    Returns:
        list[dict]: per checkpoint, `minutes` asked, `trained_minutes`, `examples_per_second` (training
        examples, counting every batch as full) and the metrics. The logged
        model keeps its own weights afterwards.
    """
    keras_model = logged_model.unwrap_python_model().model
    logged_weights = keras_model.get_weights()
    points = []
    for asked, trained, steps, weights in snapshots:
        keras_model.set_weights(weights)
        points.append(
            {
                "minutes": asked,
                "trained_minutes": round(trained, 2),
                "examples_per_second": round(steps * batch_size / (trained * 60), 1),
                **score(logged_model),
            }
        )
        print(f"  {asked} min ({trained:.1f} trained): {points[-1]}", file=sys.stderr)
    keras_model.set_weights(logged_weights)
    return points
