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
    two_tower   retrieval: a user tower (user id + mean of the user's latest `history_length` items) scored
                against every item with a full softmax; for implicit feedback, ranking only (no ratings).
    mf and neural also carry that retrieval tower as a second head (`retrieval=true`) and rank with it:
    ranking by predicted rating favours obscure items a few fans rated highly and loses to popularity.

Policies (documented behaviour rather than errors):
    - Implicit feedback: set `rating_column=""`; every row is a positive and `model=auto` picks two_tower.
    - Duplicate (user, item) rows: `duplicates=last` keeps the latest rating (a re-rating supersedes the
      old one), `mean` averages them, `error` refuses the file.
    - Leave-last-out: a user's last interaction is test and the one before it validation; a user with a
      single interaction stays in training only (counted in `info["train_only_users"]`).
    - Unknown user at predict time: the most popular unseen items, with `"known_user": false` and
      `"fallback": "popularity"`. Unknown item in a "user,item" pair: the model's unknown-item row
      (the user's bias plus the global mean), with `"known_item": false`.

Ids are mapped to indices with a vocabulary stored in `Splits.info` (index 0 is the unknown id), so the
logged model takes raw user and item ids and the Keras model itself stays backend-agnostic.
"""

import dataclasses
import functools
import logging
import os

import numpy as np

from tasks import register
from tasks.base import Splits, Task, TaskConfig, search_space

MODELS = ("auto", "mf", "neural", "two_tower")
SPLITS = ("random", "leave_last_out", "time")
DUPLICATES = ("last", "mean", "error")
GENRES = ("action", "comedy", "drama", "documentary", "horror", "romance")
logger = logging.getLogger(__name__)


@dataclasses.dataclass
class RecommendationConfig(TaskConfig):
    epochs: int = 30  # an upper bound: embeddings overfit within a few epochs and early stopping ends it
    batch_size: int = 256  # one interaction is a tiny example: bigger batches keep the CPU busy
    learning_rate: float = 1e-2  # each embedding row gets few updates per epoch: a high Adam rate suits them
    weight_decay: float = 0.0  # off: `l2` already penalises the embedding tables, and decay would shrink the biases too
    early_stopping_patience: int = 3  # validation loss turns up quickly once embeddings memorise
    model: str = "auto"  # auto: mf for explicit ratings, two_tower for implicit; or mf | neural | two_tower
    embedding_dim: int = 32  # latent factors; MovieLens-sized data gains little beyond 32-64
    l2: float = 1e-4  # L2 on whole embedding tables (keras-io recipe): rarely seen rows shrink the most
    hidden_units: tuple = (64, 32)  # the neural model's MLP over concatenated user and item embeddings
    dropout: float = 0.1  # on embeddings in the neural model and the retrieval tower: users' tastes are noisy
    history_length: int = 10  # the user's latest N items also feed the retrieval tower: the next item a user
    # picks follows their recent ones far more than their whole history (0: the user id alone)
    retrieval: bool = True  # mf/neural also learn the retrieval head and rank with it (see the module docstring)
    split: str = "random"  # random (rating prediction) | leave_last_out (next item per user) | time (global)
    top_k: int = 10  # length of recommendation lists, and the K of HitRate@K, NDCG@K, MAP@K
    user_column: str = "userId"  # MovieLens ratings.csv names; set yours for other files
    item_column: str = "movieId"  # also the id column of an items_file
    rating_column: str = "rating"  # empty string: implicit feedback, every row is a positive
    timestamp_column: str = "timestamp"  # needed by the leave_last_out and time splits only
    title_column: str = "title"  # the item file's display column (MovieLens movies.csv)
    items_file: str = ""  # item metadata CSV; empty looks for movies.csv / u.item / movies.dat beside the ratings
    rating_min: float = 0.5  # MovieLens' half-star scale; ratings outside [rating_min, rating_max] are refused
    rating_max: float = 5.0  # top of that scale (u.data's 1-5 stars fit inside it)
    duplicates: str = "last"  # last | mean | error: what a repeated (user, item) row means
    search_space: dict = search_space(  # embeddings want high rates and no decay (see weight_decay)
        weight_decay=None, learning_rate=["log", 1e-3, 3e-2], embedding_dim=["choice", 16, 32, 64],
        dropout=["float", 0.0, 0.3])


def _check_config(config):
    """Raises ValueError for config values this task cannot use."""
    for name, value, allowed in (("model", config.model, MODELS), ("split", config.split, SPLITS),
                                 ("duplicates", config.duplicates, DUPLICATES)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got '{value}'.")
    if config.top_k <= 0:
        raise ValueError(f"top_k (K) must be a positive list length, got {config.top_k}; e.g. --set top_k=10.")
    if config.rating_min >= config.rating_max:
        raise ValueError(f"rating_min ({config.rating_min}) must be below rating_max ({config.rating_max}).")
    if config.history_length < 0:
        raise ValueError(f"history_length must be >= 0, got {config.history_length}.")
    if config.embedding_dim <= 0:
        raise ValueError(f"embedding_dim must be positive, got {config.embedding_dim}.")


def _id_text(value):
    """The vocabulary key of a raw id: 7, 7.0, b"7" and "7" are one id."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value).strip()


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
    titles = {f"i{item}": f"item {item} ({GENRES[int(np.argmax(traits[item])) % len(GENRES)]})"
              for item in range(items)}
    return frame, titles


def _ratings_file(path):
    """The ratings file inside a MovieLens-style folder, or `path` itself."""
    if not os.path.isdir(path):
        return path
    for name in ("ratings.csv", "u.data", "ratings.dat"):
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    raise ValueError(f"folder '{path}' holds no ratings.csv, u.data or ratings.dat; give the ratings file itself.")


def read_ratings(path, config):
    """Reads a ratings file into columns user, item, rating (NaN when implicit) and timestamp (if any).

    `u.data` (tab-separated, no header) and `ratings.dat` (`::`) have MovieLens' fixed columns;
    any other file is a CSV (TSV for `.tsv`) with a header and the configured column names.

    Raises:
        ValueError: unreadable file, a missing configured column (naming the columns found), or no rows.
    """
    import pandas as pd

    from shared import data

    name = os.path.basename(path)
    fixed = name.endswith((".data", ".dat"))
    try:
        if fixed:
            frame = pd.read_csv(path, sep="\t" if name.endswith(".data") else "::", engine="python", header=None,
                                names=["user", "item", "rating", "timestamp"], dtype=str)
        else:
            frame = pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",", dtype=str)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"cannot read ratings file '{path}': {first_line[:200]}.") from None
    if not fixed:
        data.require_columns(frame, [config.user_column, config.item_column, config.rating_column],
                             f"ratings file '{path}'",
                             "Set them with --set user_column=NAME item_column=NAME rating_column=NAME "
                             "(rating_column= for implicit feedback).")
        chosen = {"user": config.user_column, "item": config.item_column, "rating": config.rating_column,
                  "timestamp": config.timestamp_column if config.timestamp_column in frame else ""}
        frame = pd.DataFrame({role: frame[column] for role, column in chosen.items() if column})
    elif not config.rating_column:
        frame = frame.drop(columns="rating")
    if frame.empty:
        raise ValueError(f"ratings file '{path}' has no data rows.")
    result = pd.DataFrame({"user": frame["user"].map(_id_text), "item": frame["item"].map(_id_text)})
    if config.rating_column:
        result["rating"] = data.numeric_values(frame["rating"], config.rating_column, f"ratings file '{path}'")
    if "timestamp" in frame:
        result["timestamp"] = data.numeric_values(frame["timestamp"], config.timestamp_column,
                                                  f"ratings file '{path}'")
    return result


def read_titles(path, config):
    """Item id -> display title (with genres when the file has them), or {} without an item file.

    Without `items_file`, MovieLens' companion file beside `path` is used when present: `movies.csv`
    for a CSV, `u.item` for `u.data`, `movies.dat` for `ratings.dat`.
    """
    import pandas as pd

    from shared import data

    companion = "u.item" if path.endswith(".data") else "movies.dat" if path.endswith(".dat") else "movies.csv"
    candidate = config.items_file or os.path.join(os.path.dirname(path), companion)
    if os.path.isfile(candidate):
        if candidate.endswith((".item", ".dat")):  # MovieLens fixed formats: id, title, then other fields
            frame = pd.read_csv(candidate, sep="|" if candidate.endswith(".item") else "::", engine="python",
                                header=None, encoding="latin-1", dtype=str)
            return dict(zip(frame[0].map(_id_text), frame[1]))
        frame = pd.read_csv(candidate, dtype=str)
        data.require_columns(frame, [config.item_column, config.title_column], f"items file '{candidate}'",
                             "Set item_column / title_column, or items_file to the right file.")
        titles = frame[config.title_column].fillna("")
        if "genres" in frame:
            titles = titles + " [" + frame["genres"].fillna("").str.replace("|", ", ") + "]"
        return dict(zip(frame[config.item_column].map(_id_text), titles))
    if config.items_file:
        raise ValueError(f"items_file '{config.items_file}' does not exist.")
    return {}


def _tfds_ratings(argument, config):
    """Reads tfds:movielens/*-ratings into the interaction columns and titles."""
    import pandas as pd

    from shared.data import tfds

    keys = ("user_id", "movie_id", "user_rating", "timestamp", "movie_title")
    # load_arrays keeps only `keys` before batching: MovieLens' variable-length genres cannot batch
    loaded, _ = tfds.load_arrays(argument, config.tfds_data_dir, keys,
                                 alternatives="--data embedded or a ratings.csv / u.data file")
    columns = {key: np.concatenate([split[key] for split in loaded.values()]) for key in keys}
    frame = pd.DataFrame({"user": [_id_text(value) for value in columns["user_id"]],
                          "item": [_id_text(value) for value in columns["movie_id"]],
                          "timestamp": columns["timestamp"].astype("float64")})
    if config.rating_column:
        frame["rating"] = columns["user_rating"].astype("float64")
    titles = dict(zip(frame["item"], (title.decode("utf-8", "replace") for title in columns["movie_title"])))
    return frame, titles


def clean_interactions(frame, config, source):
    """Checks the rating scale and applies the duplicate policy.

    Raises:
        ValueError: missing or out-of-scale ratings, or duplicates under `duplicates=error`.
    """
    if "rating" in frame:
        ratings = frame["rating"].to_numpy()
        outside = np.isnan(ratings) | (ratings < config.rating_min) | (ratings > config.rating_max)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise ValueError(
                f"{source}: {int(outside.sum())} rating(s) missing or outside the configured scale "
                f"[{config.rating_min}, {config.rating_max}], e.g. {ratings[row]} at data row {row + 1}; "
                "set rating_min / rating_max to your scale or fix the rows."
            )
    duplicated = frame.duplicated(["user", "item"], keep=False)
    if not duplicated.any():
        return frame
    if config.duplicates == "error":
        first = frame[duplicated].iloc[0]
        raise ValueError(
            f"{source}: {int(duplicated.sum())} rows repeat a (user, item) pair, e.g. user '{first['user']}' "
            f"and item '{first['item']}'; remove them or set duplicates=last (keep the latest) or mean."
        )
    if config.duplicates == "last":
        order = frame.sort_values("timestamp", kind="stable") if "timestamp" in frame else frame
        return order.drop_duplicates(["user", "item"], keep="last").sort_index()
    aggregations = {column: "mean" if column == "rating" else "last"
                    for column in frame if column not in ("user", "item")}
    return frame.groupby(["user", "item"], as_index=False, sort=False).agg(aggregations)


def split_interactions(frame, config, source):
    """Returns train, validation and test row indices for the configured split."""
    from shared import data

    if config.split == "random":
        return data.split_indices(len(frame), config.seed, config.validation_fraction, config.test_fraction)
    if "timestamp" not in frame:
        raise ValueError(f"{source}: split '{config.split}' needs a timestamp column ('{config.timestamp_column}' "
                         "is absent); set timestamp_column=NAME or use split=random.")
    if config.split == "time":
        return data.time_split_indices(frame["timestamp"].to_numpy(), config.validation_fraction,
                                       config.test_fraction)
    train, validation, test = data.leave_last_out_indices(frame["user"].to_numpy(), frame["timestamp"].to_numpy())
    if len(test) == 0:
        raise ValueError(f"{source}: leave_last_out needs users with at least two interactions, and every "
                         "user has one; use split=random or split=time.")
    return train, validation, test


@functools.cache
def _layers():
    """Custom Keras layers, defined on first use so that importing the task stays light."""
    import keras

    @keras.saving.register_keras_serializable(package="recommendation")
    class ItemScores(keras.layers.Layer):
        """Scores a batch of user vectors against every item: logits = users @ items.T + item bias."""

        def __init__(self, items, dimension, **kwargs):
            super().__init__(**kwargs)
            self.items, self.dimension = items, dimension

        def build(self, input_shape):
            self.item_vectors = self.add_weight(
                name="item_vectors", shape=(self.items, self.dimension),
                initializer=keras.initializers.RandomNormal(stddev=0.05),
            )
            self.item_bias = self.add_weight(name="item_bias", shape=(self.items,), initializer="zeros")

        def call(self, user_vectors):
            return keras.ops.matmul(user_vectors, keras.ops.transpose(self.item_vectors)) + self.item_bias

        def get_config(self):
            return {**super().get_config(), "items": self.items, "dimension": self.dimension}

    return {"ItemScores": ItemScores}


@register
class Recommendation(Task):
    name = "recommendation"
    answer_key = "recommendations"
    config_class = RecommendationConfig
    primary_metric = "hit_rate_at_k"
    tfds_name = "movielens/100k-ratings"
    input_column = "query"
    table_columns = "query,user,user_id"
    key_params = Task.key_params + ("model", "split")
    quick_overrides = {"epochs": 3, "max_examples": 0}  # collaborative filtering needs every user's rows

    def load_data(self, config):
        from shared import data

        _check_config(config)
        kind, argument = data.parse_source(config.data)
        if kind == "embedded":
            frame, titles = synthetic_ratings(config.seed)
            if not config.rating_column:
                frame = frame.drop(columns="rating")
            name, synthetic = "synthetic_ratings", True
        elif kind == "tfds":
            frame, titles = _tfds_ratings(argument, config)
            name, synthetic = f"tfds_{argument.split(':')[0].replace('/', '_')}", False
        elif kind in ("file", "csv", "folder"):
            path = _ratings_file(argument)
            frame, titles = read_ratings(path, config), read_titles(path, config)
            name, synthetic = f"ratings_{os.path.basename(os.path.abspath(argument))}", False
        else:
            raise ValueError(f"recommendation cannot read '{config.data}'; give a ratings CSV, u.data, "
                             "ratings.dat or a folder holding one.")
        source = config.data
        frame = clean_interactions(frame.reset_index(drop=True), config, source).reset_index(drop=True)
        train, validation, test = split_interactions(frame, config, source)
        return self._encode(frame, titles, (train, validation, test), config, name, synthetic)

    def _encode(self, frame, titles, indices, config, name, synthetic):
        """Builds the vocabularies from training rows and the index-encoded splits and `info`."""
        train_rows = frame.iloc[indices[0]]
        users = sorted(train_rows["user"].unique())
        items = sorted(train_rows["item"].unique())
        if len(items) <= config.top_k:
            raise ValueError(f"top_k={config.top_k} needs more than {config.top_k} training items, found "
                             f"{len(items)}; lower top_k or use more data.")
        user_index = {user: index + 1 for index, user in enumerate(users)}  # 0: unknown user
        item_index = {item: index + 1 for index, item in enumerate(items)}  # 0: unknown item
        encoded_users = frame["user"].map(user_index).fillna(0).to_numpy("int32")
        encoded_items = frame["item"].map(item_index).fillna(0).to_numpy("int32")
        explicit = "rating" in frame
        ratings = frame["rating"].to_numpy("float32") if explicit else np.ones(len(frame), "float32")
        # training rows in random order: tf.data shuffles within a 10,000-row buffer only, and the time
        # or per-user order of the splits would make batches far from i.i.d.
        random = np.random.default_rng(config.seed)
        indices = [random.permutation(indices[0]), random.permutation(indices[1]), indices[2]]
        if "timestamp" in frame:  # chronological test rows: a user's last one carries their latest history
            indices[2] = indices[2][np.argsort(frame["timestamp"].to_numpy()[indices[2]], kind="stable")]
        history, recent = _histories(frame, encoded_users, encoded_items, indices[2], config.history_length)
        features = {"user": encoded_users, "item": encoded_items}
        if config.history_length:
            features["history"] = history
        splits = [({key: value[rows] for key, value in features.items()}, ratings[rows]) for rows in indices]
        counts = np.bincount(encoded_items[indices[0]], minlength=len(items) + 1)
        counts[0] = 0
        seen = [[] for _ in range(len(users) + 1)]
        for user, item in zip(encoded_users, encoded_items):
            if user and item:
                seen[user].append(item)
        model = config.model
        if model == "auto":
            model = "mf" if explicit else "two_tower"
        if model in ("mf", "neural") and not explicit:
            raise ValueError(f"model '{model}' predicts ratings, but the data is implicit (rating_column is empty); "
                             "use model=two_tower or auto.")
        outputs = ["items"] if model == "two_tower" else ["rating", "items"] if config.retrieval else ["rating"]
        single = np.setdiff1d(frame["user"].unique(), frame["user"].iloc[np.r_[indices[1], indices[2]]].unique())
        info = {
            "model": model, "outputs": outputs, "explicit": explicit, "top_k": config.top_k,
            "rating_scale": [config.rating_min, config.rating_max],
            "global_mean": float(splits[0][1].mean()),
            "users": users, "items": items,
            "titles": [titles.get(item, "") for item in items] if titles else [],
            # JSON stays compact: each user's seen items as one space-separated string of indices
            "seen": [" ".join(map(str, sorted(set(row)))) for row in seen],
            "recent": [" ".join(map(str, row)) for row in recent],  # latest items last, at most history_length
            "history_length": config.history_length,
            "popular": " ".join(map(str, np.argsort(-counts, kind="stable")[: len(items)])),  # most rated first
            "train_only_users": int(len(single)) if config.split == "leave_last_out" else 0,
        }
        if info["train_only_users"]:
            logger.warning("%d user(s) have a single interaction: under leave_last_out they stay in training "
                           "and are not evaluated.", info["train_only_users"])
        return Splits(*splits, info=info, source=config.data, name=name, synthetic=synthetic)

    def build_model(self, config, info):
        import keras

        from shared import regularization

        users, items = len(info["users"]) + 1, len(info["items"]) + 1
        user = keras.Input((), dtype="int32", name="user")
        history = keras.Input((info["history_length"],), dtype="int32", name="history")
        extra = {"history": history} if info["history_length"] else {}
        # stddev sqrt(2 / rows): a large catalogue starts near zero, so rare items' scores start near their bias;
        # on MovieLens it validated better than a fixed stddev of 0.05
        initializer = "he_normal"

        def embed(ids, count, name):
            return keras.layers.Embedding(count, config.embedding_dim, embeddings_initializer=initializer,
                                          embeddings_regularizer=regularization.l2(config.l2), name=name)(ids)

        outputs = {}
        if "items" in info["outputs"]:
            # its own user embedding: the softmax loss would otherwise dominate the rating head's gradients
            tower = embed(user, users, "retrieval_user_embedding")
            if config.history_length:
                # mean of the recent items' embeddings; the padding index 0 has its own learned vector
                recent_items = keras.layers.Embedding(items, config.embedding_dim, embeddings_initializer=initializer,
                                                      name="history_embedding")(history)
                tower = keras.layers.Concatenate()([tower, keras.layers.GlobalAveragePooling1D()(recent_items)])
            tower = keras.layers.Dropout(config.dropout)(tower)
            tower = keras.layers.Dense(config.embedding_dim, name="user_tower")(tower)
            # float32 logits under mixed precision: a softmax over thousands of items overflows float16
            outputs["items"] = _layers()["ItemScores"](items, config.embedding_dim, dtype="float32",
                                                       name="items")(tower)
        if info["model"] == "two_tower":
            return keras.Model({"user": user, **extra}, outputs, name="recommendation_two_tower")
        item = keras.Input((), dtype="int32", name="item")
        user_vector, item_vector = embed(user, users, "user_embedding"), embed(item, items, "item_embedding")
        user_bias = keras.layers.Embedding(users, 1, embeddings_initializer="zeros", name="user_bias")(user)
        item_bias = keras.layers.Embedding(items, 1, embeddings_initializer="zeros", name="item_bias")(item)
        interaction = keras.layers.Dot(axes=1, name="dot")([user_vector, item_vector])
        if info["model"] == "neural":
            hidden = keras.layers.Dropout(config.dropout)(keras.layers.Concatenate()([user_vector, item_vector]))
            for units in config.hidden_units:
                hidden = keras.layers.Dense(units, activation="relu")(hidden)
            interaction = keras.layers.Dense(1, name="mlp_score")(keras.layers.Concatenate()([hidden, interaction]))
        score = keras.layers.Add()([interaction, user_bias, item_bias])
        # a sigmoid squashed onto [rating_min, rating_max]: predictions never leave the scale, and extreme
        # ratings need large scores, which the L2 penalty resists; the offset starts at the global mean
        low, high = info["rating_scale"]
        middle = min(max((info["global_mean"] - low) / (high - low), 0.01), 0.99)
        score = keras.layers.Rescaling(1.0, offset=float(np.log(middle / (1 - middle))))(score)
        probability = keras.layers.Activation("sigmoid", dtype="float32")(score)
        outputs["rating"] = keras.layers.Rescaling(high - low, offset=low, dtype="float32", name="rating")(probability)
        return keras.Model({"user": user, "item": item, **extra}, outputs, name=f"recommendation_{info['model']}")

    def loss(self, config, info):
        import keras

        losses = {"rating": keras.losses.MeanSquaredError(),
                  "items": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
        return {name: losses[name] for name in info["outputs"]}

    def metrics(self, config, info):
        import keras

        metrics = {
            "rating": [keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")],
            # a training-time proxy: unlike the test metric it does not exclude already-seen items
            "items": [keras.metrics.SparseTopKCategoricalAccuracy(k=config.top_k, name="hit_rate_at_k")],
        }
        return {name: metrics[name] for name in info["outputs"]}

    def eval_map(self, config, info):
        outputs = info["outputs"]

        def targets(features, ratings):
            wanted = {"rating": ratings, "items": features["item"]}  # retrieval predicts the item itself
            inputs = {key: value for key, value in features.items() if key != "item" or info["model"] != "two_tower"}
            return inputs, {name: wanted[name] for name in outputs}

        return targets

    def custom_objects(self):
        return _layers()

    def evaluate(self, model, splits, config):
        from shared import evaluation, plots

        info, k = splits.info, config.top_k
        train, train_ratings = splits.train.features, splits.train.targets
        test, test_ratings = splits.test.features, splits.test.targets
        results = {}
        item_count = len(info["items"])
        if info["explicit"]:
            if "rating" in info["outputs"]:
                predicted = self.rate(model, info, test["user"], test["item"])
                results.update(evaluation.regression(test_ratings, predicted).metrics)
            baseline = _item_means(train["item"], train_ratings, item_count + 1)[test["item"]]
            for name, value in evaluation.regression(test_ratings, baseline).metrics.items():
                results[f"popularity_{name}"] = value
        # ranking: each test user's held-out items among all items they have not rated in train/validation
        excluded = _group(np.concatenate([train["user"], splits.validation.features["user"]]),
                          np.concatenate([train["item"], splits.validation.features["item"]]))
        relevant = _group(test["user"], test["item"])
        users = np.array(sorted(relevant), dtype="int32")
        wanted = [relevant[user] for user in users]
        seen = [excluded.get(user, set()) for user in users]
        latest = dict(zip(test["user"].tolist(), test.get("history", np.zeros((len(test["user"]), 0), "int32"))))
        histories = np.array([latest[user] for user in users.tolist()], "int32")  # as of their latest test row
        ours = self.recommend(model, info, users, histories, seen, k)[0]
        popular = _popular_lists(info, seen, k)
        curves = []
        for label, lists in (("model", ours), ("popularity", popular)):
            prefix = "" if label == "model" else "popularity_"
            for name, value in evaluation.ranking(lists, wanted, k, item_count).items():
                results[f"{prefix}{name}_at_k"] = value
            hit_rates = [evaluation.ranking(lists, wanted, cut, item_count)["hit_rate"] for cut in range(1, k + 1)]
            curves.append((label, np.arange(1, k + 1), np.array(hit_rates)))
        results["evaluated_users"] = float(len(users))
        figures = {"hit_rate_curve": plots.curves(curves, "K", "HitRate@K", "held-out items in the top K (test)")}
        texts = {"sample_recommendations.md": _sample_table(info, users[:8], ours, popular, wanted, seen)}
        return evaluation.Evaluation(metrics=results, figures=figures, texts=texts)

    def rate(self, model, info, users, items):
        """Predicted ratings for index pairs, clipped to the rating scale (rating models only)."""
        predicted = model.predict(_model_inputs(info, users, items), batch_size=8192, verbose=0)["rating"]
        return np.clip(np.asarray(predicted).reshape(-1), *info["rating_scale"])

    def score_all(self, model, info, users, histories):
        """Scores of every item (index 0, the unknown item, scores -inf) for each user index.

        The retrieval head scores all items at once from the user and their recent items (`histories`,
        rows of item indices); without it, the predicted rating of each pair is the score.
        """
        users = np.asarray(users, "int32")
        items = len(info["items"]) + 1
        if "items" in info["outputs"]:
            inputs = _model_inputs(info, users, histories=histories)
            scores = np.asarray(model.predict(inputs, batch_size=512, verbose=0)["items"], "float64")
        else:
            pairs = _model_inputs(info, np.repeat(users, items), np.tile(np.arange(items), len(users)))
            scores = np.asarray(model.predict(pairs, batch_size=65536, verbose=0)["rating"], "float64")
            scores = scores.reshape(len(users), items)
        scores[:, 0] = -np.inf
        return scores

    def recommend(self, model, info, users, histories, seen, k):
        """Top-k unseen items per user index (unknown users, index 0, get the popular items).

        Returns:
            tuple[np.ndarray, np.ndarray]: item indices (users, k) best first, and their scores.
        """
        chosen, chosen_scores = np.zeros((len(users), k), "int64"), np.zeros((len(users), k))
        for start in range(0, len(users), 256):  # bounds memory: 256 users x all items at a time
            block = np.asarray(users[start: start + 256])
            scores = self.score_all(model, info, block, histories[start: start + 256])
            for row, user in enumerate(block):
                scores[row, list(seen[start + row])] = -np.inf
                if user == 0:  # popularity fallback: the score is the inverse popularity rank
                    scores[row] = -np.inf
                    scores[row, _popular_lists(info, [seen[start + row]], k)[0]] = 1.0 / np.arange(1, k + 1)
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)
            chosen[start: start + len(block)] = top
            chosen_scores[start: start + len(block)] = np.take_along_axis(scores, top, 1)
        return chosen, chosen_scores

    def input_example(self, splits):
        info = splits.info
        return [info["users"][0], f"{info['users'][0]},{info['items'][0]}"]

    def predict_raw(self, model, info, inputs):
        """Answers user ids with top-K unseen items and "user,item" pairs with a predicted rating.

        Args:
            model (keras.Model): the trained model.
            info (dict): `Splits.info`.
            inputs (list): user ids (`"42"`) or pairs (`"42,318"`).

        Returns:
            list[dict]: per user id `user`, `known_user`, `fallback` and `recommendations` (item, title,
            score); per pair `user`, `item`, `known_user`, `known_item`, `score` and `rating` (None for the
            two-tower model, which scores but does not predict ratings).

        Raises:
            ValueError: an empty input or one with more than one comma.
        """
        user_index = {user: index + 1 for index, user in enumerate(info["users"])}
        item_index = {item: index + 1 for index, item in enumerate(info["items"])}
        queries = _queries(inputs)
        answers = [None] * len(queries)
        singles = [position for position, parts in enumerate(queries) if len(parts) == 1]
        if singles:
            users = np.array([user_index.get(queries[position][0], 0) for position in singles], "int32")
            seen = [set(map(int, info["seen"][user].split())) if user else set() for user in users]
            histories = [_padded(info["recent"][user], info["history_length"]) for user in users]
            chosen, scores = self.recommend(model, info, users, histories, seen, info["top_k"])
            for position, user, items, values in zip(singles, users, chosen, scores):
                answers[position] = {
                    "user": queries[position][0], "known_user": bool(user),
                    "fallback": None if user else "popularity",
                    "recommendations": [
                        {"item": info["items"][item - 1], "title": info["titles"][item - 1] if info["titles"] else "",
                         "score": round(float(value), 5)} for item, value in zip(items, values)
                    ],
                }
        pairs = [position for position, parts in enumerate(queries) if len(parts) == 2]
        if pairs:
            users = np.array([user_index.get(queries[position][0], 0) for position in pairs], "int32")
            items = np.array([item_index.get(queries[position][1], 0) for position in pairs], "int32")
            if "rating" not in info["outputs"]:
                histories = [_padded(info["recent"][user], info["history_length"]) for user in users]
                scores = self.score_all(model, info, users, histories)[np.arange(len(users)), items]
                ratings = [None] * len(users)
            else:
                scores = self.rate(model, info, users, items)
                ratings = [round(float(value), 4) for value in scores]
            for position, user, item, score, rating in zip(pairs, users, items, scores, ratings):
                answers[position] = {
                    "user": queries[position][0], "item": queries[position][1], "known_user": bool(user),
                    "known_item": bool(item), "score": round(float(score), 5) if np.isfinite(score) else None,
                    "rating": rating,
                }
        return answers

    def run_setting(self, params, info):
        return info.get("model", params.get("model", ""))  # `auto` resolves once the data shows explicit ratings

    def prepare_inputs(self, info, inputs):
        """The model's inputs for user ids and `user,item` pairs: vocabulary indices (0 when unknown) and each
        user's latest items."""
        user_index = {user: index + 1 for index, user in enumerate(info["users"])}
        item_index = {item: index + 1 for index, item in enumerate(info["items"])}
        queries = _queries(inputs)
        users = [user_index.get(parts[0], 0) for parts in queries]
        items = [item_index.get(parts[1], 0) if len(parts) == 2 else 0 for parts in queries]
        histories = [_padded(info["recent"][user], info["history_length"]) for user in users]
        return _model_inputs(info, users, items, histories)

    def serving_signature(self, model, info):
        serving = super().serving_signature(model, info)
        serving.files = {"users.txt": info["users"], "items.txt": info["items"], "recent.txt": info["recent"],
                         "seen.txt": info["seen"], "popular.txt": info["popular"].split()}
        steps = ["user: its line number + 1 in users.txt, 0 for a user unseen in training",
                 "item (rating models): its line number + 1 in items.txt, 0 for an unknown item"]
        if info["history_length"]:
            steps.append(f"history: the user's latest {info['history_length']} item indices, latest last, "
                         "left-padded with 0; recent.txt holds them per user index (line 0: the unknown user)")
        meaning = {"rating": f"the predicted rating on the scale {info['rating_scale']}",
                   "items": "a score per item index (index 0: unknown); rank them, after removing the user's seen "
                            "items (seen.txt, per user index); unknown users get popular.txt (most rated first)"}
        serving.preprocessing.update({"steps": steps, "meaning": {key: meaning[key] for key in info["outputs"]}})
        return serving


def _queries(inputs):
    """Splits raw queries into `[user]` or `[user, item]` id texts.

    Raises:
        ValueError: an empty input or one with more than one comma.
    """
    queries = []
    for raw in inputs:
        parts = [_id_text(part) for part in (str(raw).split(",") if isinstance(raw, str) else [raw])]
        if len(parts) > 2 or not all(parts):
            raise ValueError(f"prediction input '{raw}' must be a user id ('42') or a user,item pair ('42,318').")
        queries.append(parts)
    return queries


def _histories(frame, users, items, test_rows, length):
    """Each row's history (the user's previous non-test items, latest last, left-padded with 0) and each
    user's latest items over all rows (what `predict` feeds the model).

    Returns:
        tuple[np.ndarray, list[list[int]]]: int32 histories (rows, length) and, per user index, up to
        `length` item indices.
    """
    times = frame["timestamp"].to_numpy() if "timestamp" in frame else np.zeros(len(frame))
    is_test = np.zeros(len(frame), bool)
    is_test[test_rows] = True
    history = np.zeros((len(frame), length), "int32")
    known, everything = {}, {}  # user -> items so far, without / with test rows
    for row in np.lexsort((np.arange(len(frame)), times, users)):  # by user, then time, then file order
        user, item = users[row], items[row]
        if not user:
            continue
        past = known.setdefault(user, [])[-length:] if length else []
        history[row, length - len(past):] = past
        if item:
            everything.setdefault(user, []).append(item)
            if not is_test[row]:
                past = known[user]
                past.append(item)
    recent = [everything.get(user, [])[-length:] if length else [] for user in range(int(users.max(initial=0)) + 1)]
    return history, recent


def _model_inputs(info, users, items=None, histories=None):
    """The model's input dict for index arrays; absent items or histories are zeros (unused there)."""
    users = np.asarray(users, "int32")
    inputs = {"user": users}
    if info["model"] != "two_tower":
        inputs["item"] = np.zeros_like(users) if items is None else np.asarray(items, "int32")
    if info["history_length"]:
        shape = (len(users), info["history_length"])
        inputs["history"] = np.zeros(shape, "int32") if histories is None else np.asarray(histories, "int32")
    return inputs


def _padded(recent, length):
    """Left-pads a space-separated item index string to a history row (latest item last)."""
    row = [int(item) for item in recent.split()][-length:] if length else []
    return [0] * (length - len(row)) + row


def _group(users, items):
    """user index -> set of item indices."""
    grouped = {}
    for user, item in zip(users.tolist(), items.tolist()):
        grouped.setdefault(user, set()).add(item)
    return grouped


def _item_means(items, ratings, count, damping=5.0):
    """Each item's mean training rating, shrunk toward the global mean for rarely rated items."""
    mean = float(ratings.mean())
    sums = np.bincount(items, weights=ratings, minlength=count)
    counts = np.bincount(items, minlength=count)
    return (sums + damping * mean) / (counts + damping)


def _popular_lists(info, seen, k):
    """The k most popular training items each user has not seen."""
    popular = [int(item) for item in info["popular"].split()]
    return np.array([[item for item in popular if item not in excluded][:k] for excluded in seen])


def _sample_table(info, users, ours, popular, wanted, seen):
    """A Markdown table of a few users' recommendations, with titles and held-out hits marked."""

    def show(item):
        identifier = info["items"][item - 1] if item else "(unknown item)"
        title = info["titles"][item - 1] if info["titles"] and item else ""
        return f"{identifier} {title}".strip().replace("|", "/")  # a pipe would break the table

    lines = ["| user | rated in training | recommended (* = held-out hit) | popularity baseline | held out |",
             "|---|---|---|---|---|"]
    for row, user in enumerate(users):
        history = "; ".join(show(item) for item in sorted(seen[row])[:3])
        mine = "; ".join(("*" if item in wanted[row] else "") + show(item) for item in ours[row][:5])
        baseline = "; ".join(("*" if item in wanted[row] else "") + show(item) for item in popular[row][:5])
        held = "; ".join(show(item) for item in sorted(wanted[row])[:3])
        name = info["users"][user - 1] if user else "(unknown user)"
        lines.append(f"| {name} | {history} | {mine} | {baseline} | {held} |")
    return "\n".join(lines) + "\n"
