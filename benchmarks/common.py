"""The run-and-report body shared by benchmark scripts: parse `--set`, train on the team's data, print
one JSON line (`task`, `data`, `metrics`, `train_seconds`, `examples_per_second`, `run_ids`) on stdout."""

import argparse
import dataclasses
import json
import os
import pathlib
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
    """

    label: str
    data: pathlib.Path
    settings: list
    keys: tuple


def run_and_report(task_name, data, settings, keys, description, backend=None):
    """Trains `task_name` once on `data` with `settings` (+ `--set` flags) and prints the chosen test metrics.

    Args:
        task_name (str): registered task.
        data (pathlib.Path): a path under ../shared/data.
        settings (list[str]): `key=value` config overrides the benchmark states.
        keys (tuple[str, ...]): metrics to report.
        description (str): the script's one-line summary, for `--help`.
        backend (str | None): the Keras backend the figures were measured with, unless KERAS_BACKEND is set.
    """
    run_protocols(task_name, [Protocol("", data, settings, keys)], description, backend=backend)


def run_protocols(task_name, protocols, description, derive=None, backend=None):
    """Trains `task_name` once per protocol and prints their metrics, summed train time and throughput.

    `--set` flags apply to every protocol, after its own settings.

    Args:
        task_name (str): registered task.
        protocols (list[Protocol]): the trainings, in order.
        description (str): the script's one-line summary, for `--help`.
        derive (callable | None): metrics dict -> extra metrics (e.g. a ratio to a baseline, target checks).
        backend (str | None): the Keras backend the figures were measured with, unless KERAS_BACKEND is set.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    arguments = parser.parse_args()
    for protocol in protocols:
        if not protocol.data.exists():
            sys.exit(f"benchmark data {protocol.data} is absent (the team's ../shared/data folder must sit "
                     "beside the repo)")
    if backend:
        os.environ.setdefault("KERAS_BACKEND", backend)
    sys.path.insert(0, str(ROOT))
    import tasks
    from pipelines import config, runner

    task = tasks.get(task_name)
    metrics, seconds, examples, run_ids = {}, 0.0, 0, {}
    for protocol in protocols:
        overrides = protocol.settings + arguments.set
        resolved = config.resolve(task, data=str(protocol.data), assignments=overrides)
        print(f"benchmark {task_name} {protocol.label} on {protocol.data} with {overrides}", file=sys.stderr)
        result = runner.run(task, resolved, experiment=f"benchmark_{task_name}")
        prefix = f"{protocol.label}_" if protocol.label else ""
        metrics.update({f"{prefix}{key}": round(result.metrics[key], 4) for key in protocol.keys})
        seconds += result.train_seconds
        examples += result.train_examples
        run_ids[protocol.label or task_name] = result.run_id
    metrics.update(derive(metrics) if derive else {})
    print(json.dumps({
        "task": task.name,
        "data": " + ".join(sorted({str(protocol.data.relative_to(ROOT.parent)) for protocol in protocols})),
        "metrics": metrics, "train_seconds": round(seconds, 1),
        "examples_per_second": round(examples / max(seconds, 1e-9), 1), "run_ids": run_ids,
    }))
