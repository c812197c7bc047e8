"""`python -m pipelines evaluate`: a trained model scored on labelled data, as training scored its test split.

The model (any URI `predict` takes) brings its `info.json` (class names, vocabularies, statistics, thresholds)
and its run's config; SOURCE is read with the task's own loaders and that config (the user's `--set` on top,
checked before anything is read), in the model's terms: nothing is fitted on the new data
(`Task.evaluation_data`). The task's own `evaluate`, the code training uses, computes the metrics and plots;
they go to a new MLflow run tagged `evaluation_of=MODEL_URI` as `eval_<metric>`, and to stdout as one JSON
line. The registry and the champion are never touched.

A class the model does not know in SOURCE is an error naming it: the model cannot be right on it, and
scoring it as always wrong would hide the mismatch in a lower figure.
"""

import json
import os
import sys

import tasks
from pipelines import config as config_module


def command(arguments):
    """Runs `evaluate` for parsed command-line arguments and prints its JSON line."""
    from shared import tracking

    task = tasks.get(arguments.task)
    result = evaluate(
        task,
        arguments.model,
        arguments.data,
        split=arguments.split,
        assignments=arguments.set,
        experiment=arguments.experiment,
        trust_model_code=arguments.trust_model_code,
    )
    print(json.dumps(result))
    metric = result["metrics"].get(task.primary_metric)
    figure = "" if metric is None else f" | eval_{task.primary_metric}={metric:.4f}"
    print(
        f"{arguments.task}: evaluated {arguments.model} on {arguments.data} ({result['examples']} examples)"
        f"{figure} | run {result['run_id']} in {tracking.tracking_uri()}",
        file=sys.stderr,
    )


def evaluate(task, model_uri, source, split="all", assignments=(), experiment=None, trust_model_code=False):
    """Scores a logged model on labelled data and logs the evaluation run.

    Args:
        task (tasks.base.Task): the model's task.
        model_uri (str): any URI `predict` takes.
        source (str): the data, as `run --data` takes it.
        split (str): one of `EVALUATION_SPLITS` (see `Task.evaluation_data`).
        assignments (Iterable[str]): `key=value` overrides of the model's logged config.
        experiment (str | None): MLflow experiment; default the task's name.
        trust_model_code (bool): load a Keras file that carries Python code.

    Returns:
        dict: `task`, `model`, `data`, `split`, `examples`, `metrics` (by the task's metric names) and `run_id`.

    Raises:
        ValueError: a bad model URI, a model of another task, a bad setting or source; raised before the
            evaluation run starts, so none is left behind.
    """
    from pipelines import runner, serving_model  # imports mlflow: the CLI's --help must not wait for it
    from shared import tracking

    if trust_model_code:
        os.environ[tracking.TRUST_CODE_ENV] = "1"
    logged = tracking.logged_model(model_uri, task)
    # max_examples caps training data only; every example of the source is scored unless --set says otherwise
    config = config_module.resolve(
        task, base=tracking.run_config(logged.run_id), assignments=assignments, data=source, max_examples=0
    )
    registered = tracking.registered_version(model_uri)
    splits = task.evaluation_data(config, logged.info, split)  # before the run: a data error leaves no run
    tags = {"evaluation_of": model_uri, "evaluated_run_id": logged.run_id, "evaluation_split": split}
    if registered:
        tags.update(evaluated_model_name=registered[0], evaluated_model_version=registered[1])
    run_name = "-".join(
        ["evaluate", task.name, f"v{registered[1]}" if registered else logged.run_id[:8], tracking.short_source(source)]
    )
    with tracking.run(task, config_module.flatten(config), experiment, run_name=run_name, tags=tags) as active:
        predictor = serving_model.BatchPredictor(logged.model)
        evaluation = task.evaluate(predictor, splits, config)
        runner.calibrate(task, predictor, splits, config, evaluation)
        runner.robustness(task, predictor, splits, config, evaluation)
        runner.explain(task, predictor, splits, config, evaluation)
        runner.slice_metrics(task, predictor, splits, config, evaluation)  # a gap only reports here: nothing to promote
        tracking.log_model_evaluation(evaluation, splits, logged.model_id)
    return {
        "task": task.name,
        "model": model_uri,
        "data": source,
        "split": split,
        "examples": len(splits.test),
        "metrics": {name: float(value) for name, value in evaluation.metrics.items()},
        "run_id": active.info.run_id,
    }
