"""A property-based fuzz of the user-file readers: for each kind of input (class folders of images or audio,
image/mask folders, review and ratings CSVs, sentence-pair TSVs, tables of transactions and of machine cycles),
Hypothesis writes folders and tables with random defects (missing, empty, truncated and corrupt files, odd image
modes and audio formats, other text encodings, repeated column names and keys) and each task's loader either reads
them, with examples that decode, or refuses them with a one-line ValueError: never another exception.

The default suite draws a few inputs per kind; `-m slow` draws `FUZZ_EXAMPLES` (default 50). A failure prints the
drawn files.
"""

import csv
import io
import os
import shutil
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies

from pipelines import cli
from tests.conftest import resolve

DEFAULT_EXAMPLES = 4  # per input kind: loading takes well under a second, TensorFlow's import is shared
SLOW_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))
# mostly good: a folder of only bad files is one case
DEFECTS = ("good", "good", "good", "empty", "truncated", "garbage")
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".gif": "GIF", ".tif": "TIFF", ".webp": "WEBP"}
IMAGE_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK")
ENCODINGS = ("utf-8", "utf-8-sig", "latin-1", "utf-16")
NAMES = strategies.text(
    strategies.characters(codec="utf-8", exclude_characters="/\\\x00:"), min_size=1, max_size=8
).filter(lambda name: name.strip(" .") == name and name not in (".", ".."))


def defective(content, defect, draw):
    """`content` as a file with `defect`: itself, empty, cut short, or random bytes."""
    if defect == "empty":
        return b""
    if defect == "truncated":
        return content[: max(1, len(content) // 2)]
    if defect == "garbage":
        return draw(strategies.binary(min_size=1, max_size=64))
    return content


@strategies.composite
def image_bytes(draw, extension, size=None, values=None, defects=DEFECTS):
    """An encoded image in a drawn mode (converted where the format cannot hold it), with one of `defects`."""
    from PIL import Image

    width, height = size or (draw(strategies.integers(1, 20)), draw(strategies.integers(1, 20)))
    pixels = np.random.default_rng(draw(strategies.integers(0, 99))).integers(0, values or 256, (height, width))
    image = Image.fromarray(pixels.astype("uint8")).convert(draw(strategies.sampled_from(IMAGE_MODES)))
    buffer = io.BytesIO()
    try:
        image.save(buffer, IMAGE_FORMATS[extension.lower()])
    except (OSError, ValueError, KeyError):  # a mode the format does not store
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, IMAGE_FORMATS[extension.lower()])
    return defective(buffer.getvalue(), draw(strategies.sampled_from(defects)), draw)


@strategies.composite
def wav_bytes(draw):
    """A WAV (or FLAC) clip of drawn rate, channels and length, possibly defective."""
    import soundfile

    rate = draw(strategies.sampled_from((8000, 16000, 22050, 44100, 48000)))
    frames = draw(strategies.integers(0, 4000))
    channels = draw(strategies.integers(1, 3))
    samples = np.sin(np.arange(frames * channels).reshape(frames, channels) * 0.05).astype("float32")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=draw(strategies.sampled_from(("WAV", "FLAC"))))
    return defective(buffer.getvalue(), draw(strategies.sampled_from(DEFECTS)), draw)


@strategies.composite
def class_folder(draw, files):
    """{relative path: bytes} of a folder with 1-3 class subfolders of `files`-drawn (extension, bytes), and strays."""
    tree = {}
    for _ in range(draw(strategies.integers(1, 3))):
        label = draw(NAMES)
        for index in range(draw(strategies.integers(0, 6))):
            extension, content = draw(files)
            tree[f"{label}/{draw(NAMES)}{index}{extension}"] = content
    if draw(strategies.booleans()):
        tree[draw(strategies.sampled_from(("notes.txt", ".DS_Store", "loose.png", ".hidden/0.png")))] = b"stray"
    return tree


@strategies.composite
def image_file(draw):
    extension = draw(strategies.sampled_from(tuple(IMAGE_FORMATS) + (".PNG", ".jpeg")))
    return extension, draw(image_bytes(extension if extension != ".jpeg" else ".jpg"))


@strategies.composite
def audio_file(draw):
    content = draw(wav_bytes())
    return draw(strategies.sampled_from((".wav", ".flac", ".WAV"))), content


@strategies.composite
def segmentation_folder(draw):
    """images/ and masks/ (class indices) of drawn sizes and modes, with at most one defect: a missing or mis-sized
    mask, or a defective image or mask (a corrupt file fails the whole folder, so one is enough)."""
    count = draw(strategies.integers(0, 7))
    defect = draw(strategies.sampled_from(("none", "none", "none", "missing_mask", "mask_size", "image", "mask")))
    victim = draw(strategies.integers(0, max(0, count - 1)))
    tree = {}
    for index in range(count):
        hit = defect if index == victim else "none"
        size = (draw(strategies.integers(8, 24)), draw(strategies.integers(8, 24)))
        tree[f"images/{index}.png"] = draw(image_bytes(".png", size, defects=DEFECTS if hit == "image" else ("good",)))
        if hit != "missing_mask":
            extension = draw(strategies.sampled_from((".png", ".bmp", ".gif")))
            tree[f"masks/{index}{extension}"] = draw(
                image_bytes(
                    extension,
                    (size[0] + 1, size[1]) if hit == "mask_size" else size,
                    values=draw(strategies.integers(1, 4)),
                    defects=DEFECTS if hit == "mask" else ("good",),
                )
            )
    return tree


# One defect per table at most, so that each reader path is reached with the others intact.
TABLE_DEFECTS = (
    "none",
    "none",
    "none",
    "cell",
    "cells",
    "repeated_column",
    "missing_column",
    "encoding",
    "blank_lines",
    "unquoted",
    "no_rows",
)
BAD_CELLS = strategies.sampled_from(("", " ", "nan", "inf", "-inf", "-", "1e400", "3,5", "NA", "é", '"', "a\nb", "x"))
WORDS = strategies.text(strategies.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30)
NUMBERS = strategies.floats(-1000, 1000).map(lambda value: f"{value:.3f}")
IDS = strategies.integers(1, 12).map(str)


@strategies.composite
def table(draw, columns, separator=",", header=True):
    """A CSV (or TSV) file: `columns` (name -> strategy of a good cell) with at most one drawn defect.

    Defects: bad cells, a repeated or missing column, another encoding, blank lines, fields written without quoting,
    no data rows.
    """
    names = list(columns)
    rows = [[draw(columns[name]) for name in names] for _ in range(draw(strategies.integers(3, 40)))]
    defect = draw(strategies.sampled_from(TABLE_DEFECTS))
    if defect in ("cell", "cells"):
        for _ in range(1 if defect == "cell" else draw(strategies.integers(2, 10))):
            row, column = draw(strategies.integers(0, len(rows) - 1)), draw(strategies.integers(0, len(names) - 1))
            rows[row][column] = draw(BAD_CELLS)
    elif defect in ("repeated_column", "missing_column"):
        column = draw(strategies.integers(0, len(names) - 1))
        for line in [names] + rows:
            if defect == "repeated_column":
                line.insert(column, line[column])
            else:
                del line[column]
    elif defect == "no_rows":
        rows = []
    lines = ([names] if header else []) + rows
    if defect == "unquoted":
        text = "".join(separator.join(line) + "\n" for line in lines)
    else:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=separator, lineterminator="\n").writerows(lines)
        text = buffer.getvalue()
    if defect == "blank_lines":
        text = text.replace("\n", "\n\n", draw(strategies.integers(1, 3)))
    encoding = draw(strategies.sampled_from(ENCODINGS)) if defect == "encoding" else "utf-8"
    return text.encode(encoding, errors="replace")


# input kind -> (task, file name under the drawn folder ("" for the folder itself), strategy of its content, settings)
KINDS = {
    "image_class_folder": ("vision_classification", "", class_folder(image_file()), ()),
    "audio_class_folder": ("speech", "", class_folder(audio_file()), ("duration=0.25", "augment_copies=0")),
    "segmentation_folder": ("vision_segmentation", "", segmentation_folder(), ("depth=1",)),
    "review_csv": (
        "nlp_sentiment",
        "reviews.csv",
        table({"text": WORDS, "label": strategies.sampled_from(("pos", "neg"))}),
        (),
    ),
    "pair_tsv": ("nlp_translation", "pairs.tsv", table({"source": WORDS, "target": WORDS}, "\t", header=False), ()),
    "transaction_csv": (
        "fraud_detection",
        "transactions.csv",
        table({"amount": NUMBERS, "merchant": WORDS, "Class": strategies.sampled_from(("0", "1"))}),
        (),
    ),
    "cycle_csv": (
        "predictive_maintenance",
        "cycles.csv",
        table({"unit": IDS, "cycle": strategies.integers(1, 30).map(str), "temperature": NUMBERS}),
        ("window=3",),
    ),
    "ratings_csv": (
        "recommendation",
        "ratings.csv",
        table(
            {
                "userId": IDS,
                "movieId": strategies.integers(1, 30).map(str),
                "rating": strategies.sampled_from(("1", "2.5", "4", "5")),
                "timestamp": IDS,
            }
        ),
        ("top_k=2",),
    ),
}


def write_tree(root, tree):
    for relative, content in tree.items():
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)


def check_reader(kind, drawn):
    """Loads the drawn input with its task's loader: it reads (and its first examples decode) or it refuses with a
    one-line ValueError."""
    task_name, file_name, _, assignments = KINDS[kind]
    folder = tempfile.mkdtemp(prefix=f"fuzz-{kind}-")
    try:
        if file_name:
            path = os.path.join(folder, file_name)
            write_tree(folder, {file_name: drawn})
        else:
            path = folder
            write_tree(folder, drawn)
        task, config = resolve(task_name, *assignments, data=path, quick=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                splits = task.load_data(config)
            except ValueError as error:
                assert str(error).strip() and "\n" not in cli.error_line(error), f"not one error line: {error!r}"
                return
            for split in (splits.train, splits.validation, splits.test):
                if len(split):
                    split.sample(2)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fuzz(examples, derandomize):
    """A test that loads `examples` drawn inputs of each kind."""

    @pytest.mark.parametrize("kind", sorted(KINDS))
    def test(kind):
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=derandomize,
            print_blob=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(KINDS[kind][2])
        def drawn(content):
            check_reader(kind, content)

        drawn()

    return test


test_drawn_inputs_read_or_refuse_cleanly = fuzz(DEFAULT_EXAMPLES, derandomize=True)
test_many_drawn_inputs_read_or_refuse_cleanly = pytest.mark.slow(fuzz(SLOW_EXAMPLES, derandomize=False))
