"""`python -m pipelines`: list, run, sweep, predict and compare task pipelines.

Heavy libraries (TensorFlow, Keras, MLflow) are imported inside the commands that need them,
so `list` and every `--help` answer in well under three seconds.
"""

import argparse
import json
import os
import sys

import tasks
from pipelines import config as config_module

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

    names = tasks.names() if arguments.task == "all" else [arguments.task]
    work = []
    for name in names:  # resolve every config before training anything, so typos fail fast
        task = tasks.get(name)
        work.append((task, _resolve(task, arguments)))
    for task, config in work:
        result = runner.run(task, config, experiment=arguments.experiment)
        metrics = ", ".join(f"test_{name}={value:.4f}" for name, value in sorted(result.metrics.items()))
        print(f"{task.name}: run {result.run_id} | {metrics} | model {result.model_uri} "
              "(predict with `python -m pipelines predict "
              f"{task.name} --model {result.model_uri} INPUT...`)", file=sys.stderr)


def command_sweep(arguments):
    from pipelines import sweep

    task = tasks.get(arguments.task)
    result = sweep.sweep(task, _resolve(task, arguments), arguments.trials, experiment=arguments.experiment)
    metrics = ", ".join(f"test_{name}={value:.4f}" for name, value in sorted(result.metrics.items()))
    print(f"{task.name}: sweep run {result.run_id} | best trial {result.best_trial} "
          f"({task.monitor}={result.best_value:.4f}, {result.failed} failed) {json.dumps(result.best_params)} | "
          f"{metrics} | model {result.model_uri}", file=sys.stderr)


def command_predict(arguments):
    import pandas as pd

    from shared import tracking

    task = tasks.get(arguments.task)
    model = tracking.load(arguments.model)
    pairs = task.cli_inputs(arguments.inputs)
    answers = model.predict(pd.DataFrame({task.input_column: [raw for _, raw in pairs]}))
    for (shown, _), answer in zip(pairs, answers):
        print(json.dumps({"input": shown, **answer}))


def command_compare(arguments):
    from shared import tracking

    names = [arguments.task] if arguments.task else tasks.names()
    for name in names:
        task = tasks.get(name)
        frame = tracking.runs([name])
        metric = f"metrics.test_{task.primary_metric}"
        if frame.empty or metric not in frame:
            print(f"{name}: no finished runs with {metric.removeprefix('metrics.')}", file=sys.stderr)
            continue
        frame = frame.sort_values(metric, ascending=not task.higher_is_better, na_position="last")
        seconds = (frame["end_time"] - frame["start_time"]).dt.total_seconds()
        rows = [
            (row.run_id[:12], row.status, row.get("tags.data_source", ""), f"{row[metric]:.4f}",
             f"{duration:.0f}s", str(row["start_time"])[:19])
            for (_, row), duration in zip(frame.head(arguments.limit).iterrows(), seconds)
        ]
        print(f"\n{name} (sorted by test_{task.primary_metric}, "
              f"{'higher' if task.higher_is_better else 'lower'} is better)")
        print(_table(rows, ("run", "status", "data", f"test_{task.primary_metric}", "duration", "started")))


def _config_options(command):
    command.add_argument("--data", help="embedded (default), tfds:NAME[:SPLIT], or a path to your files")
    command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config value (repeatable), e.g. --set epochs=5")
    command.add_argument("--config", metavar="FILE.yaml", help="YAML mapping of config overrides")
    command.add_argument("--experiment", help="MLflow experiment name (default: the task name)")
    command.add_argument("--seed", type=int, help="seed for splits, weights, shuffling and augmentation")
    command.add_argument("--quick", action="store_true", help="tiny budget for a smoke run")


def parser():
    top = argparse.ArgumentParser(
        prog="python -m pipelines",
        description="Train, evaluate, log and reuse Keras pipelines for nine domains, tracked in MLflow.",
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
    running.set_defaults(handler=command_run)

    sweeping = commands.add_parser(
        "sweep", help="tune a task's config with Optuna and register the best model",
        description="Train TASK with --trials configs drawn from its `search_space` (each a nested MLflow run "
                    "under one sweep run), pick the best validation value, and register that trial's model.",
    )
    sweeping.add_argument("task", metavar="TASK", help="a task name from `list`")
    sweeping.add_argument("--trials", type=int, default=20, help="configs to train (default 20)")
    _config_options(sweeping)
    sweeping.set_defaults(handler=command_sweep)

    predicting = commands.add_parser(
        "predict", help="predict raw inputs with a logged model",
        description="Print one JSON object per input, using a model from MLflow.",
    )
    predicting.add_argument("task", metavar="TASK")
    predicting.add_argument("--model", required=True, metavar="URI",
                            help="models:/NAME/latest, models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/model")
    predicting.add_argument("inputs", nargs="+", metavar="INPUT", help="raw inputs, e.g. image files")
    predicting.set_defaults(handler=command_predict)

    comparing = commands.add_parser("compare", help="table of runs sorted by the task's primary metric")
    comparing.add_argument("task", nargs="?", metavar="TASK", help="one task (default: all)")
    comparing.add_argument("--limit", type=int, default=20, help="runs shown per task")
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
