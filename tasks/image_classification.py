"""What image classifiers share (vision classification, medical imaging): the config of the image models and
augmentation, the readers of class folders, path,label tables, IDX pairs, .npz arrays and TFDS sets (registered
as `image_folder`, `image_manifest`, `idx_images`, `npz_images` and `tfds_images`), the ResNet and
keras.applications models, and the image predictor and its SavedModel signature.

A domain subclasses `ImageClassificationTask` (its config `ImageClassificationConfig`) and declares only what
differs: its name, its `embedded` data, and the settings, metrics and evaluation it adds. This module registers no
task of its own.
"""

import dataclasses
import pathlib

import numpy as np

from shared import constraints
from shared.constraints import BaseWidth, Choice, Count, Fraction, NonNegative, Side, Size
from shared.data.sources import is_table, reader
from shared.fitted_state import LabelledState
from shared.heads import softmax_head
from shared.images import IMAGE_EXTENSIONS
from tasks.base import ClassificationTask, Splits, TaskConfig, search_space

BACKBONES = ("resnet", "efficientnetv2b0", "mobilenetv3small")
FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
STEM_STRIDES = (0, 1, 2, 4)
# stem_stride=0 strides the stem by 2 where that was measured to keep validation accuracy at 3-4x the speed:
# inputs of 24 px and more (a 28 px digit or scan keeps 14 px) with at least 4,000 training examples. 7,000 MNIST
# digits: 0.994 either way; 500 and 2,000 digits lost 1.7 and 0.6 points, so fewer examples keep full resolution
# (docs/benchmarks.md#models-sized-to-the-data).
AUTO_STEM_SIDE = 24
AUTO_STEM_EXAMPLES = 4000


@dataclasses.dataclass
class ImageClassificationConfig(TaskConfig):
    """The image models and augmentation; the defaults suit small images (scans, digits, 32 px photos)."""

    image_size: Side = 0  # 0 keeps the source's size; a folder of mixed or large photos gets a median side, up to 128
    channels: Choice(0, 1, 3) = 0  # 0 follows the data (1 for grayscale sources, else 3)
    backbone: Choice(*BACKBONES) = "resnet"  # resnet trains from scratch on a CPU; the others transfer
    backbone_weights: str = "none"  # none, imagenet (downloads once) or a local .weights.h5 file
    base_filters: BaseWidth = 32  # width of the first stage; doubles at every later stage
    stages: Count = 3  # each later stage halves the resolution; 3 suits 8-32 px inputs
    stem_stride: Choice(*STEM_STRIDES) = 1  # 1 keeps full resolution; 0 follows the data (`stem_stride`)
    blocks_per_stage: Count = 1  # residual blocks per stage; raise for larger datasets
    dropout: Fraction = 0.2  # before the classifier: cheap insurance against overfitting small data
    l2: NonNegative = 0.0  # AdamW weight decay already regularises; L2 is here for recipes that want it
    flip: Choice(*FLIPS) = "none"  # digits and text must not be mirrored; use horizontal for natural photos
    rotation: NonNegative = 0.04  # fraction of a full turn (about 15 degrees): handwriting slant
    zoom: Fraction = 0.1  # scale jitter for stroke width and framing
    contrast: NonNegative = 0.0  # photometric jitter; useful for photos, not for clean scans
    crop_padding: Size = 0  # pad-and-random-crop pixels, the classic CIFAR shift augmentation
    mixup: NonNegative = 0.0  # MixUp alpha (0 = off)
    cutmix: NonNegative = 0.0  # CutMix alpha (0 = off)
    top_k: Count = 3  # classes returned per prediction
    search_space: dict = search_space(  # capacity against overfitting on small image sets
        dropout=["float", 0.0, 0.5], base_filters=["choice", 16, 32, 64]
    )

    def check(self):
        """Raises:
        ValueError: also when the ResNet's feature maps at image_size would not fit in memory.
        """
        super().check()
        if self.image_size and self.backbone == "resnet":
            # a residual block keeps about 10 maps (two convolutions, normalisations and activations, the sum),
            # the stem 3 more
            constraints.fits_memory(
                constraints.pyramid_bytes(
                    self.batch_size, self.image_size, self.base_filters, 3 + 10 * self.blocks_per_stage, self.stages
                ),
                f"image_size={self.image_size} with batch_size={self.batch_size} and base_filters={self.base_filters}",
            )


@dataclasses.dataclass(kw_only=True)
class ImageState(LabelledState):
    """What an image classifier was fitted to (`LabelledState` plus its input).

    Attributes:
        image_size (list[int]): the (height, width) the model takes.
        channels (int): 1 (grayscale) or 3.
        stem_stride (int | None): the ResNet stem's stride `stem_stride=0` chose; None in models logged before the
            state kept it (their config's stride applies).
    """

    image_size: list
    channels: int
    stem_stride: int | None = None


def array_examples(images, labels, config):
    """Images held in memory (uint8 or float, (n, h, w[, c])) as examples converted in tf.data.

    Returns:
        tuple[Examples, tuple[int, int], int]: the examples, their decoded (height, width) and channels.
    """
    from shared import images as images_module
    from shared.data import examples

    images = np.asarray(images)
    channels = config.channels or (1 if images.ndim == 3 or images.shape[-1] == 1 else 3)
    size = (config.image_size,) * 2 if config.image_size else tuple(images.shape[1:3])
    scale = 255.0 if images.dtype == np.uint8 or images.max(initial=0) > 1.0 else 1.0
    step = images_module.array_step(channels, size, scale)
    return examples.Examples(images, np.asarray(labels).reshape(-1).astype("int64"), decode=step), size, channels


class ImageClassificationTask(ClassificationTask):
    """A single-label image classifier: a ResNet or keras.applications backbone, augmentation, top-k answers."""

    config_class = ImageClassificationConfig
    state_class = ImageState
    input_column = "image"
    input_kind = "file"
    input_extensions = IMAGE_EXTENSIONS
    key_params = ClassificationTask.key_params + ("backbone",)
    predict_chunk = 256  # 256 images at 224 px are 150 MB, whatever the request's length
    readers = ("embedded", "tfds_images", "image_folder", "image_manifest", "idx_images", "npz_images")
    robustness_kind = "fgsm"  # decoded images are the model's one float input
    explain_kind = "image"  # Grad-CAM on the ResNet's own pooling; integrated gradients through other backbones
    # width, depth and augmentation: what most changes a small ResNet's fit on data it was not tuned on
    candidates = (
        ("default", {}),
        ("wide", {"base_filters": 64}),
        ("deep", {"blocks_per_stage": 2}),
        ("augmented", {"crop_padding": 2, "mixup": 0.2, "dropout": 0.3}),
    )
    remedies = (
        "Likely causes: too few epochs or images, images too large for a model trained from scratch on a "
        "CPU, or labels that do not follow the images. Try more epochs (--set epochs=N), a smaller image_size "
        "(e.g. 64), a pretrained backbone (--set backbone=efficientnetv2b0 --set backbone_weights=imagenet), "
        "or --preset balanced."
    )

    def portfolio(self, config):
        """The candidates, and an ImageNet-pretrained EfficientNetV2B0 fine-tuned where its weights can be had."""
        found = super().portfolio(config)
        if _imagenet_weights_available():
            # fine-tuning every layer: a tenth of the from-scratch rate keeps the pretrained features
            found.append(
                ("pretrained", {"backbone": "efficientnetv2b0", "backbone_weights": "imagenet", "learning_rate": 2e-4})
            )
        return found

    def image_splits(
        self, config, pool, size, channels, class_names, name, synthetic=False, validation=None, test=None
    ):
        """Carves `pool` into train, validation and test (the ones given are kept) and describes the images.

        Args:
            config (ImageClassificationConfig): the fractions, seed and `top_k`.
            pool (shared.data.examples.Examples): labelled images.
            size (tuple[int, int]): their decoded (height, width).
            channels (int): their decoded channels.
            class_names (list[str]): names in label order.
            name (str): the dataset's short name for MLflow.
            synthetic (bool): True for generated demo images.
            validation (Examples | None): a validation split the source holds.
            test (Examples | None): a test split the source holds.

        Returns:
            Splits: with the `info` the model and predictor read.
        """
        from shared.data.splits import carve

        train, validation, test = carve(pool, config, validation=validation, test=test)
        info = self.state_class(
            class_names=class_names,
            image_size=list(size),
            channels=channels,
            top_k=config.top_k,
            stem_stride=stem_stride(config, min(size), len(train)),
        )
        return Splits(train, validation, test, info, config.data, name, synthetic)

    def load_fitted(self, config, info):
        """`load_data` at the model's image size and channels, class indices renumbered to its class names.

        Raises:
            ValueError: the images decode to another size than the model takes (square sizes are resized).
        """
        height, width = info.image_size
        config = dataclasses.replace(
            config, image_size=height if height == width else config.image_size, channels=info.channels
        )
        splits = super().load_fitted(config, info)
        if list(splits.info.image_size) != list(info.image_size):
            raise ValueError(
                f"'{config.data}' holds {splits.info.image_size[1]}x{splits.info.image_size[0]} "
                f"images, but the model takes {width}x{height}; resize them to that size."
            )
        return splits

    def build_model(self, config, info):
        import keras

        from shared import regularization

        inputs = keras.Input((*info.image_size, info.channels), name="image")
        if config.backbone == "resnet":
            stride = info.stem_stride or config.stem_stride or 1  # models logged before info kept it
            features = _resnet(inputs, config, regularization.l2(config.l2), stride)
        else:
            features = _backbone(inputs, config)
        outputs = softmax_head(features, config.dropout, len(info.class_names))
        return keras.Model(inputs, outputs, name=f"{self.name}_{config.backbone}")

    def train_map(self, config, info):
        from shared import augmentation

        augment = augmentation.image(
            flip=config.flip,
            rotation=config.rotation,
            zoom=config.zoom,
            contrast=config.contrast,
            crop_padding=config.crop_padding,
            mixup=config.mixup,
            cutmix=config.cutmix,
            seed=config.seed,
        )
        return augmentation.chain(self.eval_map(config, info), augment)

    def input_example(self, splits):
        return [splits.test.sample(1)[0][0].tolist()]

    def prepare_inputs(self, info, inputs):
        from shared import images

        return np.stack([images.fit(images.decode(raw), info.image_size, info.channels) for raw in inputs])

    def drift_view(self, model, info, batch):
        """Brightness and contrast per image, and the classifier's penultimate features (embeddings)."""
        from shared import drift

        return drift.image_view(batch, drift.embeddings(model, batch))

    def serving_signature(self, model, info):
        """The SavedModel takes encoded image bytes and decodes, converts and resizes them in its graph."""
        from shared import serving as graphs

        size, channels = tuple(info.image_size), info.channels
        serving = super().serving_signature(model, info)
        serving.preprocessing.update(graphs.image_contract(size, channels))
        serving.preprocessing["raw_input"] = (
            "encoded PNG, JPEG, BMP or GIF bytes, one image per row (the graph "
            "decodes no TIFF or WebP and ignores EXIF orientation: send "
            "upright images)"
        )
        serving.raw_inputs = {"image": ((None,), "string")}
        serving.raw_graph = lambda raw: graphs.decode_images(raw["image"], channels, size)
        serving.raw_feed = lambda inputs: {"image": np.array(graphs.encoded_images(inputs), dtype=object)}
        serving.examples = graphs.image_variants
        return serving


@reader("tfds_images", ("tfds",), "tfds:NAME[:SPLIT], an image/label dataset")
def read_tfds_images(task, argument, config):
    """Streams a TFDS image/label set, decoding and resizing each example before batching."""
    from shared import images
    from shared.data import tfds

    name, _, chosen = argument.partition(":")
    found = tfds.builder(
        name,
        config.tfds_data_dir,
        "--data embedded, a class-folder path, an IDX folder or an .npz file",
        ("image", "label"),
    )
    height, width, stored = found.info.features["image"].shape
    if not config.image_size and (height is None or width is None):
        raise ValueError(
            f"tfds:{name} has images of different sizes; set image_size to resize them, e.g. --set image_size=128."
        )
    size = (config.image_size,) * 2 if config.image_size else (height, width)
    channels = config.channels or (1 if stored == 1 else 3)
    train, validation, test = tfds.streams(
        found, chosen, ("image", "label"), config, decode=images.decode_step(channels, size, encoded=True)
    )
    info = task.state_class(
        class_names=list(found.info.features["label"].names),
        image_size=list(size),
        channels=channels,
        top_k=config.top_k,
        stem_stride=stem_stride(config, min(size), len(train)),
    )
    return Splits(train, validation, test, info, config.data, f"tfds_{name}", False)


@reader("image_folder", ("folder",), "a folder with one subfolder of images per class")
def read_image_folder(task, argument, config):
    """Decodes a class folder's images in tf.data (`shared.images.file_examples`)."""
    from shared import images, slices

    paths, labels, class_names = images.class_folders(argument)
    groups = slices.from_paths(paths, config.slice_by, argument, argument) if config.slice_by else None
    pool, size, channels = images.file_examples(
        paths, labels.astype("int64"), config.image_size, config.channels, groups
    )
    return task.image_splits(config, pool, size, channels, class_names, f"folder_{_folder_name(argument)}")


@reader(
    "image_manifest",
    ("file", "csv"),
    "a CSV/TSV of image path and label columns (paths relative to the file), e.g. path,label",
    accepts=is_table,
)
def read_image_manifest(task, argument, config):
    """Decodes the images a table lists in tf.data; any other column of the table can slice the test split."""
    from shared import images, slices
    from shared.data import sources

    roles = {"path": "path,file,filename,image", "label": "label,class"}
    by_path = slices.path_pattern(config.slice_by)
    if config.slice_by and not by_path:
        roles["slice_by"] = config.slice_by  # read with the paths: one pass over the table
    hint = "Name the image column path (or file, filename, image) and the label column label (or class)."
    columns = sources.read_text_columns(argument, roles, {"path": hint, "label": hint, "slice_by": slices.HINT})
    paths = sources.listed_files(argument, columns["path"], "image")
    names = [str(label).strip() for label in columns["label"]]
    class_names = sources.class_names(names, f"'{argument}'")
    order = {name: index for index, name in enumerate(class_names)}
    labels = np.array([order[name] for name in names], dtype="int64")
    groups = columns.get("slice_by")
    if by_path:
        groups = slices.from_paths(paths, config.slice_by, pathlib.Path(argument).resolve().parent, argument)
    pool, size, channels = images.file_examples(paths, labels, config.image_size, config.channels, groups)
    return task.image_splits(config, pool, size, channels, class_names, f"file_{pathlib.Path(argument).stem}")


@reader("idx_images", ("idx",), "a folder holding an IDX images/labels pair (MNIST's format)")
def read_idx_images(task, argument, config):
    from shared.data.sources import read_idx_pair

    return _array_splits(task, config, *read_idx_pair(argument), f"idx_{_folder_name(argument)}")


@reader("npz_images", ("npz",), "an .npz of x_train/y_train/x_test/y_test arrays (or MedMNIST's keys)")
def read_npz_images(task, argument, config):
    """An .npz's arrays, its test split (and validation split, if it holds one) kept as they are."""
    from shared.data.sources import read_npz

    arrays = read_npz(argument)
    test = array_examples(*arrays["test"], config)[0]
    validation = array_examples(*arrays["validation"], config)[0] if "validation" in arrays else None
    return _array_splits(
        task, config, *arrays["train"], f"npz_{_folder_name(argument)}", validation=validation, test=test
    )


def _array_splits(task, config, features, labels, name, validation=None, test=None):
    """Splits of images held in memory, their classes named by their labels."""
    pool, size, channels = array_examples(features, labels, config)
    class_names = [str(label) for label in range(int(pool.targets.max()) + 1)]
    return task.image_splits(config, pool, size, channels, class_names, name, validation=validation, test=test)


def _folder_name(path):
    return path.rstrip("/").split("/")[-1]


def _imagenet_weights_available():
    """Whether Keras has EfficientNetV2B0's ImageNet weights in its cache, or can download them."""
    import os

    from shared import network

    cached = os.path.join(
        os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")), "models", "efficientnetv2-b0_notop.h5"
    )
    return os.path.isfile(cached) or network.reachable("storage.googleapis.com")


def stem_stride(config, side, examples):
    """The ResNet stem's stride: the config's `stem_stride`, or when 0 the one the data calls for.

    The first stage runs at the stem's resolution and costs most of the ResNet's time on small images, so
    downsampling there buys most of the speed; small or few images keep full resolution (`AUTO_STEM_SIDE`,
    `AUTO_STEM_EXAMPLES`). Kept in the fitted `info` (`stem_stride`), so that the model is rebuilt with the same
    stride whatever data a continued run brings.

    Args:
        config (ImageClassificationConfig): the config.
        side (int): the input's shorter side in pixels.
        examples (int): training examples, after `max_examples`.

    Returns:
        int: 1, 2 or 4.
    """
    if config.stem_stride:
        return config.stem_stride
    if config.max_examples:
        examples = min(examples, config.max_examples)
    return 2 if side >= AUTO_STEM_SIDE and examples >= AUTO_STEM_EXAMPLES else 1


def _resnet(inputs, config, regularizer, stride):
    """A small pre-activation-free ResNet: conv stem (strided by `stride`), residual stages, global average pooling."""
    import keras

    def norm():
        # momentum 0.9, not Keras' 0.99: small datasets give few steps, and slow moving averages
        # leave inference statistics far from training ones for many epochs.
        return keras.layers.BatchNormalization(momentum=0.9)

    def conv(filters, strides=1):
        return keras.layers.Conv2D(
            filters, 3, strides=strides, padding="same", use_bias=False, kernel_regularizer=regularizer
        )

    x = conv(config.base_filters, min(stride, 2))(inputs)
    x = keras.layers.Activation("relu")(norm()(x))
    if stride == 4:  # the ImageNet ResNet's stem: a strided convolution, then a strided max pool
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage in range(config.stages):
        filters = config.base_filters * 2**stage
        for block in range(config.blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            x = keras.layers.Activation("relu")(norm()(conv(filters, strides)(x)))
            x = norm()(conv(filters)(x))
            if strides != 1 or shortcut.shape[-1] != filters:
                if strides != 1:
                    # Subsampling, then a unit-stride 1x1 convolution: the function of a strided 1x1 convolution,
                    # whose weight gradient in TensorFlow's oneDNN CPU kernels writes past its buffer for fewer
                    # than 16 input channels (base_filters=8 on 64 px images: a segfault; oneDNN issue 6035).
                    shortcut = keras.layers.MaxPooling2D(1, strides=strides)(shortcut)
                shortcut = keras.layers.Conv2D(filters, 1, use_bias=False)(shortcut)
                shortcut = norm()(shortcut)
            x = keras.layers.Activation("relu")(keras.layers.Add()([x, shortcut]))
    return keras.layers.GlobalAveragePooling2D()(x)


def _backbone(inputs, config):
    """A keras.applications backbone on [0, 1] images of any size and channel count."""
    import keras

    weights = {"none": None, "imagenet": "imagenet"}.get(config.backbone_weights, None)
    x = inputs
    size = max(32, inputs.shape[1], inputs.shape[2])  # keras.applications needs at least 32x32
    if inputs.shape[1] < 32 or inputs.shape[2] < 32:
        x = keras.layers.Resizing(size, size)(x)
    if inputs.shape[-1] == 1:
        x = keras.layers.Concatenate()([x, x, x])
    x = keras.layers.Rescaling(255.0)(x)  # the backbones' built-in preprocessing expects 0-255
    constructor = {
        "efficientnetv2b0": keras.applications.EfficientNetV2B0,
        "mobilenetv3small": keras.applications.MobileNetV3Small,
    }[config.backbone]
    backbone = constructor(
        include_top=False, weights=weights, input_shape=(size, size, 3), include_preprocessing=True, pooling="avg"
    )
    if config.backbone_weights not in ("none", "imagenet"):
        try:
            backbone.load_weights(config.backbone_weights)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"backbone_weights '{config.backbone_weights}' could not be loaded into {config.backbone}: {error}"
            ) from None
    return backbone(x)
