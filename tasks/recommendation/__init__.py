"""Recommendation: rating prediction and top-K ranking from (user, item[, rating, timestamp]) interactions.

Data sources:
    embedded                         generated users and items with latent tastes, popularity skew and
                                     rating noise (synthetic), so personalisation beats popularity.
    tfds:movielens/100k-ratings      and tfds:movielens/latest-small-ratings (needs internet once).
    PATH                             a ratings CSV with configurable columns (`user_column`, `item_column`,
                                     `rating_column`, `timestamp_column`), MovieLens `ratings.csv`,
                                     tab-separated `u.data`, `ratings.dat` (`::`), or a folder holding one
                                     of them. Titles come from `items_file` or, beside the ratings,
                                     `movies.csv` / `u.item` / `movies.dat`.

Models (`model`):
    mf          matrix factorisation with user and item biases, trained on ratings (MSE).
    neural      user and item embeddings through an MLP, beside their dot product (MSE).
    two_tower   retrieval: a user tower (user id, and on chronological splits the mean of the user's latest
                `history_length` items) scored against every item with a full softmax; for implicit feedback,
                ranking only (no ratings).
    mf and neural also carry that retrieval tower as a second head (`retrieval=true`) and rank with it:
    ranking by predicted rating favours obscure items a few fans rated highly and loses to popularity.

Policies (documented behaviour rather than errors):
    - Implicit feedback: set `rating_column=""`; every row is a positive and `model=auto` picks two_tower.
    - Duplicate (user, item) rows: `duplicates=last` keeps the latest rating (a re-rating supersedes the
      old one), `mean` averages them, `error` refuses the file.
    - Leave-last-out: a user's last interaction is test and the one before it validation; a user with a
      single interaction stays in training only (counted in `info.train_only_users`).
    - Unknown user at predict time: the most popular unseen items, with `"known_user": false` and
      `"fallback": "popularity"`. Unknown item in a "user,item" pair: the model's unknown-item row
      (the user's bias plus the global mean), with `"known_item": false`.

Ids are mapped to indices with a vocabulary stored in `Splits.info` (index 0 is the unknown id), so the
logged model takes raw user and item ids and the Keras model itself stays backend-agnostic.
"""

import dataclasses

import numpy as np

from shared.constraints import Choice, Count, Fraction, NonNegative, Size, Width, Widths
from tasks import register
from tasks.base import Task, TaskConfig, search_space
from tasks.recommendation import encoding, explaining, model as models, ranking, readers, scoring
from tasks.recommendation.generated import synthetic_ratings
from tasks.recommendation.interactions import clean_interactions, split_interactions
from tasks.recommendation.layers import layers

MODELS = ("auto", "mf", "neural", "two_tower")
SPLITS = ("random", "leave_last_out", "time")
DUPLICATES = ("last", "mean", "error")


@dataclasses.dataclass
class RecommendationConfig(TaskConfig):
    epochs: int = 30  # an upper bound: embeddings overfit within a few epochs and early stopping ends it
    batch_size: int = 256  # one interaction is a tiny example: bigger batches keep the CPU busy
    learning_rate: float = 1e-2  # each embedding row gets few updates per epoch: a high Adam rate suits them
    weight_decay: float = 0.0  # off: `l2` already penalises the embedding tables, and decay would shrink the biases too
    early_stopping_patience: int = 3  # validation loss turns up quickly once embeddings memorise
    model: Choice(*MODELS) = "auto"  # auto: mf for explicit ratings, two_tower for implicit; or mf | neural | two_tower
    embedding_dim: Width = 32  # latent factors; MovieLens-sized data gains little beyond 32-64
    l2: NonNegative = 1e-4  # L2 on whole embedding tables (keras-io recipe): rarely seen rows shrink the most
    hidden_units: Widths = (64, 32)  # the neural model's MLP over concatenated user and item embeddings
    dropout: Fraction = 0.1  # on embeddings in the neural model and the retrieval tower: users' tastes are noisy
    # On chronological splits (leave_last_out, time) the user's latest N items also feed the retrieval tower: the
    # next item a user picks follows their recent ones. A random split holds out ratings from anywhere in each
    # user's history, where the latest items mislead: MovieLens latest-small, random split, seeds 0-2, validation
    # HitRate@10 0.556 / 0.544 / 0.587 with them, 0.634 / 0.658 / 0.611 without (popularity 0.550), so it uses none.
    history_length: Size = 10  # latest items per user on chronological splits (0: the user id alone)
    retrieval: bool = True  # mf/neural also learn the retrieval head and rank with it (see the module docstring)
    split: Choice(*SPLITS) = "random"  # random (rating prediction), leave_last_out (next item per user), time (global)
    top_k: Count = 10  # length of recommendation lists, and the K of HitRate@K, NDCG@K, MAP@K
    user_column: str = "userId"  # MovieLens ratings.csv names; set yours for other files
    item_column: str = "movieId"  # also the id column of an items_file
    rating_column: str = "rating"  # empty string: implicit feedback, every row is a positive
    timestamp_column: str = "timestamp"  # needed by the leave_last_out and time splits only
    title_column: str = "title"  # the item file's display column (MovieLens movies.csv)
    items_file: str = ""  # item metadata CSV; empty looks for movies.csv / u.item / movies.dat beside the ratings
    rating_min: float = 0.5  # MovieLens' half-star scale; ratings outside [rating_min, rating_max] are refused
    rating_max: float = 5.0  # top of that scale (u.data's 1-5 stars fit inside it)
    duplicates: Choice(*DUPLICATES) = "last"  # last | mean | error: what a repeated (user, item) row means
    search_space: dict = search_space(  # embeddings want high rates and no decay (see weight_decay)
        weight_decay=None,
        learning_rate=["log", 1e-3, 3e-2],
        embedding_dim=["choice", 16, 32, 64],
        dropout=["float", 0.0, 0.3],
    )

    def check(self):
        """Raises:
        ValueError: also when the rating scale is empty (rating_min must be below rating_max).
        """
        super().check()
        if self.rating_min >= self.rating_max:
            raise ValueError(f"rating_min ({self.rating_min}) must be below rating_max ({self.rating_max}).")


@register
class Recommendation(Task):
    name = "recommendation"
    answer_key = "recommendations"
    config_class = RecommendationConfig
    state_class = encoding.RecommendationState
    primary_metric = "hit_rate_at_k"
    tfds_name = "movielens/100k-ratings"
    input_column = "query"
    table_columns = "query,user,user_id"
    key_params = Task.key_params + ("model", "split")
    quick_overrides = {"epochs": 3, "max_examples": 0}  # collaborative filtering needs every user's rows
    readers = ("embedded", "tfds_ratings", "ratings")
    explain_kind = "table"  # a weight per input field (user, item, biases, history) of each score
    # Candidates are chosen by HitRate@K, which the retrieval head alone answers: `neural` (an MLP rating head)
    # tied the defaults to the last digit on both MovieLens splits, so the retrieval tower's dropout and the
    # latent size are tried instead. Dropout 0.3 validated at or above the defaults on both splits at seeds 0-1
    # (random 0.634 -> 0.649, 0.658 -> 0.660; leave-last-out 0.092 -> 0.092, 0.085 -> 0.118; benchmarks/transfer.py).
    candidates = (("default", {}), ("regularised", {"dropout": 0.3}), ("wide", {"embedding_dim": 64}))
    remedies = (
        "Likely causes: too few interactions per user, where popularity is hard to beat. Try "
        "history_length, another embedding_dim or model, more epochs, or --preset balanced."
    )

    def load_data(self, config, fitted=None):
        """Reads and splits the interactions; with `fitted` (a trained model's info), encoded with its id
        vocabularies."""
        found = self.read(config)
        source = config.data
        frame = clean_interactions(found.frame.reset_index(drop=True), config, source).reset_index(drop=True)
        train, validation, test = split_interactions(frame, config, source)
        return encoding.encode(
            frame, found.titles, (train, validation, test), config, found.name, found.synthetic, fitted
        )

    def embedded(self, config):
        """Generated ratings with latent tastes and popularity skew (implicit when rating_column is empty)."""
        frame, titles = synthetic_ratings(config.seed)
        if not config.rating_column:
            frame = frame.drop(columns="rating")
        return readers.Ratings(frame, titles, "synthetic_ratings", synthetic=True)

    def load_fitted(self, config, info):
        """`load_data`, ids encoded with the model's vocabularies (ids it never saw are its unknown user or item)."""
        return self.load_data(config, fitted=info)

    def build_model(self, config, info):
        return models.build(config, info)

    def loss(self, config, info):
        import keras

        losses = {
            "rating": keras.losses.MeanSquaredError(),
            "items": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        }
        return {name: losses[name] for name in info.outputs}

    def metrics(self, config, info):
        import keras

        metrics = {
            "rating": [keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")],
            # a training-time proxy: unlike the test metric it does not exclude already-seen items
            "items": [keras.metrics.SparseTopKCategoricalAccuracy(k=config.top_k, name="hit_rate_at_k")],
        }
        return {name: metrics[name] for name in info.outputs}

    def eval_map(self, config, info):
        outputs = info.outputs

        def targets(features, ratings):
            wanted = {"rating": ratings, "items": features["item"]}  # retrieval predicts the item itself
            inputs = {key: value for key, value in features.items() if key != "item" or info.model != "two_tower"}
            return inputs, {name: wanted[name] for name in outputs}

        return targets

    def custom_objects(self):
        return layers()

    def evaluate(self, model, splits, config):
        return ranking.evaluate(model, splits, config)

    def scorers(self, config, info):
        from shared import baselines

        return [baselines.HIT_RATE]

    def outputs(self, model, splits, role, config):
        """Each held-out user's items, and the model's top-K list of items they have not rated before."""
        users, wanted, seen, histories = ranking.held_out(splits, role)
        return wanted, scoring.recommend(model, splits.info, users, histories, seen, config.top_k)[0]

    def baselines(self, splits, config):
        """The most popular training items each user has not rated (trivial: the same ranking for everyone)."""
        from shared import baselines

        lists = {
            role: scoring.popular_lists(splits.info, ranking.held_out(splits, role)[2], config.top_k)
            for role in ("validation", "test")
        }
        return [baselines.Baseline("popularity", **lists, trivial=True)]

    def explanation_figure(self, model, splits, targets, outputs, config):
        """A seeded choice of test interactions, each score (the predicted rating, else the retrieval score of the
        item) explained as the weights of its fields (`explaining.explain_scores`)."""
        from shared import explain

        info, test = splits.info, splits.test.features
        rng = np.random.default_rng(config.seed)
        rows = np.sort(rng.choice(len(test["user"]), min(config.explain_count, len(test["user"])), replace=False))
        users, items = test["user"][rows], test["item"][rows]
        histories = test["history"][rows] if "history" in test else [[]] * len(rows)
        output = explaining.scored(info)
        weights, baselines = explaining.explain_scores(model, info, users, items, histories, output)
        table, names = explaining.totals(weights)
        scores = np.asarray(model(scoring.model_inputs(info, users, items, histories), training=False)[output])
        scores = scores[np.arange(len(rows)), 0 if output == "rating" else items]
        titles = [
            f"user {_name(info.users, user)}, item {_name(info.items, item)}\n{output} {score:.2f} (baseline "
            f"{baseline:.2f})"
            for user, item, score, baseline in zip(users, items, scores, baselines)
        ]
        found = explain.Explanation("table", "integrated_gradients", table, np.zeros(len(rows), "int64"))
        return explain.figure(found, None, titles, names)

    def input_example(self, splits):
        info = splits.info
        return [info.users[0], f"{info.users[0]},{info.items[0]}"]

    def predict_raw(self, model, info, inputs, explain=None):
        """Answers user ids with top-K unseen items and "user,item" pairs with a predicted rating.

        Args:
            model (keras.Model): the trained model.
            info (FittedState): `Splits.info`.
            inputs (list): user ids (`"42"`) or pairs (`"42,318"`).
            explain (str | None): not None: each answer's `explanation` holds the `method`, the explained `output`
                and, for a pair, its score's `baseline`, `weights` per field and `history` (`explaining.field`),
                for a user id the same per recommended item under `items`; an unknown user's popular items have
                method "popularity".

        Returns:
            list[dict]: per user id `user`, `known_user`, `fallback` and `recommendations` (item, title,
            score); per pair `user`, `item`, `known_user`, `known_item`, `score` and `rating` (None for the
            two-tower model, which scores but does not predict ratings).

        Raises:
            ValueError: an empty input or one with more than one comma.
        """
        user_index = {user: index + 1 for index, user in enumerate(info.users)}
        item_index = {item: index + 1 for index, item in enumerate(info.items)}
        queries = _queries(inputs)
        answers = [None] * len(queries)
        singles = [position for position, parts in enumerate(queries) if len(parts) == 1]
        if singles:
            users = np.array([user_index.get(queries[position][0], 0) for position in singles], "int32")
            seen = [set(map(int, info.seen[user].split())) if user else set() for user in users]
            histories = [scoring.padded(info.recent[user], info.history_length) for user in users]
            chosen, scores = scoring.recommend(model, info, users, histories, seen, info.top_k)
            if explain is not None:
                explained = self._explained_lists(model, info, users, chosen, histories)
            for position, user, items, values in zip(singles, users, chosen, scores):
                answers[position] = {
                    "user": queries[position][0],
                    "known_user": bool(user),
                    "fallback": None if user else "popularity",
                    "recommendations": [
                        {
                            "item": info.items[item - 1],
                            "title": info.titles[item - 1] if info.titles else "",
                            "score": round(float(value), 5),
                        }
                        for item, value in zip(items, values)
                    ],
                }
                if explain is not None:
                    answers[position]["explanation"] = next(explained)
        pairs = [position for position, parts in enumerate(queries) if len(parts) == 2]
        if pairs:
            users = np.array([user_index.get(queries[position][0], 0) for position in pairs], "int32")
            items = np.array([item_index.get(queries[position][1], 0) for position in pairs], "int32")
            histories = [scoring.padded(info.recent[user], info.history_length) for user in users]
            if "rating" not in info.outputs:
                scores = scoring.score_all(model, info, users, histories)[np.arange(len(users)), items]
                ratings = [None] * len(users)
            else:
                scores = scoring.rate(model, info, users, items)
                ratings = [round(float(value), 4) for value in scores]
            if explain is not None:
                output, fields = explaining.explanations(model, info, users, items, histories)
                fields = iter({"method": "integrated_gradients", "output": output, **found} for found in fields)
            for position, user, item, score, rating in zip(pairs, users, items, scores, ratings):
                answers[position] = {
                    "user": queries[position][0],
                    "item": queries[position][1],
                    "known_user": bool(user),
                    "known_item": bool(item),
                    "score": round(float(score), 5) if np.isfinite(score) else None,
                    "rating": rating,
                }
                if explain is not None:
                    answers[position]["explanation"] = next(fields)
        return answers

    @staticmethod
    def _explained_lists(model, info, users, chosen, histories):
        """Yields the explanation of each user's list (`predict_raw`), in order: every recommended item's score
        explained, or method "popularity" for an unknown user's popular items."""
        known = np.flatnonzero(users)
        if known.size:
            repeated = [histories[row] for row in known for _ in range(chosen.shape[1])]
            output, fields = explaining.explanations(
                model, info, np.repeat(users[known], chosen.shape[1]), chosen[known].ravel(), repeated, ranking=True
            )
        for row, user in enumerate(users):
            if not user:
                yield {"method": "popularity"}
                continue
            start = int(np.searchsorted(known, row)) * chosen.shape[1]
            items = [info.items[item - 1] for item in chosen[row]]
            yield {
                "method": "integrated_gradients",
                "output": output,
                "items": dict(zip(items, fields[start : start + chosen.shape[1]])),
            }

    def run_setting(self, params, info):
        # `auto` resolves once the data shows explicit ratings (info, None before the data is read)
        return info.model if info is not None else params.get("model", "")

    def prepare_inputs(self, info, inputs):
        """The model's inputs for user ids and `user,item` pairs: vocabulary indices (0 when unknown) and each
        user's latest items."""
        users, items = _indices(info, _queries(inputs))
        histories = [scoring.padded(info.recent[user], info.history_length) for user in users]
        return scoring.model_inputs(info, users, [item or 0 for item in items], histories)

    def drift_view(self, model, info, batch):
        """Unknown users and items, and the requested items' training popularity: the tenth of the items (most rated
        first) each falls in, unknown ones apart."""
        from shared import drift

        view = drift.View(rates={"unknown_users": np.ravel(batch["user"]) == 0})
        if "item" in batch:
            items = np.ravel(batch["item"])
            rank = np.zeros(len(info.items) + 1, "int64")
            popular = [int(item) for item in info.popular.split()]
            rank[popular] = np.arange(len(popular)) * 10 // max(1, len(popular))
            view.rates["unknown_items"] = items == 0
            view.categorical["item_popularity"] = np.where(items == 0, -1, rank[items])
        return view

    def drift_inputs(self, info, inputs):
        """User and item indices of the queries (items only of `user,item` pairs), whatever the model reads."""
        users, items = _indices(info, _queries(inputs))
        batch = {"user": np.array(users, "int64")}
        if any(item is not None for item in items):
            batch["item"] = np.array([item for item in items if item is not None], "int64")
        return batch

    def drift_map(self, config, info):
        """None: the decoded examples hold the user and the item, whichever of them the model reads."""
        return None

    def serving_signature(self, model, info):
        serving = super().serving_signature(model, info)
        serving.files = {
            "users.txt": info.users,
            "items.txt": info.items,
            "recent.txt": info.recent,
            "seen.txt": info.seen,
            "popular.txt": info.popular.split(),
        }
        steps = [
            "user: its line number + 1 in users.txt, 0 for a user unseen in training",
            "item (rating models): its line number + 1 in items.txt, 0 for an unknown item",
        ]
        if info.history_length:
            steps.append(
                f"history: the user's latest {info.history_length} item indices, latest last, "
                "left-padded with 0; recent.txt holds them per user index (line 0: the unknown user)"
            )
        meaning = {
            "rating": f"the predicted rating on the scale {info.rating_scale}",
            "items": "a score per item index (index 0: unknown); rank them, after removing the user's seen "
            "items (seen.txt, per user index); unknown users get popular.txt (most rated first)",
        }
        serving.preprocessing.update({"steps": steps, "meaning": {key: meaning[key] for key in info.outputs}})
        return serving


def _indices(info, queries):
    """Vocabulary indices of split queries (0 when unknown): the users, and the items (None for a user alone)."""
    user_index = {user: index + 1 for index, user in enumerate(info.users)}
    item_index = {item: index + 1 for index, item in enumerate(info.items)}
    users = [user_index.get(parts[0], 0) for parts in queries]
    return users, [item_index.get(parts[1], 0) if len(parts) == 2 else None for parts in queries]


def _name(names, index):
    """The id of a vocabulary index (0: unknown)."""
    return names[index - 1] if index else "(unknown)"


def _queries(inputs):
    """Splits raw queries into `[user]` or `[user, item]` id texts.

    Raises:
        ValueError: an empty input or one with more than one comma.
    """
    queries = []
    for raw in inputs:
        parts = [readers.id_text(part) for part in (str(raw).split(",") if isinstance(raw, str) else [raw])]
        if len(parts) > 2 or not all(parts):
            raise ValueError(f"prediction input '{raw}' must be a user id ('42') or a user,item pair ('42,318').")
        queries.append(parts)
    return queries
