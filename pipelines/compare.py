"""`python -m pipelines compare`: each task's champion and recent runs, from every experiment.

Runs are found by their `task` tag, so those trained with `run --experiment NAME`, benchmarks and
sweeps show up beside the default experiment's; `--experiment NAME` narrows the view to one. The
champion's run is always a row, and the champion line is printed whenever the registry has one.
"""

import csv
import math
import sys

import tasks

COMPARE_FORMATS = ("text", "markdown", "csv")
RUN_FIELDS = (
    "run_id",
    "experiment",
    "version",
    "champion",
    "status",
    "data_source",
    "value",
    "duration_seconds",
    "started",
)


def text_table(rows, headers):
    """Returns rows as an aligned plain-text table with a dashed line under the headers."""
    widths = [max(len(str(value)) for value in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(value).ljust(width) for value, width in zip(row, widths)) for row in [headers, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _markdown_table(rows, headers):
    cells = [[str(value).replace("|", "\\|") for value in row] for row in [headers, *rows]]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * len(headers))
    return "\n".join(lines)


def rows(task, limit, experiment=None):
    """The task's last `limit` runs plus its champion's run, best primary metric first.

    Args:
        task (tasks.base.Task): the task.
        limit (int): how many of the most recent runs to show.
        experiment (str | None): only runs of this experiment (the champion's run is shown anyway).

    Returns:
        tuple[dict | None, list[dict]]: the champion (as `tracking.champion` describes it) and one dict
        per run with the `RUN_FIELDS` and the task's `key_params` its runs logged (`value` is the test
        primary metric, NaN when the run has none).

    Raises:
        ValueError: `experiment` does not exist.
    """
    import pandas as pd

    from shared import tracking

    shown = tracking.runs(task.name, experiment=experiment, limit=limit)
    best = tracking.champion(task)
    if best is not None and (shown.empty or best["run_id"] not in set(shown["run_id"])):
        shown = pd.concat([frame for frame in (shown, tracking.runs(run_ids=[best["run_id"]])) if not frame.empty])
    if shown.empty:
        return best, []
    metric = f"metrics.test_{task.primary_metric}"
    if metric not in shown:  # only failed runs so far
        shown = shown.assign(**{metric: float("nan")})
    shown = shown.sort_values(metric, ascending=not task.higher_is_better, na_position="last")
    versions = tracking.model_versions(task.name)
    params = [name for name in task.key_params if f"params.{name}" in shown]
    found = []
    for _, run in shown.iterrows():
        seconds = (run["end_time"] - run["start_time"]).total_seconds()
        source = run.get("tags.data_source")  # NaN for a run that failed before logging its data
        values = (
            run["run_id"],
            run["experiment"],
            versions.get(run["run_id"], ""),
            best is not None and run["run_id"] == best["run_id"],
            run["status"],
            source if isinstance(source, str) else "",
            run[metric],
            None if pd.isna(seconds) else round(seconds, 1),
            str(run["start_time"])[:19],
        )
        found.append(
            {
                **dict(zip(RUN_FIELDS, values)),
                **{name: "" if pd.isna(run[f"params.{name}"]) else run[f"params.{name}"] for name in params},
            }
        )
    return best, found


def _figure(value):
    return "" if value is None or math.isnan(value) else f"{value:.4f}"


def command(arguments):
    """Runs `compare` for parsed command-line arguments."""
    if arguments.format not in COMPARE_FORMATS:
        raise ValueError(f"unknown --format '{arguments.format}'; use one of {', '.join(COMPARE_FORMATS)}.")
    if arguments.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {arguments.limit}.")
    names = [arguments.task] if arguments.task else tasks.names()
    where = f"experiment '{arguments.experiment}'" if arguments.experiment else "every experiment"
    writer = None
    for name in names:
        task = tasks.get(name)
        best, found = rows(task, arguments.limit, arguments.experiment)
        metric = f"test_{task.primary_metric}"
        holder = (
            "no champion yet"
            if best is None
            else f"champion: version {best['version']}, run {best['run_id'][:12]}, {metric}="
            f"{_figure(best['value'])}, data {best['data_source']}"
        )
        if not found:  # a champion always brings its run, unless that run was deleted
            print(f"{name}: {holder}; no runs in {where}; train with `python -m pipelines run {name}`", file=sys.stderr)
            continue
        if arguments.format == "csv":
            if writer is None:  # one header for every task, so the output loads as a single table
                params = dict.fromkeys(param for shown in names for param in tasks.get(shown).key_params)
                writer = csv.DictWriter(
                    sys.stdout, ["task", "primary_metric", *RUN_FIELDS, *params], lineterminator="\n"
                )
                writer.writeheader()
            writer.writerows(dict(row, task=name, primary_metric=metric) for row in found)
            continue
        params = [key for key in found[0] if key in task.key_params]
        table = [
            (
                row["run_id"][:12],
                row["experiment"],
                row["version"],
                "*" if row["champion"] else "",
                row["status"],
                row["data_source"],
                _figure(row["value"]),
                "" if row["duration_seconds"] is None else f"{row['duration_seconds']:.0f}s",
                row["started"],
                *[row[param] for param in params],
            )
            for row in found
        ]
        headers = ("run", "experiment", "version", "champion", "status", "data", metric, "duration", "started", *params)
        title = f"### {name}" if arguments.format == "markdown" else f"\n{name}"
        print(
            f"{title}\n\n{holder}; last {arguments.limit} runs of {where} and the champion's, "
            f"sorted by {metric} ({'higher' if task.higher_is_better else 'lower'} is better)\n"
        )
        print((text_table if arguments.format == "text" else _markdown_table)(table, headers))
