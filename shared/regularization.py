"""Optimizer, schedule, weight penalties and the training callbacks, configured from `TaskConfig`."""

SCHEDULES = ("cosine", "plateau", "constant")


def optimizer(config, steps_per_epoch):
    """AdamW with the config's learning-rate schedule.

    Args:
        config (TaskConfig): uses learning_rate, weight_decay, schedule, epochs.
        steps_per_epoch (int): batches per epoch, to size the cosine decay.

    Returns:
        keras.optimizers.AdamW
    """
    import keras

    if config.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got '{config.schedule}'.")
    learning_rate = config.learning_rate
    if config.schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=0.01
        )
    return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=config.weight_decay)


def l2(factor):
    """Returns a Keras L2 kernel regularizer, or None for factor 0."""
    import keras

    return keras.regularizers.L2(factor) if factor else None


def callbacks(config, monitor="val_loss"):
    """Early stopping with best-weights restore, plus ReduceLROnPlateau for the plateau schedule.

    Both take their direction (min or max) from the monitored metric itself.
    """
    import keras

    def check_monitor(epoch, logs):
        if epoch == 0 and monitor not in logs:  # Keras would only warn and silently never stop early
            raise ValueError(f"monitor '{monitor}' is not among this model's logged metrics "
                             f"({', '.join(sorted(logs))}); set --set monitor=ONE_OF_THEM.")

    result = [
        keras.callbacks.LambdaCallback(on_epoch_end=check_monitor),
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=config.early_stopping_patience, restore_best_weights=True
        )
    ]
    if config.schedule == "plateau":
        patience = max(1, config.early_stopping_patience // 3)
        result.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=patience))
    return result


def set_precision(enabled):
    """Switches Keras to mixed float16 compute (float32 variables) or back to float32."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16" if enabled else "float32")
