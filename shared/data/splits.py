"""Carving train / validation / test splits: seeded, stratified, by group, per group over time, or over time."""

import numpy as np


def split_indices(count, seed, validation_fraction, test_fraction, stratify=None, groups=None):
    """Shuffles `range(count)` into train / validation / test index arrays.

    Args:
        count (int): number of examples.
        seed (int): random seed.
        validation_fraction (float): share of all examples for validation.
        test_fraction (float): share of all examples for test (0 gives an empty test split).
        stratify (np.ndarray | None): class labels to keep class proportions equal across splits.
        groups (np.ndarray | None): group ids (speaker, unit, user); a group never spans two splits.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: train, validation and test indices.

    Raises:
        ValueError: too few examples to hold out both fractions and keep training data.
    """
    from sklearn import model_selection

    held = sum(int(np.ceil(fraction * count)) for fraction in (validation_fraction, test_fraction))
    if count - held < 1 or (validation_fraction and count < 2) or (test_fraction and count < 2):
        raise ValueError(
            f"{count} example(s) are too few to carve validation_fraction {validation_fraction} and "
            f"test_fraction {test_fraction} and keep some for training; add data or lower the fractions."
        )
    indices = np.arange(count)

    def cut(pool, fraction, labels):
        if fraction == 0:
            return pool, pool[:0]
        if groups is not None:
            splitter = model_selection.GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
            keep, held = next(splitter.split(pool, groups=groups[pool]))
            return pool[keep], pool[held]
        try:
            return model_selection.train_test_split(pool, test_size=fraction, random_state=seed, stratify=labels)
        except ValueError:  # a class too small to stratify: fall back to a plain shuffle
            return model_selection.train_test_split(pool, test_size=fraction, random_state=seed)

    labels = None if stratify is None else stratify
    rest, test = cut(indices, test_fraction, labels)
    relative = validation_fraction / (1 - test_fraction)
    train, validation = cut(rest, relative, None if stratify is None else stratify[rest])
    return train, validation, test


def carve(pool, config, validation=None, test=None, stratify=True, groups=None):
    """Makes train / validation / test splits, using given splits and carving the missing ones from the pool.

    Args:
        pool (shared.data.examples.Examples | tuple): the training pool, or a `(features, targets)` pair.
        config (TaskConfig): uses seed, validation_fraction and test_fraction.
        validation, test (Examples | tuple | None): ready-made splits, if the source has them.
        stratify (bool): keep class proportions (classification targets).
        groups (np.ndarray | None): group ids that must not span two splits.

    Returns:
        tuple[Examples, Examples, Examples]: train, validation and test.
    """
    from shared.data import examples

    pool, validation, test = (examples.as_examples(split) for split in (pool, validation, test))
    test_fraction = 0 if test is not None else config.test_fraction
    validation_fraction = 0 if validation is not None else config.validation_fraction
    try:
        train_index, validation_index, test_index = split_indices(
            len(pool),
            config.seed,
            validation_fraction,
            test_fraction,
            stratify=pool.targets if stratify else None,
            groups=groups,
        )
    except ValueError as error:
        raise ValueError(f"'{config.data}': {error}") from None
    return (
        pool.subset(train_index),
        validation if validation is not None else pool.subset(validation_index),
        test if test is not None else pool.subset(test_index),
    )


def folds(train, validation, count, seed, stratify=True):
    """k-fold cross-validation over a run's training and validation examples together.

    Args:
        train (Examples): the training split.
        validation (Examples): the validation split.
        count (int): k.
        seed (int): the shuffle seed.
        stratify (bool): keep class proportions in every fold (integer class targets).

    Returns:
        list[tuple[Examples, Examples]]: (training, held-out) per fold; empty when the two splits do not join
        into one index (they decode differently, or one is a stream).
    """
    from sklearn import model_selection

    from shared.data import examples

    pool = examples.join([train, validation])
    if not isinstance(pool, examples.Examples) or len(pool) < count:
        return []
    targets = np.asarray(pool.targets)
    splitter = model_selection.KFold(count, shuffle=True, random_state=seed)
    if stratify and targets.ndim == 1 and np.unique(targets, return_counts=True)[1].min() >= count:
        splitter = model_selection.StratifiedKFold(count, shuffle=True, random_state=seed)
    return [(pool.subset(kept), pool.subset(held)) for kept, held in splitter.split(np.zeros(len(pool)), targets)]


def leave_last_out_indices(groups, order):
    """Per-group chronological split: each group's last row is test, its second-to-last validation.

    Groups (users, units, sessions) with a single row cannot be held out and stay in training;
    groups with two rows give one to training and one to test (none to validation).

    Args:
        groups (np.ndarray): group id per row (user ids).
        order (np.ndarray): sortable time per row; ties keep the rows' file order.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: train, validation and test indices.
    """
    groups = np.asarray(groups)
    by_time = np.lexsort((np.arange(len(groups)), np.asarray(order), groups))  # group, then time, then row
    sorted_groups = groups[by_time]
    is_last = np.r_[sorted_groups[1:] != sorted_groups[:-1], True]
    is_first = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    sizes = np.diff(np.r_[np.flatnonzero(is_first), len(groups)])
    size_per_row = np.repeat(sizes, sizes)
    test = is_last & (size_per_row >= 2)
    validation = np.r_[is_last[1:], False] & (size_per_row >= 3)
    train = ~(test | validation)
    return by_time[train], by_time[validation], by_time[test]


def time_split_indices(order, validation_fraction, test_fraction):
    """Global chronological split: the latest rows are test, the ones before them validation.

    Args:
        order (np.ndarray): sortable time per row; ties keep the rows' file order.
        validation_fraction (float): share of rows for validation.
        test_fraction (float): share of rows for test.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: train, validation and test indices.
    """
    if validation_fraction + test_fraction >= 1 or min(validation_fraction, test_fraction) < 0:
        raise ValueError("validation_fraction and test_fraction must be >= 0 and leave data for training (sum < 1).")
    by_time = np.argsort(np.asarray(order), kind="stable")
    test_start = len(by_time) - int(round(test_fraction * len(by_time)))
    validation_start = test_start - int(round(validation_fraction * len(by_time)))
    return by_time[:validation_start], by_time[validation_start:test_start], by_time[test_start:]
