"""A fitted scikit-learn HistGradientBoostingClassifier (binary) as JSON, and its probabilities in NumPy.

A logged model's `info` is JSON, and a pickle of scikit-learn internals would tie every logged model to
one scikit-learn version; the trees themselves are a few arrays per tree. `predict_proba` follows
scikit-learn's own traversal (`_predictor.pyx`): a missing value (NaN, or a negative category) goes the
way training sent missing values, a category the split saw goes by the split's bitset, and a category
training never saw is treated as missing.
"""

import numpy as np

_NODE_FIELDS = (
    "value",
    "feature_idx",
    "num_threshold",
    "missing_go_to_left",
    "left",
    "right",
    "is_leaf",
    "is_categorical",
    "bitset_idx",
)


def to_json(model):
    """Returns:
        dict: the trees, the baseline log-odds and the known categories of `model`, JSON-serialisable.

    Raises:
        ValueError: `model` is not a fitted binary HistGradientBoostingClassifier.
    """
    if len(getattr(model, "classes_", ())) != 2:
        raise ValueError("only a fitted binary HistGradientBoostingClassifier can be written as trees.")
    known, feature_map = model._bin_mapper.make_known_categories_bitsets()
    # With categorical features, scikit-learn first ordinal-encodes them and puts them first.
    columns, categories = list(range(model.n_features_in_)), []
    preprocessor = getattr(model, "_preprocessor", None)
    if preprocessor is not None:
        masks = {name: np.asarray(mask) for name, _, mask in preprocessor.transformers_ if name != "remainder"}
        columns = np.flatnonzero(masks["encoder"]).tolist() + np.flatnonzero(masks["numerical"]).tolist()
        categories = [
            [float(value) for value in found if not np.isnan(value)]
            for found in preprocessor.named_transformers_["encoder"].categories_
        ]
    trees = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        trees.append(
            {
                **{field: nodes[field].tolist() for field in _NODE_FIELDS},
                "left_categories": predictor.raw_left_cat_bitsets.tolist(),
            }
        )
    return {
        "baseline": float(np.ravel(model._baseline_prediction)[0]),
        "trees": trees,
        "known_categories": known.tolist(),
        "feature_map": feature_map.tolist(),
        "columns": columns,
        "categories": categories,
    }


def _encoded(trees, table):
    """The table as the trees read it: columns reordered, each category replaced by its code (unknown: NaN)."""
    table = np.asarray(table, "float64")[:, trees["columns"]]
    for index, found in enumerate(trees["categories"]):
        found = np.asarray(found, "float64")
        values = table[:, index]
        if not len(found):
            table[:, index] = np.nan
            continue
        position = np.minimum(np.searchsorted(found, values), len(found) - 1)  # categories_ are sorted
        table[:, index] = np.where(found[position] == values, position, np.nan)
    return table


def _in_bitset(bitsets, rows, values):
    """Whether each of `values` (uint8 range) is set in its row of a (rows, 8) uint32 bitset table."""
    words = bitsets[rows, values // 32]
    return ((words >> (values % 32).astype(np.uint32)) & 1).astype(bool)


def predict_proba(trees, table):
    """Probabilities of the positive class for rows of `table` (float, columns as the model was fitted on).

    Args:
        trees (dict): from `to_json`.
        table (np.ndarray): (rows, features).

    Returns:
        np.ndarray: float64 (rows,).
    """
    table = _encoded(trees, table)
    rows = np.arange(len(table))
    known = np.asarray(trees["known_categories"], "uint32").reshape(-1, 8)
    feature_map = np.asarray(trees["feature_map"], "int64")
    raw = np.full(len(table), trees["baseline"])
    for tree in trees["trees"]:
        arrays = {field: np.asarray(tree[field]) for field in _NODE_FIELDS}
        left_categories = np.asarray(tree["left_categories"], "uint32").reshape(-1, 8)
        node = np.zeros(len(table), "int64")
        while not (leaf := arrays["is_leaf"][node].astype(bool)).all():
            value = table[rows, arrays["feature_idx"][node]]
            missing = np.isnan(value)
            go_left = value <= arrays["num_threshold"][node]
            categorical = arrays["is_categorical"][node].astype(bool) & ~missing
            if categorical.any():
                category = np.where(categorical, value, 0)
                missing |= categorical & (category < 0)
                category = np.clip(category, 0, 255).astype("int64")
                split_left = _in_bitset(left_categories, np.where(categorical, arrays["bitset_idx"][node], 0), category)
                seen = _in_bitset(known, np.where(categorical, feature_map[arrays["feature_idx"][node]], 0), category)
                missing |= categorical & ~split_left & ~seen
                go_left = np.where(categorical, split_left, go_left)
            go_left = np.where(missing, arrays["missing_go_to_left"][node].astype(bool), go_left)
            node = np.where(leaf, node, np.where(go_left, arrays["left"][node], arrays["right"][node]))
        raw += arrays["value"][node]
    return 0.5 * (1 + np.tanh(raw / 2))  # the logistic function, without overflow for large log-odds
