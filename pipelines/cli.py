"""`python -m pipelines`: list, run, sweep, predict, export, evaluate, monitor and compare task pipelines.

Heavy libraries (TensorFlow, Keras, MLflow) are imported inside the commands that need them,
so `list` and every `--help` answer in well under three seconds.
"""

import argparse
import json
import math
import os
import sys

import tasks
from pipelines import compare, config as config_module, evaluate, export, monitor, portfolio, predict
from shared.distribution import STRATEGIES
from tasks.base import EVALUATION_SPLITS

TRACEBACK_ENV = "PIPELINES_TRACEBACK"  # set to 1 to see full tracebacks instead of one-line errors


def command_list(arguments):
    rows = []
    for name in tasks.names():
        task = tasks.TASKS[name]
        direction = "higher" if task.higher_is_better else "lower"
        standard = f"tfds:{task.tfds_name}" if task.tfds_name else "none in TFDS"
        rows.append((name, task.config_class.data, standard, f"{task.primary_metric} ({direction})"))
    print(compare.text_table(rows, ("task", "default data", "standard TFDS dataset", "primary metric")))


def _resolve(task, arguments):
    return config_module.resolve(
        task,
        quick=arguments.quick,
        config_file=arguments.config,
        assignments=arguments.set,
        data=arguments.data,
        seed=arguments.seed,
        preset=getattr(arguments, "preset", None),
        init_from=getattr(arguments, "init_from", None),
    )


def command_run(arguments):
    from pipelines import runner
    from shared import distribution, tracking

    tracking.check_policy(arguments.promote)
    if arguments.task == "all" and arguments.init_from:
        raise ValueError("--init-from continues one task's model; name its task instead of `all`.")
    names = tasks.names() if arguments.task == "all" else [arguments.task]
    work = []
    for name in names:  # resolve every config before training anything, so typos fail fast
        task = tasks.get(name)
        work.append((task, _resolve(task, arguments)))
    placement = distribution.setup(
        arguments.strategy, arguments.coordinator, arguments.num_processes, arguments.process_id
    )
    for task, config in work:
        if config.budget_minutes:
            report_portfolio(
                task, portfolio.run(task, config, experiment=arguments.experiment, promote=arguments.promote)
            )
            continue
        result = runner.run(
            task,
            config,
            experiment=arguments.experiment,
            promote=arguments.promote,
            resume=arguments.resume,
            placement=placement,
        )
        if not placement.is_chief:
            print(
                f"{task.name}: process {placement.process_id} of {placement.num_processes} done (process 0 "
                f"logs the run) | weights sha256 {result.weights_sha256}",
                file=sys.stderr,
            )
            continue
        metrics = ", ".join(f"test_{name}={value:.4f}" for name, value in sorted(result.metrics.items()))
        print(
            f"{task.name}: run {result.run_id} | {metrics} | model {result.model_uri} "
            "(predict with `python -m pipelines predict "
            f"{task.name} --model {result.model_uri} INPUT...`)",
            file=sys.stderr,
        )
        print(f"{task.name}: {result.promotion.message}", file=sys.stderr)
        report_verdict(task, result.verdict)


def report_portfolio(task, result):
    """Prints a portfolio's leaderboard, its choice, the promotion and the baselines' verdict on stderr."""
    for row in result.leaderboard:
        figure = f"{result.metric} {row['validation']:.4f}" if "validation" in row else row["state"]
        if math.isfinite(row.get("validation_sd", math.nan)):
            figure += f" +- {row['validation_sd']:.4f} over {portfolio.FOLDS} folds"
        print(f"{task.name}: candidate {row['candidate']}: {figure} {row['settings']}", file=sys.stderr)
    metrics = ", ".join(f"test_{name}={value:.4f}" for name, value in sorted(result.metrics.items()))
    print(
        f"{task.name}: portfolio run {result.run_id} | chose {result.chosen} ({result.metric}="
        f"{result.validation:.4f}) | {metrics} | model {result.model_uri}",
        file=sys.stderr,
    )
    print(f"{task.name}: {result.promotion.message}", file=sys.stderr)
    report_verdict(task, result.verdict)


def report_verdict(task, verdict):
    """Prints the model's figure against its baselines and any warning they raise, one line each, on stderr."""
    if verdict is None:
        return
    if verdict.summary:
        print(f"{task.name}: {verdict.summary}", file=sys.stderr)
    for line in verdict.warnings:
        print(f"{task.name}: warning: {line}", file=sys.stderr)


def command_sweep(arguments):
    from pipelines import sweep

    task = tasks.get(arguments.task)
    config = _resolve(task, arguments)
    result = sweep.sweep(
        task,
        config,
        arguments.trials,
        experiment=arguments.experiment,
        promote=arguments.promote,
        storage=arguments.storage,
        study_name=arguments.study,
        heartbeat=arguments.heartbeat,
    )
    metrics = ", ".join(f"test_{name}={value:.4f}" for name, value in sorted(result.metrics.items()))
    print(
        f"{task.name}: sweep run {result.run_id} | best trial {result.best_trial} "
        f"({task.watched(config)}={result.best_value:.4f}, {result.failed} failed) "
        f"{json.dumps(result.best_params)} | "
        f"{metrics} | model {result.model_uri or 'registered by worker ' + result.registrar}",
        file=sys.stderr,
    )
    if result.promotion is None:  # another worker of the shared study registers (or registered) the best model
        return
    print(f"{task.name}: {result.promotion.message}", file=sys.stderr)
    report_verdict(task, result.verdict)


def _config_options(command):
    command.add_argument("--data", help="embedded (default), tfds:NAME[:SPLIT], or a path to your files")
    command.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (repeatable), e.g. --set epochs=5",
    )
    command.add_argument("--config", metavar="FILE.yaml", help="YAML mapping of config overrides")
    command.add_argument("--experiment", help="MLflow experiment name (default: the task name)")
    command.add_argument("--seed", type=int, help="seed for splits, weights, shuffling and augmentation")
    command.add_argument("--quick", action="store_true", help="tiny budget for a smoke run")


def _model_option(command):
    command.add_argument(
        "--model",
        required=True,
        metavar="URI",
        help="models:/NAME/latest, models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/model",
    )


def _trust_option(command):
    command.add_argument(
        "--trust-model-code",
        action="store_true",
        help="load the model even if its Keras file carries Python code (a Lambda layer), which "
        "runs on loading; only for models from a source you trust "
        "(same as PIPELINES_TRUST_MODEL_CODE=1)",
    )


def _promote_option(command):
    command.add_argument(
        "--promote",
        default="if-better",
        metavar="POLICY",
        help="give the new version the `champion` alias: if-better (default; beats the champion "
        "trained on the same data source, or there is none), always or never",
    )


def parser():
    top = argparse.ArgumentParser(
        # usage lines name the command the user typed: the console script or the module
        prog="keras-pipelines" if os.path.basename(sys.argv[0]) == "keras-pipelines" else "python -m pipelines",
        description="Train, evaluate, log and reuse Keras pipelines for every task of `list`, tracked in MLflow.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list tasks, their default data and primary metric")
    listing.set_defaults(handler=command_list)

    running = commands.add_parser(
        "run",
        help="train, evaluate, log and register a task",
        description="Train, evaluate and log TASK to MLflow, then register its model as TASK.",
    )
    running.add_argument("task", metavar="TASK", help="a task name from `list`, or `all`")
    _config_options(running)
    running.add_argument(
        "--preset",
        metavar="NAME",
        help=f"a named budget: {', '.join(portfolio.PRESETS)} (fast: the config alone; the others try "
        "the task's portfolio of configurations and keep validation's choice; see "
        "docs/sweeps_and_scaling.md)",
    )
    _promote_option(running)
    running.add_argument(
        "--init-from",
        metavar="URI",
        help="continue training a logged model (models:/TASK@champion, models:/TASK/VERSION, runs:/RUN_ID/model or "
        "a model folder) on --data: its weights, preprocessing and settings kept, --set replay_fraction=F mixing in "
        "F of its training examples per new one; see docs/commands.md#continued-training",
    )
    running.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run with the same settings from its last completed epoch, "
        "in the same MLflow run (without it, a leftover backup is deleted)",
    )
    running.add_argument(
        "--strategy",
        default="none",
        choices=STRATEGIES,
        help="mirrored: every local GPU (TensorFlow backend); data_parallel: every device of "
        "every process (JAX backend)",
    )
    running.add_argument("--coordinator", metavar="HOST:PORT", help="data_parallel: address of process 0")
    running.add_argument("--num-processes", type=int, metavar="N", help="data_parallel: processes taking part")
    running.add_argument("--process-id", type=int, metavar="I", help="data_parallel: this process, 0 to N-1")
    running.set_defaults(handler=command_run)

    sweeping = commands.add_parser(
        "sweep",
        help="tune a task's config with Optuna and register the best model",
        description="Train TASK with --trials configs drawn from its `search_space` (each a nested MLflow run "
        "under one sweep run), pick the best validation value, and register that trial's model.",
    )
    sweeping.add_argument("task", metavar="TASK", help="a task name from `list`")
    sweeping.add_argument(
        "--trials", type=int, help="configs to train (default 20; a worker joining a study may leave it out)"
    )
    sweeping.add_argument(
        "--storage",
        metavar="PATH|URL",
        help="share the study with every process started with the same --storage and --study: a journal file on "
        "a shared file system, or a postgresql:// or mysql:// URL (see docs/sweeps_and_scaling.md)",
    )
    sweeping.add_argument("--study", metavar="NAME", help="the shared study's name, with --storage")
    sweeping.add_argument(
        "--heartbeat",
        type=int,
        metavar="SECONDS",
        help="with --storage: a running trial records it is alive this often (default 60); one silent for twice "
        "as long is failed and its config retried",
    )
    _config_options(sweeping)
    _promote_option(sweeping)
    sweeping.set_defaults(handler=command_sweep)

    predicting = commands.add_parser(
        "predict",
        help="predict raw inputs, folders or tables with a logged model, in batches",
        description="Answer every input with a model from MLflow: one JSON object per input on stdout, or one "
        "row per input in --output. Exit code 0: all answered; 1: some rows hold an `error`; "
        "2: nothing predicted (the error is printed).",
    )
    predicting.add_argument("task", metavar="TASK")
    _model_option(predicting)
    predicting.add_argument(
        "--output",
        metavar="FILE.csv|FILE.jsonl",
        help="write one row per input here (an `error` column for inputs that failed) instead of printing JSON lines",
    )
    predicting.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="inputs per model call (default 64)"
    )
    predicting.add_argument(
        "--explain",
        action="store_true",
        help="add an `explanation` to each answer: feature weights (tables), top sensors and time steps "
        "(sequences), a heatmap PNG (images, spectrograms); see docs/evaluation.md#explanations",
    )
    predicting.add_argument(
        "--explain-dir",
        metavar="FOLDER",
        help="where --explain writes its PNGs (default: beside --output as OUTPUT-explanations/, else explanations/)",
    )
    _trust_option(predicting)
    predicting.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="raw inputs (an image file, a sentence, a JSON row...), folders (every input file "
        "inside) or tables FILE.csv|.tsv|.jsonl|.parquet[:COLUMN] (an input per row)",
    )
    predicting.set_defaults(handler=predict.command)

    exporting = commands.add_parser(
        "export",
        help="export a logged model for TF Serving, TFLite (LiteRT) or ONNX runtimes",
        description="Write the model at --model as a SavedModel (raw inputs where the task's preprocessing is "
        "TensorFlow), a TFLite file or an ONNX file, check it answers like the logged model, log it "
        "to the model's run (exports/FORMAT/) and print one JSON line.",
    )
    exporting.add_argument("task", metavar="TASK")
    _model_option(exporting)
    exporting.add_argument("--format", required=True, metavar="FORMAT", help="saved_model, tflite or onnx")
    exporting.add_argument("--output", required=True, metavar="DIR", help="a new or empty folder for the export")
    exporting.add_argument(
        "--quantize",
        metavar="MODE",
        help="tflite only: float16 (float16 weights), int8 (weights and activations, calibrated on the model's "
        "training examples; int8 inputs and outputs where they are float; falls back to dynamic with a warning "
        "when an operator has no integer kernel) or dynamic (int8 weights, float activations); judged by the "
        "primary test metric on the model's own test split instead of the parity tolerance",
    )
    exporting.add_argument(
        "--max-metric-drop",
        type=float,
        metavar="FRACTION",
        help="with --quantize: the largest loss of the primary test metric, as a fraction of the Keras model's, "
        f"that the export may show (default {export.quantize.MAX_METRIC_DROP:g}); a larger loss fails the export "
        "and keeps nothing",
    )
    exporting.set_defaults(handler=export.command)

    evaluating = commands.add_parser(
        "evaluate",
        help="score a trained model on labelled data with the task's test metrics, logged to MLflow",
        description="Read --data with TASK's loaders and the model's own preprocessing (nothing is re-fitted), "
        "compute the task's test metrics and plots, log them to a new run tagged evaluation_of=URI "
        "(eval_<metric>) and print one JSON line. The registry and the champion are not changed.",
    )
    evaluating.add_argument("task", metavar="TASK")
    _model_option(evaluating)
    evaluating.add_argument(
        "--data",
        required=True,
        metavar="SOURCE",
        help="labelled data in any format `run --data` reads: a path, tfds:NAME[:SPLIT] or embedded",
    )
    evaluating.add_argument(
        "--split",
        default="all",
        metavar="SPLIT",
        help=f"{', '.join(EVALUATION_SPLITS)}: all of SOURCE (default), or the split `run` carves "
        "from it with the model's seed and fractions (test: its own test set, on its "
        "training data)",
    )
    evaluating.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of the model's logged config for reading SOURCE (repeatable), e.g. --set target=label",
    )
    evaluating.add_argument("--experiment", help="MLflow experiment of the evaluation run (default: the task name)")
    _trust_option(evaluating)
    evaluating.set_defaults(handler=evaluate.command)

    monitoring = commands.add_parser(
        "monitor",
        help="compare recent inputs with a model's training data and exit 1 on drift",
        description="Describe recent inputs (any INPUT form `predict` takes) as the model sees them and test them "
        "against statistics of its training data saved with it: PSI and KS per table column, unknown-token rate "
        "and length for text, per-band levels for audio, embedding MMD and pixel statistics for images, unknown "
        "users and item popularity for recommendations. Prints one JSON line, writes a report, logs a run tagged "
        "monitor_of=URI. Exit code 0: no drift; 1: drift; 2: nothing compared (the error is printed).",
    )
    monitoring.add_argument("task", metavar="TASK")
    _model_option(monitoring)
    monitoring.add_argument(
        "--data",
        required=True,
        nargs="+",
        metavar="INPUT",
        help="the recent inputs: files, folders (every input file inside) or tables "
        "FILE.csv|.tsv|.jsonl|.parquet[:COLUMN] (an input per row, e.g. a log of served requests)",
    )
    monitoring.add_argument(
        "--reference",
        default="training",
        metavar="training|SOURCE",
        help="training (default): the statistics saved with the model; or a data source as `run --data` takes it, "
        f"from up to {monitor.REFERENCE_EXAMPLES} examples of which they are computed instead (for models saved "
        "without them)",
    )
    monitoring.add_argument(
        "--output", metavar="DIR", help="write report.md and its plots/ here (default: only logged to the run)"
    )
    monitoring.add_argument("--experiment", help="MLflow experiment of the monitoring run (default: the task name)")
    _trust_option(monitoring)
    monitoring.set_defaults(handler=monitor.command)

    comparing = commands.add_parser(
        "compare",
        help="each task's champion and recent runs from every experiment, sorted by its primary metric",
        description="Show, per task, the champion model version and the last runs (found by their task tag in "
        "every experiment) with their experiment, primary test metric, data source, duration and "
        "key params.",
    )
    comparing.add_argument("task", nargs="?", metavar="TASK", help="one task (default: all)")
    comparing.add_argument(
        "--experiment", metavar="NAME", help="only runs of this experiment (the champion's run is shown anyway)"
    )
    comparing.add_argument("--limit", type=int, default=20, help="most recent runs shown per task (default 20)")
    comparing.add_argument(
        "--format",
        default="text",
        metavar="FORMAT",
        help="text (aligned table, default), markdown (GitHub tables) or csv (one table on stdout)",
    )
    comparing.set_defaults(handler=compare.command)
    return top


def main(argv=None):
    arguments = parser().parse_args(argv)
    try:
        return arguments.handler(arguments) or 0
    except (ValueError, FileNotFoundError) as error:
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(error_line(error), file=sys.stderr)
        return 2


def error_line(error):
    """Returns:
    str: the one line the CLI prints for `error`, its line breaks escaped (a file name may hold them).
    """
    return "error: " + str(error).replace("\r", "\\r").replace("\n", "\\n")
