"""The predictors' preprocessing in TensorFlow ops, for exported graphs that take raw inputs, and the
contracts of exports that take tensors (what `preprocessing.json` tells a caller to do).

Each graph function here matches a numpy/Pillow path of the predictors (`shared.images.decode` + `fit`,
`shared.data.text.tokenize_text`), and `python -m pipelines export` checks the match on every export.
"""

import io
import re

import numpy as np


def image_contract(size, channels):
    """What a caller does to an image before a tensor-input export of an image model.

    Args:
        size (tuple[int, int]): the model's (height, width).
        channels (int): 1 or 3.
    """
    convert = (
        "grayscale: the mean of R, G and B"
        if channels == 1
        else "colour: RGB, a grayscale image repeated in three channels"
    )
    return {
        "steps": [
            "decode the file (PNG, JPEG, BMP, GIF, TIFF, WebP) and apply its EXIF orientation; drop transparency",
            "scale to float32 in [0, 1]: 8-bit / 255, 16-bit / 65535",
            f"convert to {channels} channel(s), {convert}",
            f"resize to {size[0]}x{size[1]} (height x width), bilinear with antialiasing "
            "(tf.image.resize(image, size, antialias=True)), unless it already has that size",
            "stack into a batch (n, height, width, channels)",
        ]
    }


def decode_images(encoded, channels, size):
    """Encoded images -> the model's batch, as `shared.images.decode` then `fit` do it.

    EXIF orientation is not applied (TensorFlow's decoders ignore it): send upright images.

    Args:
        encoded (tf.Tensor): (n,) strings of PNG, JPEG, BMP or GIF bytes.
        channels (int): 1 or 3.
        size (tuple[int, int]): (height, width).

    Returns:
        tf.Tensor: float32 (n, height, width, channels) in [0, 1].
    """
    import tensorflow as tf

    def one(data):
        image = tf.io.decode_image(data, dtype=tf.float32, expand_animations=False)  # [0, 1] for 8 and 16 bits
        stored = tf.shape(image)[-1]
        image = tf.cond(stored < 3, lambda: image[..., :1], lambda: image[..., :3])  # transparency dropped
        if channels == 1:
            image = tf.reduce_mean(image, axis=-1, keepdims=True)
        else:
            image = tf.cond(tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image)
        image = tf.ensure_shape(image, [None, None, channels])
        same = tf.reduce_all(tf.shape(image)[:2] == tf.constant(size, tf.int32))
        image = tf.cond(same, lambda: image, lambda: tf.image.resize(image, size, antialias=True))
        return tf.ensure_shape(image, [*size, channels])

    return tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([*size, channels], tf.float32))


def encoded_images(inputs):
    """Raw image inputs (paths, bytes, pixel arrays) -> their encoded bytes; arrays become PNG files."""
    from PIL import Image

    from shared import images

    encoded = []
    for raw in inputs:
        if isinstance(raw, (bytes, bytearray)):
            encoded.append(bytes(raw))
        elif isinstance(raw, (list, np.ndarray)):
            pixels = (np.clip(images.decode(raw), 0, 1) * 255).round().astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, "PNG")
            encoded.append(buffer.getvalue())
        else:
            with open(raw, "rb") as handle:
                encoded.append(handle.read())
    return encoded


def image_variants(example):
    """The logged example as PNG bytes, plus that image twice as large in colour: the graph's resize and
    channel conversion then run in the parity check too."""
    from PIL import Image

    (first,) = encoded_images(example[:1])
    picture = Image.open(io.BytesIO(first))
    buffer = io.BytesIO()
    picture.convert("RGB").resize((2 * picture.width, 2 * picture.height), Image.NEAREST).save(buffer, "PNG")
    return [first, buffer.getvalue()]


def text_contract(vocabulary_file, sequence_length, punctuation):
    """What a caller does to a string before a tensor-input export of a text model."""
    marks = (
        "removed (replaced by a space)"
        if punctuation == "strip"
        else "kept, each mark a token of its own (spaces around it)"
    )
    return {
        "steps": [
            "lower-case (Unicode); replace HTML line breaks <br> by a space",
            f'punctuation !"#$%&()*+,-./:;<=>?@[\\]^_`{{|}}~¿¡«»“”… {marks}',
            "collapse runs of whitespace to one space and strip both ends",
            f"split on spaces; each token's id is its line number (from 0) in {vocabulary_file}, 1 ([UNK]) "
            "when absent; line 0 is padding (id 0)",
            f"truncate to {sequence_length} ids and pad with 0 at the end to {sequence_length}",
        ],
        "vocabulary_file": vocabulary_file,
        "sequence_length": sequence_length,
    }


def tabular_contract(spec, layout):
    """What a caller does to table rows before a tensor-input export (see `shared.data.tabular.fit_tabular`).

    Args:
        spec (dict): the fitted preprocessing (`numeric` and `categorical` column lists).
        layout (list[str]): the task's own last steps (how the encoded columns become the model's inputs).
    """
    return {
        "steps": [
            "numeric columns, in the order of numeric_columns: a missing value becomes the column's median, "
            "then (value - mean) / std",
            "categorical columns: the value as text (spaces stripped, a whole number 3.0 as 3, missing or empty as "
            "<missing>); its index is its position in the column's vocabulary + 1, and 0 when it is not there",
            *layout,
        ],
        "numeric_columns": spec["numeric"],
        "categorical_columns": spec["categorical"],
    }


def tensor_name(column):
    """A table column's name as TensorFlow accepts it for an input (other characters become `_`)."""
    name = re.sub(r"[^A-Za-z0-9_.]", "_", column)
    return name if re.match(r"[A-Za-z0-9.]", name) else f"c{name}"


def table_graph(spec):
    """The tabular preprocessing of `shared.data.tabular.apply_tabular` in TensorFlow ops, on one input per column.

    Numbers arrive as float32 (NaN when missing), categories as strings (empty when missing).

    Args:
        spec (dict): from `shared.data.tabular.fit_tabular`.

    Returns:
        tuple[dict, Callable, Callable, list]: the inputs (tensor name -> (shape, dtype)); the graph, a dict
        of column tensors -> `{"numeric": (n, k) float32, "categorical": (n, c) int32}` (no `categorical`
        without such columns); the feed, rows (dicts) -> column arrays; and the lookup tables to keep.
    """
    import tensorflow as tf

    from shared.data.tabular import category_text

    numeric = [(tensor_name(item["name"]), item) for item in spec["numeric"]]
    categorical = [(tensor_name(item["name"]), item) for item in spec["categorical"]]
    tables = [
        tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(item["vocabulary"], tf.string), tf.range(1, len(item["vocabulary"]) + 1, dtype=tf.int64)
            ),
            0,
        )
        for _, item in categorical
    ]
    inputs = {name: ((None,), "float32") for name, _ in numeric}
    inputs.update({name: ((None,), "string") for name, _ in categorical})

    def graph(raw):
        columns = [
            (tf.where(tf.math.is_nan(raw[name]), item["median"], raw[name]) - item["mean"]) / item["std"]
            for name, item in numeric
        ]
        encoded = {
            "numeric": tf.stack(columns, axis=1) if columns else tf.zeros([tf.shape(next(iter(raw.values())))[0], 0])
        }
        if categorical:
            keys = [tf.strings.strip(raw[name]) for name, _ in categorical]
            keys = [tf.where(key == "", "<missing>", key) for key in keys]
            encoded["categorical"] = tf.cast(
                tf.stack([table.lookup(key) for table, key in zip(tables, keys)], 1), tf.int32
            )
        return encoded

    def feed(records):
        values = {
            name: np.array(
                [np.nan if row[item["name"]] in (None, "") else float(row[item["name"]]) for row in records], "float32"
            )
            for name, item in numeric
        }
        values.update(
            {
                name: np.array([category_text(row[item["name"]]) for row in records], dtype=object)
                for name, item in categorical
            }
        )
        return values

    return inputs, graph, feed, tables
