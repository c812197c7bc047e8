"""Encoding interactions: id vocabularies from training rows, index arrays, user histories and the `info` of a run."""

import dataclasses
import logging

import numpy as np

from shared.fitted_state import FittedState
from tasks.base import Splits

logger = logging.getLogger(__name__)


@dataclasses.dataclass(kw_only=True)
class RecommendationState(FittedState):
    """A recommender's vocabularies, what each user saw, and the model kind its answers follow.

    Attributes:
        model (str): mf, neural or two_tower (`auto` resolved).
        outputs (list[str]): what it answers: rating and/or items.
        explicit (bool): True when the data held ratings (else interactions count as 1).
        top_k (int): items a ranking returns.
        rating_scale (list[float]): the lowest and highest rating; predictions are clipped to it.
        global_mean (float): the training ratings' mean.
        users (list): user ids; index 0 is the unknown user, so user i is index i + 1.
        items (list): item ids, indexed the same way.
        titles (list[str]): item titles in item order, or empty.
        seen (list[str]): per user, the training items' indices as one space-separated string (compact JSON).
        recent (list[str]): per user, the latest items (last last), at most `history_length`, likewise.
        history_length (int): history items the two-tower's user side reads.
        popular (str): item indices, most rated first, space-separated.
        train_only_users (int): users kept in training only (a single interaction under leave_last_out).
    """

    model: str
    outputs: list
    explicit: bool
    top_k: int
    rating_scale: list
    global_mean: float
    users: list
    items: list
    titles: list
    seen: list
    recent: list
    history_length: int
    popular: str
    train_only_users: int = 0


def encode(frame, titles, indices, config, name, synthetic, fitted=None):
    """Builds the vocabularies from training rows (or takes `fitted`'s: a trained model's info) and the
    index-encoded splits and `info`."""
    train_rows = frame.iloc[indices[0]]
    users = fitted.users if fitted else sorted(train_rows["user"].unique())
    items = fitted.items if fitted else sorted(train_rows["item"].unique())
    if not fitted and len(items) <= config.top_k:
        raise ValueError(
            f"top_k={config.top_k} needs more than {config.top_k} training items, found "
            f"{len(items)}; lower top_k or use more data."
        )
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
    length = history_length(config)
    history, recent = histories(frame, encoded_users, encoded_items, indices[2], length)
    features = {"user": encoded_users, "item": encoded_items}
    if length:
        features["history"] = history
    splits = [({key: value[rows] for key, value in features.items()}, ratings[rows]) for rows in indices]
    counts = np.bincount(encoded_items[indices[0]], minlength=len(items) + 1)
    counts[0] = 0
    seen = [[] for _ in range(len(users) + 1)]
    for user, item in zip(encoded_users, encoded_items):
        if user and item:
            seen[user].append(item)
    unrated = len(items) - np.array([len(set(row)) for row in seen[1:]], dtype="int64")
    short = np.flatnonzero(unrated < config.top_k)
    if not fitted and short.size:  # their evaluation and predict lists would hold fewer than top_k items
        user = short[np.argmin(unrated[short])]
        raise ValueError(
            f"{config.data}: {short.size} user(s) leave fewer than top_k={config.top_k} of the "
            f"{len(items)} training items unrated to recommend, e.g. user '{users[user]}' "
            f"({unrated[user]} left); lower top_k or remove those users' rows."
        )
    model = config.model
    if model == "auto":
        model = "mf" if explicit else "two_tower"
    if model in ("mf", "neural") and not explicit:
        raise ValueError(
            f"model '{model}' predicts ratings, but the data is implicit (rating_column is empty); "
            "use model=two_tower or auto."
        )
    outputs = ["items"] if model == "two_tower" else ["rating", "items"] if config.retrieval else ["rating"]
    single = np.setdiff1d(frame["user"].unique(), frame["user"].iloc[np.r_[indices[1], indices[2]]].unique())
    info = RecommendationState(
        model=model,
        outputs=outputs,
        explicit=explicit,
        top_k=config.top_k,
        rating_scale=[config.rating_min, config.rating_max],
        global_mean=float(splits[0][1].mean()),
        users=users,
        items=items,
        titles=[titles.get(item, "") for item in items] if titles else [],
        # JSON stays compact: each user's seen items as one space-separated string of indices
        seen=[" ".join(map(str, sorted(set(row)))) for row in seen],
        recent=[" ".join(map(str, row)) for row in recent],  # latest items last, at most history_length
        history_length=length,
        popular=" ".join(map(str, np.argsort(-counts, kind="stable")[: len(items)])),  # most rated first
        train_only_users=int(len(single)) if config.split == "leave_last_out" else 0,
    )
    if info.train_only_users:
        logger.warning(
            "%d user(s) have a single interaction: under leave_last_out they stay in training and are not evaluated.",
            info.train_only_users,
        )
    return Splits(*splits, info=info, source=config.data, name=name, synthetic=synthetic)


def history_length(config):
    """Returns:
    int: the latest items per user the retrieval tower reads: `history_length` on chronological splits, none on
    a random one (see the config field).
    """
    return config.history_length if config.split != "random" else 0


def histories(frame, users, items, test_rows, length):
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
        so_far = known.setdefault(user, [])
        past = so_far[-length:] if length else []
        history[row, length - len(past) :] = past
        if item:
            everything.setdefault(user, []).append(item)
            if not is_test[row]:
                so_far.append(item)
    recent = [everything.get(user, [])[-length:] if length else [] for user in range(int(users.max(initial=0)) + 1)]
    return history, recent
