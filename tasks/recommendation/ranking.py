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
    item_count = len(info["items"])
    if info["explicit"]:
        if "rating" in info["outputs"]:
            predicted = scoring.rate(model, info, test["user"], test["item"])
            results.update(evaluation.regression(test_ratings, predicted).metrics)
        if not splits.fitted:  # the item-mean baseline needs training ratings beside the test rows
            baseline = item_means(train["item"], train_ratings, item_count + 1)[test["item"]]
            for name, value in evaluation.regression(test_ratings, baseline).metrics.items():
                results[f"popularity_{name}"] = value
    # ranking: each test user's held-out items among all items they have not rated in train/validation
    relevant = group(test["user"], test["item"])
    if splits.fitted:  # a trained model on new data: what its training data showed of each user, but these items
        seen_then = [set(map(int, row.split())) for row in info["seen"]]
        excluded = {user: seen_then[user] - held for user, held in relevant.items() if user < len(seen_then)}
    else:
        excluded = group(np.concatenate([train["user"], splits.validation.features["user"]]),
                         np.concatenate([train["item"], splits.validation.features["item"]]))
    users = np.array(sorted(relevant), dtype="int32")
    wanted = [relevant[user] for user in users]
    seen = [excluded.get(user, set()) for user in users]
    latest = dict(zip(test["user"].tolist(), test.get("history", np.zeros((len(test["user"]), 0), "int32"))))
    histories = np.array([latest[user] for user in users.tolist()], "int32")  # as of their latest test row
    ours = scoring.recommend(model, info, users, histories, seen, k)[0]
    popular = scoring.popular_lists(info, seen, k)
    curves = []
    for label, lists in (("model", ours), ("popularity", popular)):
        prefix = "" if label == "model" else "popularity_"
        for name, value in evaluation.ranking(lists, wanted, k, item_count).items():
            results[f"{prefix}{name}_at_k"] = value
        hit_rates = [evaluation.ranking(lists, wanted, cut, item_count)["hit_rate"] for cut in range(1, k + 1)]
        curves.append((label, np.arange(1, k + 1), np.array(hit_rates)))
    results["evaluated_users"] = float(len(users))
    figures = {"hit_rate_curve": plots.curves(curves, "K", "HitRate@K", "held-out items in the top K (test)")}
    texts = {"sample_recommendations.md": sample_table(info, users[:8], ours, popular, wanted, seen)}
    return evaluation.Evaluation(metrics=results, figures=figures, texts=texts)


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
