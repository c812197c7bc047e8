"""Optimizer, schedule, weight penalties, training callbacks, precision and XLA, configured from `TaskConfig`."""

import warnings

SCHEDULES = ("cosine", "plateau", "constant")
JIT_COMPILE = {"auto": "auto", "true": True, "false": False}
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def optimizer(config, steps_per_epoch):
    """AdamW with the config's learning-rate schedule.

    Args:
        config (TaskConfig): uses learning_rate, weight_decay, schedule, epochs, weight_averaging.
        steps_per_epoch (int): batches per epoch, to size the cosine decay.

    Returns:
        keras.optimizers.AdamW
    """
    import keras

    learning_rate = config.learning_rate
    if config.schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=0.01
        )
    # an exponential average over `weight_averaging` epochs, whatever the data's size
    momentum = 1 - 1 / max(1.0, config.weight_averaging * steps_per_epoch)
    return keras.optimizers.AdamW(
        learning_rate=learning_rate,
        weight_decay=config.weight_decay,
        use_ema=config.weight_averaging > 0,
        ema_momentum=momentum,
    )


def l2(factor):
    """Returns a Keras L2 kernel regularizer, or None for factor 0."""
    import keras

    return keras.regularizers.L2(factor) if factor else None


# Small data gives few steps per epoch, and an epoch's validation figure is noisy: a patience counted in epochs
# then stops training at the first dip (a 546-image set stopped after 43 s). Patience and the least training
# are also counted in optimiser steps; on sets of a few thousand examples and more the epoch counts decide.
PATIENCE_STEPS = 100  # early stopping waits at least this many steps without progress
MIN_STEPS = 200  # and never stops before this many steps (or the configured epochs)


def patience(config, steps_per_epoch):
    """Returns:
    tuple[int, int]: early stopping's patience and the fewest epochs before it may stop, in epochs: the
    config's patience, raised on small data to cover `PATIENCE_STEPS` and `MIN_STEPS` optimiser steps
    (`steps_per_epoch` 0: unknown, the config's patience alone).
    """
    if not steps_per_epoch:
        return config.early_stopping_patience, 0
    return (
        max(config.early_stopping_patience, -(-PATIENCE_STEPS // steps_per_epoch)),
        min(config.epochs, -(-MIN_STEPS // steps_per_epoch)),
    )


def callbacks(config, monitor="val_loss", steps_per_epoch=0):
    """Early stopping with best-weights restore, ReduceLROnPlateau for the plateau schedule, weight averaging.

    Both take their direction (min or max) from the monitored metric itself; their patience grows on small data
    (`patience`).
    """
    import keras

    class PatientEarlyStopping(keras.callbacks.EarlyStopping):
        """Early stopping that tracks the best epoch from the first but stops no earlier than `min_epochs`."""

        def __init__(self, min_epochs, **kwargs):
            super().__init__(**kwargs)
            self.min_epochs = min_epochs

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if self.stopped_epoch == epoch and epoch + 1 < self.min_epochs:
                self.model.stop_training, self.stopped_epoch = False, 0

    def check_monitor(epoch, logs):
        if epoch == 0 and monitor not in logs:  # Keras would only warn and silently never stop early
            raise ValueError(
                f"monitor '{monitor}' is not among this model's logged metrics "
                f"({', '.join(sorted(logs))}); choose one with --set monitor=NAME."
            )

    waiting, least = patience(config, steps_per_epoch)
    result = [
        keras.callbacks.LambdaCallback(on_epoch_end=check_monitor),
        PatientEarlyStopping(least, monitor=monitor, patience=waiting, restore_best_weights=True),
    ]
    if config.weight_averaging:
        # first, so validation, early stopping's best weights and the weights kept are the averaged ones
        result.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if config.schedule == "plateau":
        result.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=max(1, waiting // 3)))
    return result


def time_limit(seconds):
    """A Keras callback that stops training once `seconds` have passed, after at least one whole epoch.

    Early stopping then restores the best epoch, as when it stops training itself (a portfolio's share of its
    budget).

    Args:
        seconds (float): wall time allowed for `fit`, validation passes included.
    """
    import time

    import keras

    class TimeLimit(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started, self.epochs = time.monotonic(), 0

        def on_epoch_end(self, epoch, logs=None):
            self.epochs += 1

        def on_train_batch_end(self, batch, logs=None):
            if self.epochs and time.monotonic() - self.started > seconds:
                self.model.stop_training = True

    return TimeLimit()


def set_precision(requested, cpu_bfloat16=True):
    """Sets Keras's dtype policy for building and training a model, and returns the policy in effect.

    A mixed policy computes in 16 bits and keeps float32 variables; every task's output layer stays
    float32, so losses, metrics and probabilities keep full precision, and `in_float32` hands evaluation
    and the logged model a float32 copy.

    Args:
        requested (str): the config's `precision`. `auto` chooses mixed bfloat16 where the device computes
            it natively (`shared.distribution.native_bfloat16`: TPUs, Ampere and later GPUs, CPUs with
            AVX512_BF16/AMX/Arm BF16), mixed float16 on older GPUs, float32 elsewhere. `mixed_float16` on a
            CPU is declined with a warning: CPUs compute float16 more slowly than float32.
        cpu_bfloat16 (bool): the task's `cpu_bfloat16`: False keeps `auto` at float32 on CPUs, for tasks where
            bfloat16 was not measured to pay with the metric held (benchmarks/precision.py).

    Returns:
        str: the Keras dtype policy in effect.
    """
    import keras

    from shared import distribution

    device = distribution.accelerator()
    policy = requested
    if requested == "auto":
        if not distribution.native_bfloat16():
            policy = "mixed_float16" if device == "gpu" else "float32"
        else:
            policy = "mixed_bfloat16" if device or cpu_bfloat16 else "float32"
    elif requested == "mixed_float16" and device is None:
        warnings.warn(
            "precision=mixed_float16 needs a GPU or TPU (a CPU computes float16 more slowly than float32); "
            "training in float32.",
            RuntimeWarning,
            stacklevel=2,
        )
        policy = "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def in_float32(model, build):
    """Returns `model`, or a float32 copy of it when it was built under a mixed policy.

    Mixed policies keep float32 variables, so the copy holds the same weights and predicts in full
    precision: evaluation, the logged model and exports then agree to float32 tolerances.

    Args:
        model (keras.Model): the trained model.
        build (Callable[[], keras.Model]): builds the same architecture under the global policy.
    """
    import keras

    if keras.mixed_precision.global_policy().name == "float32":
        return model
    keras.mixed_precision.set_global_policy("float32")
    copy = build()
    copy.set_weights(model.get_weights())
    return copy


def jit_compile(config):
    """Returns the `jit_compile` argument of `model.compile` for the config's `jit_compile`."""
    return JIT_COMPILE[config.jit_compile]
