"""The one training loop every task goes through:
data -> augment -> build -> fit(validation) -> evaluate(test) -> log -> register.
"""

import contextlib
import dataclasses
import sys
import time

import yaml

from pipelines import config as config_module


@dataclasses.dataclass
class RunResult:
    """What a finished run returns to the CLI and tests."""

    run_id: str
    metrics: dict
    model_uri: str
    train_seconds: float
    train_examples: int
    history: dict  # per-epoch train and validation metrics from `fit`, by name


def set_seed(seed):
    """Seeds Python, NumPy and the backend, and makes TensorFlow ops deterministic."""
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def run(task, config, experiment=None, trial=None):
    """Trains, evaluates, logs and registers one task with a resolved config.

    Args:
        task (tasks.base.Task): the task.
        config (tasks.base.TaskConfig): the resolved config.
        experiment (str | None): MLflow experiment; default the task's name.
        trial (int | None): the trial number when a sweep runs this: the run nests under the sweep's
            run, is named `TASK-trial-N`, and logs its model unregistered (the sweep registers its best).

    Returns:
        RunResult
    """
    from shared import data, regularization, tracking

    set_seed(config.seed)
    regularization.set_precision(config.mixed_precision)
    params = config_module.flatten(config)
    naming = {} if trial is None else {"run_name": f"{task.name}-trial-{trial}", "tags": {"sweep_trial": trial}}
    with tracking.run(task, params, experiment, **naming) as active:
        splits = task.load_data(config)
        splits.train = data.cap(splits.train, config.max_examples, config.seed)
        tracking.log_dataset(splits)
        train = data.make_dataset(splits.train, config.batch_size, shuffle=True, seed=config.seed,
                                  batch_map=task.train_map(config, splits.info))
        validation = data.make_dataset(splits.validation, config.batch_size,
                                       batch_map=task.eval_map(config, splits.info))
        model = task.build_model(config, splits.info)
        steps_per_epoch = -(-len(splits.train[1]) // config.batch_size)
        model.compile(optimizer=regularization.optimizer(config, steps_per_epoch),
                      loss=task.loss(config, splits.info), metrics=task.metrics(config, splits.info))
        started = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # progress on stderr keeps stdout for results
            history = model.fit(
                train, validation_data=validation, epochs=config.epochs,
                callbacks=regularization.callbacks(config, task.monitor) + [tracking.epoch_logger()],
                class_weight=task.class_weight(config, splits), verbose=1 if sys.stderr.isatty() else 2,
                shuffle=False,  # make_dataset already reshuffles every epoch, with the run's seed
            )
        train_seconds = time.perf_counter() - started
        evaluation = task.evaluate(model, splits, config)
        tracking.log_evaluation(evaluation, history.history, model, yaml.safe_dump(params, sort_keys=False))
        logged = tracking.log_model(task, model, splits.info, task.input_example(splits), register=trial is None)
    return RunResult(
        run_id=active.info.run_id, metrics=evaluation.metrics,
        model_uri=logged.model_uri if trial is not None else f"models:/{task.name}/{logged.registered_model_version}",
        train_seconds=train_seconds, train_examples=len(splits.train[1]) * len(history.epoch),
        history=history.history,
    )
