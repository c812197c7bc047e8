"""The one training loop every task goes through:
data -> augment -> build -> fit(validation) -> evaluate(test) -> log -> register.
"""

import contextlib
import dataclasses
import sys
import tempfile
import time
import warnings

import yaml

from pipelines import config as config_module

NESTED_TAGS = {"trial": "sweep_trial", "candidate": "portfolio_candidate"}  # the tag a nested run's number goes in
# Fewer validation examples than this give an accuracy's standard error above ~0.03: larger than most differences
# between settings, so the run says so (a portfolio cross-validates such sets).
SMALL_VALIDATION = 150

# Streams that skip unreadable files have no known length, so Keras learns the epoch's length by
# running out of data in the first epoch and says so each time; nothing is wrong.
warnings.filterwarnings("ignore", message="Your input ran out of data")


@dataclasses.dataclass
class RunResult:
    """What a finished run returns to the CLI and tests."""

    run_id: str
    metrics: dict
    model_uri: str
    train_seconds: float
    train_examples: int
    weights_sha256: str
    history: dict  # per-epoch train and validation metrics from `fit`, by name
    promotion: object = None  # shared.tracking.Promotion: did this version become champion, and why
    verdict: object = None  # shared.baselines.Verdict: the model against its baselines
    model: object = None  # the trained Keras model (a portfolio averages the best ones)


def set_seed(seed):
    """Seeds Python, NumPy and the backend, and makes TensorFlow ops deterministic."""
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def served_test(task, model, splits, config, evaluation):
    """The splits as the logged model serves them (`Splits.info` with the evaluation's serving values) and the
    model's test `(targets, outputs)` on them, computed once per evaluation: kept in `evaluation.outputs`, which
    calibration, slices, explanations and the judge then share.

    Returns:
        tuple[tasks.base.Splits, tuple]: the served splits and the test targets and outputs.
    """
    served = dataclasses.replace(splits, info=splits.info.updated(evaluation.serving))
    if not evaluation.outputs:
        evaluation.outputs = task.outputs(model, served, "test", config)
    return served, evaluation.outputs


def judge(task, model, splits, config, evaluation):
    """The model against the baselines in `splits.baselines`, by the task's scorers (see `shared.baselines.judge`).

    Args:
        task (tasks.base.Task): the task.
        model (keras.Model | BatchPredictor): the trained model.
        splits (tasks.base.Splits): the run's data, its baselines fitted.
        config (tasks.base.TaskConfig): the run's config.
        evaluation (shared.evaluation.Evaluation): the test evaluation, whose `outputs` are reused when present.

    Returns:
        shared.baselines.Verdict: empty for a task without scorers.
    """
    from shared import baselines

    scorers = task.scorers(config, splits.info)
    if not scorers:
        return baselines.Verdict(metrics={}, validation={})
    served, test = served_test(task, model, splits, config, evaluation)
    validation = task.outputs(model, served, "validation", config) if len(splits.validation) else ([], [])
    return baselines.judge(
        scorers, splits.baselines, validation, test, task.remedies, seed=config.seed, primary=task.primary_metric
    )


def temper(task, model, splits, config):
    """Fits a temperature on the validation split and folds it into the model's output layer (`shared.temperature`)
    when the config asks for it: `temperature_scaling=true` always; `auto` where the validation split holds at least
    `SMALL_VALIDATION` examples and the temperature lowers the cross-fitted validation ECE.

    Args:
        task (tasks.base.Task): the task; only probabilistic ones (`Task.probabilistic`) are scaled.
        model (keras.Model): the trained model, changed in place.
        splits (tasks.base.Splits): the run's data.
        config (tasks.base.TaskConfig): the run's config.

    Returns:
        dict[str, float]: `temperature` (1 when none was kept), the validation ECE unscaled and scaled (cross-fitted),
        as metrics; empty when nothing was fitted (another kind of task, no validation split, a head it cannot
        fold into, `false`, or `auto` on a small validation split).
    """
    from pipelines import serving_model
    from shared import temperature

    layers = temperature.output_layers(model)
    least = {"auto": SMALL_VALIDATION, "true": 2}.get(config.temperature_scaling)
    if least is None or not layers or len(splits.validation) < least or not task.probabilistic(splits.info):
        return {}
    labels, probabilities = task.outputs(serving_model.BatchPredictor(model), splits, "validation", config)
    fitted, before, after = temperature.cross_fitted(labels, probabilities, config.seed)
    kept = config.temperature_scaling == "true" or after < before
    if kept:
        temperature.fold(layers, fitted)
    return {"temperature": fitted if kept else 1.0, "validation_ece_unscaled": before, "validation_ece_scaled": after}


def calibrate(task, model, splits, config, evaluation):
    """Adds the calibration of the model's test probabilities to `evaluation` (metrics `ece` and `brier`, figure
    `reliability`; see `shared.evaluation.calibration`), when the task's outputs are class probabilities
    (`Task.probabilistic`); other tasks' evaluations are left as they are.

    Args:
        task (tasks.base.Task): the task.
        model (keras.Model | BatchPredictor): the trained model.
        splits (tasks.base.Splits): the evaluated data.
        config (tasks.base.TaskConfig): the run's config.
        evaluation (shared.evaluation.Evaluation): the test evaluation, whose `outputs` are reused when present.
    """
    from shared import evaluation as evaluating

    if not task.probabilistic(splits.info):
        return
    calibration = evaluating.calibration(*served_test(task, model, splits, config, evaluation)[1])
    evaluation.metrics.update(calibration.metrics)
    evaluation.figures.update(calibration.figures)


def slice_metrics(task, model, splits, config, evaluation):
    """Adds the primary metric per slice of the test split to `evaluation` (`shared.slices.report`) when the task
    gave its test examples slice keys (`--set slice_by=COLUMN`), and returns why promotion is refused when the gap
    between slices exceeds `max_slice_gap`.

    Args:
        task (tasks.base.Task): the task.
        model (keras.Model | BatchPredictor): the trained model.
        splits (tasks.base.Splits): the evaluated data.
        config (tasks.base.TaskConfig): the run's config.
        evaluation (shared.evaluation.Evaluation): the test evaluation, whose `outputs` are reused when present.

    Returns:
        str: the refusal, or empty.
    """
    from shared import baselines, slices

    groups = getattr(splits.test, "groups", None)
    scorers = task.scorers(config, splits.info)
    if groups is None or not scorers:
        return ""
    scorer = baselines.chooser(scorers, task.primary_metric)
    found = slices.report(scorer, *served_test(task, model, splits, config, evaluation)[1], groups)
    for part in ("metrics", "figures", "texts"):
        getattr(evaluation, part).update(getattr(found, part))
    gap = found.metrics.get(f"slice_gap_{scorer.name}")
    if config.max_slice_gap and gap is not None and gap > config.max_slice_gap:
        return (
            f"the {scorer.name} gap between {config.slice_by} slices, {gap:.4f}, exceeds max_slice_gap "
            f"{config.max_slice_gap}"
        )
    return ""


def robustness(task, model, splits, config, evaluation):
    """Adds the model's accuracy under perturbation to `evaluation`, by the task's `robustness_kind`, on a seeded
    sample of the test split (`shared.robustness.SAMPLE` examples) scored by the task's own `outputs` and decided
    as served (a two-class model's `threshold` when its evaluation chose one, else the top class): FGSM on
    float model inputs ("fgsm", metrics `robust_accuracy_0`, `robust_accuracy_0.01`, `robust_accuracy_0.04`), or
    character noise on raw texts ("text", `robust_accuracy_0`, `robust_accuracy_chars0.05`,
    `robust_accuracy_chars0.2`). Tasks without a kind, and FGSM tasks whose decoded features are not the model's
    one float input (a dict, varying shapes), are left as they are.

    Args:
        task (tasks.base.Task): the task.
        model (keras.Model | BatchPredictor): the trained model.
        splits (tasks.base.Splits): the evaluated data.
        config (tasks.base.TaskConfig): the run's config.
        evaluation (shared.evaluation.Evaluation): the test evaluation.
    """
    import numpy as np

    from shared import robustness as robust
    from shared.data import examples

    if task.robustness_kind is None:
        return
    served = dataclasses.replace(splits, info=splits.info.updated(evaluation.serving))  # what the logged model uses
    sample = splits.test.cap(robust.SAMPLE, config.seed)
    features, labels = sample.sample(len(sample))

    def score(perturbed):
        """The probabilities the task's `outputs` gives the perturbed sample (texts as a string array)."""
        rows = perturbed if isinstance(perturbed, np.ndarray) else np.array(perturbed, dtype=object)
        split = examples.Examples(rows, labels)
        return task.outputs(model, dataclasses.replace(served, test=split), "test", config)[1]

    threshold = evaluation.serving.get("threshold")  # a detector's decisions are the served ones
    if task.robustness_kind == "text":
        texts = [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in features]
        evaluation.metrics.update(robust.text_noise(texts, labels, score, seed=config.seed, threshold=threshold))
    elif isinstance(features, np.ndarray) and features.dtype.kind == "f" and not isinstance(model.input, (dict, list)):
        evaluation.metrics.update(
            robust.fgsm(model, features, labels, score, batch_size=config.batch_size, threshold=threshold)
        )


def explain(task, model, splits, config, evaluation):
    """Adds explanations of a few test examples to `evaluation.figures` as `explain/KIND` (logged as
    `plots/explain/KIND.png`), by the task's `explain_kind` (`shared.explain`): `config.explain_count` examples
    the task chooses and draws (`Task.explanation_figure`: by default a seeded random choice, each explained for its
    predicted class, the positive one of two, or its one output). Tasks without a kind, and runs with
    `explain_count=0`, are left as they are; a model the method cannot explain gets a warning instead.

    Args:
        task (tasks.base.Task): the task.
        model (keras.Model | BatchPredictor): the trained model.
        splits (tasks.base.Splits): the evaluated data.
        config (tasks.base.TaskConfig): the run's config.
        evaluation (shared.evaluation.Evaluation): the test evaluation, whose `outputs` are reused when present.
    """
    if task.explain_kind is None or not config.explain_count or not len(splits.test):
        return
    served, (targets, outputs) = served_test(task, model, splits, config, evaluation)
    try:
        figure = task.explanation_figure(model, served, targets, outputs, config)
    except ValueError as error:  # a model the method cannot reach (`shared.explain.token_embeddings`): still logged
        warnings.warn(f"no explanations logged: {error}", stacklevel=2)
        return
    evaluation.figures[f"explain/{task.explain_kind}"] = figure


def drift_reference(task, model, splits, config, evaluation):
    """The drift statistics `python -m pipelines monitor` compares served inputs with (`pipelines.monitor.reference`),
    of the validation split: the training distribution, with nothing fitted on it. They only serve monitoring: should
    computing them fail, the run goes on with a warning and its model has none.

    Returns:
        dict | None: None for a task whose inputs are not monitored, a split without examples, or a failure.
    """
    from pipelines import monitor

    if not len(splits.validation):
        return None
    try:
        return monitor.reference(task, model, config, splits.info.updated(evaluation.serving), splits.validation)
    except Exception as error:  # whatever fails here, the trained model must still be logged
        warnings.warn(f"no drift reference for the model: {type(error).__name__}: {error}", stacklevel=2)
        return None


@contextlib.contextmanager
def _cache_folder(store, cache):
    """A folder for this run's disk caches (`cache=disk`), deleted when the run ends; None otherwise."""
    if cache != "disk":
        yield None
        return
    (store / "cache").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store / "cache") as folder:
        yield folder


def fit(task, config, splits, placement, callbacks=(), cache_folder=None, initial=None):
    """Builds the task's model and fits it on `splits.train`, validating on `splits.validation` every epoch.

    Args:
        task (tasks.base.Task): the task.
        config (tasks.base.TaskConfig): the resolved config.
        splits (tasks.base.Splits): the data.
        placement (shared.distribution.Placement): where the model trains.
        callbacks (Iterable): Keras callbacks after the training ones (early stopping, schedules).
        cache_folder (str | None): where `cache=disk` writes.
        initial (keras.Model | None): a model of the same layers whose weights training starts from (`--init-from`);
            None starts from the layers' own initialisation.

    Returns:
        tuple[keras.Model, keras.callbacks.History, float]: the model (its best epoch restored), the history of
        `fit` and the seconds it took.
    """
    from shared import regularization, tracking
    from shared.data import examples

    caching = examples.cache_plan(config.cache, [splits.train, splits.validation], config.cache_budget_mb)
    tracking.set_tags({"effective.cache": ",".join(caching)})
    # Processes that step together need equal batch counts, which length buckets do not give.
    buckets = task.length_buckets(config, splits.info) if placement.strategy != "data_parallel" else None
    train = examples.make_dataset(
        splits.train,
        shuffle=True,
        seed=config.seed,
        batch_map=task.train_map(config, splits.info),
        cache=caching[0],
        cache_file=cache_folder and f"{cache_folder}/train",
        buckets=buckets,
        **placement.feed(config.batch_size, len(splits.train)),
    )
    validation = examples.make_dataset(
        splits.validation,
        batch_map=task.eval_map(config, splits.info),
        cache=caching[1],
        cache_file=cache_folder and f"{cache_folder}/validation",
        buckets=buckets,
        **placement.feed(config.batch_size, len(splits.validation)),
    )
    steps_per_epoch = -(-len(splits.train) // config.batch_size)
    policy = regularization.set_precision(config.precision, task.cpu_bfloat16)
    tracking.set_tags({"effective.precision_policy": policy})
    with placement.scope():
        model = task.build_model(config, splits.info)
        if initial is not None:
            model.set_weights(initial.get_weights())
        model.compile(
            optimizer=regularization.optimizer(config, steps_per_epoch),
            loss=task.loss(config, splits.info),
            metrics=task.metrics(config, splits.info),
            jit_compile=regularization.jit_compile(config),
        )
        tracking.set_tags({"effective.jit_compile": str(model.jit_compile).lower(), **placement.summary()})
        started = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # progress on stderr keeps stdout for results
            history = model.fit(
                train,
                validation_data=validation,
                epochs=config.epochs,
                callbacks=[*regularization.callbacks(config, task.watched(config), steps_per_epoch), *callbacks],
                class_weight=task.class_weight(config, splits),
                verbose=1 if sys.stderr.isatty() else 2,
                shuffle=False,  # make_dataset already reshuffles every epoch, with the run's seed
            )
        seconds = time.perf_counter() - started

    def build():
        return task.build_model(config, splits.info)

    return regularization.in_float32(placement.local(model, build), build), history, seconds


def cross_validate(task, config, folds, below, seconds):
    """Scores a config by k-fold cross-validation over training + validation, when the data is small enough.

    Args:
        task (tasks.base.Task): the task; `Task.folds` says whether and how its examples fold.
        config (tasks.base.TaskConfig): the config to score.
        folds (int): k.
        below (int): cross-validate only when training + validation hold fewer examples than this.
        seconds (float): training time allowed per fold.

    Returns:
        list[float]: the figure configurations are chosen by (`shared.baselines.chooser`) on each fold's held-out
        part; empty when the data is large or the task's examples do not fold (then one validation split decides).
    """
    from pipelines import serving_model
    from shared import baselines, distribution, regularization

    set_seed(config.seed)
    splits = task.load_data(config)
    splits.train = splits.train.cap(config.max_examples, config.seed)
    if len(splits.train) + len(splits.validation) >= below:
        return []
    scores = []
    for fold in task.folds(splits, folds, config.seed):
        model, _, _ = fit(task, config, fold, distribution.Placement(), [regularization.time_limit(seconds)])
        scorer = baselines.chooser(task.scorers(config, fold.info), task.primary_metric)
        scores.append(scorer(*task.outputs(serving_model.BatchPredictor(model), fold, "validation", config)))
    return scores


def average(models):
    """One Keras model whose outputs are the mean of `models`' outputs on the same inputs (an ensemble).

    Raises:
        ValueError: the models take different inputs.
    """
    import keras

    def spec(model):
        return keras.tree.map_structure(lambda tensor: (tensor.name, tuple(tensor.shape), tensor.dtype), model.input)

    if any(spec(model) != spec(models[0]) for model in models):
        raise ValueError("the models take different inputs, so their outputs cannot be averaged")
    inputs = keras.tree.map_structure(
        lambda tensor: keras.Input(tensor.shape[1:], dtype=tensor.dtype, name=tensor.name), models[0].input
    )
    # each member renamed: nested models must have unique names in the model that holds them
    outputs = [
        keras.Model(model.input, model.output, name=f"member_{index}")(inputs) for index, model in enumerate(models)
    ]
    if isinstance(outputs[0], dict):
        mean = {
            key: keras.layers.Average(dtype="float32", name=key)([output[key] for output in outputs])
            for key in outputs[0]
        }
    else:
        mean = keras.layers.Average(dtype="float32", name="average")(outputs)
    return keras.Model(inputs, mean, name=f"{models[0].name}_average")


def register_chosen(task, result, config, policy):
    """Registers the model a sweep or portfolio chose (a nested run's) as one new version and promotes it as a
    run's own model would be, baselines gate included.

    Returns:
        tuple: the registered version and the `shared.tracking.Promotion`.
    """
    from shared import tracking

    version = tracking.register(result.model_uri, task.name)
    promotion = tracking.promote(
        task,
        result.run_id,
        version,
        result.metrics.get(task.primary_metric),
        config.data,
        policy,
        refusal=result.verdict.refusal,
    )
    return version, promotion


def log_card(task, run_id, version=None):
    """Logs the run's model card (`shared.model_card`) and links it from its registered version's description.

    A run that chose another run's model (a portfolio's or a sweep's, tagged `best_run_id`) describes that
    run's data and training, under its own figures and tags. The card only describes the run: should building
    or logging it fail, the run goes on with a warning.

    Args:
        task (tasks.base.Task): the run's task.
        run_id (str): the run.
        version (str | int | None): the registered version of the run's model (None: not registered).
    """
    from shared import model_card, tracking

    facts = model_card.TaskFacts(
        task.name, task.description, task.primary_metric, task.higher_is_better, task.input_kind, task.input_column
    )
    try:
        logged = tracking.logged_run(run_id)
        chosen = logged["tags"].get("best_run_id")
        if chosen:
            logged = model_card.merge(tracking.logged_run(chosen), logged)
        tracking.log_card(run_id, model_card.render(facts, logged, SMALL_VALIDATION), task.name, version)
    except Exception as error:  # whatever fails here, the trained and logged run must stand
        warnings.warn(f"no model card for run {run_id}: {type(error).__name__}: {error}", stacklevel=2)


def run(
    task,
    config,
    experiment=None,
    promote="if-better",
    resume=False,
    placement=None,
    trial=None,
    callbacks=(),
    naming="trial",
    members=None,
):
    """Trains, evaluates, logs and registers one task with a resolved config.

    Args:
        task (tasks.base.Task): the task.
        config (tasks.base.TaskConfig): the resolved config.
        experiment (str | None): MLflow experiment; default the task's name.
        promote (str): champion policy for the new model version: if-better, always or never.
        resume (bool): continue an interrupted run with the same settings (see `shared.resume`).
        placement (shared.distribution.Placement | None): from `distribution.setup`; default one device.
        trial (int | None): the trial number when a sweep or portfolio runs this: the run nests under its run,
            is named `TASK-<naming>-N`, and logs its model unregistered (the parent registers its best).
        callbacks (tuple): extra Keras callbacks for `fit`, after the runner's own (e.g. a time limit).
        naming (str): what a nested run is called ("trial" in a sweep, "candidate" in a portfolio).
        members (list[keras.Model] | None): trained models of the same preprocessing to average instead of
            training one (a portfolio's ensemble).

    Returns:
        RunResult: `run_id`, `model_uri` and `metrics` are empty in a process other than the chief, which
        alone evaluates, logs and registers.
    """
    from pipelines import continued, serving_model
    from shared import distribution, resume as resuming, tracking

    tracking.check_policy(promote)  # fail before training, not after
    placement = placement or distribution.Placement()
    set_seed(config.seed)
    params = config_module.flatten(config)
    backup = resuming.Backup(
        tracking.store_folder() / "backups",
        task.name,
        {"params": params, "experiment": experiment, "process": placement.process_id},
        resume,
    )
    nested = (
        {} if trial is None else {"run_name": f"{task.name}-{naming}-{trial}", "tags": {NESTED_TAGS[naming]: trial}}
    )
    # before the MLflow run: a data error leaves no FAILED run behind
    if config.init_from:  # the init model's weights and preprocessing, its old examples replayed
        init = continued.start(task, config)
        splits = init.splits
    else:
        init, splits = None, task.load_data(config)
        splits.train = splits.train.cap(config.max_examples, config.seed)
    task.check_splits(splits, config)
    if config.slice_by and getattr(splits.test, "groups", None) is None:
        raise ValueError(
            f"{task.name} cannot slice the test examples of '{config.data}' (slice_by={config.slice_by!r}): slices "
            "need a table column (fraud_detection, predictive_maintenance's independent rows, a speech manifest or "
            "filename_pattern group) or files keyed by slice_by=path:REGEX (image and audio folders); drop it."
        )
    if trial is None and len(splits.validation) < SMALL_VALIDATION:
        warnings.warn(
            f"the validation split holds {len(splits.validation)} examples, too few to choose settings or "
            f"the best epoch on reliably; --preset balanced cross-validates sets this small where the "
            f"task's examples allow it.",
            stacklevel=2,
        )
    with (
        tracking.run(task, params, experiment, run_id=backup.run_id, enabled=placement.is_chief, **nested) as active,
        _cache_folder(tracking.store_folder(), config.cache) as cache_folder,
    ):
        backup.record(active.info.run_id if active else None)
        tracking.log_dataset(splits)
        if init:
            tracking.log_lineage(init.tags, init.model_id)
        if members:
            model, history, train_seconds = average(members), None, 0.0
            tracking.set_tags({"ensemble_members": str(len(members))})
        else:
            # the logger before the backup: a kill between them repeats an epoch, never loses one
            model, history, train_seconds = fit(
                task,
                config,
                splits,
                placement,
                [tracking.epoch_logger(), *backup.callbacks(), *callbacks],
                cache_folder,
                initial=init and init.model,
            )
        weights_sha256 = distribution.weights_digest(model)
        tracking.set_tags({"weights_sha256": weights_sha256})
        if placement.is_chief:  # the other processes of a data-parallel run only train
            # predict_on_batch batch by batch: tasks predict a few examples per call while evaluating
            tempered = temper(task, model, splits, config)  # before test: what is evaluated is what is served
            predictor = serving_model.BatchPredictor(model)
            splits.baselines = task.baselines(splits, config)
            evaluation = task.evaluate(predictor, splits, config)
            if "temperature" in tempered:
                evaluation.serving["temperature"] = tempered["temperature"]
            calibrate(task, predictor, splits, config, evaluation)
            robustness(task, predictor, splits, config, evaluation)
            explain(task, predictor, splits, config, evaluation)
            unfair = slice_metrics(task, predictor, splits, config, evaluation)
            verdict = judge(task, predictor, splits, config, evaluation)
            if unfair and not verdict.refusal:
                verdict.refusal = unfair
                verdict.warnings.append(f"{unfair}; it is registered but not promoted.")
            evaluation.metrics.update(verdict.metrics)
            served_info = splits.info.updated(evaluation.serving)  # what the logged model serves
            forgotten, rescored = (
                continued.forgetting(task, predictor, init, served_info, config) if init else ({}, None)
            )
            tracking.log_evaluation(evaluation, model, yaml.safe_dump(params, sort_keys=False))
            # train_seconds after log_evaluation: its training curves plot every metric the run logged so far
            tracking.log_results(
                metrics={**verdict.validation, **tempered, **forgotten, "train_seconds": train_seconds},
                tags=verdict.tags,
            )
            logged = tracking.log_model(
                task,
                model,
                served_info,
                task.input_example(splits),
                serving_model.ServingModel(),
                register=trial is None,
                drift_reference=drift_reference(task, predictor, splits, config, evaluation),
            )
            promotion = (
                tracking.promote(
                    task,
                    active.info.run_id,
                    logged.registered_model_version,
                    evaluation.metrics.get(task.primary_metric),
                    splits.source,
                    promote,
                    refusal=verdict.refusal,
                    rescored=rescored,
                )
                if trial is None
                else None
            )
            log_card(task, active.info.run_id, logged.registered_model_version if trial is None else None)
    backup.clear()
    epochs = history.history if history else {}
    result = RunResult(
        run_id="",
        metrics={},
        model_uri="",
        train_seconds=train_seconds,
        train_examples=len(splits.train) * len(history.epoch if history else []),
        weights_sha256=weights_sha256,
        history=epochs,
        model=model,
    )
    if placement.is_chief:
        result.run_id, result.metrics, result.promotion = active.info.run_id, evaluation.metrics, promotion
        result.verdict = verdict
        result.model_uri = (
            f"models:/{task.name}/{logged.registered_model_version}" if trial is None else logged.model_uri
        )
    return result
