"""Data helpers every task uses: source parsing, splits, tf.data pipelines, TFDS, IDX/npz files."""

import gzip
import os
import pathlib
import socket
import sys

import numpy as np

# Addresses TFDS downloads from; one must answer before a download is attempted.
_TFDS_HOSTS = (("storage.googleapis.com", 443), ("huggingface.co", 443))


def progress(iterable, description, total=None):
    """Wraps an iterable in a progress bar on stderr (silent when stderr is not a terminal)."""
    import tqdm

    return tqdm.tqdm(
        iterable, desc=description, total=total, file=sys.stderr, disable=not sys.stderr.isatty(), leave=False
    )


def parse_source(source):
    """Splits a `--data` value into its kind and argument.

    Args:
        source (str): `embedded`, `tfds:NAME[:SPLIT]`, or a path (optionally prefixed `folder:`,
            `npz:` or `idx:` to skip auto-detection).

    Returns:
        tuple[str, str]: `("embedded", "")`, `("tfds", "NAME[:SPLIT]")` or `(kind, path)` with kind
        one of folder, npz, idx, file, detected from what is on disk.

    Raises:
        ValueError: the path does not exist.
    """
    if source == "embedded":
        return "embedded", ""
    kind, separator, rest = source.partition(":")
    if separator and kind in ("tfds", "folder", "npz", "idx", "file", "csv"):
        if kind == "tfds":
            return kind, rest
        path = rest
    else:
        kind, path = "", source
    if not os.path.exists(path):
        raise ValueError(
            f"data source '{source}' does not exist. Use 'embedded', 'tfds:NAME', or a path to your files."
        )
    if kind:
        return kind, path
    if os.path.isdir(path):
        if any("idx" in name and "ubyte" in name for name in os.listdir(path)):
            return "idx", path
        return "folder", path
    if path.endswith(".npz"):
        return "npz", path
    return "file", path


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
    """
    from sklearn import model_selection

    for name, fraction in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0 <= fraction < 1:
            raise ValueError(f"{name} must be in [0, 1), got {fraction}.")
    if validation_fraction + test_fraction >= 1:
        raise ValueError("validation_fraction + test_fraction must leave data for training (sum < 1).")
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


def carve(features, targets, config, validation=None, test=None, stratify=True, groups=None):
    """Makes train / validation / test pairs, using given splits and carving the missing ones from the pool.

    Args:
        features, targets (np.ndarray): the training pool.
        config (TaskConfig): uses seed, validation_fraction and test_fraction.
        validation, test (tuple | None): ready-made `(features, targets)` splits, if the source has them.
        stratify (bool): keep class proportions (classification targets).
        groups (np.ndarray | None): group ids that must not span two splits.

    Returns:
        tuple[tuple, tuple, tuple]: train, validation and test pairs.
    """
    test_fraction = 0 if test is not None else config.test_fraction
    validation_fraction = 0 if validation is not None else config.validation_fraction
    train_index, validation_index, test_index = split_indices(
        len(targets), config.seed, validation_fraction, test_fraction,
        stratify=targets if stratify else None, groups=groups,
    )
    pool = (features, targets)
    return (
        (take(features, train_index), take(targets, train_index)),
        validation if validation is not None else tuple(take(part, validation_index) for part in pool),
        test if test is not None else tuple(take(part, test_index) for part in pool),
    )


def take(data, indices):
    """Indexes an array, or every array of a dict, with `indices`."""
    if isinstance(data, dict):
        return {key: value[indices] for key, value in data.items()}
    return data[indices]


def cap(pair, max_examples, seed):
    """Keeps at most `max_examples` random rows of `(features, targets)` (0 keeps all)."""
    features, targets = pair
    count = len(targets)
    if not max_examples or count <= max_examples:
        return pair
    chosen = np.sort(np.random.default_rng(seed).choice(count, max_examples, replace=False))
    return take(features, chosen), take(targets, chosen)


def make_dataset(pair, batch_size, shuffle=False, seed=0, batch_map=None):
    """Builds a batched tf.data pipeline from in-memory arrays.

    Args:
        pair (tuple): `(features, targets)` arrays (or dicts of arrays).
        batch_size (int): examples per batch.
        shuffle (bool): reshuffle every epoch (training).
        seed (int): shuffle seed, for reproducible runs.
        batch_map (Callable | None): applied to each batch in parallel (augmentation, target encoding).

    Returns:
        tf.data.Dataset: batched, mapped and prefetched.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(pair).cache()
    if shuffle:
        dataset = dataset.shuffle(min(len(pair[1]), 10_000), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if batch_map is not None:
        dataset = dataset.map(batch_map, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _tfds_offline_error(name, alternatives):
    return ValueError(
        f"tfds:{name} is not downloaded and this machine cannot reach the TFDS servers; "
        f"run once with network access (or copy it into tfds_data_dir), or use offline data: {alternatives}."
    )


def _network_available(timeout=3.0):
    for host, port in _TFDS_HOSTS:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return True
        except OSError:
            continue
    return False


def load_tfds(spec, data_dir, keys, alternatives):
    """Loads a TFDS dataset fully into numpy arrays.

    Args:
        spec (str): `NAME` (all of the dataset's splits) or `NAME:SPLIT` (one split, any TFDS split
            expression such as `train[:10%]`).
        data_dir (str): TFDS data directory; empty for TFDS's default.
        keys (tuple[str, ...]): feature keys to keep, e.g. `("image", "label")`.
        alternatives (str): offline sources named in the error when the download cannot happen.

    Returns:
        tuple[dict[str, dict[str, np.ndarray]], tfds.core.DatasetInfo]: split name -> key -> array,
        and the dataset's info (class names, citation...).

    Raises:
        ValueError: unknown dataset name, unknown split, or no network for a needed download.
    """
    import tensorflow_datasets as tfds

    name, _, split = spec.partition(":")
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except Exception as error:  # TFDS raises its own DatasetNotFoundError and friends
        raise ValueError(
            f"TFDS has no dataset '{name}' ({type(error).__name__}); see "
            "https://www.tensorflow.org/datasets/catalog for names, e.g. tfds:mnist."
        ) from None
    if not builder.is_prepared() and not _network_available():
        raise _tfds_offline_error(name, alternatives)
    missing = [key for key in keys if key not in builder.info.features]
    if missing:
        raise ValueError(
            f"tfds:{name} has no feature(s) {missing}; it has {list(builder.info.features)}."
        )
    builder.download_and_prepare()
    known = list(builder.info.splits) or ["train", "test"]  # mocked builders report no splits
    if split and split.split("[")[0] not in known:
        raise ValueError(f"tfds:{name} has no split '{split}'; it has {known}.")
    splits = [split] if split else known
    loaded = {}
    for split_name in splits:
        batches = tfds.as_numpy(builder.as_dataset(split=split_name).batch(4096))
        chunks = list(progress(batches, f"reading tfds:{name} {split_name}"))
        if not chunks:
            raise ValueError(f"tfds:{name} split '{split_name}' is empty.")
        loaded[split_name] = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in keys}
    return loaded, builder.info


def read_idx(path):
    """Reads an IDX file (the MNIST format), gzipped or not.

    Raises:
        ValueError: the file is not IDX.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        content = handle.read()
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] != 0x08:
        raise ValueError(f"'{path}' is not an unsigned-byte IDX file (bad magic number).")
    dimensions = content[3]
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(dimensions))
    data = np.frombuffer(content, dtype=np.uint8, offset=4 + 4 * dimensions)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"'{path}' is truncated: header says {shape}, found {data.size} values.")
    return data.reshape(shape)


def read_idx_pair(folder):
    """Reads the images and labels IDX files of a folder (e.g. `t10k-images-idx3-ubyte.gz` and labels).

    Returns:
        tuple[np.ndarray, np.ndarray]: images (n, h, w) and labels (n,).
    """
    names = sorted(os.listdir(folder))
    images = [name for name in names if "idx3" in name]
    labels = [name for name in names if "idx1" in name]
    if len(images) != 1 or len(labels) != 1:
        raise ValueError(
            f"'{folder}' must hold exactly one *idx3-ubyte[.gz] images file and one *idx1-ubyte[.gz] labels "
            f"file; found images {images}, labels {labels}."
        )
    x, y = read_idx(pathlib.Path(folder, images[0])), read_idx(pathlib.Path(folder, labels[0]))
    if len(x) != len(y):
        raise ValueError(f"'{folder}': {len(x)} images but {len(y)} labels.")
    return x, y


# Key pairs of the npz layouts people have: Keras' mnist.npz and MedMNIST.
_NPZ_LAYOUTS = (
    {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")},
    {"train": ("train_images", "train_labels"), "validation": ("val_images", "val_labels"),
     "test": ("test_images", "test_labels")},
)


def read_npz(path):
    """Reads a Keras-style (`x_train`, `y_train`, `x_test`, `y_test`) or MedMNIST-style npz.

    Returns:
        dict[str, tuple[np.ndarray, np.ndarray]]: split name -> (features, labels).

    Raises:
        ValueError: the file is not a readable npz or has neither layout.
    """
    try:
        archive = np.load(path)
    except Exception as error:
        raise ValueError(f"cannot read '{path}' as .npz: {error}.") from None
    with archive:
        for layout in _NPZ_LAYOUTS:
            if all(key in archive.files for pair in layout.values() for key in pair):
                return {split: (archive[x], archive[y]) for split, (x, y) in layout.items()}
    raise ValueError(
        f"'{path}' has arrays {archive.files}; expected x_train, y_train, x_test, y_test "
        "(Keras style) or train_images, train_labels, val_*, test_* (MedMNIST style)."
    )
