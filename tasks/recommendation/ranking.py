"""Evaluating a recommender: rating error against item means, and HitRate / NDCG / MAP@K against popularity."""

import numpy as np

from tasks.recommendation import scoring
from tasks.recommendation.report import sample_table


def evaluate(model, splits, config):
    """Rating RMSE / MAE beside damped item means (explicit data), and HitRate, NDCG and MAP at K over each
    test user's held-out items among the items they have not rated, beside the popularity ranking."""
    from shared import evaluation, plots

    info, k = splits.info, config.top_k
    train, train_ratings = splits.train.features, splits.train.targets
    test, test_ratings = splits.test.features, splits.test.targets
    results = {}
    item_count = len(info.items)
    if info.explicit:
        if "rating" in info.outputs:
            predicted = scoring.rate(model, info, test["user"], test["item"])
            results.update(evaluation.regression(test_ratings, predicted).metrics)
        if not splits.fitted:  # the item-mean baseline needs training ratings beside the test rows
            baseline = item_means(train["item"], train_ratings, item_count + 1)[test["item"]]
            for name, value in evaluation.regression(test_ratings, baseline).metrics.items():
                results[f"baseline_item_means_{name}"] = value
    users, wanted, seen, histories = held_out(splits, "test")
    ours = scoring.recommend(model, info, users, histories, seen, k)[0]
    popular = scoring.popular_lists(info, seen, k)
    curves = []
    for label, lists in (("model", ours), ("popularity", popular)):
        prefix = "" if label == "model" else "baseline_popularity_"
        for name, value in evaluation.ranking(lists, wanted, k, item_count).items():
            results[f"{prefix}{name}_at_k"] = value
        hit_rates = [evaluation.ranking(lists, wanted, cut, item_count)["hit_rate"] for cut in range(1, k + 1)]
        curves.append((label, np.arange(1, k + 1), np.array(hit_rates)))
    results["evaluated_users"] = float(len(users))
    figures = {"hit_rate_curve": plots.curves(curves, "K", "HitRate@K", "held-out items in the top K (test)")}
    texts = {"sample_recommendations.md": sample_table(info, users[:8], ours, popular, wanted, seen)}
    return evaluation.Evaluation(metrics=results, figures=figures, texts=texts, outputs=(wanted, ours))


def held_out(splits, role):
    """Each user's held-out items of a split, and what their list must leave out.

    Validation users are ranked among the items they have not rated in training; test users among those they
    have rated in neither training nor validation (a trained model on new data: not in what its training
    data showed of them).

    Args:
        splits (tasks.base.Splits): the encoded splits.
        role (str): "validation" or "test".

    Returns:
        tuple[np.ndarray, list[set], list[set], np.ndarray]: user indices (sorted), their held-out items, their
        excluded items, and their latest history rows in the split (as of their latest row).
    """
    split, info = getattr(splits, role).features, splits.info
    relevant = group(split["user"], split["item"])
    if splits.fitted:
        seen_then = [set(map(int, row.split())) for row in info.seen]
        excluded = {user: seen_then[user] - held for user, held in relevant.items() if user < len(seen_then)}
    else:
        earlier = [splits.train.features] + ([splits.validation.features] if role == "test" else [])
        excluded = group(
            np.concatenate([part["user"] for part in earlier]), np.concatenate([part["item"] for part in earlier])
        )
    users = np.array(sorted(relevant), dtype="int32")
    latest = dict(zip(split["user"].tolist(), split.get("history", np.zeros((len(split["user"]), 0), "int32"))))
    histories = np.array([latest[user] for user in users.tolist()], "int32")
    return users, [relevant[user] for user in users], [excluded.get(user, set()) for user in users], histories


def group(users, items):
    """user index -> set of item indices."""
    grouped = {}
    for user, item in zip(users.tolist(), items.tolist()):
        grouped.setdefault(user, set()).add(item)
    return grouped


def item_means(items, ratings, count, damping=5.0):
    """Each item's mean training rating, shrunk toward the global mean for rarely rated items."""
    mean = float(ratings.mean())
    sums = np.bincount(items, weights=ratings, minlength=count)
    counts = np.bincount(items, minlength=count)
    return (sums + damping * mean) / (counts + damping)
