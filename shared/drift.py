"""Drift statistics: do the inputs a model is served still look like the data it learned from?

A task describes a batch of its model inputs as a `View`: per-example numbers (table columns, pixel statistics,
per-band log-mel levels, token counts), per-example categories (a table's category codes, item popularity),
per-unit unknown flags (a token or user the vocabulary lacks) and, for images, embeddings from the model's
penultimate layer. `reference` keeps what comparing needs (quantile bins and percentiles, category shares, rates,
a small sample of embeddings), never raw rows, as a small JSON document saved with the model; `compare` tests a
recent batch's view against it, one row per feature and statistic, each with its value and the threshold above
which it counts as drift:

- numbers: the population stability index over the reference's decile bins (PSI > 0.2 is the usual
  "significant shift" rule; on small batches, what chance alone passes once in 100 batches), with the
  two-sample Kolmogorov-Smirnov statistic and p-value beside it;
- categories: PSI over the reference's categories (unseen ones share one bin), with the same threshold;
- unknown rates: the recent rate minus the reference's;
- embeddings: the maximum mean discrepancy (MMD^2, Gaussian kernel at the reference's median distance) against
  its permutation test's 99th percentile.

NumPy and SciPy only, whatever the Keras backend: `embeddings` alone runs the model.
"""

import dataclasses

import numpy as np

PSI_BINS = 10  # deciles of the reference: the usual PSI binning, each bin a tenth of the reference
PSI_THRESHOLD = 0.2  # the usual rule: below 0.1 stable, 0.1-0.2 a moderate shift, above 0.2 a significant one
# on small batches PSI's own noise passes 0.2 (about (bins - 1) * (1/n + 1/m) with nothing shifted), so the threshold
# rises to what chance alone exceeds once in 100 unchanged batches, over all features together (see `_psi_threshold`)
PSI_CHANCE = 0.01
PSI_FLOOR = 1e-4  # an empty bin's share, so that its logarithm stays finite (the usual smoothing)
KS_POINTS = 101  # reference percentiles kept for the KS test: its CDF to within a percent, without its rows
# 5 more unknown tokens (or users, items) in 100 than the reference: a vocabulary that no longer fits the inputs
RATE_INCREASE = 0.05
EMBEDDING_SAMPLE = 256  # reference embeddings kept, and recent ones tested: a 512 x 512 kernel, milliseconds
MMD_PERMUTATIONS = 200  # enough to place the 99th percentile of MMD^2 when nothing has shifted
MMD_LEVEL = 0.99  # MMD^2 above this percentile of its permutations: one false alarm in 100 unchanged batches
DIGITS = 4  # significant digits of the shares and embeddings kept: far finer than any threshold, a quarter the size


@dataclasses.dataclass
class View:
    """What drift is measured on, for one batch of a model's inputs (see `Task.drift_view`).

    Attributes:
        numeric (dict[str, np.ndarray]): feature name -> one number per example (NaN: missing, ignored).
        categorical (dict[str, np.ndarray]): feature name -> one category (an int or str code) per example.
        rates (dict[str, np.ndarray]): name -> one bool per unit (a token, a user) that is unknown to the model.
        embeddings (np.ndarray | None): one row per example from the model's penultimate layer (`embeddings`).
    """

    numeric: dict = dataclasses.field(default_factory=dict)
    categorical: dict = dataclasses.field(default_factory=dict)
    rates: dict = dataclasses.field(default_factory=dict)
    embeddings: np.ndarray | None = None

    def __len__(self):
        for values in (*self.numeric.values(), *self.categorical.values()):
            return len(values)
        return 0 if self.embeddings is None else len(self.embeddings)


def join(views):
    """One view of several batches' views (which name the same features), in order."""
    if not views:
        return View()
    first = views[0]

    def joined(part):
        return {
            name: np.concatenate([np.ravel(getattr(view, part)[name]) for view in views])
            for name in getattr(first, part)
        }

    embeddings = None if first.embeddings is None else np.concatenate([view.embeddings for view in views])
    return View(joined("numeric"), joined("categorical"), joined("rates"), embeddings)


def table_view(features, names, categorical=None):
    """A view of table rows: each column of `features` a numeric feature, each of `categorical` a category.

    Args:
        features (np.ndarray): (examples, columns) numbers, e.g. standardised columns.
        names (list[str]): the columns' names.
        categorical (dict[str, np.ndarray] | None): name -> one code per example.
    """
    features = np.asarray(features, dtype="float64").reshape(len(features), -1)
    return View(
        numeric={name: features[:, index] for index, name in enumerate(names)},
        categorical={name: np.ravel(codes) for name, codes in (categorical or {}).items()},
    )


def token_view(token_ids, unknown=1, padding=0):
    """A view of token id rows: each text's token count and whether each token is unknown ([UNK])."""
    token_ids = np.asarray(token_ids)
    present = token_ids != padding
    return View(
        numeric={"tokens": present.sum(axis=1).astype("float64")},
        rates={"unknown_tokens": token_ids[present] == unknown},
    )


def image_view(pixels, embedded=None):
    """A view of an image batch: each image's brightness (mean) and contrast (standard deviation), and its
    embedding when given (`embeddings`)."""
    pixels = np.asarray(pixels, dtype="float64").reshape(len(pixels), -1)
    return View(numeric={"brightness": pixels.mean(axis=1), "contrast": pixels.std(axis=1)}, embeddings=embedded)


def band_view(features, prefix="band"):
    """A view of spectrogram-like features (examples, frames, bands[, 1]): each band's mean level per example."""
    features = np.asarray(features, dtype="float64")
    features = features.reshape(features.shape[0], features.shape[1], -1)
    means = features.mean(axis=1)
    return table_view(means, [f"{prefix}_{index}" for index in range(means.shape[1])])


def embeddings(model, batch, batch_size=64):
    """The model's penultimate features of a batch: the input of its last layer with weights (the classifier or the
    1x1 output convolution), averaged over any spatial axes.

    Args:
        model (keras.Model | BatchPredictor): a functional Keras model.
        batch (np.ndarray | dict): its inputs.
        batch_size (int): examples per forward pass.

    Returns:
        np.ndarray | None: (examples, features); None for a model whose last weighted layer cannot be found.
    """
    import keras

    model = getattr(model, "model", model)  # a BatchPredictor's Keras model
    operation = model.outputs[0]._keras_history.operation
    while not operation.weights:  # activations, averages, dropout: back to the head's weighted layer
        tensor = operation.input[0] if isinstance(operation.input, (list, tuple)) else operation.input
        if isinstance(operation, keras.layers.InputLayer) or not hasattr(tensor, "_keras_history"):
            return None
        operation = tensor._keras_history.operation
    features = operation.input[0] if isinstance(operation.input, list) else operation.input
    extractor = keras.Model(model.input, features)  # the input structure as the model declares it (a dict, one tensor)
    # called eagerly, batch by batch: `predict` would trace a graph for this throwaway model on every call (seconds)
    size = len(keras.tree.flatten(batch)[0])
    found = np.concatenate(
        [
            np.asarray(
                extractor(keras.tree.map_structure(lambda leaf, start=start: leaf[start : start + batch_size], batch)),
                dtype="float64",
            )
            for start in range(0, size, batch_size)
        ]
    )
    return found.reshape(len(found), -1, found.shape[-1]).mean(axis=1)


def reference(view, seed=0):
    """What `compare` needs of the reference data's view, JSON-ready.

    Args:
        view (View): the reference examples' view (the model's validation split, or another source).
        seed (int): which embeddings are kept, when there are more than `EMBEDDING_SAMPLE`.

    Returns:
        dict: `examples`, and per numeric feature its decile `edges`, bin `shares` and `percentiles`
        (`KS_POINTS` of them), per category feature its `shares`, per rate its value, and `embeddings` (a sample
        and the kernel's bandwidth) when the view has them.

    Raises:
        ValueError: the view is empty.
    """
    if not len(view):
        raise ValueError("no reference example to compute drift statistics from; give a source with examples.")
    numeric = {}
    for name, values in view.numeric.items():
        values = _finite(values)
        if not len(values):
            continue
        edges = np.unique(np.quantile(values, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
        numeric[name] = {
            # edges and percentiles exact: a discrete feature's values fall on them, and must stay on their side
            "edges": edges.tolist(),
            "shares": _rounded(_shares(values, edges)),
            "percentiles": np.quantile(values, np.linspace(0, 1, KS_POINTS)).tolist(),
        }
    categorical = {}
    for name, codes in view.categorical.items():
        found, counts = np.unique(np.asarray(codes).astype(str), return_counts=True)
        categorical[name] = {"shares": dict(zip(found.tolist(), _rounded(counts / counts.sum())))}
    saved = {
        "examples": len(view),
        "numeric": numeric,
        "categorical": categorical,
        "rates": {name: float(np.mean(flags)) if len(flags) else 0.0 for name, flags in view.rates.items()},
    }
    if view.embeddings is not None:
        sample = _sample(view.embeddings, seed)
        saved["embeddings"] = {"sample": [_rounded(row) for row in sample], "bandwidth": _bandwidth(sample)}
    return saved


def compare(saved, view, seed=0):
    """Tests a recent batch's view against a reference.

    Args:
        saved (dict): what `reference` returned (the model's `drift_reference.json`).
        view (View): the recent inputs' view.
        seed (int): the MMD permutations' and sample's seed.

    Returns:
        dict: `drift` (any row above its threshold), `examples`, `rows` (one per feature and statistic, worst
        first: `feature`, `statistic`, `value`, `threshold`, `score` (value / threshold), `drift`, and the KS
        statistic and p-value for numbers, the two rates, or the permutation p-value), `drifted` (the features
        above their thresholds, worst first) and `worst` (the three highest scores).

    Raises:
        ValueError: the recent view is empty.
    """
    from scipy import stats

    if not len(view):
        raise ValueError("no recent input to compare; give inputs the model can read.")
    shifts = []  # (feature, PSI, bins, recent count, KS figures) before their thresholds, which depend on how many
    for name, kept in saved["numeric"].items():
        values = _finite(view.numeric.get(name, []))
        if not len(values):
            continue
        psi = _psi(np.array(kept["shares"]), _shares(values, np.array(kept["edges"])))
        statistic = _ks(np.array(kept["percentiles"]), values)
        count = len(values) * saved["examples"] / (len(values) + saved["examples"])
        p_value = float(stats.kstwo.sf(statistic, max(1, round(count))))
        shifts.append((name, psi, len(kept["shares"]), len(values), {"ks_statistic": statistic, "ks_p_value": p_value}))
    for name, kept in saved["categorical"].items():
        if name not in view.categorical:
            continue
        found, counts = np.unique(np.asarray(view.categorical[name]).astype(str), return_counts=True)
        recent = dict(zip(found.tolist(), counts / counts.sum()))
        known = list(kept["shares"])
        expected = np.array([kept["shares"][code] for code in known] + [0.0])  # the last bin: unseen categories
        actual = np.array(
            [recent.get(code, 0.0) for code in known]
            + [sum(share for code, share in recent.items() if code not in kept["shares"])]
        )
        shifts.append((name, _psi(expected, actual), len(expected), counts.sum(), {}))
    rows = [
        _row(name, "psi", psi, _psi_threshold(bins, count, saved["examples"], len(shifts)), **extra)
        for name, psi, bins, count, extra in shifts
    ]
    for name, rate in saved["rates"].items():
        flags = view.rates.get(name)
        if flags is None or not len(flags):
            continue
        recent = float(np.mean(flags))
        rows.append(_row(name, "rate_increase", recent - rate, RATE_INCREASE, reference=rate, recent=recent))
    if "embeddings" in saved and view.embeddings is not None:
        kept = np.array(saved["embeddings"]["sample"])
        value, threshold, p_value = _mmd_test(
            kept, _sample(view.embeddings, seed), saved["embeddings"]["bandwidth"], seed
        )
        rows.append(_row("embedding", "mmd", value, threshold, p_value=p_value))
    ranked = sorted(rows, key=lambda row: row["score"], reverse=True)
    return {
        "drift": any(row["drift"] for row in rows),
        "examples": len(view),
        "rows": ranked,
        "drifted": [row["feature"] for row in ranked if row["drift"]],
        "worst": [row["feature"] for row in ranked[:3]],
    }


def _row(feature, statistic, value, threshold, **extra):
    return {
        "feature": feature,
        "statistic": statistic,
        "value": float(value),
        "threshold": float(threshold),
        "score": float(value / threshold),  # every threshold is positive: above 1 is drift, whatever the statistic
        "drift": bool(value > threshold),
        **{key: float(item) for key, item in extra.items()},
    }


def _finite(values):
    values = np.asarray(values, dtype="float64").ravel()
    return values[np.isfinite(values)]


def _rounded(values):
    return [float(f"{value:.{DIGITS}g}") for value in np.ravel(values)]


def _shares(values, edges):
    """Each bin's share of `values`; bins split at `edges`, a value equal to an edge going to the bin above, so
    that a discrete feature's values (0 or 1) each get a bin of their own."""
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(1, counts.sum())


def _psi_threshold(bins, count, reference_count, tests):
    """`PSI_THRESHOLD`, or on small batches what chance alone exceeds once in 100 batches over all `tests` features:
    PSI times the effective sample size is asymptotically chi-squared with bins - 1 degrees of freedom (PSI is the
    symmetric Kullback-Leibler divergence), so that threshold is its Bonferroni quantile over that size."""
    from scipy import stats

    effective = count * reference_count / (count + reference_count)
    return max(PSI_THRESHOLD, float(stats.chi2.ppf(1 - PSI_CHANCE / tests, max(1, bins - 1))) / effective)


def _psi(expected, actual):
    """The population stability index: sum over bins of (actual - expected) * ln(actual / expected)."""
    expected, actual = np.maximum(expected, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _ks(percentiles, values):
    """The two-sample KS statistic between the reference, its percentiles standing for it (each a 1/101 share), and
    `values`: the largest gap between the two empirical CDFs, ties (a discrete feature) counted as scipy does."""
    points = np.concatenate([percentiles, values])
    reference = np.searchsorted(np.sort(percentiles), points, side="right") / len(percentiles)
    recent = np.searchsorted(np.sort(values), points, side="right") / len(values)
    return float(np.max(np.abs(reference - recent)))


def _sample(rows, seed):
    rows = np.asarray(rows, dtype="float64")
    if len(rows) <= EMBEDDING_SAMPLE:
        return rows
    return rows[np.sort(np.random.default_rng(seed).choice(len(rows), EMBEDDING_SAMPLE, replace=False))]


def _distances(first, second):
    squared = (first**2).sum(axis=1)[:, None] + (second**2).sum(axis=1)[None, :] - 2 * first @ second.T
    return np.maximum(squared, 0.0)


def _bandwidth(sample):
    """The median heuristic: the median squared distance between reference embeddings (1 when they coincide)."""
    distances = _distances(sample, sample)[np.triu_indices(len(sample), k=1)]
    median = float(np.median(distances)) if len(distances) else 0.0
    return median if median > 0 else 1.0


def _mmd_test(reference_rows, recent_rows, bandwidth, seed):
    """MMD^2 between two samples under a Gaussian kernel (the biased estimate: never negative, so a threshold and
    a ratio to it mean what they say), its permutation threshold and p-value.

    Returns:
        tuple[float, float, float]: MMD^2, its `MMD_LEVEL` percentile over `MMD_PERMUTATIONS` random relabellings
        of the pooled samples, and the share of relabellings at least as large (the p-value).
    """
    pooled = np.concatenate([reference_rows, recent_rows])
    kernel = np.exp(-_distances(pooled, pooled) / bandwidth)
    n, m = len(reference_rows), len(recent_rows)
    rng = np.random.default_rng(seed)
    # one column per labelling (the true one first): 1 marks the reference side; sums of kernel blocks by products
    orders = [np.arange(n + m)] + [rng.permutation(n + m) for _ in range(MMD_PERMUTATIONS)]
    sides = np.zeros((n + m, len(orders)))
    for column, order in enumerate(orders):
        sides[order[:n], column] = 1.0
    totals = kernel.sum(axis=0)
    first = np.sum(sides * (kernel @ sides), axis=0)
    across = sides.T @ totals - first
    second = totals.sum() - 2 * (sides.T @ totals) + first
    values = first / n**2 + second / m**2 - 2 * across / (n * m)
    value, null = values[0], values[1:]
    return float(value), float(np.quantile(null, MMD_LEVEL)), float((1 + np.sum(null >= value)) / (1 + len(null)))
