"""Scoring with a trained recommender: predicted ratings, every item's score, top-K unseen items, popularity."""

import numpy as np


def rate(model, info, users, items):
    """Predicted ratings for index pairs, clipped to the rating scale (rating models only)."""
    predicted = model.predict(model_inputs(info, users, items), batch_size=8192, verbose=0)["rating"]
    return np.clip(np.asarray(predicted).reshape(-1), *info.rating_scale)


def score_all(model, info, users, histories):
    """Scores of every item (index 0, the unknown item, scores -inf) for each user index.

    The retrieval head scores all items at once from the user and their recent items (`histories`,
    rows of item indices); without it, the predicted rating of each pair is the score.
    """
    users = np.asarray(users, "int32")
    items = len(info.items) + 1
    if "items" in info.outputs:
        inputs = model_inputs(info, users, histories=histories)
        scores = np.asarray(model.predict(inputs, batch_size=512, verbose=0)["items"], "float64")
    else:
        pairs = model_inputs(info, np.repeat(users, items), np.tile(np.arange(items), len(users)))
        scores = np.asarray(model.predict(pairs, batch_size=65536, verbose=0)["rating"], "float64")
        scores = scores.reshape(len(users), items)
    scores[:, 0] = -np.inf
    return scores


def recommend(model, info, users, histories, seen, k):
    """Top-k unseen items per user index (unknown users, index 0, get the popular items).

    Returns:
        tuple[np.ndarray, np.ndarray]: item indices (users, k) best first, and their scores.
    """
    chosen, chosen_scores = np.zeros((len(users), k), "int64"), np.zeros((len(users), k))
    for start in range(0, len(users), 256):  # bounds memory: 256 users x all items at a time
        block = np.asarray(users[start : start + 256])
        scores = score_all(model, info, block, histories[start : start + 256])
        for row, user in enumerate(block):
            scores[row, list(seen[start + row])] = -np.inf
            if user == 0:  # popularity fallback: the score is the inverse popularity rank
                scores[row] = -np.inf
                scores[row, popular_lists(info, [seen[start + row]], k)[0]] = 1.0 / np.arange(1, k + 1)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)
        chosen[start : start + len(block)] = top
        chosen_scores[start : start + len(block)] = np.take_along_axis(scores, top, 1)
    return chosen, chosen_scores


def model_inputs(info, users, items=None, histories=None):
    """The model's input dict for index arrays; absent items or histories are zeros (unused there)."""
    users = np.asarray(users, "int32")
    inputs = {"user": users}
    if info.model != "two_tower":
        inputs["item"] = np.zeros_like(users) if items is None else np.asarray(items, "int32")
    if info.history_length:
        shape = (len(users), info.history_length)
        inputs["history"] = np.zeros(shape, "int32") if histories is None else np.asarray(histories, "int32")
    return inputs


def padded(recent, length):
    """Left-pads a space-separated item index string to a history row (latest item last)."""
    row = [int(item) for item in recent.split()][-length:] if length else []
    return [0] * (length - len(row)) + row


def popular_lists(info, seen, k):
    """The k most popular training items each user has not seen."""
    popular = [int(item) for item in info.popular.split()]
    return np.array([[item for item in popular if item not in excluded][:k] for excluded in seen])
