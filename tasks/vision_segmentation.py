"""Vision segmentation: a U-Net (or a MobileNetV2-encoder U-Net) labelling every pixel with a class.

Data sources:
    embedded                 generated scenes: circles, squares and triangles in random colours on
                             textured, noisy backgrounds, with exact masks (synthetic, offline, seconds).
    tfds:oxford_iiit_pet     pet photos with trimaps (pet / background / border), resized to `image_size`
                             (128 when 0); prediction resizes inputs the same way.
    PATH                     a folder holding `images/` and `masks/` (also `image/` + `label/`); each mask
                             has its image's file name (any image extension). Masks hold class indices
                             (0, 1, 2...) or are binary 0/255 images; JPEG masks are binarised at 128.

Large images are resized (`image_size`) or cut into training tiles (`tile_size`); the model is fully
convolutional, so evaluation and prediction run on whole images, padded to a multiple of its stride.

Predict: an image file (or `IMAGE=OUTPUT.png`) -> a mask PNG (class index scaled to 0-255, so a
binary mask is 0/255) written beside the input as `<name>_mask.png` (or at OUTPUT), plus the
fraction of pixels per class.
"""

import dataclasses
import pathlib
import re

import numpy as np

from tasks import register
from tasks.base import Splits, Task, TaskConfig, search_space

ENCODERS = ("unet", "mobilenetv2")
MAX_CLASSES = 64  # more distinct values than this means the "mask" is a photo, not class indices
_IMAGE_FOLDERS, _MASK_FOLDERS = ("images", "image"), ("masks", "mask", "labels", "label")
# MobileNetV2 activations at strides 2, 4, 8 and 16 feed the decoder; its output is at stride 32.
_MOBILENET_SKIPS = ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu")


@dataclasses.dataclass
class VisionSegmentationConfig(TaskConfig):
    batch_size: int = 8  # whole images per batch: small batches fit memory, and more steps help small sets
    epochs: int = 25  # the embedded shapes reach validation mIoU ~0.89 in 25 (about a minute on 2 cores)
    early_stopping_patience: int = 12  # Dice terms are noisy on small validation sets; be patient
    image_size: int = 0  # side to resize to; 0 keeps the files' size (first file's if they differ; TFDS 128, embedded 32)
    tile_size: int = 0  # >0 cuts train/validation images into tiles this big (large scans); 0 uses whole images
    split: str = "random"  # random, or ordered: the last files in natural order form validation then test
    num_classes: int = 0  # 0 infers it from the masks; set it when a class may be missing from the files
    class_names: str = ""  # comma-separated names; empty gives background, class_1, class_2...
    encoder: str = "unet"  # unet trains from scratch on a CPU; mobilenetv2 is the pretrained-encoder variant
    encoder_weights: str = "none"  # none or imagenet (downloads once) for the mobilenetv2 encoder
    depth: int = 3  # U-Net down-sampling steps; each doubles the receptive field (3 suits 64-128 px inputs)
    base_filters: int = 16  # width of the first level, doubled per level; 16 keeps a CPU epoch short
    dropout: float = 0.1  # at the bottleneck only, where features are most abstract and overfit first
    dice_weight: float = 1.0  # loss = cross-entropy + dice_weight * (1 - soft Dice): Dice counters small classes
    flip: bool = True  # random mirrors of image and mask together; most scenes have no preferred side
    rotate90: bool = True  # random transposes (with flips: all 90-degree turns); square inputs only
    shift: int = 0  # pad-and-crop shift in pixels applied to image and mask together (0 = off)
    brightness: float = 0.1  # image-only brightness jitter: lighting varies, masks do not
    contrast: float = 0.1  # image-only contrast jitter
    noise: float = 0.02  # image-only Gaussian noise (images in [0, 1]): sensors are noisy
    overlay_count: int = 6  # test images drawn with their true and predicted masks
    search_space: dict = search_space(  # bottleneck dropout against network width
        dropout=["float", 0.0, 0.3], base_filters=["choice", 8, 16, 32])


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
                region = (rows >= top) & (rows <= center_row + radius) & (
                    np.abs(columns - center_column) <= 0.6 * (rows - top))
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
            raise ValueError(f"mask '{path}' is a colour image; expected a single-channel mask of class indices "
                             "or 0/255 (save it in grayscale or palette mode).")
        mask = mask[..., 0]
    values = np.unique(mask)
    if pathlib.Path(path).suffix.lower() in (".jpg", ".jpeg") and values.max(initial=0) > MAX_CLASSES:
        return (mask >= 128).astype("uint8")  # JPEG blurs 0/255 edges into in-between values
    if set(values.tolist()) <= {0, 255} and num_classes in (0, 2):
        return (mask > 0).astype("uint8")
    limit = num_classes or MAX_CLASSES
    unexpected = values[values >= limit]
    if unexpected.size:
        raise ValueError(f"mask '{path}' has value {int(unexpected[0])}; expected class indices 0..{limit - 1} "
                         "or a binary 0/255 mask (set num_classes if your masks have more classes).")
    return mask.astype("uint8")


def _read_folder(root, config):
    """Reads `images/` and `masks/` (matched by file stem) into arrays of one size."""
    from PIL import Image

    from shared import data, images

    root = pathlib.Path(root)
    image_folder = next((root / name for name in _IMAGE_FOLDERS if (root / name).is_dir()), None)
    mask_folder = next((root / name for name in _MASK_FOLDERS if (root / name).is_dir()), None)
    if image_folder is None or mask_folder is None:
        raise ValueError(f"segmentation folder '{root}' must hold an images/ and a masks/ subfolder "
                         "(masks named like their images).")
    image_paths = sorted((path for path in image_folder.iterdir() if path.suffix.lower() in images.IMAGE_EXTENSIONS),
                         key=_natural_key)
    if not image_paths:
        raise ValueError(f"'{image_folder}' has no image files ({', '.join(images.IMAGE_EXTENSIONS)}).")
    masks_by_stem = {path.stem: path for path in mask_folder.iterdir() if path.suffix.lower() in images.IMAGE_EXTENSIONS}
    pictures, masks = [], []
    for path in data.progress(image_paths, "reading images and masks", total=len(image_paths)):
        if path.stem not in masks_by_stem:
            raise ValueError(f"image '{path}' has no mask: expected '{mask_folder / path.stem}.png' "
                             "(any image extension) in the masks folder.")
        picture = images.decode(str(path))
        try:
            with Image.open(masks_by_stem[path.stem]) as opened:
                mask = np.asarray(opened)
        except OSError as error:
            raise ValueError(f"mask '{masks_by_stem[path.stem]}' is not a readable image ({error}).") from None
        if mask.shape[:2] != picture.shape[:2]:
            raise ValueError(f"mask '{masks_by_stem[path.stem]}' is {mask.shape[1]}x{mask.shape[0]} but its image "
                             f"'{path}' is {picture.shape[1]}x{picture.shape[0]}; a mask must match its image's size.")
        pictures.append(picture)
        masks.append(_mask_classes(mask, masks_by_stem[path.stem], config.num_classes))
    channels = 1 if all(picture.shape[-1] == 1 for picture in pictures) else 3
    size = (config.image_size,) * 2 if config.image_size else pictures[0].shape[:2]
    return (np.stack([images.fit(picture, size, channels) for picture in pictures]),
            np.stack([_resize_mask(mask, size) for mask in masks]))


def _resize_mask(mask, size):
    """Nearest-neighbour resize, so class indices are never blended."""
    import tensorflow as tf

    if tuple(mask.shape[:2]) == tuple(size):
        return mask
    return tf.image.resize(mask[..., None], size, method="nearest").numpy()[..., 0]


def _tiles(pair, tile_size):
    """Cuts images and masks into tiles; the last row / column of tiles is aligned to the edge."""
    pictures, masks = pair
    height, width = pictures.shape[1:3]
    if tile_size <= 0 or (tile_size >= height and tile_size >= width):
        return pair
    if tile_size > min(height, width):
        raise ValueError(f"tile_size {tile_size} is larger than the images ({width}x{height}); use a smaller "
                         "tile_size or 0.")

    def starts(length):
        return sorted({*range(0, length - tile_size + 1, tile_size), length - tile_size})

    cut = [(row, column) for row in starts(height) for column in starts(width)]
    return tuple(np.concatenate([array[:, row:row + tile_size, column:column + tile_size] for row, column in cut])
                 for array in (pictures, masks))


def _stride(info):
    """The model's total down-sampling: inputs must be a multiple of it."""
    return 32 if info["encoder"] == "mobilenetv2" else 2 ** info["depth"]


def predict_masks(model, pictures, info, batch_size=4):
    """Predicts class probabilities for whole images of any size, padding to the model's stride.

    Args:
        model (keras.Model): the segmentation model.
        pictures (np.ndarray): (n, h, w, c) images in [0, 1], all the same size.
        info (dict): the task's info (encoder, depth).
        batch_size (int): images per forward pass.

    Returns:
        np.ndarray: (n, h, w, k) probabilities.
    """
    stride = _stride(info)
    height, width = pictures.shape[1:3]
    padding = ((0, 0), (0, -height % stride), (0, -width % stride), (0, 0))
    padded = np.pad(pictures, padding, mode="reflect" if min(height, width) > stride else "edge")
    return model.predict(padded, batch_size=batch_size, verbose=0)[:, :height, :width]


@register
class VisionSegmentation(Task):
    name = "vision_segmentation"
    config_class = VisionSegmentationConfig
    primary_metric = "mean_iou"
    tfds_name = "oxford_iiit_pet"
    input_column = "image"
    quick_overrides = {"epochs": 2, "max_examples": 200}

    def load_data(self, config):
        from shared import data

        if config.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got '{config.encoder}'.")
        if config.split not in ("random", "ordered"):
            raise ValueError(f"split must be random or ordered, got '{config.split}'.")
        kind, argument = data.parse_source(config.data)
        synthetic, class_names = False, None
        if kind == "embedded":
            pictures, masks = _scenes(600, config.image_size or 32, config.seed)
            class_names, name, synthetic = ["background", "circle", "square", "triangle"], "generated_shapes", True
        elif kind == "tfds":
            pictures, masks, class_names = self._tfds(argument, config)
            name = f"tfds_{argument.split(':')[0]}"
        elif kind == "folder":
            pictures, masks = _read_folder(argument, config)
            name = f"folder_{argument.rstrip('/').split('/')[-1]}"
        else:
            raise ValueError(f"vision_segmentation cannot read '{config.data}'; give a folder with images/ and "
                             "masks/, tfds:oxford_iiit_pet or embedded.")
        class_names = self._class_names(config, class_names, masks)
        if len(masks) < 3:
            raise ValueError(f"the splits of '{config.data}' would be empty: {len(masks)} image/mask pair(s), "
                             "need at least 3 (train, validation and test).")
        if config.split == "ordered":
            test_count = int(round(config.test_fraction * len(masks)))
            validation_count = int(round(config.validation_fraction * len(masks)))
            cut = len(masks) - test_count - validation_count
            train, validation, test = ((pictures[a:b], masks[a:b]) for a, b in
                                       ((0, cut), (cut, cut + validation_count), (cut + validation_count, None)))
        else:
            train, validation, test = data.carve(pictures, masks, config, stratify=False)
        for split_name, pair in (("train", train), ("validation", validation), ("test", test)):
            if not len(pair[1]):
                raise ValueError(f"the {split_name} split of '{config.data}' is empty ({len(masks)} image/mask pairs); "
                                 "add images or change validation_fraction / test_fraction.")
        train, validation = _tiles(train, config.tile_size), _tiles(validation, config.tile_size)
        # Prediction resizes inputs only where training did: TFDS photos always, files when image_size is set.
        resized = pictures.shape[1] if kind == "tfds" else config.image_size
        info = {"class_names": class_names, "channels": int(pictures.shape[-1]), "image_size": int(resized),
                "encoder": config.encoder, "depth": config.depth, "overlay_count": config.overlay_count}
        stride = _stride(info)  # test images are padded at prediction; training batches cannot be
        if train[0].shape[1] % stride or train[0].shape[2] % stride:
            raise ValueError(f"training images are {train[0].shape[2]}x{train[0].shape[1]} but the {config.encoder} "
                             f"model needs multiples of {stride}; set image_size or tile_size to a multiple of "
                             f"{stride}, or lower depth.")
        return Splits(train, validation, test, info, config.data, name, synthetic)

    @staticmethod
    def _class_names(config, known, masks):
        """Class names from the config, the source, or the mask values."""
        count = max(config.num_classes, int(masks.max()) + 1, 2, len(known or []))
        if config.class_names:
            names = [part.strip() for part in config.class_names.split(",")]
            if len(names) != count:
                raise ValueError(f"class_names lists {len(names)} names but the masks have {count} classes "
                                 f"(values 0..{count - 1}).")
            return names
        if known:
            return list(known)
        return ["background", "foreground"] if count == 2 else ["background"] + [f"class_{i}" for i in range(1, count)]

    @staticmethod
    def _tfds(argument, config):
        """Loads tfds:oxford_iiit_pet-style data: `image` plus a `segmentation_mask` trimap (1, 2, 3)."""
        import tensorflow as tf

        from shared import data

        size = (config.image_size or 128,) * 2

        def resize(example):
            return {"image": tf.image.resize(tf.cast(example["image"], "float32") / 255.0, size, antialias=True),
                    "mask": tf.image.resize(example["segmentation_mask"], size, method="nearest")[..., 0]}

        loaded, _ = data.load_tfds(argument, config.tfds_data_dir, ("image", "segmentation_mask"),
                                   "--data embedded or a folder with images/ and masks/", resize)
        pictures = np.concatenate([split["image"] for split in loaded.values()])
        masks = np.concatenate([split["mask"] for split in loaded.values()]).astype("int64")
        masks = np.clip(masks - 1, 0, 2).astype("uint8")  # trimap 1 pet, 2 background, 3 border -> 0..2
        return pictures.astype("float32"), masks, ["pet", "background", "border"]

    def build_model(self, config, info):
        import keras

        inputs = keras.Input((None, None, info["channels"]), name="image")
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
        outputs = keras.layers.Conv2D(len(info["class_names"]), 1, activation="softmax", dtype="float32",
                                      name="class_probabilities")(x)
        return keras.Model(inputs, outputs, name=f"{self.name}_{config.encoder}")

    def loss(self, config, info):
        import keras

        count = len(info["class_names"])

        def cross_entropy_dice(masks, probabilities):
            """Per-image cross-entropy + dice_weight * (1 - mean soft Dice over classes)."""
            cross_entropy = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(masks, probabilities),
                                           axis=(1, 2))
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
        return [keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy"),
                keras.metrics.MeanIoU(len(info["class_names"]), sparse_y_true=True, sparse_y_pred=False,
                                      name="mean_iou")]

    def train_map(self, config, info):
        from shared import augmentation

        return augmentation.chain(
            augmentation.paired_geometric(flip=config.flip, rotate90=config.rotate90, crop_padding=config.shift,
                                          seed=config.seed),
            augmentation.photometric(brightness=config.brightness, contrast=config.contrast, seed=config.seed),
            augmentation.gaussian_noise(config.noise, seed=config.seed),
        )

    def evaluate(self, model, splits, config):
        from shared import evaluation, plots

        pictures, masks = splits.test
        predicted = predict_masks(model, pictures, splits.info, batch_size=max(1, config.batch_size // 4))
        predicted = predicted.argmax(axis=-1)
        result = evaluation.segmentation(masks, predicted, splits.info["class_names"])
        shown = slice(0, config.overlay_count)
        result.figures["overlays"] = plots.segmentation_overlays(pictures[shown], masks[shown], predicted[shown],
                                                                 splits.info["class_names"])
        return result

    def input_example(self, splits):
        side = min(32, *splits.test[0].shape[1:3])
        return [np.round(splits.test[0][0, :side, :side], 4).tolist()]

    def predict_raw(self, model, info, inputs):
        import tempfile

        from shared import images

        answers = []
        for raw in inputs:
            output = None
            if isinstance(raw, str) and "=" in raw and not pathlib.Path(raw).exists():
                raw, output = raw.split("=", 1)
            picture = images.decode(raw)
            original = picture.shape[:2]
            picture = images.fit(picture, (info["image_size"],) * 2 if info["image_size"] else original,
                                 info["channels"])
            mask = predict_masks(model, picture[None], info)[0].argmax(axis=-1).astype("uint8")
            mask = _resize_mask(mask, original)
            if output is None:
                folder = pathlib.Path(raw).parent if isinstance(raw, str) else pathlib.Path(tempfile.mkdtemp())
                output = folder / f"{pathlib.Path(raw).stem if isinstance(raw, str) else 'input'}_mask.png"
            scale = 255 // max(1, len(info["class_names"]) - 1)
            images.save_png((mask * scale).astype("uint8")[..., None], output)
            fractions = np.bincount(mask.ravel(), minlength=len(info["class_names"])) / mask.size
            answers.append({"mask_path": str(output), "size": list(original),
                            "class_fractions": {name: round(float(share), 6)
                                                for name, share in zip(info["class_names"], fractions)}})
        return answers


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
        backbone = keras.applications.MobileNetV2(input_shape=(None, None, 3), include_top=False,
                                                  weights=weights if weights in (None, "imagenet") else None)
        if weights not in (None, "imagenet"):
            backbone.load_weights(weights)
    except (OSError, ValueError) as error:
        raise ValueError(f"encoder_weights '{config.encoder_weights}' could not be loaded into MobileNetV2: "
                         f"{str(error).splitlines()[0]}") from None
    extractor = keras.Model(backbone.input, [backbone.get_layer(name).output for name in _MOBILENET_SKIPS]
                            + [backbone.output], name="mobilenetv2_encoder")
    *skips, x = extractor(x)
    return skips, x
