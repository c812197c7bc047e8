"""The run-and-report body shared by benchmark scripts: parse `--set`, train on the team's data, print
one JSON line (`task`, `data`, `metrics`, `train_seconds`, `examples_per_second`, `run_id`) on stdout."""

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_and_report(task_name, data, settings, keys, description):
    """Trains `task_name` on `data` with `settings` (+ `--set` flags) and prints the chosen test metrics.

    Args:
        task_name (str): registered task.
        data (pathlib.Path): a path under ../shared/data.
        settings (list[str]): `key=value` config overrides the benchmark states.
        keys (tuple[str, ...]): metrics to report.
        description (str): the script's one-line summary, for `--help`.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    arguments = parser.parse_args()
    if not data.exists():
        sys.exit(f"benchmark data {data} is absent (the team's ../shared/data folder must sit beside the repo)")
    sys.path.insert(0, str(ROOT))
    import tasks
    from pipelines import config, runner

    task = tasks.get(task_name)
    overrides = settings + arguments.set
    resolved = config.resolve(task, data=str(data), assignments=overrides)
    print(f"benchmark {task_name} on {data} with {overrides}", file=sys.stderr)
    result = runner.run(task, resolved, experiment=f"benchmark_{task_name}")
    print(json.dumps({
        "task": task.name, "data": str(data.relative_to(ROOT.parent)),
        "metrics": {key: round(result.metrics[key], 4) for key in keys},
        "train_seconds": round(result.train_seconds, 1),
        "examples_per_second": round(result.train_examples / max(result.train_seconds, 1e-9), 1),
        "run_id": result.run_id,
    }))
