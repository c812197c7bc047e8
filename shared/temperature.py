"""Temperature scaling (Guo et al. 2017): one scalar, fitted on validation, that softens or sharpens a classifier's
probabilities without changing which class wins.

Dividing the logits by T is the same as dividing the weights and bias of the layer that computes them, so the
temperature is folded into the model's output layer (`fold`): the logged model, `predict`, `evaluate` and every
export then serve the calibrated probabilities with no extra layer or step.
"""

import numpy as np

# The range T is searched in: below 0.05 or above 20 a model's validation split is telling noise, not calibration.
BOUNDS = (0.05, 20.0)


def _logits(probabilities):
    """Logits whose softmax (or, for one positive-class column, sigmoid) gives back `probabilities`."""
    clipped = np.clip(np.asarray(probabilities, dtype="float64"), 1e-12, 1.0)
    if clipped.ndim == 1 or clipped.shape[1] == 1:
        positive = np.clip(clipped.reshape(-1), 1e-12, 1 - 1e-12)
        return np.log(positive) - np.log1p(-positive)
    return np.log(clipped)


def apply(probabilities, temperature):
    """Returns:
    np.ndarray: `probabilities` (positive-class scores of shape (n,) or (n, 1), or class probabilities (n, k))
    with their logits divided by `temperature`, in the same shape.
    """
    probabilities = np.asarray(probabilities, dtype="float64")
    logits = _logits(probabilities) / temperature
    if probabilities.ndim == 1 or probabilities.shape[1] == 1:
        return (1 / (1 + np.exp(-logits))).reshape(probabilities.shape)
    logits -= logits.max(axis=1, keepdims=True)
    exponentials = np.exp(logits)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def negative_log_likelihood(labels, probabilities):
    """The mean negative log-likelihood of integer `labels` under `probabilities` (binary or per class)."""
    labels = np.asarray(labels).reshape(-1).astype("int64")
    probabilities = np.clip(np.asarray(probabilities, dtype="float64"), 1e-12, 1.0)
    if probabilities.ndim == 1 or probabilities.shape[1] == 1:
        positive = np.clip(probabilities.reshape(-1), 1e-12, 1 - 1e-12)
        return float(-np.mean(np.where(labels == 1, np.log(positive), np.log1p(-positive))))
    return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels])))


def fit(labels, probabilities):
    """The temperature that minimises the negative log-likelihood of `labels` (the usual fitting criterion).

    Args:
        labels (np.ndarray): true class indices (0/1 for one positive-class column), shape (n,).
        probabilities (np.ndarray): the model's probabilities on the same examples.

    Returns:
        float: T in `BOUNDS`; 1 leaves the probabilities as they are.
    """
    from scipy import optimize

    found = optimize.minimize_scalar(
        lambda log_t: negative_log_likelihood(labels, apply(probabilities, float(np.exp(log_t)))),
        bounds=tuple(np.log(BOUNDS)),
        method="bounded",
    )
    return float(np.exp(found.x))


def cross_fitted(labels, probabilities, seed=0):
    """The temperature fitted on all of `labels`, and the ECE before and after scaling as held-out data sees them.

    ECE measured on the examples T was fitted on always looks better, so the after-figure is cross-fitted: the
    examples are split in two halves, T fitted on each half scales the other, and the two halves' ECEs are
    averaged (the before-figure is averaged over the same halves).

    Args:
        labels (np.ndarray): true class indices, shape (n,).
        probabilities (np.ndarray): the model's probabilities on the same examples.
        seed (int): the halves' shuffle.

    Returns:
        tuple[float, float, float]: T, ECE before, cross-fitted ECE after.
    """
    from shared import evaluation

    labels, probabilities = np.asarray(labels).reshape(-1), np.asarray(probabilities)
    order = np.random.default_rng(seed).permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    before, after = [], []
    for fitted_on, scored_on in (halves, halves[::-1]):
        fitted = fit(labels[fitted_on], probabilities[fitted_on])
        before.append(evaluation.calibration(labels[scored_on], probabilities[scored_on]).metrics["ece"])
        scaled = apply(probabilities[scored_on], fitted)
        after.append(evaluation.calibration(labels[scored_on], scaled).metrics["ece"])
    return fit(labels, probabilities), float(np.mean(before)), float(np.mean(after))


def output_layers(model):
    """The Dense layers whose outputs are the logits of `model`'s single probability output, or [] when the output
    is not a softmax or sigmoid of Dense logits (then the temperature cannot be folded in).

    Two heads are recognised: a Dense layer with a softmax or sigmoid activation, and a softmax or sigmoid
    `Activation` of the `Average` of Dense logits (`shared.heads.softmax_head`'s coupled ensemble).
    """
    import keras

    if len(model.outputs) != 1:
        return []
    layer = model.outputs[0]._keras_history.operation
    names = ("softmax", "sigmoid")
    if isinstance(layer, keras.layers.Dense) and layer.activation.__name__ in names:
        return [layer]
    if isinstance(layer, keras.layers.Activation) and getattr(layer.activation, "__name__", "") in names:
        average = layer.input._keras_history.operation
        if isinstance(average, keras.layers.Average):
            members = [tensor._keras_history.operation for tensor in average.input]
            if all(
                isinstance(member, keras.layers.Dense) and member.activation.__name__ == "linear" for member in members
            ):
                return members
    return []


def fold(layers, temperature):
    """Divides each of `layers`' kernel and bias by `temperature`, so the model's logits are divided by it."""
    for layer in layers:
        layer.kernel.assign(layer.kernel / temperature)
        if layer.use_bias:
            layer.bias.assign(layer.bias / temperature)
