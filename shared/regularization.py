"""Optimizer, schedule, weight penalties, training callbacks, precision and XLA, configured from `TaskConfig`."""

import warnings

SCHEDULES = ("cosine", "plateau", "constant")
JIT_COMPILE = {"auto": "auto", "true": True, "false": False}


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
    return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=config.weight_decay,
                                  use_ema=config.weight_averaging > 0, ema_momentum=momentum)


def l2(factor):
    """Returns a Keras L2 kernel regularizer, or None for factor 0."""
    import keras

    return keras.regularizers.L2(factor) if factor else None


def callbacks(config, monitor="val_loss"):
    """Early stopping with best-weights restore, ReduceLROnPlateau for the plateau schedule, weight averaging.

    Both take their direction (min or max) from the monitored metric itself.
    """
    import keras

    def check_monitor(epoch, logs):
        if epoch == 0 and monitor not in logs:  # Keras would only warn and silently never stop early
            raise ValueError(f"monitor '{monitor}' is not among this model's logged metrics "
                             f"({', '.join(sorted(logs))}); choose one with --set monitor=NAME.")

    result = [
        keras.callbacks.LambdaCallback(on_epoch_end=check_monitor),
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=config.early_stopping_patience, restore_best_weights=True
        )
    ]
    if config.weight_averaging:
        # first, so validation, early stopping's best weights and the weights kept are the averaged ones
        result.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if config.schedule == "plateau":
        patience = max(1, config.early_stopping_patience // 3)
        result.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=patience))
    return result


def set_precision(enabled):
    """Switches Keras to mixed precision where the device computes it fast, otherwise to float32.

    Mixed precision computes in float16 (bfloat16 on TPUs) and keeps float32 variables; every task's
    output layer stays float32 so that losses and probabilities keep full precision. A CPU computes
    float16 more slowly than float32, so there the request is declined with a warning.

    Args:
        enabled (bool): the config's `mixed_precision`.

    Returns:
        str: the Keras dtype policy in effect.
    """
    import keras

    from shared import distribution

    policy = "float32"
    if enabled:
        device = distribution.accelerator()
        if device is None:
            warnings.warn("mixed_precision=true needs a GPU or TPU and this machine has neither; "
                          "training in float32.", RuntimeWarning, stacklevel=2)
        else:
            policy = "mixed_bfloat16" if device == "tpu" else "mixed_float16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def jit_compile(config):
    """Returns the `jit_compile` argument of `model.compile` for the config's `jit_compile`."""
    return JIT_COMPILE[config.jit_compile]
