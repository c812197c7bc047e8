"""Reading what users give as data: the `--data` value, the table of readers every task reads it with
(`READERS`, filled by `@reader`), IDX and npz files, UTF-8 text, CSV/TSV/Parquet tables, JSON Lines, and the
progress bar of long reads."""

import dataclasses
import gzip
import json
import os
import pathlib
import sys
import warnings

import numpy as np


def progress(iterable, description, total=None):
    """Wraps an iterable in a progress bar on stderr (silent when stderr is not a terminal)."""
    import tqdm

    return tqdm.tqdm(
        iterable, desc=description, total=total, file=sys.stderr, disable=not sys.stderr.isatty(), leave=False
    )


# `KIND:PATH` names a path's kind instead of detecting it from what is on disk (`tfds:NAME` is no path).
PREFIXES = ("tfds", "folder", "npz", "idx", "file", "csv")


def split_source(source):
    """Splits a `--data` value into the kind it names and its argument, without looking at the disk.

    Args:
        source (str): `embedded`, `tfds:NAME[:SPLIT]`, `KIND:PATH` with a kind of `PREFIXES`, or a path.

    Returns:
        tuple[str, str]: `("embedded", "")`, `("tfds", "NAME[:SPLIT]")`, `(KIND, PATH)`, or `("", PATH)` for a
        bare path (a Windows drive letter is no kind).
    """
    if source == "embedded":
        return "embedded", ""
    kind, separator, rest = source.partition(":")
    if separator and kind in PREFIXES:
        return kind, rest
    return "", source


def parse_source(source):
    """Splits a `--data` value into its kind and argument (`split_source`), detecting a bare path's kind.

    Args:
        source (str): `embedded`, `tfds:NAME[:SPLIT]`, or a path (optionally prefixed `folder:`,
            `npz:`, `idx:`, `file:` or `csv:` to skip auto-detection).

    Returns:
        tuple[str, str]: `("embedded", "")`, `("tfds", "NAME[:SPLIT]")` or `(kind, path)` with kind
        one of folder, npz, idx, file, detected from what is on disk.

    Raises:
        ValueError: the path does not exist.
    """
    kind, argument = split_source(source)
    if kind in ("embedded", "tfds"):
        return kind, argument
    if not os.path.exists(argument):
        raise ValueError(
            f"data source '{source}' does not exist. Use 'embedded', 'tfds:NAME', or a path to your files."
        )
    if kind:
        return kind, argument
    if os.path.isdir(argument):
        if any("idx" in name and "ubyte" in name for name in os.listdir(argument)):
            return "idx", argument
        return "folder", argument
    if argument.endswith(".npz"):
        return "npz", argument
    return "file", argument


@dataclasses.dataclass(frozen=True)
class Reader:
    """One input format's reader, as `reader` registers it.

    Attributes:
        name (str): what tasks name it by in their `readers`.
        kinds (tuple[str, ...]): the `parse_source` kinds it reads.
        read (Callable): `read(task, argument, config)`, returning what the tasks naming it load from.
        describe (str): what it reads, listed when no reader of a task takes a source.
        accepts (Callable | None): `accepts(argument, config)`, where the kind alone does not tell (a C-MAPSS
            folder among folders); None takes every argument of its kinds.
    """

    name: str
    kinds: tuple
    read: object
    describe: str
    accepts: object = None


READERS = {}  # every registered reader by name: one table, whichever module registers into it


def reader(name, kinds, describe, accepts=None):
    """Registers the decorated function as the reader `name` (see `Reader`): a new input format is one reader
    and this line, and tasks that read it add its name to their `readers`.

    Raises:
        ValueError: another function already holds `name`.
    """

    def register(read):
        held = READERS.get(name)
        if held and (held.read.__module__, held.read.__qualname__) != (read.__module__, read.__qualname__):
            raise ValueError(f"reader '{name}' is already {held.read.__module__}.{held.read.__qualname__}; rename one.")
        READERS[name] = Reader(name, tuple(kinds), read, describe, accepts)
        return read

    return register


def read_source(task, config, names):
    """Reads `config.data` with the first reader of `names`, in order, that takes its kind.

    Args:
        task (tasks.base.Task): passed to the reader, and named in the error.
        config (TaskConfig): its `data`, and whatever else the reader reads (columns, sizes).
        names (Iterable[str]): registered reader names (`READERS`).

    Returns:
        object: what the reader returns.

    Raises:
        ValueError: a name no reader is registered under, the source does not exist, or none of the readers
            takes it (the message lists what they read).
    """
    unknown = [name for name in names if name not in READERS]
    if unknown:
        raise ValueError(
            f"{task.name} names unregistered reader(s) {unknown}; register them with @reader or fix the names."
        )
    kind, argument = parse_source(config.data)
    chosen = [READERS[name] for name in names]
    for found in chosen:
        if kind in found.kinds and (found.accepts is None or found.accepts(argument, config)):
            return found.read(task, argument, config)
    if kind == "tfds" and not any("tfds" in found.kinds for found in chosen):
        refusal = f"{task.name} has no TFDS dataset"
    else:
        refusal = f"{task.name} cannot read '{config.data}' (a {kind})"
    raise ValueError(f"{refusal}; give {'; '.join(found.describe for found in chosen)}.")


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
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions))
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
    {
        "train": ("train_images", "train_labels"),
        "validation": ("val_images", "val_labels"),
        "test": ("test_images", "test_labels"),
    },
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


def not_utf8(path, line, byte):
    """Returns:
    ValueError: the one-line error for bytes that are not UTF-8, naming the file, the line and the byte.
    """
    return ValueError(
        f"'{path}' line {line} is not valid UTF-8 (byte 0x{byte:02x}); "
        "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
    )


def is_tab(path):
    """Whether `path` is tab-separated (`.tsv`/`.tab`). TSV exports (SST-2, Anki) use bare quotes inside
    sentences, so such files are read without quoting."""
    return str(path).lower().endswith((".tsv", ".tab"))


def first_columns(header, path):
    """The positions of the columns a reader keeps: the first of each name the header repeats.

    pandas renames a repeated `amount` to `amount.1`, which would then train as a column of its own, so the
    repeats are dropped with a one-line warning naming them.

    Args:
        header (list[str]): the column names as the file writes them.
        path (str): the file, named in the warning.

    Returns:
        list[int]: the position of each name's first column, in file order.
    """
    first = {}
    for position, name in enumerate(header):
        first.setdefault(name, position)
    repeated = sorted({str(name) for position, name in enumerate(header) if first[name] != position})
    if repeated:
        warnings.warn(
            f"'{path}' repeats column(s) {', '.join(map(repr, repeated))} in its header; keeping the first "
            "of each and ignoring the repeats.",
            stacklevel=3,
        )
    return sorted(first.values())


def read_csv(source, path, **options):
    """`pandas.read_csv` with the repeats of a column name dropped (see `first_columns`).

    Args:
        source (str | io.StringIO): the file, or its text (read from the start).
        path (str): the file, named in the warning.
        **options: for `pandas.read_csv` (`sep`, `dtype`, `quoting`...).

    Returns:
        pandas.DataFrame
    """
    import pandas as pd

    frame = pd.read_csv(source, **options)
    if hasattr(source, "seek"):
        source.seek(0)
    header = pd.read_csv(source, **{**options, "header": None, "nrows": 1, "dtype": str, "keep_default_na": False})
    if header.shape[1] != frame.shape[1]:  # a header shorter than its rows: pandas took the first columns as an index
        return frame
    return frame.iloc[:, first_columns(header.iloc[0].tolist(), path)]


def find_column(found, role, accepted, path, hint=None):
    """The first of a role's accepted column names that the file has.

    Args:
        found (list[str]): the file's columns.
        role (str): what the column holds (`text`, `label`...), for the error.
        accepted (str): accepted names, comma-separated, e.g. "text,sentence".
        path (str | pathlib.Path): the file, for the error.
        hint (str | dict[str, str] | None): how to name another column, ending the error, or one such text per
            role (default: the `--set ROLE_column=NAME` config override).

    Raises:
        ValueError: the file has none of them (the message lists the columns it has).
    """
    names = [name.strip() for name in accepted.split(",") if name.strip()]
    hint = hint.get(role) if isinstance(hint, dict) else hint
    chosen = next((name for name in names if name in found), None)
    if chosen is None:
        raise ValueError(
            f"'{path}' has no {role} column {' or '.join(repr(name) for name in names)}; its columns are "
            f"{list(found)}. {hint or f'Set the name with --set {role}_column=NAME.'}"
        )
    return chosen


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
        raise not_utf8(path, content[: error.start].count(b"\n") + 1, content[error.start]) from None


def is_table(argument, config):
    """Whether a file argument is a CSV or TSV table: the `accepts` rule of readers of listed files."""
    return argument.lower().endswith((".csv", ".tsv"))


def listed_files(table, listed, kind):
    """The files a table lists, as paths read from the table's own folder.

    Args:
        table (str): the CSV/TSV file.
        listed (np.ndarray): its path column.
        kind (str): what the files are ("image", "audio file"), for the errors.

    Raises:
        ValueError: a listed file does not exist (naming its line), or the table lists none.
    """
    base = pathlib.Path(table).resolve().parent
    paths = []
    for row, relative in enumerate(listed, start=2):
        resolved = base / str(relative).strip()
        if not resolved.is_file():
            raise ValueError(
                f"'{table}' line {row}: {kind} '{relative}' does not exist (relative paths are read from {base})."
            )
        paths.append(str(resolved))
    if not paths:
        raise ValueError(f"'{table}' lists no {kind}s; expected a header, then rows of path,label.")
    return paths


def class_names(labels, source):
    """The distinct labels of a text column in the order people expect: numbers by value ("2" before "10"),
    other names alphabetically.

    Raises:
        ValueError: fewer than two classes, naming them.
    """
    names = sorted(set(labels), key=int if all(name.lstrip("-").isdigit() for name in labels) else str)
    if len(names) < 2:
        raise ValueError(
            f"{source}: the label column has {len(names)} distinct value(s) {names}; need at least 2 classes."
        )
    return names


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
    tab = is_tab(path)
    try:
        frame = read_csv(
            io.StringIO(text),
            path,
            sep="\t" if tab else ",",
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE if tab else csv.QUOTE_MINIMAL,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"cannot parse '{path}' as {'TSV' if tab else 'CSV'}: {str(error).strip()}.") from None
    return {
        role: frame[find_column(list(frame.columns), role, accepted, path, hint)].to_numpy(dtype=object)
        for role, accepted in columns.items()
    }


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
            frame = read_csv(path, path, sep="\t" if str(path).lower().endswith(".tsv") else ",")
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
            raise ValueError(
                f"'{path}' line {number} is not valid JSON ({error.msg}); write one object per line."
            ) from None
        if not isinstance(record, dict):
            raise ValueError(
                f"'{path}' line {number} holds a {type(record).__name__}, not a JSON object; "
                'write one object per line, e.g. {"text": "..."}.'
            )
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


def refuse_unknown_columns(frame, info, source, also=()):
    """Raises a ValueError naming the columns of `frame` that a trained model's tabular `info` neither reads nor
    ignores: training it further on them would silently drop what the user means it to learn from.

    Args:
        frame (pandas.DataFrame): the table.
        info (FittedState): the model's `Splits.info`, with `preprocessing` (`fit_tabular`'s spec) and
            `ignored_columns`.
        source (str): the file or input, for the message.
        also (Iterable[str]): more columns this run ignores (its target, `drop_columns`).
    """
    known = {item["name"] for kind in ("numeric", "categorical") for item in info.preprocessing[kind]}
    known |= {*info.ignored_columns, *also}
    unknown = [str(column) for column in frame.columns if column not in known]
    if unknown:
        raise ValueError(
            f"{source}: the model was not trained on column(s) {unknown[:20]}; continued training keeps the "
            f"model's columns: drop them (--set drop_columns=[...]) or train a new model without --init-from."
        )


@dataclasses.dataclass
class Table:
    """What readers of tables return.

    Attributes:
        frame (pandas.DataFrame): the rows.
        name (str): the dataset's short name for MLflow.
        synthetic (bool): True for generated rows.
    """

    frame: object
    name: str
    synthetic: bool = False


@reader("table", ("file", "csv"), "a CSV/TSV/Parquet table")
def _read_table(task, argument, config):
    return Table(read_table(argument), f"table_{os.path.basename(argument)}")
