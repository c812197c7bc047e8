"""A split as a compact index held in memory, and the tf.data pipeline that decodes and streams it.

Memory then grows with the index (a path, an id or a table row per example), not with decoded
images or audio: decoding runs in a parallel tf.data map, and decoded examples are cached in memory
only while the splits fit `cache_budget_mb`.
"""

import dataclasses
import hashlib
import json
from collections.abc import Callable

import numpy as np

CACHE_MODES = ("auto", "memory", "disk", "none")
SHUFFLE_BUFFER = 2048  # examples held when the whole split cannot be shuffled as an index (streams, disk caches)


def take(data, indices):
    """Indexes an array, or every array of a dict, with `indices`."""
    if isinstance(data, dict):
        return {key: value[indices] for key, value in data.items()}
    return data[indices]


def _rows(data):
    return len(next(iter(data.values()))) if isinstance(data, dict) else len(data)


class Split:
    """What the runner and evaluation need of a split, whatever holds it (an index in memory, a TFDS split).

    A subclass provides `index` (undecoded rows as a tf.data.Dataset), `__len__`, `cap`, `describe`,
    and the attributes `decode` (a tf.data transformation from rows to model inputs, or None) and
    `element_bytes` (decoded bytes per example, 0 to measure the decoded shapes).
    """

    def __len__(self):
        raise NotImplementedError

    def index(self, shard=None):
        """Returns:
        tf.data.Dataset: undecoded `(feature, target)` rows, in order; with `shard=(count, position)`,
        every count-th row from position, so that each training process decodes only its share.
        """
        raise NotImplementedError

    @property
    def shuffle_buffer(self):
        """int: rows shuffled at once before decoding (the whole split where the index is in memory)."""
        return len(self)

    def decoded(self, dataset):
        """Applies `decode` to index rows (in parallel, in order)."""
        return dataset.apply(self.decode) if self.decode is not None else dataset

    def elements(self, shard=None):
        """Returns:
        tf.data.Dataset: decoded `(feature, target)` examples in index order.
        """
        return self.decoded(self.index(shard))

    def decoded_bytes(self):
        """Returns:
        int: the estimated size of the whole decoded split in memory (0 when unknown).
        """
        if self.element_bytes:
            return self.element_bytes * len(self)
        import tensorflow as tf

        total = 0
        for spec in tf.nest.flatten(self.elements().element_spec):
            if not spec.shape.is_fully_defined():
                return 0  # unknown: the loader gives element_bytes for examples that vary in size
            total += int(np.prod(spec.shape)) * spec.dtype.size
        return total * len(self)

    def sample(self, count):
        """Decodes the first `count` examples.

        Returns:
            tuple[np.ndarray | list, np.ndarray | list]: features and targets, stacked where the
            examples share a shape (lists where they vary in size).
        """
        return stack(list(self.elements().take(count).as_numpy_iterator()))

    def pick(self, positions):
        """Decodes the examples at `positions` of the index (only those: rows are chosen before decoding).

        Returns:
            tuple: features and targets in the order of `positions`, as `sample` returns them.
        """
        import tensorflow as tf

        positions = np.asarray(positions, dtype="int64")
        if not positions.size:
            return stack([])
        wanted = tf.constant(np.unique(positions))
        chosen = self.index().enumerate().filter(lambda position, row: tf.reduce_any(tf.equal(position, wanted)))
        found = list(self.decoded(chosen.map(lambda position, row: row)).as_numpy_iterator())
        by_position = dict(zip(np.unique(positions).tolist(), found))
        return stack([by_position[position] for position in positions.tolist() if position in by_position])


@dataclasses.dataclass
class Examples(Split):
    """One split whose index fits in memory: model-ready arrays, or sources (file paths) to decode.

    Attributes:
        features (np.ndarray | dict[str, np.ndarray]): one row per example: the model's input itself
            (tabular rows, token ids, small images) or what `decode` reads (file paths, encoded bytes).
        targets (np.ndarray): one row per example: labels or values, or what `decode` reads (mask paths).
        decode (Callable | None): a tf.data transformation (`dataset -> dataset`) from `(feature, target)`
            index rows to model-ready `(feature, target)` elements; it may drop unreadable ones.
            None when the index is model-ready.
        element_bytes (int): decoded bytes of one example, for the cache budget; 0 measures the decoded
            element's static shape (give it when decoded shapes vary).
        origin (str): what the index holds, for the logged dataset description (`arrays`, `files`...).
        groups (np.ndarray | None): one slice key per example (`--set slice_by`, `shared.slices`), or None.
    """

    features: object
    targets: np.ndarray
    decode: Callable | None = None
    element_bytes: int = 0
    origin: str = "arrays"
    groups: np.ndarray | None = None

    def __len__(self):
        return len(self.targets)

    def subset(self, indices):
        """Returns the examples at `indices`, in that order, decoded the same way."""
        groups = None if self.groups is None else self.groups[indices]
        return dataclasses.replace(
            self, features=take(self.features, indices), targets=take(self.targets, indices), groups=groups
        )

    def cap(self, count, seed):
        """Returns at most `count` examples, a seeded random choice kept in order (0 keeps all)."""
        if not count or len(self) <= count:
            return self
        return self.subset(np.sort(np.random.default_rng(seed).choice(len(self), count, replace=False)))

    def index(self, shard=None):
        import tensorflow as tf

        return shard_rows(tf.data.Dataset.from_tensor_slices((self.features, self.targets)), shard, len(self))

    def describe(self):
        """Returns:
        dict: what the split is, JSON-friendly: origin, examples and a digest of the index (for files,
        of the path list), so two runs on the same examples log the same digest.
        """
        digest = hashlib.sha256()
        for part in (self.features, self.targets):
            for array in part.values() if isinstance(part, dict) else [part]:
                array = np.asarray(array)
                if array.dtype == object or array.dtype.kind in "US":
                    digest.update(json.dumps([str(value) for value in array.reshape(-1).tolist()]).encode())
                else:
                    digest.update(np.ascontiguousarray(array).tobytes())
        return {"origin": self.origin, "examples": len(self), "digest": digest.hexdigest()[:16]}


def as_examples(split):
    """Returns `split`, or `Examples` of a `(features, targets)` pair of arrays (None stays None)."""
    return Examples(*split) if isinstance(split, tuple) else split


def shard_rows(dataset, shard, count):
    """Keeps one process's share of `count` rows: equal shares, so that every process steps together.

    Args:
        dataset (tf.data.Dataset): the rows.
        shard (tuple[int, int] | None): `(processes, position)`, or None for all rows.
        count (int): rows in `dataset`.
    """
    if not shard:
        return dataset
    processes, position = shard
    return dataset.take(count - count % processes).shard(processes, position)


def stack(pairs):
    """Stacks decoded `(feature, target)` pairs into two arrays (lists where shapes differ; a dict of arrays where
    each example is a dict of inputs, as a table's are)."""
    if not pairs:
        return np.zeros((0,), "float32"), np.zeros((0,), "int64")
    return tuple(_stacked(list(column)) for column in zip(*pairs))


def _stacked(items):
    """One column of decoded examples stacked: an array, a list where shapes differ, or a dict of either by key."""
    if isinstance(items[0], dict):
        return {key: _stacked([item[key] for item in items]) for key in items[0]}
    return np.stack(items) if len({np.shape(item) for item in items}) == 1 else items


def cache_plan(mode, splits, budget_mb):
    """Decides how each split is cached while training.

    Args:
        mode (str): `auto` (memory while the decoded splits fit the budget, in the order given, else
            decode every epoch), `memory`, `disk` or `none`.
        splits (list[Examples]): the splits that are read every epoch (training, validation).
        budget_mb (int): memory allowed for decoded examples.

    Returns:
        list[str]: `memory`, `disk` or `none` per split; splits that need no decoding are `none`
        (their index already is the data).
    """
    plan, used = [], 0
    for split in splits:
        if split.decode is None:
            plan.append("none")
            continue
        if mode != "auto":
            plan.append(mode)
            continue
        size = split.decoded_bytes()
        fits = 0 < size and used + size <= budget_mb * 2**20
        used += size if fits else 0
        plan.append("memory" if fits else "none")
    return plan


def make_dataset(
    examples,
    batch_size,
    shuffle=False,
    seed=0,
    batch_map=None,
    cache="none",
    cache_file=None,
    shard=None,
    drop_remainder=False,
    buckets=None,
):
    """Builds the batched tf.data pipeline of a split.

    The index is shuffled before decoding (a full-size buffer of paths or rows costs little); a split
    cached in memory is shuffled after the cache instead, with a full-size buffer over the cached
    elements, and a disk cache with a bounded one.

    Args:
        examples (Split): the split.
        batch_size (int): examples per batch (per process when sharded).
        shuffle (bool): reshuffle every epoch (training).
        seed (int): shuffle seed, for reproducible runs.
        batch_map (Callable | None): applied to each batch in parallel (augmentation, target encoding).
        cache (str): `memory`, `disk` or `none` (see `cache_plan`).
        cache_file (str | None): the file prefix of a `disk` cache.
        shard (tuple[int, int] | None): `(count, position)` of this process's share of the index.
        drop_remainder (bool): drop a last partial batch (processes that step together need equal batches).
        buckets (tuple | None): `(length, max_length)`: batch examples of similar `length(features, targets)`
            (a tf.int32 scalar per decoded example) together, in about eight length bands up to `max_length`,
            so a batch map that pads to the batch's longest text pads little (`bucket_by_sequence_length`).

    Returns:
        tf.data.Dataset: batched, mapped and prefetched.
    """
    import tensorflow as tf

    if cache == "disk" and not cache_file:
        raise ValueError("a disk cache needs a cache_file.")
    count = len(examples)
    dataset = examples.index(shard)
    if shuffle and cache == "none":
        dataset = dataset.shuffle(examples.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = examples.decoded(dataset)
    if cache == "memory":
        dataset = dataset.cache()
    elif cache == "disk":
        dataset = dataset.cache(cache_file)
    if shuffle and cache != "none":
        buffer = count if cache == "memory" else min(count, SHUFFLE_BUFFER)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if buckets is None:
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    else:
        length, max_length = buckets
        step = max(1, max_length // 8)
        boundaries = list(range(step + 1, max_length + 1, step))
        # Each band flushes its last partial batch: counting them tells Keras the epoch length.
        lengths = np.concatenate(list(dataset.map(length).batch(8192).as_numpy_iterator()))
        counts = np.bincount(np.searchsorted(boundaries, lengths, side="right"), minlength=len(boundaries) + 1)
        dataset = dataset.bucket_by_sequence_length(
            length, boundaries, [batch_size] * (len(boundaries) + 1), drop_remainder=drop_remainder
        )
        batches = counts // batch_size if drop_remainder else -(-counts // batch_size)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(int(batches.sum())))
    if batch_map is not None:
        dataset = dataset.map(batch_map, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def batches(examples, batch_size, batch_map=None):
    """Yields a split's decoded batches as numpy `(features, targets)`, in order (evaluation)."""
    dataset = make_dataset(examples, batch_size, batch_map=batch_map)
    yield from dataset.as_numpy_iterator()


def predict(model, examples, batch_size, batch_map=None):
    """Runs a model over a whole split, batch by batch.

    Args:
        model (keras.Model): the trained model.
        examples (Split): the split.
        batch_size (int): examples per forward pass.
        batch_map (Callable | None): the evaluation batch map (e.g. target encoding), if any.

    Returns:
        tuple[np.ndarray, np.ndarray]: the model's outputs and the targets, one row per example
        that decoded (in order).
    """
    outputs, targets = [], []
    for features, target in batches(examples, batch_size, batch_map):
        outputs.append(np.asarray(model.predict_on_batch(features)))
        targets.append(target)
    if not outputs:
        raise ValueError("the split has no readable example to evaluate.")
    return np.concatenate(outputs), np.concatenate(targets)


def join(parts):
    """One split holding several, in order: their index concatenated where they are `Examples` decoded by the
    same step (or none), else a `Joined` split that decodes each part its own way.

    Args:
        parts (list[Split]): the splits, e.g. a source's train, validation and test.

    Returns:
        Split: the first part alone when the others are empty.
    """
    kept = [part for part in parts if len(part)] or parts[:1]
    if len(kept) == 1:
        return kept[0]
    if all(isinstance(part, Examples) and part.decode is kept[0].decode for part in kept):
        first = kept[0].features
        features = (
            {key: np.concatenate([part.features[key] for part in kept]) for key in first}
            if isinstance(first, dict)
            else np.concatenate([part.features for part in kept])
        )
        groups = None if any(part.groups is None for part in kept) else np.concatenate([part.groups for part in kept])
        targets = np.concatenate([part.targets for part in kept])
        return dataclasses.replace(kept[0], features=features, targets=targets, groups=groups)
    return Joined(kept)


def empty_like(split):
    """Returns:
    Split: no examples, of `split`'s kind where it has an index (features of the same keys), else of arrays.
    """
    if isinstance(split, Examples):
        return split.subset(np.arange(0))
    return Examples(np.zeros((0,), "float32"), np.zeros((0,), "int64"))


@dataclasses.dataclass
class Joined(Split):
    """Splits read one after another, each decoded its own way (a source's own test split beside carved ones).

    Its index rows are the parts' decoded examples, so it needs no `decode` of its own.

    Attributes:
        parts (list[Split]): the splits, in order.
    """

    parts: list
    decode: Callable | None = None
    element_bytes: int = 0
    origin: str = "joined"

    def __len__(self):
        return sum(len(part) for part in self.parts)

    def cap(self, count, seed):
        """Returns at most `count` examples, a seeded random choice kept in order (0 keeps all): each part
        capped to as many examples as a seeded choice over the whole split draws from it (parts it draws none
        from are left out)."""
        if not count or len(self) <= count:
            return self
        chosen = np.random.default_rng(seed).choice(len(self), count, replace=False)
        ends = np.cumsum([len(part) for part in self.parts])
        shares = np.bincount(np.searchsorted(ends, chosen, side="right"), minlength=len(self.parts))
        return Joined([part.cap(int(share), seed) for part, share in zip(self.parts, shares) if share])

    def index(self, shard=None):
        dataset = self.parts[0].elements()
        for part in self.parts[1:]:
            dataset = dataset.concatenate(part.elements())
        return shard_rows(dataset, shard, len(self))

    @property
    def targets(self):
        """np.ndarray: every part's targets, in order."""
        return np.concatenate([np.asarray(part.targets) for part in self.parts])

    def describe(self):
        """Returns:
        dict: origin, examples and a digest of the parts' digests.
        """
        digests = [part.describe()["digest"] for part in self.parts]
        return {
            "origin": self.origin,
            "examples": len(self),
            "digest": hashlib.sha256(" ".join(digests).encode()).hexdigest()[:16],
        }
