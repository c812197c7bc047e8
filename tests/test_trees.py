"""shared.trees: a HistGradientBoostingClassifier written as JSON scores exactly as scikit-learn does."""

import json

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from shared import trees


def _data(rows, seed):
    generator = np.random.default_rng(seed)
    table = generator.normal(size=(rows, 4))
    table[:, 2] = generator.integers(3, 9, rows)  # category codes that do not start at 0
    table[::13, 0] = np.nan
    labels = ((table[:, 1] + (table[:, 2] == 5) + np.nan_to_num(table[:, 0])) > 0.5).astype(int)
    return table, labels


@pytest.mark.parametrize("categorical", [None, [False, False, True, False]])
def test_json_trees_match_scikit_learn_on_missing_unseen_and_negative_values(categorical):
    table, labels = _data(3000, 0)
    model = HistGradientBoostingClassifier(categorical_features=categorical, random_state=0).fit(table, labels)
    written = json.loads(json.dumps(trees.to_json(model)))  # what info.json holds
    unseen, _ = _data(2000, 1)
    unseen[:, 2] = np.random.default_rng(2).integers(-1, 12, len(unseen))  # negative and never-seen categories
    unseen[::7, 2] = np.nan
    np.testing.assert_allclose(trees.predict_proba(written, unseen), model.predict_proba(unseen)[:, 1], atol=1e-9)


def test_only_a_fitted_binary_classifier_is_written():
    table, _ = _data(300, 0)
    model = HistGradientBoostingClassifier(max_iter=5).fit(table, np.arange(300) % 3)
    with pytest.raises(ValueError, match="binary"):
        trees.to_json(model)
