"""Sliced metrics: the primary metric per value of a column (`--set slice_by=COLUMN`), with a bootstrap interval
each, the worst slice and the largest gap between slices.

A model can be good on average and poor for one group of inputs (a region, a device, a speaker); the gap names
it. Slices smaller than `SMALLEST` examples are reported but left out of the worst slice and the gap, whose
figure such a slice would mostly fill with noise.
"""

import pathlib
import re

import numpy as np

from shared import baselines, plots
from shared.evaluation import Evaluation

SMALLEST = 30  # examples a slice needs to count towards the gap: below, an accuracy's standard error passes ~0.09
MOST = 20  # slices reported, the largest first: a column of many values (an id) says little per value
# slice_by=path:REGEX keys files by the first group of REGEX in their path below the data folder: one rule serves
# image and audio folders of any layout (a folder level, a site or device in the file name)
PATH = "path:"
HINT = "Set slice_by to one of them, or key files by their paths with slice_by=path:REGEX."  # a missing column


def path_pattern(slice_by):
    """The compiled REGEX of `slice_by=path:REGEX`, or None for a column name.

    Raises:
        ValueError: REGEX does not compile, with the reason.
    """
    if not slice_by.startswith(PATH):
        return None
    try:
        return re.compile(slice_by[len(PATH) :])
    except re.error as error:
        raise ValueError(
            f"slice_by: '{slice_by[len(PATH) :]}' is not a regular expression ({error}); e.g. "
            r"slice_by=path:^[^/]+/([^/]+)/ keys images by the subfolder below their class folder."
        ) from None


def from_paths(paths, slice_by, root, source):
    """The slice key of each file from `slice_by=path:REGEX` (its first group, else its match; "missing" when
    REGEX does not match), searched in the path relative to `root` with `/` separators.

    Raises:
        ValueError: `slice_by` is not a path rule: a file source has no columns to slice by.
    """
    pattern = path_pattern(slice_by)
    if pattern is None:
        raise ValueError(
            f"{source}: slice_by={slice_by!r} names a column, but these files come without a table; key them by "
            r"their paths instead, e.g. --set 'slice_by=path:^[^/]+/([^/]+)/' (the subfolder below the class)."
        )
    keys = []
    for path in paths:
        try:
            relative = pathlib.Path(path).relative_to(root).as_posix()
        except ValueError:  # a manifest may list files outside its folder
            relative = pathlib.Path(path).as_posix()
        found = pattern.search(relative)
        keys.append("missing" if found is None else found.group(1 if pattern.groups else 0))
    return np.array(keys, dtype=object)


def values(frame, column, source):
    """The slice key of every row of `frame`: `column`'s values as text (missing ones as "missing").

    Raises:
        ValueError: the table has no such column, naming the ones it has.
    """
    if column not in frame.columns:
        raise ValueError(
            f"{source}: slice_by column '{column}' is not in the table; columns: {', '.join(map(str, frame.columns))}."
        )
    return frame[column].astype("string").fillna("missing").to_numpy(dtype=object)


def name(value):
    """`value` as a piece of an MLflow metric name (letters, digits, `_ - . /` only)."""
    return re.sub(r"[^0-9A-Za-z_\-./]+", "_", str(value)).strip("_")[:60] or "empty"


def report(scorer, targets, outputs, groups, seed=0, resamples=baselines.RESAMPLES):
    """Scores each slice of the test examples and the gap between the best and the worst.

    Args:
        scorer (shared.baselines.Scorer): the primary metric.
        targets (object): the test targets, one row per example.
        outputs (object): the model's test outputs, one row per example.
        groups (np.ndarray): one slice key per example.
        seed (int): the bootstrap seed.
        resamples (int): bootstrap resamples per slice.

    Returns:
        Evaluation: metrics `slice_<metric>_<value>` (with `_lower`/`_upper`, a 95% interval, and `_count`),
        `slice_worst_<metric>` and `slice_gap_<metric>` (best minus worst in the metric's direction, over slices of
        at least `SMALLEST` examples; absent with fewer than two such slices); figure `slices`; text `slices.csv`.
    """
    groups = np.asarray(groups, dtype=object)
    keys, counts = np.unique(groups, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:MOST]
    metrics, rows, bars = {}, ["slice,examples,value,lower,upper"], []
    for key, count in zip(keys[order], counts[order]):
        chosen = np.flatnonzero(groups == key)
        picked_targets, picked_outputs = baselines.take(targets, chosen), baselines.take(outputs, chosen)
        try:
            figure = scorer(picked_targets, picked_outputs)
        except ValueError:  # undefined on this slice (an AUC of one class)
            continue
        lower, upper = baselines.interval(scorer, picked_targets, picked_outputs, resamples, seed)
        prefix = f"slice_{scorer.name}_{name(key)}"
        metrics.update({prefix: figure, f"{prefix}_count": float(count)})
        metrics.update({f"{prefix}{suffix}": bound for suffix, bound in (("_lower", lower), ("_upper", upper))})
        rows.append(f'"{key}",{count},{figure},{lower},{upper}')
        bars.append((str(key), figure, lower, upper, count >= SMALLEST))
    counted = [figure for _, figure, _, _, enough in bars if enough]
    if len(counted) >= 2:
        best, worst = (max, min) if scorer.higher_is_better else (min, max)
        metrics[f"slice_worst_{scorer.name}"] = worst(counted)
        metrics[f"slice_gap_{scorer.name}"] = abs(best(counted) - worst(counted))
    figures = {"slices": plots.intervals(bars, scorer.name, f"{scorer.name} per slice (95% bootstrap intervals)")}
    return Evaluation(metrics=metrics, figures=figures, texts={"slices.csv": "\n".join(rows) + "\n"})
