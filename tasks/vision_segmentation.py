"""Vision segmentation: a U-Net (or a MobileNetV2-encoder U-Net) labelling every pixel with a class.

Data sources:
    embedded                 generated scenes: circles, squares and triangles in random colours on
                             textured, noisy backgrounds, with exact masks (synthetic, offline, seconds).
    tfds:oxford_iiit_pet     pet photos with trimaps (pet / background / border), resized to `image_size`
                             (128 when 0); prediction resizes inputs the same way.
    PATH                     a folder holding `images/` and `masks/` (also `image/` + `label/`); each mask
                             has its image's file name (any image extension). Masks hold class indices
                             (0, 1, 2...) or are binary 0/255 images; JPEG masks are binarised at 128.

Image size: `image_size` > 0 resizes every image to that square; 0 keeps the files' size, or resizes a
folder of mixed sizes to their median height and width (a warning names it). `tile_size` > 0 trains on
tiles that big, a multiple of the model's stride (2**depth, or 32 for mobilenetv2). With both 0,
images the stride does not divide, or larger than 512 px a side, train on square tiles of the largest
stride multiple that fits, at most 256 px (a warning names the tile_size); smaller stride-multiple
images train whole. The model is fully convolutional, so evaluation and prediction run on whole images
of any size (tile by tile when it trained on tiles), padded to a multiple of its stride.

Predict: an image file (or `IMAGE=OUTPUT.png`) -> a mask PNG (class index scaled to 0-255, so a
binary mask is 0/255) written beside the input as `<name>_mask.png` (or at OUTPUT), plus the
fraction of pixels per class.
"""

import dataclasses
import logging
import pathlib
import re

import numpy as np

from shared import constraints
from shared.constraints import BaseWidth, Choice, Count, Fraction, NonNegative, ResizedSide, Side, Size
from shared.data.sources import reader
from shared.fitted_state import FittedState
from shared.images import IMAGE_EXTENSIONS
from tasks import register
from tasks.base import Splits, Task, TaskConfig, search_space

ENCODERS = ("unet", "mobilenetv2")
MAX_CLASSES = 64  # more distinct values than this means the "mask" is a photo, not class indices
_IMAGE_FOLDERS, _MASK_FOLDERS = ("images", "image"), ("masks", "mask", "labels", "label")
# MobileNetV2 activations at strides 2, 4, 8 and 16 feed the decoder; its output is at stride 32.
_MOBILENET_SKIPS = ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu")
# With tile_size=0 and image_size=0, images the model's stride does not divide, or larger than MAX_WHOLE_SIDE,
# train on square tiles of at most AUTO_TILE_SIDE: a 256 px tile holds more than twice a depth-3 U-Net's
# receptive field (about 100 px), and a batch of them takes 1/60 of the memory of as many 2000 px scans.
AUTO_TILE_SIDE = 256
# Stride-multiple images up to 512 px a side train whole, as ISBI's 512 px slices always have; a batch of
# 2000 px scans would take 15 times the memory of theirs.
MAX_WHOLE_SIDE = 512


@dataclasses.dataclass
class VisionSegmentationConfig(TaskConfig):
    batch_size: Count = 8  # whole images per batch: small batches fit memory, and more steps help small sets
    epochs: int = 25  # the embedded shapes reach validation mIoU ~0.89 in 25 (about a minute on 2 cores)
    early_stopping_patience: int = 12  # Dice terms are noisy on small validation sets; be patient
    image_size: ResizedSide = 0  # side to resize to; 0 keeps the files' (median if they differ; TFDS 128, embedded 32)
    # 0: whole images, or tiles where they are needed
    tile_size: Side = 0  # >0 trains on tiles or crops this big and predicts tile by tile
    # a training step takes batch_size of these crops
    crops_per_image: Size = 0  # >0: random tile_size crops per training image and epoch; 0: fixed tiles
    split: Choice("random", "ordered") = "random"  # or ordered: the last files (natural sort) are validation, then test
    num_classes: Size = 0  # 0 infers it from the masks; set it when a class may be missing from the files
    class_names: str = ""  # comma-separated names; empty gives background, class_1, class_2...
    encoder: Choice(*ENCODERS) = "unet"  # unet trains from scratch on a CPU; mobilenetv2 has a pretrained encoder
    encoder_weights: str = "none"  # none or imagenet (downloads once) for the mobilenetv2 encoder
    depth: Count = 3  # U-Net down-sampling steps; each doubles the receptive field (3 suits 64-128 px inputs)
    base_filters: BaseWidth = 16  # width of the first level, doubled per level; 16 keeps a CPU epoch short
    dropout: Fraction = 0.1  # at the bottleneck only, where features are most abstract and overfit first
    dice_weight: NonNegative = 1.0  # loss = cross-entropy + dice_weight * (1 - soft Dice): Dice counters small classes
    flip: bool = True  # random mirrors of image and mask together; most scenes have no preferred side
    rotate90: bool = True  # random transposes (with flips: all 90-degree turns); square inputs only
    shift: Size = 0  # pad-and-crop shift in pixels applied to image and mask together (0 = off)
    # thin structures bend rather than shift
    elastic_sigma: NonNegative = 0.0  # elastic warp of image and mask (U-Net paper: 10 px)
    elastic_grid: Count = 3  # lattice points per side of a training example for the elastic warp (the paper's 3x3)
    brightness: NonNegative = 0.1  # image-only brightness jitter: lighting varies, masks do not
    contrast: NonNegative = 0.1  # image-only contrast jitter
    noise: NonNegative = 0.02  # image-only Gaussian noise (images in [0, 1]): sensors are noisy
    context: Size = 0  # mirrored border (px) added around each predicted image or tile: borders then see context too
    tta: bool = False  # average predictions over flips (and transposes) of each input: less noise, 4-8x inference cost
    overlay_count: Size = 6  # test images drawn with their true and predicted masks
    # rows of image, mask and a saliency map per class, 32 gradient steps per image and class
    explain_count: Size = 4  # a readable figure at a few seconds
    search_space: dict = search_space(  # bottleneck dropout against network width
        dropout=["float", 0.0, 0.3], base_filters=["choice", 8, 16, 32]
    )

    def check(self):
        """Raises:
        ValueError: also when tile_size is no multiple of the model's stride, or when the U-Net's feature maps at
            tile_size (else image_size) would not fit in memory, before any file is read.
        """
        super().check()
        side = self.tile_size or self.image_size
        if side and self.encoder == "unet":
            # a level keeps about 14 maps: two convolutions, normalisations and activations on the way down, as
            # many on the way up, and the skip concatenation
            needed = constraints.pyramid_bytes(self.batch_size, side, self.base_filters, 14, self.depth + 1)
            constraints.fits_memory(
                needed, f"a {side} px side with batch_size={self.batch_size} and base_filters={self.base_filters}"
            )
        stride = _stride(self)
        if self.tile_size % stride:
            raise ValueError(
                f"tile_size {self.tile_size} is not a multiple of {stride}, the {self.encoder} model's "
                f"stride; set tile_size to a multiple of {stride} (e.g. "
                f"{max(stride, self.tile_size // stride * stride)}) or lower depth."
            )


def _natural_key(path):
    """Sorts `2.png` before `10.png`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", pathlib.Path(path).name)]


def _scenes(count, size, seed):
    """Generates `count` RGB scenes with 1-3 shapes each and their exact class masks.

    Classes: 0 background, 1 circle, 2 square, 3 triangle. Shape colours are random (only the
    shape tells the class) but always contrast with the local background.
    """
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:size, 0:size].astype("float32")
    images = np.empty((count, size, size, 3), "float32")
    masks = np.zeros((count, size, size), "uint8")
    for index in range(count):
        base = rng.uniform(0.25, 0.65, 3)
        frequency, phase = rng.uniform(0.1, 0.5, 2), rng.uniform(0, 2 * np.pi)
        texture = 0.1 * np.sin(frequency[0] * columns + frequency[1] * rows + phase)
        image = base + texture[..., None] + rng.normal(0, 0.04, (size, size, 3))
        for _ in range(rng.integers(1, 4)):
            shape = int(rng.integers(1, 4))
            radius = rng.uniform(0.09, 0.2) * size
            center_row, center_column = rng.uniform(radius, size - radius, 2)
            if shape == 1:
                region = (rows - center_row) ** 2 + (columns - center_column) ** 2 <= radius**2
            elif shape == 2:
                region = (np.abs(rows - center_row) <= 0.8 * radius) & (np.abs(columns - center_column) <= 0.8 * radius)
            else:
                top = center_row - radius
                region = (
                    (rows >= top)
                    & (rows <= center_row + radius)
                    & (np.abs(columns - center_column) <= 0.6 * (rows - top))
                )
            colour = np.clip(base + rng.choice([-1, 1], 3) * rng.uniform(0.2, 0.35, 3), 0, 1)
            image[region] = colour + rng.normal(0, 0.04, (int(region.sum()), 3))
            masks[index][region] = shape
        images[index] = np.clip(image, 0, 1)
    return images, masks


def _mask_classes(mask, path, num_classes):
    """Turns a decoded mask file into class indices, checking its values.

    Raises:
        ValueError: a value that is neither a class index nor part of a 0/255 binary mask.
    """
    if mask.ndim == 3:
        if not np.all(mask == mask[..., :1]):
            raise ValueError(
                f"mask '{path}' is a colour image; expected a single-channel mask of class indices "
                "or 0/255 (save it in grayscale or palette mode)."
            )
        mask = mask[..., 0]
    values = np.unique(mask)
    if pathlib.Path(path).suffix.lower() in (".jpg", ".jpeg") and values.max(initial=0) > MAX_CLASSES:
        return (mask >= 128).astype("uint8")  # JPEG blurs 0/255 edges into in-between values
    if set(values.tolist()) <= {0, 255} and num_classes in (0, 2):
        return (mask > 0).astype("uint8")
    limit = num_classes or MAX_CLASSES
    unexpected = values[values >= limit]
    if unexpected.size:
        raise ValueError(
            f"mask '{path}' has value {int(unexpected[0])}; expected class indices 0..{limit - 1} "
            "or a binary 0/255 mask (set num_classes if your masks have more classes)."
        )
    return mask.astype("uint8")


def _read_mask(source, name, num_classes, trimap=False):
    """Decodes a mask file (or encoded bytes) into class indices, checking its values.

    Args:
        source (str | bytes): the mask.
        name (str): how to name it in errors.
        num_classes (int): the configured class count (0: inferred).
        trimap (bool): the mask is an Oxford pets trimap (1 pet, 2 background, 3 border), shifted to 0..2.

    Raises:
        ValueError: not a readable image, or values that are no class indices.
    """
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
            mask = np.asarray(opened)
    except OSError as error:
        raise ValueError(f"mask '{name}' is not a readable image ({error}).") from None
    if trimap:
        return np.clip(mask.astype("int64").reshape(mask.shape[:2]) - 1, 0, 2).astype("uint8")
    return _mask_classes(mask, name, num_classes)


def _without_predicted_masks(image_paths, masks_by_stem):
    """Drops `NAME_mask.png` files that `predict` wrote beside image NAME, with a warning naming each.

    Returns:
        list[pathlib.Path]: the images to train on (a file with a mask of its own is kept, whatever its name).
    """
    stems = {path.stem for path in image_paths}
    predicted = [
        path
        for path in image_paths
        if path.stem.endswith("_mask") and path.stem not in masks_by_stem and path.stem.removesuffix("_mask") in stems
    ]
    for path in predicted:
        logging.getLogger(__name__).warning(
            "skipping '%s': a mask written by predict beside its image, not a training image", path
        )
    return [path for path in image_paths if path not in predicted]


def _check_pairs(image_paths, masks_by_stem, mask_folder, num_classes):
    """Checks every image/mask pair before training, reading masks one at a time (memory stays flat).

    Returns:
        tuple[list[str], list[images.Header], int]: the mask path of each image, the images' headers
        and the largest class index in any mask.

    Raises:
        ValueError: an image without a mask, a mask of another size, or a mask with bad values.
    """
    import concurrent.futures
    import os

    from shared import images
    from shared.data.sources import progress

    mask_paths = []
    for path in image_paths:
        if path.stem not in masks_by_stem:
            raise ValueError(
                f"image '{path}' has no mask: expected '{mask_folder / path.stem}.png' "
                "(any image extension) in the masks folder."
            )
        mask_paths.append(str(masks_by_stem[path.stem]))

    def check(pair):
        image_path, mask_path = pair
        found = images.header(str(image_path))
        mask = _read_mask(mask_path, mask_path, num_classes)
        if mask.shape[:2] != (found.height, found.width):
            raise ValueError(
                f"mask '{mask_path}' is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"'{image_path}' is {found.width}x{found.height}; a mask must match its image's size."
            )
        return found, int(mask.max(initial=0))

    with concurrent.futures.ThreadPoolExecutor(min(8, (os.cpu_count() or 1) * 2)) as pool:
        checked = list(
            progress(pool.map(check, zip(image_paths, mask_paths)), "checking images and masks", total=len(mask_paths))
        )
    return mask_paths, [found for found, _ in checked], max(largest for _, largest in checked)


def _pair_step(channels, size, num_classes, tile_size=0, encoded=False):
    """The tf.data decode of (image, mask) sources, shared by folders and TFDS.

    Args:
        channels (int): image channels.
        size (tuple[int, int]): (height, width) images and masks are resized to (masks: nearest).
        num_classes (int): the configured class count, for the mask check.
        tile_size (int): >0 crops the tile at each row's `row`, `column` after resizing.
        encoded (bool): sources are TFDS's encoded bytes (masks: trimaps), not file paths.

    Returns:
        Callable[[tf.data.Dataset], tf.data.Dataset]: `(features, mask source)` rows -> `(image, mask)`,
        where features is the image source or, with tiles, a dict with `image`, `row`, `column`.
    """
    import tensorflow as tf

    from shared import images

    logger = logging.getLogger(__name__)

    def read(image_source, mask_source):
        image_name = "image bytes" if encoded else image_source.decode()
        mask_name = "mask bytes" if encoded else mask_source.decode()
        try:
            picture = images.to_channels(images.decode(image_source if encoded else image_name, image_name), channels)
            mask = _read_mask(mask_source if encoded else mask_name, mask_name, num_classes, trimap=encoded)
        except ValueError as error:
            logger.warning("skipping %s", error)
            return np.zeros((0, 0, channels), "float32"), np.zeros((0, 0), "uint8")
        return picture, mask

    def load(features, mask_source):
        source = features["image"] if tile_size else features
        picture, mask = tf.numpy_function(read, [source, mask_source], (tf.float32, tf.uint8), stateful=False)
        return features, tf.ensure_shape(picture, [None, None, channels]), tf.ensure_shape(mask, [None, None])

    def resize(features, picture, mask):
        picture = tf.ensure_shape(tf.image.resize(picture, size, antialias=True), [*size, channels])
        mask = tf.ensure_shape(tf.image.resize(mask[..., None], size, method="nearest")[..., 0], size)
        if tile_size:
            row, column = features["row"], features["column"]
            picture = tf.ensure_shape(
                picture[row : row + tile_size, column : column + tile_size], [tile_size, tile_size, channels]
            )
            mask = tf.ensure_shape(mask[row : row + tile_size, column : column + tile_size], [tile_size, tile_size])
        return picture, mask

    def step(dataset):
        dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.filter(lambda features, picture, mask: tf.size(picture) > 0)
        return dataset.map(resize, num_parallel_calls=tf.data.AUTOTUNE)

    return step


def _tile_starts(length, tile_size):
    """Tile offsets along one side; the last tile is aligned to the edge."""
    return sorted({*range(0, length - tile_size + 1, tile_size), length - tile_size})


def _resize_mask(mask, size):
    """Nearest-neighbour resize, so class indices are never blended."""
    import tensorflow as tf

    if tuple(mask.shape[:2]) == tuple(size):
        return mask
    return tf.image.resize(mask[..., None], size, method="nearest").numpy()[..., 0]


def _tiles(pair, tile_size):
    """Cuts in-memory images and masks into tiles (see `_tile_starts`)."""
    pictures, masks = pair
    height, width = pictures.shape[1:3]
    cut = [(row, column) for row in _tile_starts(height, tile_size) for column in _tile_starts(width, tile_size)]
    return tuple(
        np.concatenate([array[:, row : row + tile_size, column : column + tile_size] for row, column in cut])
        for array in (pictures, masks)
    )


def _training_tile(size, config, stride):
    """The side of the square tiles training examples are cut into, or 0 for whole images.

    `tile_size` > 0 cuts tiles of that side from larger images. With neither `tile_size` nor `image_size`
    set, images that the model's stride does not divide, or larger than `MAX_WHOLE_SIDE`, are cut into tiles
    of the largest multiple of the stride that fits them, at most `AUTO_TILE_SIDE`, with a warning naming it.

    Args:
        size (tuple[int, int]): the (height, width) the images decode to.
        config (VisionSegmentationConfig): `tile_size`, `image_size` and `encoder`.
        stride (int): the model's total down-sampling.

    Raises:
        ValueError: a tile_size larger than the images, or whole training images the stride does not divide
            (test images are padded at prediction; training batches cannot be).
    """
    height, width = size
    if config.tile_size and config.tile_size < max(height, width):
        if config.tile_size > min(height, width):
            raise ValueError(
                f"tile_size {config.tile_size} is larger than the images ({width}x{height}); use a "
                "smaller tile_size or 0."
            )
        return config.tile_size
    side = min(AUTO_TILE_SIDE, min(height, width) // stride * stride)
    if (
        not (config.tile_size or config.image_size)
        and side
        and (height % stride or width % stride or max(height, width) > MAX_WHOLE_SIDE)
    ):
        logging.getLogger(__name__).warning(
            "training on %dx%d tiles (tile_size=%d) of the %dx%d images: tile_size=0 tiles images that are no "
            "multiple of the %s model's stride %d or larger than %d px, with the largest multiple of %d that fits, "
            "at most %d; set tile_size to choose.",
            side,
            side,
            side,
            width,
            height,
            config.encoder,
            stride,
            MAX_WHOLE_SIDE,
            stride,
            AUTO_TILE_SIDE,
        )
        return side
    if height % stride or width % stride:
        raise ValueError(
            f"training images are {width}x{height} but the {config.encoder} model needs multiples of "
            f"{stride}; set image_size or tile_size to a multiple of {stride}, or lower depth."
        )
    return 0


def _stride(described):
    """The model's total down-sampling: inputs must be a multiple of it.

    Args:
        described (SegmentationState | VisionSegmentationConfig): what names the encoder and depth.
    """
    return 32 if described.encoder == "mobilenetv2" else 2**described.depth


def _predict_views(model, windows, tta, batch_size):
    """The model's probabilities for a batch of windows, averaged over flips and transposes with `tta`."""
    if not tta:
        return model.predict(windows, batch_size=batch_size, verbose=0)
    total, transposes = 0.0, (False, True) if windows.shape[1] == windows.shape[2] else (False,)
    for transpose in transposes:
        for axes in ((), (1,), (2,), (1, 2)):
            view = np.flip(windows, axes) if axes else windows
            view = np.ascontiguousarray(view.transpose(0, 2, 1, 3) if transpose else view)
            answer = model.predict(view, batch_size=batch_size, verbose=0)
            answer = answer.transpose(0, 2, 1, 3) if transpose else answer
            total = total + (np.flip(answer, axes) if axes else answer)
    return total / (4 * len(transposes))


def predict_masks(model, pictures, info, batch_size=4):
    """Predicts class probabilities for images of any size with the overlap-tile strategy.

    Each image (or, when the model trained on tiles and the image is larger, each `tile_size` tile of
    it) is predicted inside a window holding `context` extra pixels on every side, mirrored at the image
    border (Ronneberger et al. 2015), and padded to the model's stride; only the window's centre is kept.
    Pixels near a border then see context as they did in training, and memory is bounded by the tile.

    Args:
        model (keras.Model): the segmentation model.
        pictures (np.ndarray): (n, h, w, c) images in [0, 1], all the same size.
        info (SegmentationState): the task's state (encoder, depth; tile_size, context and tta when set).
        batch_size (int): windows per forward pass.

    Returns:
        np.ndarray: (n, h, w, k) probabilities.
    """
    cut = _Windows(pictures.shape[1:3], info)
    padded = cut.pad(pictures)
    windows = np.concatenate(
        [padded[:, row : row + cut.window[0], column : column + cut.window[1]] for row, column in cut.starts]
    )
    answers = _predict_views(model, windows, info.tta, batch_size)
    result = np.zeros((*pictures.shape[:3], answers.shape[-1]), "float32")
    for index, (row, column) in enumerate(cut.starts):
        part = answers[index * len(pictures) : (index + 1) * len(pictures)]
        result[:, row : row + cut.inner[0], column : column + cut.inner[1]] = part[:, cut.kept[0], cut.kept[1]]
    return result


class _Windows:
    """How `predict_masks` cuts images of one size into windows (whole images, or tiles of a tile-trained model),
    each holding `context` mirrored pixels around the part it answers for and padded to the model's stride.

    Attributes:
        inner (tuple[int, int]): the (height, width) each window answers for.
        window (tuple[int, int]): each window's size.
        padding (tuple): the image's padding on each side ((top, bottom), (left, right)).
        mode (str): how it is padded: reflected, or its edge repeated for images smaller than the padding.
        starts (list[tuple[int, int]]): each window's top-left corner in the padded image, in predicting order
            (a later window's answer replaces an earlier one's where they overlap).
        kept (tuple[slice, slice]): the part of a window its answer is kept from.
    """

    def __init__(self, size, info):
        stride, context, tile = _stride(info), info.context, info.tile_size
        height, width = size
        inner = (tile, tile) if tile and (height > tile or width > tile) else (height, width)
        self.inner = (min(inner[0], height), min(inner[1], width))
        self.window = tuple(-(-(side + 2 * context) // stride) * stride for side in self.inner)
        self.padding = tuple((context, outer - side - context) for outer, side in zip(self.window, self.inner))
        self.mode = "reflect" if max(max(pad) for pad in self.padding) < min(height, width) else "edge"
        self.starts = [
            (row, column)
            for row in _tile_starts(height, self.inner[0])
            for column in _tile_starts(width, self.inner[1])
        ]
        self.kept = tuple(slice(context, context + side) for side in self.inner)

    def pad(self, pictures):
        """Pads (n, h, w[, c]) arrays as the windows are cut from."""
        return np.pad(pictures, ((0, 0), *self.padding, *([(0, 0)] * (pictures.ndim - 3))), mode=self.mode)


def explain_masks(model, pictures, info, predicted):
    """Per-class saliency heatmaps of each image's predicted mask (`mask_attributions`).

    Returns:
        shared.explain.Explanation: "segmentation" heatmaps (n, classes, h, w) in [0, 1]; its outputs are the masks.
    """
    from shared import explain

    attributions = mask_attributions(model, pictures, info, predicted)
    return explain.Explanation("segmentation", "integrated_gradients", explain.heatmaps(attributions), predicted)


def mask_attributions(model, pictures, info, predicted):
    """Per-class integrated gradients of each image's predicted mask (`shared.explain.class_saliency`), window by
    window as `predict_masks` answers: each window is explained for the pixels it answers for, and its attributions
    are folded back onto the image (a mirrored pixel's onto the pixel it mirrors), so an image of any size is
    explained as it is predicted. With `tta` the regions are the averaged answer's, the gradients the plain model's.

    Args:
        model (keras.Model): the segmentation model.
        pictures (np.ndarray): (n, h, w, c) images in [0, 1], all the same size.
        info (SegmentationState): the task's state (as `predict_masks` takes it).
        predicted (np.ndarray): (n, h, w) their predicted masks.

    Returns:
        np.ndarray: (n, classes, h, w, c) attributions; those of a class add up to its probability summed over
        its pixels minus the same sum with each window black.
    """
    from shared import explain

    cut, predicted = _Windows(pictures.shape[1:3], info), np.asarray(predicted, "int64")  # signed: -1 marks no class
    (count, channels), (height, width) = (len(info.class_names), pictures.shape[-1]), pictures.shape[1:3]
    padded = cut.pad(pictures)
    shown = cut.pad(np.arange(height * width).reshape(1, height, width))[0]  # the image pixel each padded one shows
    owner = np.zeros((height, width), "int64")  # the window whose answer each pixel keeps
    for index, (row, column) in enumerate(cut.starts):
        owner[row : row + cut.inner[0], column : column + cut.inner[1]] = index
    folded = np.zeros((height * width, len(pictures), count, channels), "float32")
    for index, (row, column) in enumerate(cut.starts):
        area = (slice(row, row + cut.window[0]), slice(column, column + cut.window[1]))
        inner = (slice(row, row + cut.inner[0]), slice(column, column + cut.inner[1]))
        masks = np.full((len(pictures), *cut.window), -1)
        masks[:, cut.kept[0], cut.kept[1]] = np.where(owner[inner] == index, predicted[:, inner[0], inner[1]], -1)
        found = explain.class_saliency(model, padded[:, area[0], area[1]], masks, count)
        np.add.at(folded, shown[area].ravel(), found.reshape(len(pictures), count, -1, channels).transpose(2, 0, 1, 3))
    return folded.transpose(1, 2, 0, 3).reshape(len(pictures), count, height, width, channels)


def _pad_to_stride(pictures, info):
    """Pads (n, h, w, c) images at the bottom and right to a multiple of the model's stride (reflected)."""
    stride = _stride(info)
    height, width = pictures.shape[1:3]
    padding = ((0, 0), (0, -height % stride), (0, -width % stride), (0, 0))
    return np.pad(pictures, padding, mode="reflect" if min(height, width) > stride else "edge")


@dataclasses.dataclass(kw_only=True)
class SegmentationState(FittedState):
    """What a segmenter's predictor needs to cut, pad and answer any image as the model was trained.

    Attributes:
        class_names (list[str]): the mask values' names, in value order.
        channels (int): 1 or 3.
        image_size (int): the side images are resized to; 0 keeps each image's own size.
        encoder (str): the U-Net's encoder (its stride follows from it and `depth`).
        depth (int): the U-Net's downsampling steps.
        overlay_count (int): test images drawn with their masks.
        context (int): pixels of context around each tile, predicted but not answered.
        tta (bool): predictions averaged over flips and transposes.
        tile_size (int): the tile side large images are cut into; 0: whole images.
    """

    class_names: list
    channels: int
    image_size: int
    encoder: str
    depth: int
    overlay_count: int = 0
    context: int = 0
    tta: bool = False
    tile_size: int = 0


def _fitted(config, class_names, channels, image_size):
    """Returns:
    SegmentationState: the state every source of image/mask pairs records (tile_size 0 until tiling chooses one).
    """
    return SegmentationState(
        class_names=class_names,
        channels=channels,
        image_size=image_size,
        encoder=config.encoder,
        depth=config.depth,
        overlay_count=config.overlay_count,
        context=config.context,
        tta=config.tta,
    )


@reader("tfds_masks", ("tfds",), "tfds:oxford_iiit_pet (or another image/segmentation_mask dataset)")
def _read_tfds_masks(task, argument, config):
    return task._tfds(argument, config)


@reader("mask_folder", ("folder",), "a folder with images/ and masks/ (pairs matched by file stem)")
def _read_mask_folder(task, argument, config):
    pool, size, channels, largest = task._folder(argument, config)
    return task._carved(
        config, pool, size, channels, largest, None, f"folder_{argument.rstrip('/').split('/')[-1]}", False
    )


@register
class VisionSegmentation(Task):
    name = "vision_segmentation"
    answer_key = "mask_path"
    config_class = VisionSegmentationConfig
    state_class = SegmentationState
    primary_metric = "mean_iou"
    tfds_name = "oxford_iiit_pet"
    input_column = "image"
    input_kind = "file"
    input_extensions = IMAGE_EXTENSIONS
    key_params = Task.key_params + ("encoder",)
    quick_overrides = {"epochs": 2, "max_examples": 200}
    readers = ("embedded", "tfds_masks", "mask_folder")
    explain_kind = "segmentation"  # per class: what the model's belief in each predicted region rests on
    # the U-Net's width and depth
    candidates = (("default", {}), ("wide", {"base_filters": 32}), ("deep", {"depth": 4}))
    remedies = (
        "Likely causes: too few epochs or images, or objects too small at this size. Try more epochs, a "
        "larger image_size or tile_size, base_filters=32, or --preset balanced."
    )

    def load_data(self, config):
        """Whole test images; training and validation images whole or cut into tiles (see `_training_tile`)."""
        splits, size = self.read(config)
        tile_size = splits.info.tile_size = _training_tile(size, config, _stride(splits.info))
        if not (tile_size and config.crops_per_image):  # random crops are cut from whole images per batch
            splits.train = self._tiled(splits.train, size, tile_size, splits.info.channels, config)
        splits.validation = self._tiled(splits.validation, size, tile_size, splits.info.channels, config)
        return splits

    def load_fitted(self, config, info):
        """Whole images in the channels the model takes: training tiles and their size checks do not apply.

        Raises:
            ValueError: the images have other channels than the model's (grayscale against colour).
        """
        splits, _ = self.read(dataclasses.replace(config, tile_size=0))
        if splits.info.channels != info.channels:
            raise ValueError(
                f"'{config.data}' holds {splits.info.channels}-channel images, but the model takes "
                f"{info.channels}; convert them."
            )
        return splits

    def embedded(self, config):
        """Generated scenes of circles, squares and triangles, split by `_carved`."""
        from shared.data import examples

        pictures, masks = _scenes(600, config.image_size or 32, config.seed)
        pool, known = examples.Examples(pictures, masks), ["background", "circle", "square", "triangle"]
        return self._carved(config, pool, pictures.shape[1:3], 3, int(masks.max()), known, "generated_shapes", True)

    def _carved(self, config, pool, size, channels, largest, known, name, synthetic):
        """Whole image/mask pairs split by `config.split`: what every reader of this task returns.

        Args:
            config (VisionSegmentationConfig): the split rule, fractions and model settings `info` records.
            pool (shared.data.examples.Examples): the pairs.
            size (tuple[int, int]): their decoded (height, width).
            channels (int): their decoded channels.
            largest (int): the largest class index in the masks.
            known (list[str] | None): the source's class names, if it has them.
            name (str): the dataset's short name for MLflow.
            synthetic (bool): True for generated scenes.

        Returns:
            tuple[Splits, tuple[int, int]]: the splits (info with `tile_size` 0) and the (height, width)
            their images decode to.

        Raises:
            ValueError: too few pairs for three splits, or a split left empty.
        """
        from shared.data.splits import carve

        class_names = self._class_names(config, known, largest)
        if len(pool) < 3:
            raise ValueError(
                f"the splits of '{config.data}' would be empty: {len(pool)} image/mask pair(s), "
                "need at least 3 (train, validation and test)."
            )
        if config.split == "ordered":
            test_count = int(round(config.test_fraction * len(pool)))
            validation_count = int(round(config.validation_fraction * len(pool)))
            cut = len(pool) - test_count - validation_count
            train, validation, test = (
                pool.subset(np.arange(start, end))
                for start, end in ((0, cut), (cut, cut + validation_count), (cut + validation_count, len(pool)))
            )
        else:
            train, validation, test = carve(pool, config, stratify=False)
        for split_name, split in (("train", train), ("validation", validation), ("test", test)):
            if not len(split):
                raise ValueError(
                    f"the {split_name} split of '{config.data}' is empty ({len(pool)} image/mask pairs); "
                    "add images or change validation_fraction / test_fraction."
                )
        info = _fitted(config, class_names, int(channels), int(config.image_size))
        return Splits(train, validation, test, info, config.data, name, synthetic), size

    @staticmethod
    def _folder(root, config):
        """Image/mask pairs of a folder (matched by file stem) as an index decoded in tf.data.

        Returns:
            tuple[Examples, tuple[int, int], int, int]: the pairs, their decoded (height, width) (`image_size`,
            or the files' median height and width), channels and the largest class index in the masks.
        """
        from shared import images
        from shared.data import examples

        root = pathlib.Path(root)
        image_folder = next((root / name for name in _IMAGE_FOLDERS if (root / name).is_dir()), None)
        mask_folder = next((root / name for name in _MASK_FOLDERS if (root / name).is_dir()), None)
        if image_folder is None or mask_folder is None:
            raise ValueError(
                f"segmentation folder '{root}' must hold an images/ and a masks/ subfolder "
                "(masks named like their images)."
            )
        image_paths = sorted(
            (path for path in image_folder.iterdir() if path.suffix.lower() in images.IMAGE_EXTENSIONS),
            key=_natural_key,
        )
        if not image_paths:
            raise ValueError(f"'{image_folder}' has no image files ({', '.join(images.IMAGE_EXTENSIONS)}).")
        masks_by_stem = {
            path.stem: path for path in mask_folder.iterdir() if path.suffix.lower() in images.IMAGE_EXTENSIONS
        }
        image_paths = _without_predicted_masks(image_paths, masks_by_stem)
        mask_paths, headers, largest = _check_pairs(image_paths, masks_by_stem, mask_folder, config.num_classes)
        channels = 1 if all(found.gray for found in headers) else 3
        if config.image_size:
            size = (config.image_size,) * 2
        else:
            size = tuple(int(np.median([getattr(found, side) for found in headers])) for side in ("height", "width"))
            if len({(found.height, found.width) for found in headers}) > 1:
                images.announce_resize(image_folder, headers, size, "image_size=0 picks the median height and width")
        pool = examples.Examples(
            np.array([str(path) for path in image_paths]),
            np.array(mask_paths),
            decode=_pair_step(channels, size, config.num_classes),
            origin="files",
        )
        return pool, size, channels, largest

    @staticmethod
    def _tiled(split, size, tile_size, channels, config):
        """Training and validation examples as tiles of `tile_size` pixels (0: whole images)."""
        from shared.data import examples

        if not tile_size:
            return split
        if split.decode is None:  # arrays in memory: cut them now
            return examples.Examples(*_tiles((split.features, split.targets), tile_size))
        starts = [
            (row, column) for row in _tile_starts(size[0], tile_size) for column in _tile_starts(size[1], tile_size)
        ]
        repeat = np.repeat(np.arange(len(split)), len(starts))
        rows, columns = (np.tile(np.array(part, "int32"), len(split)) for part in zip(*starts))
        features = {"image": split.features[repeat], "row": rows, "column": columns}
        step = _pair_step(channels, size, config.num_classes, tile_size)
        return examples.Examples(features, split.targets[repeat], decode=step, origin=split.origin)

    @staticmethod
    def _class_names(config, known, largest):
        """Class names from the config, the source, or the largest mask value."""
        count = max(config.num_classes, largest + 1, 2, len(known or []))
        if config.class_names:
            names = [part.strip() for part in config.class_names.split(",")]
            if len(names) != count:
                raise ValueError(
                    f"class_names lists {len(names)} names but the masks have {count} classes (values 0..{count - 1})."
                )
            return names
        if known:
            return list(known)
        return ["background", "foreground"] if count == 2 else ["background"] + [f"class_{i}" for i in range(1, count)]

    @staticmethod
    def _tfds(argument, config):
        """Streams tfds:oxford_iiit_pet-style data: `image` plus a `segmentation_mask` trimap (1, 2, 3).

        Returns:
            tuple[Splits, tuple[int, int]]: the streams and the (height, width) they are resized to.
        """
        from shared.data import tfds

        if config.tile_size:
            raise ValueError(
                "tile_size cuts large image files into tiles; TFDS photos are resized to image_size "
                "instead, so set tile_size=0."
            )
        name, _, chosen = argument.partition(":")
        found = tfds.builder(
            name,
            config.tfds_data_dir,
            "--data embedded or a folder with images/ and masks/",
            ("image", "segmentation_mask"),
        )
        size = (config.image_size or 128,) * 2
        train, validation, test = tfds.streams(
            found, chosen, ("image", "segmentation_mask"), config, decode=_pair_step(3, size, 3, encoded=True)
        )
        info = _fitted(config, ["pet", "background", "border"], 3, size[0])
        return Splits(train, validation, test, info, config.data, f"tfds_{name}", False), size

    def build_model(self, config, info):
        import keras

        inputs = keras.Input((None, None, info.channels), name="image")
        if config.encoder == "mobilenetv2":
            skips, x = _mobilenet_encoder(inputs, config)
        else:
            skips, x = [], inputs
            for level in range(config.depth):
                x = _conv_block(x, config.base_filters * 2**level)
                skips.append(x)
                x = keras.layers.MaxPooling2D()(x)
            x = _conv_block(x, config.base_filters * 2**config.depth)
        x = keras.layers.SpatialDropout2D(config.dropout)(x)
        for skip in reversed(skips):
            x = keras.layers.UpSampling2D(interpolation="bilinear")(x)
            x = keras.layers.Concatenate()([x, skip])
            x = _conv_block(x, skip.shape[-1])
        if config.encoder == "mobilenetv2":  # the first skip is at stride 2
            x = _conv_block(keras.layers.UpSampling2D(interpolation="bilinear")(x), config.base_filters)
        outputs = keras.layers.Conv2D(
            len(info.class_names), 1, activation="softmax", dtype="float32", name="class_probabilities"
        )(x)
        return keras.Model(inputs, outputs, name=f"{self.name}_{config.encoder}")

    def loss(self, config, info):
        import keras

        count = len(info.class_names)

        def cross_entropy_dice(masks, probabilities):
            """Per-image cross-entropy + dice_weight * (1 - mean soft Dice over classes)."""
            cross_entropy = keras.ops.mean(
                keras.losses.sparse_categorical_crossentropy(masks, probabilities), axis=(1, 2)
            )
            one_hot = keras.ops.one_hot(keras.ops.cast(masks, "int32"), count)
            overlap = keras.ops.sum(one_hot * probabilities, axis=(1, 2))
            total = keras.ops.sum(one_hot + probabilities, axis=(1, 2))
            dice = (2 * overlap + 1.0) / (total + 1.0)  # +1 smooths classes absent from an image
            return cross_entropy + config.dice_weight * (1 - keras.ops.mean(dice, axis=-1))

        return cross_entropy_dice

    def metrics(self, config, info):
        import keras

        # Probabilities, not class indices, come out of the model: MeanIoU must argmax them
        # (sparse_y_pred=False), while the masks are already integer class indices.
        return [
            keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy"),
            keras.metrics.MeanIoU(len(info.class_names), sparse_y_true=True, sparse_y_pred=False, name="mean_iou"),
        ]

    def train_map(self, config, info):
        from shared import augmentation

        crop = info.tile_size and config.crops_per_image
        return augmentation.chain(
            (
                augmentation.paired_random_crop(info.tile_size, config.crops_per_image, seed=config.seed)
                if crop
                else None
            ),
            augmentation.paired_elastic(config.elastic_sigma, config.elastic_grid, seed=config.seed),
            augmentation.paired_geometric(
                flip=config.flip, rotate90=config.rotate90, crop_padding=config.shift, seed=config.seed
            ),
            augmentation.photometric(brightness=config.brightness, contrast=config.contrast, seed=config.seed),
            augmentation.gaussian_noise(config.noise, seed=config.seed),
        )

    def scorers(self, config, info):
        from shared import baselines

        return [baselines.MEAN_IOU]

    def outputs(self, model, splits, role, config):
        """Each example's true pixels per class, and its pixel confusion matrix (true class x predicted class)."""
        found = [pair for pair, _ in self._confusions(model, splits, role, config, 0)]
        return tuple(np.stack(column) for column in zip(*found))

    def baselines(self, splits, config):
        """All background: every pixel of every image predicted as class 0."""
        from shared import baselines

        def background(counts):
            confusions = np.zeros((len(counts), counts.shape[1], counts.shape[1]), "int64")
            confusions[:, :, 0] = counts
            return confusions

        return [baselines.Baseline("background", answer=background, trivial=True)]

    @staticmethod
    def _confusions(model, splits, role, config, keep):
        """Yields `((true pixels per class, pixel confusion), shown)` per example of a split, batch by batch;
        `shown` is `(picture, mask, predicted)` for the first `keep` examples, else None."""
        from shared import evaluation
        from shared.data import examples

        count, seen = len(splits.info.class_names), 0
        batch_size = max(1, config.batch_size // 4)  # whole images are larger than training tiles
        for pictures, masks in examples.batches(getattr(splits, role), batch_size):
            predicted = predict_masks(model, pictures, splits.info, batch_size).argmax(axis=-1)
            for picture, mask, guess in zip(pictures, masks, predicted):
                truth = np.bincount(np.ravel(mask).astype("int64"), minlength=count)
                shown = (picture, mask, guess) if seen < keep else None
                seen += 1
                yield (truth, evaluation.pixel_confusion(mask, guess, count)), shown

    def evaluate(self, model, splits, config):
        """Pixel metrics from the per-image confusion matrices; overlays of the first test images."""
        from shared import evaluation, plots

        names = splits.info.class_names
        found = list(self._confusions(model, splits, "test", config, config.overlay_count))
        truth, confusions = (np.stack(column) for column in zip(*[pair for pair, _ in found]))
        result = evaluation.segmentation(confusions.sum(axis=0), names)
        shown = [shown for _, shown in found if shown]
        if shown:
            pictures, masks, predicted = (np.stack(column) for column in zip(*shown))
            result.figures["overlays"] = plots.segmentation_overlays(pictures, masks, predicted, names)
        result.outputs = truth, confusions
        return result

    def explanation_figure(self, model, splits, targets, outputs, config):
        """A seeded choice of test images, each with its predicted mask and the saliency of each class the mask
        holds (`explain_masks`), titled with the image's mean IoU (from its confusion in `outputs`)."""
        from shared import explain

        rng = np.random.default_rng(config.seed)
        positions = np.sort(rng.choice(len(outputs), min(config.explain_count, len(outputs)), replace=False))
        pictures = splits.test.pick(positions)[0]
        found = explain_masks(model, pictures, splits.info, predict_masks(model, pictures, splits.info).argmax(-1))
        titles = []
        for position in positions:
            confusion = outputs[position]
            union = confusion.sum(axis=0) + confusion.sum(axis=1) - np.diag(confusion)
            titles.append(
                f"test image {position}\nmean IoU {np.mean(np.diag(confusion)[union > 0] / union[union > 0]):.2f}"
            )
        return explain.figure(found, pictures, titles, splits.info.class_names)

    def input_example(self, splits):
        picture = splits.test.sample(1)[0][0]
        side = min(32, *picture.shape[:2])
        return [np.round(picture[:side, :side], 4).tolist()]

    def predict_raw(self, model, info, inputs, explain=None):
        """Writes each image's mask; with `explain` (a folder), each answer's `explanation` names a saliency PNG per
        class of the mask, over the image at the size the model sees (`explain_masks`, `shared.explain.answers`)."""
        import tempfile

        from shared import explain as explaining, images

        answers = []
        for raw in inputs:
            output = None
            if isinstance(raw, str) and "=" in raw and not pathlib.Path(raw).exists():
                raw, output = raw.split("=", 1)
            picture = images.decode(raw)
            original = picture.shape[:2]
            picture = images.fit(picture, (info.image_size,) * 2 if info.image_size else original, info.channels)
            mask = predict_masks(model, picture[None], info)[0].argmax(axis=-1).astype("uint8")
            if explain is not None:
                found = explain_masks(model, picture[None], info, mask[None])
                field = explaining.answers(found, picture[None], info.class_names, explain, [raw])[0]
            mask = _resize_mask(mask, original)
            if output is None:
                folder = pathlib.Path(raw).parent if isinstance(raw, str) else pathlib.Path(tempfile.mkdtemp())
                output = folder / f"{pathlib.Path(raw).stem if isinstance(raw, str) else 'input'}_mask.png"
            scale = 255 // max(1, len(info.class_names) - 1)
            images.save_png((mask * scale).astype("uint8")[..., None], output)
            fractions = np.bincount(mask.ravel(), minlength=len(info.class_names)) / mask.size
            answers.append(
                {
                    "mask_path": str(output),
                    "size": list(original),
                    "class_fractions": {
                        name: round(float(share), 6) for name, share in zip(info.class_names, fractions)
                    },
                    **({} if explain is None else {"explanation": field}),
                }
            )
        return answers

    def prepare_inputs(self, info, inputs):
        """Images decoded and resized as `predict_raw` does, padded to the model's stride (one size per batch)."""
        from shared import images

        pictures = []
        for raw in inputs:
            picture = images.decode(raw)
            size = (info.image_size,) * 2 if info.image_size else picture.shape[:2]
            pictures.append(images.fit(picture, size, info.channels))
        if len({picture.shape for picture in pictures}) > 1:
            raise ValueError("the images of one batch must share a size; send them one at a time.")
        return _pad_to_stride(np.stack(pictures), info)

    def drift_view(self, model, info, batch):
        """Brightness and contrast per image, and the decoder's last features averaged over the image (embeddings)."""
        from shared import drift

        return drift.image_view(batch, drift.embeddings(model, batch))

    def serving_signature(self, model, info):
        from shared import serving as graphs

        serving = super().serving_signature(model, info)
        size = (info.image_size,) * 2 if info.image_size else ("H", "W")
        steps = graphs.image_contract(size, info.channels)["steps"][:-1]
        if not info.image_size:
            steps[-1] = "keep the image's size (the model is fully convolutional)"
        stride = _stride(info)
        if info.image_size:  # the exported graph's size: Keras' upsampling traces only with a known one
            side = -(-info.image_size // stride) * stride
            serving.tensor_shapes = {"image": (None, side, side, info.channels)}
        else:
            serving.unsupported = (
                "this U-Net takes images of any size, which Keras' bilinear UpSampling2D cannot "
                "trace into an exported graph; train with --set image_size=N to export it for "
                "N x N images"
            )
        serving.preprocessing.update(
            {
                "steps": [
                    *steps,
                    f"pad the bottom and right edges to a multiple of {stride} pixels, reflecting the image (repeating "
                    f"its edge when it is smaller than {stride}); one size per batch",
                ],
                "class_names": info.class_names,
                "meaning": {
                    "class_probabilities": "(n, height, width, classes): crop the padding off, then the argmax over "
                    "the last axis is the mask of class indices"
                },
            }
        )
        return serving


def _conv_block(x, filters):
    """Two 3x3 convolutions with batch norm and ReLU: the U-Net's unit at every level."""
    import keras

    for _ in range(2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        # momentum 0.9: the moving statistics settle within the few hundred steps small datasets give
        x = keras.layers.Activation("relu")(keras.layers.BatchNormalization(momentum=0.9)(x))
    return x


def _mobilenet_encoder(inputs, config):
    """A keras.applications MobileNetV2 encoder: its stride-2..16 activations and stride-32 output."""
    import keras

    weights = {"none": None, "imagenet": "imagenet"}.get(config.encoder_weights, config.encoder_weights)
    x = inputs if inputs.shape[-1] == 3 else keras.layers.Concatenate()([inputs] * 3)
    x = keras.layers.Rescaling(2.0, offset=-1.0)(x)  # MobileNetV2 expects [-1, 1]
    try:
        backbone = keras.applications.MobileNetV2(
            input_shape=(None, None, 3), include_top=False, weights=weights if weights in (None, "imagenet") else None
        )
        if weights not in (None, "imagenet"):
            backbone.load_weights(weights)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"encoder_weights '{config.encoder_weights}' could not be loaded into MobileNetV2: "
            f"{str(error).splitlines()[0]}"
        ) from None
    extractor = keras.Model(
        backbone.input,
        [backbone.get_layer(name).output for name in _MOBILENET_SKIPS] + [backbone.output],
        name="mobilenetv2_encoder",
    )
    *skips, x = extractor(x)
    return skips, x
