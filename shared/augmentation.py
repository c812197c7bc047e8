"""Training-time augmentation, one builder per modality.

Each builder returns a function `(features, targets) -> (features, targets)` that the runner maps
over training batches in tf.data (parallel, off the trainable graph), so it works with every Keras
backend. Domains add their modality here (audio, text, tabular) rather than in their own module.
"""


def image(flip="none", rotation=0.0, zoom=0.0, contrast=0.0, crop_padding=0, mixup=0.0, cutmix=0.0, seed=0):
    """Builds an image batch augmenter from Keras preprocessing layers.

    Args:
        flip (str): "none", "horizontal", "vertical" or "horizontal_and_vertical".
        rotation (float): max rotation as a fraction of a full turn.
        zoom (float): max zoom in or out as a fraction of the size.
        contrast (float): max contrast change factor.
        crop_padding (int): pad by this many pixels and crop back at a random offset (0 = off).
        mixup (float): MixUp Beta-distribution alpha (0 = off); needs one-hot targets.
        cutmix (float): CutMix Beta-distribution alpha (0 = off); needs one-hot targets.
        seed (int): augmentation seed.

    Returns:
        Callable | None: the batch function, or None when every option is off.
    """
    import keras
    import tensorflow as tf

    if flip not in ("none", "horizontal", "vertical", "horizontal_and_vertical"):
        raise ValueError(f"flip must be none, horizontal, vertical or horizontal_and_vertical, got '{flip}'.")
    layers = []
    if flip != "none":
        layers.append(keras.layers.RandomFlip(flip, seed=seed))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, fill_mode="constant", seed=seed))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode="constant", seed=seed))
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, value_range=(0, 1), seed=seed))
    mixers = []
    if mixup:
        mixers.append(keras.layers.MixUp(alpha=mixup, seed=seed))
    if cutmix:
        mixers.append(keras.layers.CutMix(factor=cutmix, seed=seed))
    if not layers and not mixers and not crop_padding:
        return None

    def augment(images, targets):
        if crop_padding:
            height, width = images.shape[1], images.shape[2]
            padded = tf.pad(images, [[0, 0], [crop_padding] * 2, [crop_padding] * 2, [0, 0]])
            images = tf.image.random_crop(padded, tf.shape(images), seed=seed)
            images = tf.ensure_shape(images, [None, height, width, images.shape[-1]])
        for layer in layers:
            images = layer(images, training=True)
        for mixer in mixers:
            mixed = mixer({"images": images, "labels": targets}, training=True)
            images, targets = mixed["images"], mixed["labels"]
        return images, targets

    return augment


def chain(*functions):
    """Composes batch functions left to right, skipping None."""
    functions = [function for function in functions if function is not None]
    if not functions:
        return None

    def chained(features, targets):
        for function in functions:
            features, targets = function(features, targets)
        return features, targets

    return chained
