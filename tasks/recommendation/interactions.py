"""Interaction rows before encoding: the rating scale, the duplicate policy and the train / validation / test split."""

import numpy as np


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
    aggregations = {
        column: "mean" if column == "rating" else "last" for column in frame if column not in ("user", "item")
    }
    return frame.groupby(["user", "item"], as_index=False, sort=False).agg(aggregations)


def split_interactions(frame, config, source):
    """Returns train, validation and test row indices for the configured split."""
    from shared.data.splits import leave_last_out_indices, split_indices, time_split_indices

    if config.split == "random":
        return split_indices(len(frame), config.seed, config.validation_fraction, config.test_fraction)
    if "timestamp" not in frame:
        raise ValueError(
            f"{source}: split '{config.split}' needs a timestamp column ('{config.timestamp_column}' "
            "is absent); set timestamp_column=NAME or use split=random."
        )
    if config.split == "time":
        return time_split_indices(frame["timestamp"].to_numpy(), config.validation_fraction, config.test_fraction)
    train, validation, test = leave_last_out_indices(frame["user"].to_numpy(), frame["timestamp"].to_numpy())
    if len(test) == 0:
        raise ValueError(
            f"{source}: leave_last_out needs users with at least two interactions, and every "
            "user has one; use split=random or split=time."
        )
    return train, validation, test
