"""Image files in and out: class-folder discovery, decoding with clear errors, raw-input decoding."""

import concurrent.futures
import io
import logging
import os
import pathlib

import numpy as np

from shared import data

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
logger = logging.getLogger(__name__)


def class_folders(folder, extensions=IMAGE_EXTENSIONS):
    """Lists the files of a folder with one subfolder per class.

    Args:
        folder (str): the root folder.
        extensions (tuple[str, ...]): file extensions to keep (lower case).

    Returns:
        tuple[list[str], np.ndarray, list[str]]: file paths, integer labels, class names (sorted).

    Raises:
        ValueError: the folder is missing, has no class subfolders, or a class has no files.
    """
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise ValueError(f"data folder '{folder}' does not exist or is not a folder.")
    class_names = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not class_names:
        raise ValueError(f"data folder '{folder}' has no class subfolders; expected {folder}/CLASS_NAME/file.")
    paths, labels = [], []
    for index, class_name in enumerate(class_names):
        files = sorted(
            str(path) for path in (root / class_name).rglob("*") if path.suffix.lower() in extensions
        )
        if not files:
            raise ValueError(
                f"class folder '{root / class_name}' has no files with extensions {', '.join(extensions)}."
            )
        paths += files
        labels += [index] * len(files)
    return paths, np.array(labels), class_names


def decode(raw, name="input"):
    """Decodes one image from a path, encoded bytes or an array into a float32 HWC array in [0, 1].

    Raises:
        ValueError: the input is not a readable image; the message names it.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(raw, (list, np.ndarray)):  # decoded pixels; lists arrive from JSON requests
        array = np.asarray(raw, dtype="float32")
        array = array / 255.0 if array.max(initial=0) > 1.0 else array
        return array[..., None] if array.ndim == 2 else array
    try:
        source = io.BytesIO(raw) if isinstance(raw, (bytes, bytearray)) else raw
        with Image.open(source) as image:
            image = image.convert("L" if image.mode in ("1", "L", "I", "I;16", "F") else "RGB")
            array = np.asarray(image, dtype="float32") / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{name if isinstance(raw, bytes) else raw!s}: not a readable image ({error}).") from None
    return array[..., None] if array.ndim == 2 else array


def fit(array, size, channels):
    """Resizes an HWC image to `size` (height, width) and converts it to `channels` channels."""
    import tensorflow as tf

    if array.shape[-1] != channels:
        array = array.mean(axis=-1, keepdims=True) if channels == 1 else np.repeat(array[..., :1], channels, -1)
    if tuple(array.shape[:2]) != tuple(size):
        array = tf.image.resize(array, size, antialias=True).numpy()
    return array.astype("float32")


def load_files(paths, size=None, channels=None, skip_corrupt=True):
    """Decodes image files in parallel, with a progress bar, into one array.

    Corrupt or unreadable files are skipped with a warning naming each one (documented policy),
    unless `skip_corrupt` is False; if nothing is readable a ValueError names the first failure.

    Args:
        paths (list[str]): image files.
        size (tuple[int, int] | None): target (height, width); None uses the first readable image's size.
        channels (int | None): 1 or 3; None uses 1 when every image is grayscale, else 3.
        skip_corrupt (bool): skip unreadable files instead of failing.

    Returns:
        tuple[np.ndarray, np.ndarray]: images (n, h, w, c) float32 in [0, 1], and the kept indices.
    """
    def read(path):
        try:
            return decode(path)
        except ValueError as error:
            if not skip_corrupt:
                raise
            return error

    workers = min(8, (os.cpu_count() or 1) * 2)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        decoded = list(data.progress(pool.map(read, paths), "reading images", total=len(paths)))
    failures = [item for item in decoded if isinstance(item, ValueError)]
    for failure in failures:
        logger.warning("skipping %s", failure)
    kept = [index for index, item in enumerate(decoded) if not isinstance(item, ValueError)]
    if not kept:
        raise ValueError(f"no readable image among {len(paths)} files; first problem: {failures[0]}")
    size = size or decoded[kept[0]].shape[:2]
    channels = channels or (1 if all(decoded[index].shape[-1] == 1 for index in kept) else 3)
    images = np.stack([fit(decoded[index], size, channels) for index in kept])
    return images, np.array(kept)


def save_png(array, path):
    """Writes an HWC float image in [0, 1] (or uint8) as PNG."""
    from PIL import Image

    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
