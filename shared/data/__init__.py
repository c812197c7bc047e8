"""Data helpers every task uses: source parsing, splits, IDX/npz files, text and tables.

Splits are `examples.Examples` (an index in memory, decoded in tf.data) or `tfds.Stream`s.
"""

import gzip
import json
import os
import pathlib
import sys

import numpy as np


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

    Raises:
        ValueError: too few examples to hold out both fractions and keep training data.
    """
    from sklearn import model_selection

    held = sum(int(np.ceil(fraction * count)) for fraction in (validation_fraction, test_fraction))
    if count - held < 1 or (validation_fraction and count < 2) or (test_fraction and count < 2):
        raise ValueError(f"{count} example(s) are too few to carve validation_fraction {validation_fraction} and "
                         f"test_fraction {test_fraction} and keep some for training; add data or lower the fractions.")
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
            len(pool), config.seed, validation_fraction, test_fraction,
            stratify=pool.targets if stratify else None, groups=groups,
        )
    except ValueError as error:
        raise ValueError(f"'{config.data}': {error}") from None
    return (pool.subset(train_index), validation if validation is not None else pool.subset(validation_index),
            test if test is not None else pool.subset(test_index))


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


def read_text(path):
    """Reads a whole text file as UTF-8 (a leading byte-order mark is dropped).

    Args:
        path (str | pathlib.Path): the file.

    Returns:
        str: its content.

    Raises:
        ValueError: the file is not valid UTF-8; the message names the line and the offending byte.
    """
    with open(path, "rb") as handle:
        content = handle.read()
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        raise ValueError(
            f"'{path}' line {line} is not valid UTF-8 (byte 0x{content[error.start]:02x}); "
            "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
        ) from None


def read_text_columns(path, columns, hint=None):
    """Reads a CSV (comma) or TSV (tab, by extension `.tsv`/`.tab`) file with a header row.

    Args:
        path (str | pathlib.Path): the file.
        columns (dict[str, str]): role -> accepted column names, comma-separated (the first one the
            file has wins), e.g. `{"text": "text,sentence", "label": "label"}`.
        hint (str | None): how to name another column, ending the missing-column error (default: the
            `--set ROLE_column=NAME` config override).

    Returns:
        dict[str, np.ndarray]: role -> the column's values (strings as Python objects).

    Raises:
        ValueError: not UTF-8, unparsable, or a role has none of its accepted columns (the message lists
            the columns the file has).
    """
    import csv
    import io

    import pandas as pd

    text = read_text(path)
    tab = str(path).lower().endswith((".tsv", ".tab"))
    try:
        # TSV exports (SST-2, Anki) use bare quotes inside sentences, so TSV is read without quoting.
        frame = pd.read_csv(io.StringIO(text), sep="\t" if tab else ",", dtype=str, keep_default_na=False,
                            quoting=csv.QUOTE_NONE if tab else csv.QUOTE_MINIMAL)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"cannot parse '{path}' as {'TSV' if tab else 'CSV'}: {str(error).strip()}.") from None
    result = {}
    for role, accepted in columns.items():
        names = [name.strip() for name in accepted.split(",") if name.strip()]
        found = next((name for name in names if name in frame.columns), None)
        if found is None:
            raise ValueError(
                f"'{path}' has no {role} column {' or '.join(repr(name) for name in names)}; its columns are "
                f"{list(frame.columns)}. {hint or f'Set the name with --set {role}_column=NAME.'}"
            )
        result[role] = frame[found].to_numpy(dtype=object)
    return result


def standardize_text(texts, punctuation="strip"):
    """Lower-cases text and strips punctuation or splits it into separate tokens (tf.data-ready).

    Runs on `tf.string` tensors so it can sit in a tf.data map and in a predictor, never inside a
    model, which keeps models backend-agnostic.

    Args:
        texts (tf.Tensor | list[str]): strings.
        punctuation (str): "strip" removes it (classification); "split" keeps each mark as its own
            token (translation, where the output must be punctuated).

    Returns:
        tf.Tensor: standardised strings, tokens separated by single spaces.
    """
    import tensorflow as tf

    if punctuation not in ("strip", "split"):
        raise ValueError(f"punctuation must be 'strip' or 'split', got '{punctuation}'.")
    texts = tf.strings.lower(tf.convert_to_tensor(texts), encoding="utf-8")
    texts = tf.strings.regex_replace(texts, r"<br\s*/?>", " ")  # IMDB reviews keep HTML line breaks
    marks = r"[!\"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~¿¡«»“”…]"
    if punctuation == "strip":
        texts = tf.strings.regex_replace(texts, marks, " ")
    else:
        texts = tf.strings.regex_replace(texts, r"([!\"#$%&()*+,./:;<=>?@\[\\\]^_`{|}~¿¡«»“”…])", r" \1 ")
    return tf.strings.strip(tf.strings.regex_replace(texts, r"\s+", " "))


def read_table(path, required=(), hint=""):
    """Reads a CSV (comma-separated, header row) or Parquet file into a pandas DataFrame.

    Args:
        path (str): a `.csv`, `.tsv`, `.txt` (comma-separated) or `.parquet` file.
        required (Iterable[str]): columns that must be present (empty names are ignored).
        hint (str): how to fix a missing column, appended to the error (e.g. "set --set target=NAME").

    Returns:
        pandas.DataFrame

    Raises:
        ValueError: the file cannot be parsed, has no rows, or lacks a required column
            (the message lists the columns found).
    """
    import pandas as pd

    try:
        if str(path).lower().endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if str(path).lower().endswith(".tsv") else ",")
    except (OSError, ValueError, ImportError, pd.errors.ParserError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"cannot read '{path}' as a CSV/Parquet table: {first_line[:200]}.") from None
    if frame.empty:
        raise ValueError(f"'{path}' has no data rows; expected a header line and at least one row.")
    require_columns(frame, required, path, hint)
    return frame


def read_jsonl(path):
    """Reads a JSON Lines file: one JSON object per non-empty line.

    Args:
        path (str | pathlib.Path): the file.

    Returns:
        list[dict]: the objects, in file order.

    Raises:
        ValueError: a line that is not a JSON object (the message names its number), or no objects at all.
    """
    records = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"'{path}' line {number} is not valid JSON ({error.msg}); write one object per line.") from None
        if not isinstance(record, dict):
            raise ValueError(f"'{path}' line {number} holds a {type(record).__name__}, not a JSON object; "
                             "write one object per line, e.g. {\"text\": \"...\"}.")
        records.append(record)
    if not records:
        raise ValueError(f"'{path}' holds no JSON objects; write one object per line.")
    return records


def require_columns(frame, columns, source, hint=""):
    """Raises a ValueError naming the missing columns and the columns found.

    Args:
        frame (pandas.DataFrame): the table.
        columns (Iterable[str]): the names that must be present (empty names are ignored).
        source (str): the file or input, for the message.
        hint (str): how to fix it, appended to the message.
    """
    missing = [column for column in columns if column and column not in frame.columns]
    if missing:
        found = [str(column) for column in frame.columns]
        shown = ", ".join(found[:40]) + (" ..." if len(found) > 40 else "")
        raise ValueError(f"{source}: missing column(s) {missing}; found columns: {shown}.{' ' + hint if hint else ''}")


def numeric_values(values, column, source):
    """Converts a column to float64, keeping missing values as NaN.

    Args:
        values (pandas.Series): the raw column.
        column (str): its name, for the message.
        source (str): the file or input, for the message.

    Returns:
        np.ndarray: float64 values (NaN where missing).

    Raises:
        ValueError: a non-numeric or infinite value; the message names the column and the first bad row
            (1-based data row, header excluded).
    """
    import pandas as pd

    try:
        converted = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    except OverflowError:  # an integer beyond float64, which JSON allows: it counts as infinite
        def bounded(value):
            return value if not isinstance(value, int) or abs(value) < 2**1024 else np.inf if value > 0 else -np.inf

        converted = pd.to_numeric(values.map(bounded), errors="coerce").to_numpy(dtype="float64")
    text = values.astype(str).str.strip().to_numpy()
    bad = np.isnan(converted) & values.notna().to_numpy() & (text != "") & (np.char.lower(text.astype(str)) != "nan")
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{source}: column '{column}' must be numeric, but data row {row + 1} holds "
                         f"{values.iloc[row]!r}; fix the value or list the column as categorical.")
    if np.isinf(converted).any():
        row = int(np.flatnonzero(np.isinf(converted))[0])
        raise ValueError(f"{source}: column '{column}' holds an infinite value at data row {row + 1}; "
                         "replace it with a finite number or leave it empty (missing values are imputed).")
    return converted


def looks_numeric(values, share=0.95):
    """True when at least `share` of a column's non-missing values parse as numbers.

    A column that is mostly numbers with a few typos is treated as numeric (so `numeric_values`
    reports the typo) rather than silently becoming a huge categorical vocabulary.
    """
    import pandas as pd

    present = values.dropna()
    if present.empty:
        return True
    return float(pd.to_numeric(present, errors="coerce").notna().mean()) >= share


def category_text(value):
    """The vocabulary key of one categorical value: missing values share the token `<missing>`."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        return "<missing>"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 3.0 from a JSON or float column and "3" from a CSV are one category
    return str(value).strip()


def fit_tabular(frame, numeric, categorical, source, max_categories=1000):
    """Fits tabular preprocessing on training rows only; the result is JSON-serialisable.

    Numeric columns: missing values are imputed with the training median, then standardised with
    the training mean and standard deviation. Categorical columns: the training vocabulary, most
    frequent first (index 0 is kept for values never seen in training).

    Args:
        frame (pandas.DataFrame): training rows.
        numeric (list[str]): numeric column names.
        categorical (list[str]): categorical column names.
        source (str): the file or input, for error messages.
        max_categories (int): vocabulary size cap per column; rarer values map to the unseen index.

    Returns:
        dict: `{"numeric": [{name, median, mean, std}], "categorical": [{name, vocabulary}]}`.
    """
    spec = {"numeric": [], "categorical": []}
    for column in numeric:
        values = numeric_values(frame[column], column, source)
        finite = values[~np.isnan(values)]
        median = float(np.median(finite)) if finite.size else 0.0
        filled = np.where(np.isnan(values), median, values)
        spec["numeric"].append({"name": column, "median": median, "mean": float(filled.mean()),
                                "std": float(filled.std()) or 1.0})
    for column in categorical:
        counts = frame[column].map(category_text).value_counts()
        spec["categorical"].append({"name": column, "vocabulary": counts.index[:max_categories].tolist()})
    return spec


def apply_tabular(frame, spec, source):
    """Applies `fit_tabular` preprocessing to any rows (training, test or prediction).

    Returns:
        dict[str, np.ndarray]: `numeric` float32 (n, numeric columns) and, when there are categorical
        columns, `categorical` int32 (n, categorical columns) with 0 for values unseen in training.

    Raises:
        ValueError: a column is missing (named with the columns found) or a numeric value is bad.
    """
    names = [item["name"] for item in spec["numeric"] + spec["categorical"]]
    require_columns(frame, names, source)
    numeric = np.zeros((len(frame), len(spec["numeric"])), dtype="float32")
    for index, item in enumerate(spec["numeric"]):
        values = numeric_values(frame[item["name"]], item["name"], source)
        with np.errstate(over="ignore"):
            numeric[:, index] = (np.where(np.isnan(values), item["median"], values) - item["mean"]) / item["std"]
        if not np.isfinite(numeric[:, index]).all():  # finite in float64, beyond float32 once standardised
            row = int(np.flatnonzero(~np.isfinite(numeric[:, index]))[0])
            raise ValueError(f"{source}: column '{item['name']}' holds {values[row]:g} at data row {row + 1}, beyond "
                             "what the model computes with; give a value within the training data's scale.")
    result = {"numeric": numeric}
    if spec["categorical"]:
        categorical = np.zeros((len(frame), len(spec["categorical"])), dtype="int32")
        for index, item in enumerate(spec["categorical"]):
            lookup = {value: position + 1 for position, value in enumerate(item["vocabulary"])}
            categorical[:, index] = [lookup.get(category_text(value), 0) for value in frame[item["name"]]]
        result["categorical"] = categorical
    return result


def binary_target(values, column, source):
    """Checks and converts a binary target column (0/1, true/false or two numbers) to int64 0/1.

    Raises:
        ValueError: missing values, more or fewer than two classes; the message says what was found.
    """
    import pandas as pd

    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise ValueError(f"{source}: target column '{column}' is empty at data row {row + 1}; every row needs a label.")
    mapped = values.map(lambda value: {"true": 1, "false": 0}.get(str(value).strip().lower(), value))
    numbers = pd.to_numeric(mapped, errors="coerce")
    classes = sorted(set(numbers.dropna().tolist()))
    if numbers.isna().any() or not set(classes) <= {0, 1}:
        found = sorted(set(values.astype(str).tolist()))[:10]
        raise ValueError(f"{source}: target column '{column}' must be binary 0/1 (or true/false); found {found}.")
    if len(classes) < 2:
        raise ValueError(f"{source}: target column '{column}' has only class {int(classes[0])}; "
                         "a detector needs examples of both classes (0 and 1).")
    return numbers.to_numpy(dtype="int64")


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


# Texts are cut to this many characters per token the model reads before they are tokenised: words,
# numbers and URLs with their spacing stay far below it, so a text the model would read whole is never
# cut, while the work per input is bounded (a 64-token model reads at most 6,400 characters).
TEXT_CHARACTERS_PER_TOKEN = 100


def text_vectorizer(vocabulary, sequence_length):
    """Rebuilds the TextVectorization of a training run from its saved vocabulary (input: standardised text).

    Args:
        vocabulary (list[str]): the adapted vocabulary, padding ("") and [UNK] first.
        sequence_length (int | None): pad / truncate to this many tokens (None pads to the batch's longest).

    Returns:
        keras.layers.TextVectorization
    """
    import keras

    return keras.layers.TextVectorization(standardize=None, split="whitespace", vocabulary=vocabulary[2:],
                                          output_sequence_length=sequence_length)


def adapt_vocabulary(texts, size, punctuation):
    """Adapts a TextVectorization on training texts.

    Args:
        texts (np.ndarray): training strings.
        size (int): maximum vocabulary size, including padding and [UNK].
        punctuation (str): "strip" or "split" (see `standardize_text`).

    Returns:
        list[str]: the vocabulary, most frequent first, padding ("") and [UNK] at indices 0 and 1.
    """
    import keras
    import tensorflow as tf

    layer = keras.layers.TextVectorization(max_tokens=size, standardize=None, split="whitespace")
    layer.adapt(tf.data.Dataset.from_tensor_slices(list(texts)).batch(1024).map(
        lambda batch: standardize_text(batch, punctuation)))
    return [str(token) for token in layer.get_vocabulary()]


def tokenize_text(texts, vocabulary, sequence_length, punctuation, check=False):
    """Standardises and tokenises raw strings into padded id rows (numpy), as at training time.

    Each text is first cut to `sequence_length * TEXT_CHARACTERS_PER_TOKEN` characters, so that a
    megabyte sentence costs what a paragraph does.

    Args:
        texts (list[str]): raw strings.
        vocabulary (list[str]): the saved vocabulary.
        sequence_length (int): the model's maximum length; longer texts are truncated (flagged as such).
        punctuation (str): "strip" or "split".
        check (bool): predictor mode: raise on empty texts and warn about truncated ones.

    Returns:
        tuple[np.ndarray, np.ndarray]: ids (n, sequence_length) int64 and, per text, whether it was truncated.

    Raises:
        ValueError: (check mode) a text is empty or not a string.
    """
    import warnings

    import tensorflow as tf

    if check:
        for position, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"input {position + 1} is {text!r}; give a non-empty sentence (a string).")
    limit = sequence_length * TEXT_CHARACTERS_PER_TOKEN
    cut = np.array([len(text) > limit for text in texts], dtype=bool)
    standardized = standardize_text(tf.constant([text[:limit] for text in texts], dtype=tf.string), punctuation)
    lengths = tf.strings.split(standardized).row_lengths().numpy()
    truncated = (lengths > sequence_length) | cut
    if check and truncated.any():
        warnings.warn(
            f"{int(truncated.sum())} input(s) longer than the model's {sequence_length} tokens were truncated "
            f"(inputs {', '.join(str(i + 1) for i in np.flatnonzero(truncated)[:10])}).", stacklevel=2)
    ids = text_vectorizer(vocabulary, sequence_length)(standardized)
    return np.asarray(ids).astype("int64"), truncated
