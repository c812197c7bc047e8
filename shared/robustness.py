"""Robustness figures: a classifier's accuracy on a small test sample, clean and under perturbations of growing
budget: FGSM (fast gradient sign method, Goodfellow et al. 2015) on float model inputs, random character noise on
raw texts.

Metric names (logged with the runner's `test_` prefix): `robust_accuracy_0` for the clean sample, then
`robust_accuracy_<budget>` for FGSM (`robust_accuracy_0.01`) and `robust_accuracy_chars<rate>` for character noise
(`robust_accuracy_chars0.05`); MLflow accepts periods in metric names.
"""

import numpy as np

# Examples perturbed per run: a seeded sample of the test split, enough to tell a robust model (a few points lost)
# from a brittle one (tens of points) at a standard error of at most 0.03, for a few seconds of a default run.
SAMPLE = 256
# FGSM steps, as fractions of the input range observed on the sample: 1% of an 8-bit image's range is 2.55/255,
# below what an eye notices, 4% is 10/255, near the 8/255 L-infinity budget of the adversarial-training literature
# (Madry et al. 2018) for perturbations that leave the label plain to a person.
FGSM_BUDGETS = (0.01, 0.04)
# Characters replaced in text: 5% is about a typo every other word, 20% one every word or so, still readable.
CHARACTER_RATES = (0.05, 0.2)
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def accuracy(labels, probabilities, threshold=None):
    """The fraction of examples whose decided class is their label: the most probable class, or for two classes
    with a decision `threshold` the second (positive) class when its probability reaches the threshold."""
    probabilities = np.asarray(probabilities)
    if threshold is None:
        decided = np.argmax(probabilities, axis=1)
    else:
        decided = (probabilities[:, -1] >= threshold).astype("int64")
    return float(np.mean(decided == np.asarray(labels)))


def fgsm(model, features, labels, score, budgets=FGSM_BUDGETS, batch_size=64, threshold=None):
    """Accuracy of a softmax classifier on `features`, clean and after one FGSM step per budget:
    `x' = clip(x + eps * sign(grad_x loss(y, f(x))), low, high)`, with `eps = budget * (high - low)` and
    `[low, high]` the range of `features`, so that a budget means the same for images in [0, 1] and for
    standardised spectrograms. An example whose probabilities saturate (its loss has no gradient in float32)
    is left as it is, so the figures bound the accuracy under attack from above.

    Args:
        model (keras.Model): takes `features` as its one input and answers class probabilities.
        features (np.ndarray): float model inputs of the sample, one row per example.
        labels (np.ndarray): their integer classes.
        score (Callable): `score(features) -> probabilities`, the task's own scoring of model inputs.
        budgets (tuple[float, ...]): the steps, as fractions of the input range.
        batch_size (int): examples per gradient computation.
        threshold (float | None): a two-class model's decision threshold (see `accuracy`); None: the top class.

    Returns:
        dict[str, float]: `robust_accuracy_0` and `robust_accuracy_<budget>` for each budget.
    """
    features = np.asarray(features, "float32")
    labels = np.asarray(labels, "int64")
    low, high = float(features.min()), float(features.max())
    signs = np.concatenate(
        [
            np.sign(input_gradient(model, features[start : start + batch_size], labels[start : start + batch_size]))
            for start in range(0, len(features), batch_size)
        ]
    )
    metrics = {"robust_accuracy_0": accuracy(labels, score(features), threshold)}
    for budget in budgets:
        perturbed = np.clip(features + budget * (high - low) * signs, low, high).astype("float32")
        metrics[f"robust_accuracy_{budget:g}"] = accuracy(labels, score(perturbed), threshold)
    return metrics


def input_gradient(model, features, labels):
    """The gradient of the summed cross-entropy of `model(features)` against `labels` with respect to `features`
    (per example, since inference treats examples independently), on the TensorFlow or the JAX backend.

    Raises:
        ValueError: another backend.
    """
    import keras

    from shared import explain

    def loss(inputs):
        probabilities = model(inputs, training=False)
        return keras.ops.sum(keras.losses.sparse_categorical_crossentropy(labels, probabilities))

    return explain.gradient(loss, features)


def character_noise(texts, rate, seed):
    """Replaces each letter or digit of `texts`, with probability `rate`, by a random lowercase letter: typos
    without a dictionary of synonyms, so no language resource decides what the perturbation means.

    Args:
        texts (list[str]): the texts.
        rate (float): the probability of each letter or digit being replaced.
        seed (int): the noise's seed (the same texts, rate and seed give the same noise).

    Returns:
        list[str]: the noisy texts.
    """
    rng = np.random.default_rng(seed)
    noisy = []
    for text in texts:
        characters = np.array(list(text), dtype=object)
        replaced = np.array([character.isalnum() for character in characters], dtype=bool) & (
            rng.random(len(characters)) < rate
        )
        characters[replaced] = rng.choice(LETTERS, int(replaced.sum()))
        noisy.append("".join(characters))
    return noisy


def text_noise(texts, labels, score, rates=CHARACTER_RATES, seed=0, threshold=None):
    """Accuracy of a classifier of raw texts, clean and with character noise at each rate (`character_noise`).

    Args:
        texts (list[str]): the sample's raw texts.
        labels (np.ndarray): their integer classes.
        score (Callable): `score(texts) -> probabilities`, the task's own scoring of raw texts.
        rates (tuple[float, ...]): the noise rates.
        seed (int): the noise's seed.
        threshold (float | None): a two-class model's decision threshold (see `accuracy`); None: the top class.

    Returns:
        dict[str, float]: `robust_accuracy_0` and `robust_accuracy_chars<rate>` for each rate.
    """
    metrics = {"robust_accuracy_0": accuracy(labels, score(list(texts)), threshold)}
    for rate in rates:
        noisy = character_noise(texts, rate, seed)
        metrics[f"robust_accuracy_chars{rate:g}"] = accuracy(labels, score(noisy), threshold)
    return metrics
