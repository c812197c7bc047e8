"""Continued training (`run TASK --init-from URI --data NEW`): a logged model trained further on new data.

The run starts from the logged model's weights (its temperature, folded into the output layer for serving, taken
out again) and keeps its fitted preprocessing: the model's `Splits.info` (class names, vocabularies, statistics)
reads the new data through `Task.load_continued`, so nothing is fitted on it; a class the model does not know, or a
column it was not trained on, stops the run before it starts, and words it never saw map to its out-of-vocabulary
id as `predict` maps them. Settings resolve over the model's logged config (`pipelines.config.resolve`), and a
setting that would build another architecture stops the run too, named: weights only carry over to the same layers.

The model's own run says where its examples came from (its config, and the file its dataset inputs name) and what
they were (their digests): when that data is still readable and unchanged, `replay_fraction` mixes a seeded sample
of its training examples into the new training split, and the new model is scored on the old test split, logged as
`forgetting_<primary metric>` (the old model's figure there minus the new one's) beside `init_test_<primary
metric>` (the new one's). Data that is gone or changed skips either with a one-line warning and a tag saying why.
"""

import dataclasses
import warnings

from pipelines import config as config_module


@dataclasses.dataclass
class Start:
    """What a continued run starts from.

    Attributes:
        splits (tasks.base.Splits): the new data in the model's terms (its `info`), training capped to
            `max_examples` and the replayed examples mixed in.
        model (keras.Model): the init model, its temperature unfolded: the weights training starts from.
        run_id (str): the run that logged the init model.
        tags (dict[str, str]): lineage and what was skipped, logged on the run.
        model_id (str): the init model's MLflow 3 LoggedModel id (empty before MLflow 3).
        previous_test (tasks.base.Split | None): the init model's own test split, unchanged since; None when gone.
        previous (dict): the init run's `test_set_digest` and its `value` of the primary test metric.
    """

    splits: object
    model: object
    run_id: str
    tags: dict
    model_id: str = ""
    previous_test: object = None
    previous: dict = dataclasses.field(default_factory=dict)


def logged_config(task, uri):
    """The config a logged model was trained with, the base a continued run's settings resolve over.

    A portfolio's budget is left out: it chose this model among others, and continuing trains this one.

    Raises:
        ValueError: nothing at `uri`, a model of another task, or a run that logged no config.
    """
    from shared import tracking

    logged = tracking.logged_model(uri, task)
    return {**tracking.run_config(logged.run_id), "budget_minutes": 0.0}


def start(task, config):
    """Loads the init model and the run's data in its terms, before the run's MLflow run is created (so that an
    incompatible model or data leaves no run behind).

    Args:
        task (tasks.base.Task): the task.
        config (tasks.base.TaskConfig): the resolved config; `init_from` names the model.

    Returns:
        Start

    Raises:
        ValueError: a bad URI or a model of another task, a setting that changes its architecture, or new data it
            cannot read without new preprocessing (`Task.load_continued`), each in one line.
    """
    from shared import temperature, tracking
    from shared.data import examples

    logged = tracking.logged_model(config.init_from, task)
    splits = task.load_continued(config, logged.info)
    # the model's fitted preprocessing; its temperature is unfolded from the weights below and fitted anew
    splits.info = logged.info.updated({"temperature": None})
    _check_architecture(task, config, logged)
    if logged.info.temperature not in (None, 1.0):
        temperature.fold(temperature.output_layers(logged.model), 1.0 / logged.info.temperature)
    splits.train = splits.train.cap(config.max_examples, config.seed)
    found = Start(splits, logged.model, logged.run_id, {"init_run_id": logged.run_id}, logged.model_id)
    registered = tracking.registered_version(config.init_from)
    if registered:
        found.tags.update(init_model_name=registered[0], init_model_version=registered[1])
    run = tracking.logged_run(logged.run_id)
    original, reason = _original(task, logged, run)
    found.previous = {
        "test_set_digest": run["tags"].get("test_set_digest"),
        "value": run["metrics"].get(f"test_{task.primary_metric}"),
    }
    if reason:
        found.tags["forgetting_skipped"] = reason
        warnings.warn(f"no forgetting_{task.primary_metric}: {reason}", stacklevel=2)
    else:
        found.previous_test = original.test
    if config.replay_fraction and reason:
        found.tags["replay_skipped"] = reason
        warnings.warn(f"training without replay: {reason}", stacklevel=2)
    elif config.replay_fraction:
        count = min(len(original.train), round(config.replay_fraction * len(splits.train)))
        splits.train = examples.join([splits.train, original.train.cap(count, config.seed)])
        found.tags["replay_examples"] = str(count)
    return found


def _shapes(model):
    return [tuple(weight.shape) for weight in model.weights]


def _check_architecture(task, config, logged):
    """Raises a ValueError naming the setting whose value builds other layers than the init model's."""
    from shared import tracking

    if _shapes(task.build_model(config, logged.info)) == _shapes(logged.model):
        return
    trained = config_module.resolve(task, base=tracking.run_config(logged.run_id))
    changed = [
        field.name
        for field in dataclasses.fields(config)
        if getattr(config, field.name) != getattr(trained, field.name)
    ]
    for name in changed:  # the first one that alone builds other layers
        try:
            alone = _shapes(
                task.build_model(dataclasses.replace(trained, **{name: getattr(config, name)}), logged.info)
            )
        except (ValueError, OSError):  # a setting whose model cannot even be built here is no match either
            alone = None
        if alone != _shapes(logged.model):
            changed = [name]
            break
    settings = ", ".join(
        f"{name}={getattr(config, name)!r} (the model's: {getattr(trained, name)!r})" for name in changed
    )
    raise ValueError(
        f"--init-from {config.init_from}: {settings or 'these settings'} build other layers than the model's; "
        "continued training keeps its architecture: drop the setting, or train from scratch without --init-from."
    )


def _original(task, logged, run):
    """The init model's own data, read again in its terms and checked against the digests its run logged.

    Returns:
        tuple[tasks.base.Splits | None, str]: the splits (training capped as its run capped it) and an empty
        reason, or None and why they cannot be had (unreadable, or changed since).
    """
    from shared import tracking
    from shared.data.sources import split_source

    trained = config_module.resolve(task, base=tracking.run_config(logged.run_id), init_from="", replay_fraction=0.0)
    digests = {item["context"]: item for item in run["datasets"]}
    path = digests.get("training", {}).get("path")
    kind, _ = split_source(trained.data)
    data = trained.data
    if path and kind not in ("embedded", "tfds"):  # the absolute path: the model may have been trained elsewhere
        data = f"{kind}:{path}" if kind else path
    try:
        original = task.load_continued(dataclasses.replace(trained, data=data), logged.info)
    except (ValueError, OSError) as error:
        return None, f"the model's training data '{trained.data}' is not readable ({str(error)[:200]})"
    original.train = original.train.cap(trained.max_examples, trained.seed)
    for role, context in (("train", "training"), ("test", "testing")):
        now = getattr(original, role).describe()["digest"]
        if now != digests.get(context, {}).get("digest"):
            return None, (
                f"the model's {context} data in '{trained.data}' changed since it was trained (digest {now}, "
                f"logged {digests.get(context, {}).get('digest')})"
            )
    return original, ""


def forgetting(task, model, found, info, config):
    """Scores the continued model on the init model's own test split.

    Args:
        task (tasks.base.Task): the task.
        model (keras.Model | BatchPredictor): the continued model.
        found (Start): what the run started from.
        info (FittedState): the continued model's served `Splits.info` (with its evaluation's serving values).
        config (tasks.base.TaskConfig): the run's config.

    Returns:
        tuple[dict, dict | None]: metrics `init_test_<primary>` (the new model's figure on the old test split)
        and `forgetting_<primary>` (the old model's figure there minus the new one's: positive means forgetting
        for a metric where higher is better, negative for one where lower is), and the `rescored` figure for
        `shared.tracking.promote`; empty and None when the old test split is gone or the metric is missing.
    """
    from shared.data import examples
    from tasks.base import Splits

    if found.previous_test is None:
        return {}, None
    empty = examples.empty_like(found.previous_test)
    old = Splits(empty, empty, found.previous_test, info, config.data, "init_test", False, fitted=True)
    value = task.evaluate(model, old, config).metrics.get(task.primary_metric)
    rescored = {"test_set_digest": found.previous["test_set_digest"], "value": value}
    metric = task.primary_metric
    if value is None or found.previous["value"] is None:
        return {}, rescored
    return {f"init_test_{metric}": value, f"forgetting_{metric}": found.previous["value"] - value}, rescored
