"""TensorFlow Datasets: builders with clear errors, splits streamed from `as_dataset`, small sets as arrays.

Streams never materialise a split: examples are read in order from the prepared files, and splits
the dataset lacks are carved as seeded windows of one pseudo-random permutation of positions
(`tf.random.experimental.index_shuffle`), so counts are exact without reading anything and the same
seed gives the same split.
"""

import dataclasses
import functools
import hashlib
from collections.abc import Callable

import numpy as np

from shared import network
from shared.data import examples as examples_module

# Addresses TFDS downloads from; one must answer before a download is attempted.
HOSTS = (("storage.googleapis.com", 443), ("huggingface.co", 443))


def network_available(timeout=3.0):
    """Returns:
    bool: one of the TFDS download hosts answers.
    """
    return any(network.reachable(host, port, timeout) for host, port in HOSTS)


def builder(name, data_dir, alternatives, keys=()):
    """Returns a prepared TFDS builder, downloading the dataset once if needed.

    Args:
        name (str): the TFDS name, e.g. `mnist` or `glue/sst2`.
        data_dir (str): TFDS data directory; empty for TFDS's default.
        alternatives (str): offline sources named in the error when the download cannot happen.
        keys (tuple[str, ...]): features the caller needs.

    Raises:
        ValueError: unknown dataset or feature, or no network for a needed download.
    """
    import tensorflow_datasets

    try:
        found = tensorflow_datasets.builder(name, data_dir=data_dir or None)
    except Exception as error:  # TFDS raises its own DatasetNotFoundError and friends
        raise ValueError(
            f"TFDS has no dataset '{name}' ({type(error).__name__}); see "
            "https://www.tensorflow.org/datasets/catalog for names, e.g. tfds:mnist."
        ) from None
    if not found.is_prepared() and not network_available():
        raise ValueError(
            f"tfds:{name} is not downloaded and this machine cannot reach the TFDS servers; run once with "
            f"network access (or copy it into tfds_data_dir), or use offline data: {alternatives}."
        )
    missing = [key for key in keys if key not in found.info.features]
    if missing:
        raise ValueError(f"tfds:{name} has no feature(s) {missing}; it has {list(found.info.features)}.")
    found.download_and_prepare()
    return found


def split_names(found, spec_split):
    """The split names a source offers: the one asked for, or every split of the dataset.

    Raises:
        ValueError: an unknown split.
    """
    known = list(found.info.splits) or ["train", "test"]  # mocked builders report no splits
    if spec_split and spec_split.split("[")[0].split("+")[0] not in known:
        raise ValueError(f"tfds:{found.info.name} has no split '{spec_split}'; it has {known}.")
    return [spec_split] if spec_split else known


def _count(found, split, key):
    try:
        return int(found.info.splits[split].num_examples)
    except (KeyError, ValueError, TypeError):  # mocked builders know no split sizes: count once
        return int(found.as_dataset(split=split, decoders=_decoders(found, [key])).reduce(np.int64(0), _add_one))


def _add_one(total, _):
    return total + 1


def _decoders(found, keys, skip_images=True):
    """Decodes only `keys`, leaving images as encoded bytes (decoded later, after any filtering)."""
    import tensorflow_datasets
    from tensorflow_datasets.core import features as features_lib

    skipped = {
        key: tensorflow_datasets.decode.SkipDecoding()
        for key in keys
        if skip_images and isinstance(found.info.features[key], features_lib.Image)
    }
    return tensorflow_datasets.decode.PartialDecoding({key: True for key in keys}, decoders=skipped)


@dataclasses.dataclass
class Stream(examples_module.Split):
    """One split read from a TFDS dataset in order: all of a TFDS split, or a seeded window of it.

    Attributes:
        found (tfds.core.DatasetBuilder): the prepared builder.
        split (str): the TFDS split (or split expression) read.
        keys (tuple[str, str]): the feature and target keys.
        decode (Callable | None): tf.data transformation from `(feature, target)` rows to model inputs.
        total (int): examples in `split`.
        window (tuple[int, int]): the kept positions `[low, high)` of the seeded permutation of `split`.
        seed (int): the permutation's seed.
        element_bytes (int): decoded bytes per example (0: measured from the decoded shapes).
        skip_decoding (bool): read images as encoded bytes (`decode` decodes them, after any filtering).
    """

    found: object
    split: str
    keys: tuple
    decode: Callable | None
    total: int
    window: tuple
    seed: int = 0
    element_bytes: int = 0
    skip_decoding: bool = True
    origin: str = "tfds"

    def __len__(self):
        return self.window[1] - self.window[0]

    @property
    def shuffle_buffer(self):
        """int: examples shuffled at once (a stream has no index to shuffle whole)."""
        return min(len(self), examples_module.SHUFFLE_BUFFER)

    def cap(self, count, seed):
        """Returns at most `count` examples of this stream, a seeded random choice (0 keeps all)."""
        if not count or len(self) <= count:
            return self
        return dataclasses.replace(self, window=(self.window[0], self.window[0] + count))

    def index(self, shard=None):
        import tensorflow as tf
        import tensorflow_datasets

        dataset = self.found.as_dataset(
            split=self.split,
            shuffle_files=False,
            decoders=_decoders(self.found, self.keys, self.skip_decoding),
            read_config=tensorflow_datasets.ReadConfig(try_autocache=False),
        )
        feature, target = self.keys
        if self.window != (0, self.total):
            low, high = self.window
            seed, last = [self.seed, 0], self.total - 1

            def kept(position, example):
                shuffled = tf.random.experimental.index_shuffle(position, seed, last)
                return (shuffled >= low) & (shuffled < high)

            dataset = dataset.enumerate().filter(kept).map(lambda position, example: example)
        dataset = dataset.map(lambda example: (example[feature], example[target]))
        return examples_module.shard_rows(dataset, shard, len(self))

    @functools.cached_property
    def targets(self):
        """np.ndarray: every target of the window, read once without decoding images (class weights)."""
        return np.fromiter((target for _, target in self.index().as_numpy_iterator()), "int64")

    def describe(self):
        """Returns:
        dict: origin, examples and a digest of what the window selects (dataset, version, split, seed).
        """
        name = f"{self.found.info.full_name}:{self.split}:{self.window}:{self.seed}"
        return {
            "origin": self.origin,
            "examples": len(self),
            "digest": hashlib.sha256(name.encode()).hexdigest()[:16],
            "tfds": name,
        }


def streams(found, chosen, keys, config, decode=None, element_bytes=0):
    """Train, validation and test streams of a TFDS source, carving the splits it lacks.

    `tfds:NAME` uses the dataset's `test` and `validation` splits where it has them and carves the
    missing ones from `train` (or its only split); `tfds:NAME:SPLIT` carves all three from SPLIT,
    with `config.validation_fraction` and `config.test_fraction`, seeded by `config.seed`.

    Args:
        found (tfds.core.DatasetBuilder): from `builder`.
        chosen (str): the split of `tfds:NAME:SPLIT`, or empty for `tfds:NAME`.
        keys (tuple[str, str]): the feature and target keys.
        config (TaskConfig): uses seed, validation_fraction and test_fraction.
        decode (Callable | None): tf.data transformation from `(feature, target)` rows to model inputs.
        element_bytes (int): decoded bytes per example, when decoded shapes vary.

    Returns:
        tuple[Stream, Stream, Stream]: train, validation and test.

    Raises:
        ValueError: an unknown or empty split, or too few examples for the fractions.
    """
    name = found.info.name
    names = split_names(found, chosen)
    fixed = {} if chosen else {role: role for role in ("validation", "test") if role in names}
    pool = chosen or ("train" if "train" in names else "+".join(name for name in names if name not in fixed.values()))
    total = _count(found, pool, keys[1])
    if not total:
        raise ValueError(f"tfds:{name} split '{pool}' is empty.")
    fractions = {role: 0.0 if role in fixed else getattr(config, f"{role}_fraction") for role in ("test", "validation")}
    counts = {role: int(round(fraction * total)) for role, fraction in fractions.items()}
    if counts["test"] + counts["validation"] >= total:
        raise ValueError(
            f"tfds:{name} split '{pool}' has {total} examples, too few for validation_fraction "
            f"{fractions['validation']} and test_fraction {fractions['test']}."
        )

    def stream(split, window, count):
        return Stream(found, split, tuple(keys), decode, count, window, config.seed, element_bytes)

    carved = {
        "test": (0, counts["test"]),
        "validation": (counts["test"], counts["test"] + counts["validation"]),
        "train": (counts["test"] + counts["validation"], total),
    }
    result = [stream(pool, carved["train"], total)]
    for role in ("validation", "test"):
        if role in fixed:
            count = _count(found, fixed[role], keys[1])
            result.append(stream(fixed[role], (0, count), count))
        else:
            result.append(stream(pool, carved[role], total))
    return tuple(result)


def load_arrays(spec, data_dir, keys, alternatives, example_map=None):
    """Loads a TFDS dataset of small rows (text, tabular records, ratings) into numpy arrays.

    Args:
        spec (str): `NAME` (all of the dataset's splits) or `NAME:SPLIT` (one split, any TFDS split
            expression such as `train[:10%]`).
        data_dir (str): TFDS data directory; empty for TFDS's default.
        keys (tuple[str, ...]): feature keys to keep, e.g. `("text", "label")`; only these are batched,
            since other features may have variable lengths (MovieLens' genres).
        alternatives (str): offline sources named in the error when the download cannot happen.
        example_map (Callable | None): TensorFlow function from a dict of the `keys` features to a dict of
            fixed-shape tensors, applied before batching; its output keys are the arrays returned.

    Returns:
        tuple[dict[str, dict[str, np.ndarray]], tfds.core.DatasetInfo]: split name -> key -> array,
        and the dataset's info (class names, citation...).

    Raises:
        ValueError: unknown dataset name, feature or split, an empty split, or no network for a needed download.
    """
    import tensorflow as tf
    import tensorflow_datasets

    from shared.data.sources import progress

    name, _, split = spec.partition(":")
    found = builder(name, data_dir, alternatives, keys)
    mapping = example_map or (lambda example: example)
    loaded = {}
    for split_name in split_names(found, split):
        rows = found.as_dataset(split=split_name).map(
            lambda example: mapping({key: example[key] for key in keys}), num_parallel_calls=tf.data.AUTOTUNE
        )
        chunks = list(progress(tensorflow_datasets.as_numpy(rows.batch(512)), f"reading tfds:{name} {split_name}"))
        if not chunks:
            raise ValueError(f"tfds:{name} split '{split_name}' is empty.")
        loaded[split_name] = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
    return loaded, found.info
