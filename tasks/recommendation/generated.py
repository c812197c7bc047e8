"""Generated interactions: users and items with latent tastes and popularity skew, for offline demos and tests."""

import numpy as np

GENRES = ("action", "comedy", "drama", "documentary", "horror", "romance")


def synthetic_ratings(seed, users=300, items=200, factors=4):
    """Generated interactions with latent tastes, popularity skew and noisy 1-5 star ratings.

    Which items a user rates depends on both popularity and taste, and ratings follow taste, so a
    personalised model beats the popularity ranking while popularity remains a strong baseline.

    Returns:
        tuple[pandas.DataFrame, dict[str, str]]: interactions (user, item, rating, timestamp) and titles.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    tastes = rng.normal(size=(users, factors))
    traits = rng.normal(size=(items, factors))
    affinity = tastes @ traits.T / np.sqrt(factors)
    popularity = rng.permutation(1.0 / np.arange(1, items + 1) ** 0.7)  # Zipf-like exposure
    rows = []
    for user in range(users):
        count = int(rng.integers(15, 45))
        # Gumbel top-k samples `count` distinct items with probability proportional to exposure x taste
        keys = np.log(popularity) + 1.5 * affinity[user] + rng.gumbel(size=items)
        chosen = np.argsort(-keys)[:count]
        stars = np.clip(np.round(3.2 + 0.9 * affinity[user, chosen] + rng.normal(0, 0.5, count)), 1, 5)
        times = np.sort(rng.integers(0, 10**6, count))
        rows.extend(zip([f"u{user}"] * count, [f"i{item}" for item in chosen], stars, times))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    titles = {
        f"i{item}": f"item {item} ({GENRES[int(np.argmax(traits[item])) % len(GENRES)]})" for item in range(items)
    }
    return frame, titles
