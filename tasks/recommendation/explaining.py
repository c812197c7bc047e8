"""Explaining a recommender's scores: integrated gradients over the embeddings its scoring layers take
(`shared.explain.embedding_fields`), as a weight per input field and per item of the user's history."""

import numpy as np

from tasks.recommendation import scoring

# The embedding layers of `model.build` by the input field they stand for: the retrieval tower's user embedding is
# the user of the "items" score as `user_embedding` is of the rating.
FIELDS = {
    "user_embedding": "user",
    "retrieval_user_embedding": "user",
    "item_embedding": "item",
    "user_bias": "user_bias",
    "item_bias": "item_bias",
    "history_embedding": "history",
}


def scored(info, ranking=False):
    """The output a score comes from: for a user's list (`ranking`) the retrieval head's where the model has one, as
    `scoring.score_all` ranks; for a (user, item) pair the predicted rating where it has one, as `predict_raw`
    answers; else the other."""
    preferred = "items" if ranking else "rating"
    return preferred if preferred in info.outputs else next(name for name in info.outputs if name != preferred)


def explain_scores(model, info, users, items, histories, output):
    """How much each input field carries of the model's score of each (user, item): the weights add up to the score
    minus the baseline, the score with every embedding zero (for the rating: about the global mean rating; for the
    retrieval score: what the item gets from the tower's and its own bias alone).

    Args:
        model (keras.Model): the trained recommender.
        info (FittedState): `Splits.info`.
        users (np.ndarray): user indices.
        items (np.ndarray): item indices (the scored item of each user).
        histories (np.ndarray | list): each user's history row (`scoring.padded`).
        output (str): "rating" or "items" (`scored`).

    Returns:
        tuple[dict[str, np.ndarray], np.ndarray]: by field ("user", "item", "user_bias", "item_bias": (n,); "history":
        (n, history_length), latest item last), the weights of those the output is computed from; and the baselines.
    """
    from shared import explain

    inputs = scoring.model_inputs(info, users, items, histories)
    columns = np.zeros(len(inputs["user"]), "int64") if output == "rating" else np.asarray(items, "int64")
    weights, baselines = explain.embedding_fields(model, inputs, columns, output)
    return {FIELDS[name]: value for name, value in weights.items()}, baselines


def totals(weights):
    """The weights as a table: a column per field, a history summed over its items; and the column names."""
    names = list(weights)
    return np.stack([value.reshape(len(value), -1).sum(axis=1) for value in weights.values()], axis=1), names


def field(info, weights, baseline, row, history):
    """One score's explanation for a predict answer: its `baseline` and `weights` per field (largest |weight| first,
    a history summed) and, for models with a history, `history`: the weight of each item of it by item id
    ("(padding)" for the empty places of a short history, whose learned vector also counts)."""
    table, names = totals({name: value[row : row + 1] for name, value in weights.items()})
    order = np.argsort(-np.abs(table[0]), kind="stable")
    answer = {"baseline": round(float(baseline), 6), "weights": {names[i]: round(float(table[0, i]), 6) for i in order}}
    if "history" in weights:
        by_item = {}
        for item, weight in zip(history, weights["history"][row]):
            key = info.items[item - 1] if item else "(padding)"
            by_item[key] = by_item.get(key, 0.0) + float(weight)
        ranked = sorted(by_item.items(), key=lambda pair: -abs(pair[1]))
        answer["history"] = {key: round(weight, 6) for key, weight in ranked}
    return answer


def explanations(model, info, users, items, histories, ranking=False):
    """The explanation of each (user, item) score a predict answer gives (`field`).

    Args:
        model (keras.Model): the trained recommender.
        info (FittedState): `Splits.info`.
        users (np.ndarray): user indices.
        items (np.ndarray): item indices.
        histories (list): each user's history row.
        ranking (bool): the scores rank a user's list (see `scored`).

    Returns:
        tuple[str, list[dict]]: the explained output, and a field per pair.
    """
    output = scored(info, ranking)
    weights, baselines = explain_scores(model, info, users, items, histories, output)
    return output, [field(info, weights, baselines[row], row, histories[row]) for row in range(len(users))]
