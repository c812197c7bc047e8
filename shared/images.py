"""Image files in and out: class-folder discovery, header scans, decoding with clear errors, and the
tf.data decode step that training and prediction share."""

import concurrent.futures
import dataclasses
import io
import logging
import os
import pathlib
import warnings

import numpy as np

from shared import inputs
from shared.data.sources import progress

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Decoding is refused above this many pixels: a 40-megapixel photo is already larger than any camera
# phone's, while a small "decompression bomb" file can declare billions. Serving may lower it.
MAX_PIXELS = 40_000_000
MAX_PIXELS_ENV = "PIPELINES_MAX_IMAGE_PIXELS"
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_EXIF_ORIENTATION = 0x0112  # orientations 5-8 turn the picture by 90 degrees
# The largest square side image_size=0 gives a folder of mixed-size or large images: a full-resolution
# feature map of the from-scratch ResNet (32 filters) takes 2 MB for a 128 px image but 1.5 GB for a
# 3000x4000 phone photo, so 128 keeps CPU training feasible; pretrained backbones want more (224), so
# their users set image_size.
AUTO_IMAGE_SIDE = 128
logger = logging.getLogger(__name__)


def max_pixels():
    """Returns:
        int: the pixel limit, `PIPELINES_MAX_IMAGE_PIXELS` when set, else `MAX_PIXELS`.

    Raises:
        ValueError: the environment variable is not a positive integer.
    """
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return MAX_PIXELS
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(f"{MAX_PIXELS_ENV} must be a positive number of pixels, e.g. 40000000; got '{value}'.")
    return int(value)


def class_folders(folder, extensions=IMAGE_EXTENSIONS):
    """Lists the files of a folder with one subfolder per class.

    Args:
        folder (str): the root folder.
        extensions (tuple[str, ...]): file extensions to keep (lower case).

    Returns:
        tuple[list[str], np.ndarray, list[str]]: file paths, integer labels, class names (sorted).

    Raises:
        ValueError: the folder is missing, has fewer than two class subfolders, or a class has no files.
    """
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise ValueError(f"data folder '{folder}' does not exist or is not a folder.")
    class_names = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not class_names:
        raise ValueError(f"data folder '{folder}' has no class subfolders; expected {folder}/CLASS_NAME/file.")
    paths, labels = [], []
    for index, class_name in enumerate(class_names):
        files = sorted(str(path) for path in (root / class_name).rglob("*") if path.suffix.lower() in extensions)
        if not files:
            raise ValueError(
                f"class folder '{root / class_name}' has no files with extensions {', '.join(extensions)}."
            )
        paths += files
        labels += [index] * len(files)
    if len(class_names) < 2:
        raise ValueError(
            f"data folder '{folder}' has one class subfolder ('{class_names[0]}'); a classifier needs "
            f"at least 2 classes, one subfolder each: {folder}/CLASS_NAME/file."
        )
    return paths, np.array(labels), class_names


def _name(raw, name):
    return str(raw) if isinstance(raw, (str, os.PathLike)) else name


def _unreadable(raw, name, error):
    """Returns:
    ValueError: the one-line error for an image Pillow cannot read, naming the file and Pillow's reason.
    """
    return ValueError(f"{_name(raw, name)}: not a readable image ({error}).")


def _open(raw, name):
    """Opens an image lazily (header only) and checks its size against the pixel limit."""
    from PIL import Image, UnidentifiedImageError

    limit = max_pixels()
    try:
        with warnings.catch_warnings():  # our limit below is lower than the one Pillow warns about
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw) if isinstance(raw, (bytes, bytearray)) else raw)
    except Image.DecompressionBombError:  # Pillow's own, far higher limit
        raise ValueError(
            f"{_name(raw, name)}: the image declares more pixels than the limit of {limit:,} "
            f"(set {MAX_PIXELS_ENV} to allow larger images)."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise _unreadable(raw, name, error) from None
    if image.width * image.height > limit:
        image.close()
        raise ValueError(
            f"{_name(raw, name)}: {image.width}x{image.height} pixels is above the limit of {limit:,} "
            f"(set {MAX_PIXELS_ENV} to allow larger images)."
        )
    return image


@dataclasses.dataclass
class Header:
    """What an image file declares before decoding: size after EXIF rotation and whether it is grayscale."""

    height: int
    width: int
    gray: bool


def header(raw, name="input"):
    """Reads an image's header without decoding its pixels.

    Raises:
        ValueError: not an image, or above the pixel limit.
    """
    with _open(raw, name) as image:
        try:  # a PNG's EXIF chunk may sit after the pixels: reading it reads a truncated file's end
            turned = image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
        except (OSError, SyntaxError, ValueError) as error:
            raise _unreadable(raw, name, error) from None
        height, width = (image.width, image.height) if turned else (image.height, image.width)
        return Header(height, width, image.mode in _GRAY_MODES)


def scan(paths, description="scanning images"):
    """Reads the headers of many image files in parallel, with a progress bar.

    Unreadable files are skipped with a warning naming each one (the documented policy).

    Args:
        paths (list[str]): image files.
        description (str): the progress bar's label.

    Returns:
        tuple[list[Header], np.ndarray]: the headers of the readable files and their indices in `paths`.

    Raises:
        ValueError: no file is readable; the message names the first failure.
    """

    def read(path):
        try:
            return header(path)
        except ValueError as error:
            return error

    workers = min(16, (os.cpu_count() or 1) * 4)  # header reads wait on the disk, not the CPU
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        found = list(progress(pool.map(read, paths), description, total=len(paths)))
    failures = [item for item in found if isinstance(item, ValueError)]
    for failure in failures:
        logger.warning("skipping %s", failure)
    kept = np.array([index for index, item in enumerate(found) if not isinstance(item, ValueError)], dtype="int64")
    if not kept.size:
        raise ValueError(f"no readable image among {len(paths)} files; first problem: {failures[0]}")
    return [found[index] for index in kept], kept


def announce_resize(where, headers, size, rule):
    """Logs a one-line warning that the images of `where` are resized to `size`, and by which rule.

    Args:
        where (str): the folder (or files) the images came from.
        headers (list[Header]): the images' headers.
        size (tuple[int, int]): the (height, width) they are resized to.
        rule (str): how `size` was chosen, e.g. "image_size=0 picks the median height and width".
    """
    sizes = sorted({(found.width, found.height) for found in headers}, key=lambda pair: (pair[0] * pair[1], pair))
    (small_width, small_height), (large_width, large_height) = sizes[0], sizes[-1]
    found = (
        f"differ in size ({small_width}x{small_height} to {large_width}x{large_height})"
        if len(sizes) > 1
        else f"are {small_width}x{small_height}"
    )
    logger.warning(
        "images in %s %s; resizing to %dx%d (%s; set image_size to choose).", where, found, size[1], size[0], rule
    )


def _square_side(headers, where):
    """The (height, width) image_size=0 gives classification images: their own size when they all share one
    whose shorter side is at most `AUTO_IMAGE_SIDE` (MNIST, CIFAR and MedMNIST folders), else a square of the
    median shorter side, at most `AUTO_IMAGE_SIDE`, announced with a warning."""
    shapes = {(found.height, found.width) for found in headers}
    if len(shapes) == 1 and min(next(iter(shapes))) <= AUTO_IMAGE_SIDE:
        return next(iter(shapes))
    side = min(AUTO_IMAGE_SIDE, int(np.median([min(found.height, found.width) for found in headers])))
    announce_resize(
        where, headers, (side, side), f"image_size=0 picks the median shorter side, capped at {AUTO_IMAGE_SIDE}"
    )
    return side, side


def file_examples(paths, targets, image_size=0, channels=0, groups=None):
    """Image files as an index that tf.data decodes, after a header scan that drops unreadable files.

    Args:
        paths (list[str]): image files.
        targets (np.ndarray): one target per file.
        image_size (int): side to resize to; 0 keeps the files' size when they share one no larger than
            `AUTO_IMAGE_SIDE` on the shorter side, else picks a square side (see `_square_side`).
        channels (int): 1 or 3; 0 gives 1 when every image is grayscale, else 3.
        groups (np.ndarray | None): one slice key per file (`--set slice_by`), kept beside the readable ones.

    Returns:
        tuple[shared.data.examples.Examples, tuple[int, int], int]: the readable files with their targets,
        the (height, width) they decode to, and the channel count.
    """
    from shared.data import examples

    headers, kept = scan(paths)
    readable = np.asarray(paths, dtype=object)[kept].astype(str)
    folder = os.path.commonpath([os.path.dirname(path) for path in readable])
    size = (image_size, image_size) if image_size else _square_side(headers, folder)
    channels = channels or (1 if all(found.gray for found in headers) else 3)
    pool = examples.Examples(
        readable,
        np.asarray(targets)[kept],
        decode=decode_step(channels, size),
        origin="files",
        groups=None if groups is None else np.asarray(groups, dtype=object)[kept],
    )
    return pool, size, channels


def decode(raw, name="input"):
    """Decodes one image from a path, encoded bytes or an array into a float32 HWC array in [0, 1].

    EXIF orientation is applied, 16-bit images keep their full range, transparency is dropped, and
    grayscale stays one channel.

    Raises:
        ValueError: the input is not a readable image or exceeds the pixel limit; the message names it.
    """
    from PIL import ImageOps

    if isinstance(raw, (list, tuple, np.ndarray)):  # decoded pixels; lists arrive from JSON requests
        shape = inputs.outline(raw, 3)
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[-1] not in (1, 3, 4)):
            raise ValueError(f"{name}: pixel array of shape {shape}; expected (h, w) or (h, w, 1|3|4).")
        limit = max_pixels()
        if shape[0] * shape[1] > limit:  # checked before the lists are converted, as files are before decoding
            raise ValueError(
                f"{name}: a {shape[1]}x{shape[0]} pixel array is above the limit of {limit:,} pixels "
                f"(set {MAX_PIXELS_ENV} to allow larger images)."
            )
        array = inputs.numbers(raw, name)
        array = array / 255.0 if array.max(initial=0) > 1.0 else array
        return (array[..., None] if array.ndim == 2 else array[..., :3]).astype("float32")
    with _open(raw, name) as image:
        try:
            image = ImageOps.exif_transpose(image)
            if image.mode.startswith("I"):  # 16/32-bit grayscale: scale by its bit depth, not clip at 255
                pixels = np.asarray(image, dtype="float32")
                array = pixels / (65535.0 if pixels.max(initial=0) > 255 else 255.0)
            elif image.mode == "F":
                array = np.clip(np.asarray(image, dtype="float32"), 0, 1)
            else:
                gray = image.mode in _GRAY_MODES or (image.mode == "P" and _gray_palette(image))
                array = np.asarray(image.convert("L" if gray else "RGB"), dtype="float32") / 255.0
        except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt pixel data
            raise _unreadable(raw, name, error) from None
    return array[..., None] if array.ndim == 2 else array


def _gray_palette(image):
    colors = np.asarray(image.getpalette() or [], dtype="int64").reshape(-1, 3)
    return bool(colors.size) and bool(np.all(colors == colors[:, :1]))


def to_channels(array, channels):
    """Converts an HWC image to `channels` channels (1: the mean of the colours; 3: gray repeated)."""
    if array.shape[-1] == channels:
        return array
    return array.mean(axis=-1, keepdims=True) if channels == 1 else np.repeat(array[..., :1], channels, -1)


def fit(array, size, channels):
    """Resizes an HWC image to `size` (height, width) and converts it to `channels` channels."""
    import tensorflow as tf

    array = to_channels(array, channels)
    if tuple(array.shape[:2]) != tuple(size):
        array = tf.image.resize(array, size, antialias=True).numpy()
    return array.astype("float32")


def decode_step(channels, size=None, encoded=False):
    """The tf.data decode of image files or encoded bytes, the same code as `decode` + `fit` at predict time.

    Decoding runs in Python (Pillow, which releases the GIL) inside a parallel map; resizing runs in
    TensorFlow. An element that fails to decode is dropped with a warning naming it, once per source.

    Args:
        channels (int): 1 or 3.
        size (tuple[int, int] | None): (height, width) to resize to; None keeps each image's size.
        encoded (bool): the sources are encoded image bytes (TFDS), not file paths.

    Returns:
        Callable[[tf.data.Dataset], tf.data.Dataset]: maps `(source, target)` elements (a path or
        encoded bytes) to `(image, target)` with float32 HWC images in [0, 1].
    """
    import tensorflow as tf

    warned = set()

    def read(source):
        name = "image bytes" if encoded else source.decode("utf-8", "replace")
        raw = source if encoded else name
        try:
            return to_channels(decode(raw, name), channels)
        except ValueError as error:
            if str(error) not in warned:
                warned.add(str(error))
                logger.warning("skipping %s", error)
            return np.zeros((0, 0, channels), "float32")

    def load(source, target):
        image = tf.numpy_function(read, [source], tf.float32, stateful=False)
        return tf.ensure_shape(image, [None, None, channels]), target

    def resize(image, target):
        if size is not None:
            image = tf.ensure_shape(tf.image.resize(image, size, antialias=True), [*size, channels])
        return image, target

    def step(dataset):
        dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.filter(lambda image, target: tf.size(image) > 0)
        return dataset.map(resize, num_parallel_calls=tf.data.AUTOTUNE)

    return step


def array_step(channels, size=None, scale=255.0):
    """The tf.data conversion of images held in memory (uint8 stays 4x smaller until decoded here).

    Args:
        channels (int): 1 or 3, converted as `to_channels` does.
        size (tuple[int, int] | None): (height, width) to resize to, as `fit` does; None keeps the size.
        scale (float): what pixel value is white (255 for 8-bit data, 1 for images already in [0, 1]).

    Returns:
        Callable[[tf.data.Dataset], tf.data.Dataset]: maps `(image, target)` rows with (h, w) or (h, w, c)
        images to float32 (h, w, channels) images in [0, 1].
    """
    import tensorflow as tf

    def convert(image, target):
        image = tf.cast(image, tf.float32) / scale
        image = image[..., None] if image.shape.rank == 2 else image
        if image.shape[-1] != channels:
            image = (
                tf.reduce_mean(image, axis=-1, keepdims=True)
                if channels == 1
                else tf.repeat(image[..., :1], channels, axis=-1)
            )
        if size is not None and tuple(image.shape[:2]) != tuple(size):
            image = tf.image.resize(image, size, antialias=True)
        return image, target

    return lambda dataset: dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


def save_png(array, path):
    """Writes an HWC float image in [0, 1] (or uint8) as PNG."""
    from PIL import Image

    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
