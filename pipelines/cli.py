"""`python -m pipelines`: list, run, sweep, predict, export and compare task pipelines.

Heavy libraries (TensorFlow, Keras, MLflow) are imported inside the commands that need them,
so `list` and every `--help` answer in well under three seconds.
"""

import argparse
import csv
import json
import math
import os
import sys

import tasks
from pipelines import config as config_module, export
from shared.distribution import STRATEGIES

TRACEBACK_ENV = "PIPELINES_TRACEBACK"  # set to 1 to see full tracebacks instead of one-line errors


def _table(rows, headers):
    widths = [max(len(str(value)) for value in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(value).ljust(width) for value, width in zip(row, widths)) for row in [headers, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def command_list(arguments):
    rows = []
    for name in tasks.names():
        task = tasks.TASKS[name]
        direction = "higher" if task.higher_is_better else "lower"
        standard = f"tfds:{task.tfds_name}" if task.tfds_name else "none in TFDS"
        rows.append((name, task.config_class.data, standard, f"{task.primary_metric} ({direction})"))
    print(_table(rows, ("task", "default data", "standard TFDS dataset", "primary metric")))


def _resolve(task, arguments):
    return config_module.resolve(
        task, quick=arguments.quick, config_file=arguments.config, assignments=arguments.set,
        data=arguments.data, seed=arguments.seed,
    )


def command_run(arguments):
    from pipelines import runner
    from shared import distribution, tracking

    tracking.check_policy(arguments.promote)
    names = tasks.names() if arguments.task == "all" else [arguments.task]
    work = []
    for name in names:  # resolve every config before training anything, so typos fail fast
        task = tasks.get(name)
        work.append((task, _resolve(task, arguments)))
    placement = distribution.setup(arguments.strategy, arguments.coordinator, arguments.num_processes,
                                   arguments.process_id)
    for task, config in work:
        result = runner.run(task, config, experiment=arguments.experiment, promote=arguments.promote,
                            resume=arguments.resume, placement=placement)
        if not placement.is_chief:
            print(f"{task.name}: process {placement.process_id} of {placement.num_processes} done (process 0 "
                  f"logs the run) | weights sha256 {result.weights_sha256}", file=sys.stderr)
            continue
        metrics = ", ".join(f"test_{name}={value:.4f}" for name, value in sorted(result.metrics.items()))
        print(f"{task.name}: run {result.run_id} | {metrics} | model {result.model_uri} "
              "(predict with `python -m pipelines predict "
              f"{task.name} --model {result.model_uri} INPUT...`)", file=sys.stderr)
        print(f"{task.name}: {result.promotion.message}", file=sys.stderr)


def command_sweep(arguments):
    from pipelines import sweep

    task = tasks.get(arguments.task)
    config = _resolve(task, arguments)
    result = sweep.sweep(task, config, arguments.trials, experiment=arguments.experiment, promote=arguments.promote)
    metrics = ", ".join(f"test_{name}={value:.4f}" for name, value in sorted(result.metrics.items()))
    print(f"{task.name}: sweep run {result.run_id} | best trial {result.best_trial} "
          f"({task.watched(config)}={result.best_value:.4f}, {result.failed} failed) {json.dumps(result.best_params)} | "
          f"{metrics} | model {result.model_uri}", file=sys.stderr)
    print(f"{task.name}: {result.promotion.message}", file=sys.stderr)


def command_predict(arguments):
    import pandas as pd

    from shared import tracking

    task = tasks.get(arguments.task)
    if arguments.trust_model_code:
        os.environ[tracking.TRUST_CODE_ENV] = "1"
    model = tracking.load(arguments.model)
    pairs = task.cli_inputs(arguments.inputs)
    answers = model.predict(pd.DataFrame({task.input_column: [raw for _, raw in pairs]}))
    for (shown, _), answer in zip(pairs, answers):
        print(json.dumps({"input": shown, **answer}))


COMPARE_FORMATS = ("text", "markdown", "csv")
RUN_FIELDS = ("run_id", "version", "champion", "status", "data_source", "value", "duration_seconds", "started")
# The settings that most often explain why two runs differ; each task shows those its config has.
KEY_PARAMS = ("epochs", "batch_size", "learning_rate", "architecture", "model", "backbone", "encoder", "features",
              "mode", "decoding")


def _markdown_table(rows, headers):
    cells = [[str(value).replace("|", "\\|") for value in row] for row in [headers, *rows]]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * len(headers))
    return "\n".join(lines)


def _compare_rows(task, limit):
    """The task's last `limit` runs plus its champion's run, best primary metric first.

    Args:
        task (tasks.base.Task): the task.
        limit (int): how many of the most recent runs to show.

    Returns:
        tuple[dict | None, list[dict]]: the champion (as `tracking.champion` describes it) and one dict
        per run with the `RUN_FIELDS` and the key params the task's config has (`value` is the test
        primary metric, NaN when the run has none).
    """
    import pandas as pd

    from shared import tracking

    frame = tracking.runs([task.name])
    best = tracking.champion(task)
    if frame.empty:
        return best, []
    shown = frame.head(limit)
    if best is not None and best["run_id"] not in set(shown["run_id"]):
        shown = pd.concat([shown, frame[frame["run_id"] == best["run_id"]]])
    metric = f"metrics.test_{task.primary_metric}"
    if metric not in shown:  # only failed runs so far
        shown = shown.assign(**{metric: float("nan")})
    shown = shown.sort_values(metric, ascending=not task.higher_is_better, na_position="last")
    versions = tracking.model_versions(task.name)
    params = [name for name in KEY_PARAMS if f"params.{name}" in shown]
    rows = []
    for _, run in shown.iterrows():
        seconds = (run["end_time"] - run["start_time"]).total_seconds()
        source = run.get("tags.data_source")  # NaN for a run that failed before logging its data
        values = (run["run_id"], versions.get(run["run_id"], ""), best is not None and run["run_id"] == best["run_id"],
                  run["status"], source if isinstance(source, str) else "", run[metric],
                  None if pd.isna(seconds) else round(seconds, 1), str(run["start_time"])[:19])
        rows.append({**dict(zip(RUN_FIELDS, values)),
                     **{name: "" if pd.isna(run[f"params.{name}"]) else run[f"params.{name}"] for name in params}})
    return best, rows


def _figure(value):
    return "" if value is None or math.isnan(value) else f"{value:.4f}"


def command_compare(arguments):
    if arguments.format not in COMPARE_FORMATS:
        raise ValueError(f"unknown --format '{arguments.format}'; use one of {', '.join(COMPARE_FORMATS)}.")
    if arguments.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {arguments.limit}.")
    names = [arguments.task] if arguments.task else tasks.names()
    writer = None
    for name in names:
        task = tasks.get(name)
        best, rows = _compare_rows(task, arguments.limit)
        metric = f"test_{task.primary_metric}"
        if not rows:
            print(f"{name}: no runs yet; train with `python -m pipelines run {name}`", file=sys.stderr)
            continue
        if arguments.format == "csv":
            if writer is None:  # one header for every task, so the output loads as a single table
                writer = csv.DictWriter(sys.stdout, ["task", "primary_metric", *RUN_FIELDS, *KEY_PARAMS],
                                        lineterminator="\n")
                writer.writeheader()
            writer.writerows(dict(row, task=name, primary_metric=metric) for row in rows)
            continue
        params = [key for key in rows[0] if key in KEY_PARAMS]
        table = [(row["run_id"][:12], row["version"], "*" if row["champion"] else "", row["status"],
                  row["data_source"], _figure(row["value"]),
                  "" if row["duration_seconds"] is None else f"{row['duration_seconds']:.0f}s", row["started"],
                  *[row[param] for param in params]) for row in rows]
        headers = ("run", "version", "champion", "status", "data", metric, "duration", "started", *params)
        holder = ("no champion yet" if best is None else
                  f"champion: version {best['version']}, run {best['run_id'][:12]}, {metric}="
                  f"{_figure(best['value'])}, data {best['data_source']}")
        title = f"### {name}" if arguments.format == "markdown" else f"\n{name}"
        print(f"{title}\n\n{holder}; last {arguments.limit} runs and the champion's, "
              f"sorted by {metric} ({'higher' if task.higher_is_better else 'lower'} is better)\n")
        print((_table if arguments.format == "text" else _markdown_table)(table, headers))


def _config_options(command):
    command.add_argument("--data", help="embedded (default), tfds:NAME[:SPLIT], or a path to your files")
    command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config value (repeatable), e.g. --set epochs=5")
    command.add_argument("--config", metavar="FILE.yaml", help="YAML mapping of config overrides")
    command.add_argument("--experiment", help="MLflow experiment name (default: the task name)")
    command.add_argument("--seed", type=int, help="seed for splits, weights, shuffling and augmentation")
    command.add_argument("--quick", action="store_true", help="tiny budget for a smoke run")


def _promote_option(command):
    command.add_argument("--promote", default="if-better", metavar="POLICY",
                         help="give the new version the `champion` alias: if-better (default; beats the champion "
                              "trained on the same data source, or there is none), always or never")


def parser():
    top = argparse.ArgumentParser(
        prog="python -m pipelines",
        description="Train, evaluate, log and reuse Keras pipelines for every task of `list`, tracked in MLflow.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list tasks, their default data and primary metric")
    listing.set_defaults(handler=command_list)

    running = commands.add_parser(
        "run", help="train, evaluate, log and register a task",
        description="Train, evaluate and log TASK to MLflow, then register its model as TASK.",
    )
    running.add_argument("task", metavar="TASK", help="a task name from `list`, or `all`")
    _config_options(running)
    _promote_option(running)
    running.add_argument("--resume", action="store_true",
                         help="continue an interrupted run with the same settings from its last completed epoch, "
                              "in the same MLflow run (without it, a leftover backup is deleted)")
    running.add_argument("--strategy", default="none", choices=STRATEGIES,
                         help="mirrored: every local GPU (TensorFlow backend); data_parallel: every device of "
                              "every process (JAX backend)")
    running.add_argument("--coordinator", metavar="HOST:PORT", help="data_parallel: address of process 0")
    running.add_argument("--num-processes", type=int, metavar="N", help="data_parallel: processes taking part")
    running.add_argument("--process-id", type=int, metavar="I", help="data_parallel: this process, 0 to N-1")
    running.set_defaults(handler=command_run)

    sweeping = commands.add_parser(
        "sweep", help="tune a task's config with Optuna and register the best model",
        description="Train TASK with --trials configs drawn from its `search_space` (each a nested MLflow run "
                    "under one sweep run), pick the best validation value, and register that trial's model.",
    )
    sweeping.add_argument("task", metavar="TASK", help="a task name from `list`")
    sweeping.add_argument("--trials", type=int, default=20, help="configs to train (default 20)")
    _config_options(sweeping)
    _promote_option(sweeping)
    sweeping.set_defaults(handler=command_sweep)

    predicting = commands.add_parser(
        "predict", help="predict raw inputs with a logged model",
        description="Print one JSON object per input, using a model from MLflow.",
    )
    predicting.add_argument("task", metavar="TASK")
    predicting.add_argument("--model", required=True, metavar="URI",
                            help="models:/NAME/latest, models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/model")
    predicting.add_argument("--trust-model-code", action="store_true",
                            help="load the model even if its Keras file carries Python code (a Lambda layer), "
                                 "which runs on loading; only for models from a source you trust "
                                 "(same as PIPELINES_TRUST_MODEL_CODE=1)")
    predicting.add_argument("inputs", nargs="+", metavar="INPUT", help="raw inputs, e.g. image files")
    predicting.set_defaults(handler=command_predict)

    export.add_parser(commands)

    comparing = commands.add_parser(
        "compare", help="each task's champion and recent runs, sorted by its primary metric",
        description="Show, per task, the champion model version and the last runs with their primary test "
                    "metric, data source, duration and key params.",
    )
    comparing.add_argument("task", nargs="?", metavar="TASK", help="one task (default: all)")
    comparing.add_argument("--limit", type=int, default=20, help="most recent runs shown per task (default 20)")
    comparing.add_argument("--format", default="text", metavar="FORMAT",
                           help="text (aligned table, default), markdown (GitHub tables) or csv (one table on stdout)")
    comparing.set_defaults(handler=command_compare)
    return top


def main(argv=None):
    arguments = parser().parse_args(argv)
    try:
        arguments.handler(arguments)
    except (ValueError, FileNotFoundError) as error:
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
