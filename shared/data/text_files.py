"""Text files as an index that tf.data decodes: one byte offset per CSV/TSV record or sentence-pair line.

A scan reads the file once, record by record (never the whole text), checks UTF-8 and the columns, and
keeps per usable record its byte offset and what the caller asks for (a label); the texts themselves are
read back in the tf.data map (`record_step`), a batch of offsets per call, each call opening the file
itself (so parallel calls share no handle). Record order is the file's, so carving the index gives the
split that carving the texts held in memory gave.
"""

import array
import csv
import dataclasses

import numpy as np

from shared.data.sources import find_column, first_columns, is_tab, not_utf8

DECODE_BATCH = 256  # offsets read per Python call: the call's overhead is paid once per batch
BOM = b"\xef\xbb\xbf"


class Lines:
    """The lines of a binary file as UTF-8 strings, counting their numbers and the byte offset after them.

    Raises (while iterating):
        ValueError: a line that is not valid UTF-8, naming the file, the line and the byte.
    """

    def __init__(self, handle, path):
        self.handle, self.path = handle, path
        self.number, self.offset = 0, 0

    def __iter__(self):
        return self

    def __next__(self):
        raw = self.handle.readline()
        if not raw:
            raise StopIteration
        if self.number == 0 and raw.startswith(BOM):
            self.offset += len(BOM)
            raw = raw[len(BOM) :]
        self.number += 1
        self.offset += len(raw)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise not_utf8(self.path, self.number, raw[error.start]) from None


def _dialect(tab):
    return {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if tab else {"delimiter": ",", "quoting": csv.QUOTE_MINIMAL}


@dataclasses.dataclass
class TableIndex:
    """What a scan of a CSV/TSV file keeps: no text, one offset (and one small value per kept role) per record.

    Attributes:
        path (str): the file.
        positions (dict[str, int]): role -> the column's position in a record.
        offsets (np.ndarray): int64 byte offset of each usable record, in file order.
        values (dict[str, np.ndarray]): role -> per record, the stripped value of each kept role (object
            array whose items share one str per distinct value).
        dropped (int): records dropped because a text role was empty.
        record_bytes (int): mean bytes of a usable record (for the cache budget).
    """

    path: str
    positions: dict
    offsets: np.ndarray
    values: dict
    dropped: int
    record_bytes: int


def scan_table(path, columns, keep=(), hint=None):
    """Scans a CSV (comma, quoted fields may span lines) or TSV (tab, by extension) file with a header row.

    Args:
        path (str): the file.
        columns (dict[str, str]): role -> accepted column names, comma-separated (the first the file has wins).
        keep (tuple[str, ...]): roles whose values are kept per record (labels); every other role is a
            text, checked non-empty and never kept.
        hint (str | dict[str, str] | None): how to name another column, ending the missing-column error (one
            per role in a dict).

    Returns:
        TableIndex: records with an empty text are dropped (counted in `dropped`).

    Raises:
        ValueError: not UTF-8 (naming the line), an empty file, a role without its column (listing the
            columns found), a record with more fields than the header or a parse error (naming the line).
    """
    csv.field_size_limit(max(csv.field_size_limit(), 2**30))  # whole reviews in one field, as pandas reads them
    tab = is_tab(path)
    offsets, values, dropped, used = array.array("q"), {role: [] for role in keep}, 0, 0  # 8 bytes per offset
    shared = {role: {} for role in keep}  # one str object per distinct value
    texts = [role for role in columns if role not in keep]
    with open(path, "rb") as handle:
        lines = Lines(handle, path)
        reader = csv.reader(lines, **_dialect(tab))
        try:
            header = next(reader, None)
            if header is None:
                raise ValueError(
                    f"'{path}' is empty; expected a header row naming the columns, then one row per example."
                )
            first_columns(header, path)  # warns of repeated names; `index` below takes the first of each
            positions = {
                role: header.index(find_column(header, role, accepted, path, hint))
                for role, accepted in columns.items()
            }
            while True:
                start = lines.offset
                record = next(reader, None)
                if record is None:
                    break
                if not record:  # a blank line
                    continue
                if len(record) > len(header):
                    raise ValueError(
                        f"'{path}' line {lines.number} has {len(record)} fields, the header {len(header)}; "
                        f"{'a text holds a tab' if tab else 'quote texts that hold commas'}."
                    )
                fields = {
                    role: record[position].strip() if position < len(record) else ""
                    for role, position in positions.items()
                }
                if not all(fields[role] for role in texts):
                    dropped += 1
                    continue
                offsets.append(start)
                used += lines.offset - start
                for role in keep:
                    values[role].append(shared[role].setdefault(fields[role], fields[role]))
        except csv.Error as error:
            raise ValueError(
                f"cannot parse '{path}' as {'TSV' if tab else 'CSV'}: line {lines.number}: {error}."
            ) from None
    return TableIndex(
        str(path),
        positions,
        np.frombuffer(offsets, dtype="int64").copy(),
        {role: np.asarray(items, dtype=object) for role, items in values.items()},
        dropped,
        used // max(1, len(offsets)),
    )


def table_reader(path, position):
    """Returns `read(handle, offset) -> str`: the text at `position` of the CSV/TSV record at `offset`."""
    dialect = _dialect(is_tab(path))

    def read(handle, offset):
        handle.seek(offset)
        lines = (raw.decode("utf-8", "replace") for raw in iter(handle.readline, b""))
        record = next(csv.reader(lines, **dialect), [])
        return record[position] if position < len(record) else ""

    return read


def record_step(path, read, fields=1):
    """A tf.data transformation from `(offset, target)` index rows to the texts of those records.

    Args:
        path (str): the file the offsets point into.
        read (Callable): `read(handle, offset)` -> the record's text (`fields == 1`) or a tuple of `fields`
            texts; it runs in a Python call per `DECODE_BATCH` offsets, on a handle that call opened.
        fields (int): 1 gives `(text, target)` elements; 2 gives `(first, second)` texts (the target row is
            dropped: sentence pairs hold both sides in one record).

    Returns:
        Callable: `dataset -> dataset`, in index order.
    """
    import tensorflow as tf

    def read_batch(offsets):
        with open(path, "rb") as handle:
            rows = [read(handle, int(offset)) for offset in offsets]
        rows = [row if fields > 1 else (row,) for row in rows]
        return [np.array([row[field].encode("utf-8") for row in rows], dtype=object) for field in range(fields)]

    def decode(offsets, targets):
        texts = tf.numpy_function(read_batch, [offsets], [tf.string] * fields)
        texts = [tf.ensure_shape(text, [None]) for text in texts]
        return (texts[0], targets) if fields == 1 else tuple(texts)

    return lambda dataset: dataset.batch(DECODE_BATCH).map(decode, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def file_step():
    """A tf.data transformation from `(path, label)` rows to `(text, label)`: each file read whole in TF,
    a leading UTF-8 byte-order mark dropped."""
    import tensorflow as tf

    def decode(path, label):
        return tf.strings.regex_replace(tf.io.read_file(path), "^\ufeff", ""), label

    return lambda dataset: dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
