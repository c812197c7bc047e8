"""Explanations: which parts of an input one of a model's outputs rests on, on the TensorFlow or the JAX backend.

Two methods, one per situation:
    integrated gradients (Sundararajan et al. 2017): the input minus a baseline (zeros: a black image, the
        training mean of standardised numbers and spectrograms), times the gradient of the explained output
        averaged along the straight path from the baseline to the input. The attributions of an example sum
        to its output minus the baseline's (completeness), so a weight reads in the output's own unit:
        probability, score or cycles of RUL.
    Grad-CAM (Selvaraju et al. 2017): for an image model whose last convolutional feature map is the input
        of a global pooling layer of its own (not one nested inside a keras.applications backbone), the
        feature map weighted by the gradient of the class, positive part, scaled to the image.
Token ids are not differentiable: their integrated gradients run along the path from zero vectors to each
token's embedding, through the rest of the model (`token_integrated_gradients`).

Summaries per kind of input (`KINDS`): "image" a heatmap in [0, 1] (the sum over channels of |attribution|,
or Grad-CAM's), "table" a signed weight per feature, "sequence" signed weights per sensor x time step,
"spectrogram" signed weights per time frame x frequency bin (channels summed), "tokens" a signed weight per
token (summed over the embedding dimension). `explain` computes them, `figure` draws a few for a run
(`plots/explain/KIND.png`), `answers` turns them into each predict answer's `explanation` field (image and
spectrogram maps written as PNG files).

Segmentation models are explained per class (`class_saliency`, integrated gradients of each class's probability
over the pixels predicted as it): "segmentation" summaries are a heatmap in [0, 1] per class of the predicted mask,
which the task computes tile by tile as it predicts, for `figure` and `answers`. Models of ids (a recommender's
users, items and histories) are explained over the embeddings their output is computed from (`embedding_fields`):
a weight per field, a "table".
"""

import contextlib
import dataclasses
import hashlib
import pathlib

import numpy as np

KINDS = ("image", "table", "sequence", "spectrogram", "tokens", "segmentation")
# Riemann midpoints along the path: the paper finds 20-300 enough for completeness within 5%; 32 puts 8 examples
# in one gradient call of 256 rows, a few tenths of a second on a CPU for this project's models.
STEPS = 32
BATCH_ROWS = 256  # path points per gradient call: 8 examples x 32 steps, small enough for 224 px images' memory
TOP = 5  # sensors, time steps, frames and bins a predict answer names: what a reader takes in at a glance
# Image pixels per gradient call of a segmentation model (`class_saliency`), whose full-resolution feature maps hold
# tens of floats per pixel: 256 path points of 32 x 32 px, 4 of 256 x 256 px, under a gigabyte of activations.
BATCH_PIXELS = 2**18


@dataclasses.dataclass
class Explanation:
    """What `explain` found for a batch of inputs.

    Attributes:
        kind (str): one of `KINDS`.
        method (str): "integrated_gradients" or "grad_cam".
        summaries (np.ndarray): per example: image (h, w) heatmaps in [0, 1]; table (features,); sequence
            (sensors, time steps); spectrogram (frames, bins); tokens (positions,).
        outputs (np.ndarray): the explained output column of each example, or its explained output sequence
            (see `integrated_gradients`).
        tokens (np.ndarray | None): tokens: each position's word (n, positions), "" for padding; else None.
    """

    kind: str
    method: str
    summaries: np.ndarray
    outputs: np.ndarray
    tokens: np.ndarray | None = None


def gradient(function, inputs):
    """The gradient of a scalar `function(inputs)` with respect to `inputs`, on the TensorFlow or the JAX backend.

    Args:
        function (Callable): a float array -> a scalar tensor, in Keras or backend ops.
        inputs (np.ndarray): where the gradient is taken.

    Returns:
        np.ndarray: the gradient, shaped like `inputs`.

    Raises:
        ValueError: another backend.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        watched = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(watched)
            value = function(watched)
        return np.asarray(tape.gradient(value, watched))
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(function)(inputs))
    raise ValueError(f"input gradients are taken on the tensorflow or jax backend, not {backend}.")


def explained_outputs(outputs):
    """The output column each example's explanation is of: for more than two classes the predicted one, for two
    the second (positive) class, whose evidence a reader looks for; 0 for one sigmoid score or regression.

    Args:
        outputs (np.ndarray): the model's (or the task's served) outputs, (n,) or (n, columns).
    """
    outputs = np.asarray(outputs)
    if outputs.ndim < 2 or outputs.shape[1] == 1:
        return np.zeros(len(outputs), "int64")
    if outputs.shape[1] == 2:
        return np.ones(len(outputs), "int64")
    return outputs.argmax(axis=1)


def chosen(total, count, seed):
    """A seeded random choice of `count` positions among `total` (all of them when fewer), in order: the test
    examples a run explains."""
    return np.sort(np.random.default_rng(seed).choice(total, min(count, total), replace=False))


def _selected(predicted, columns):
    """The sum over the batch of each row's output `columns[row]` (summed over any axes between, e.g. pixels)."""
    import keras

    predicted = keras.ops.cast(predicted, "float32")
    mask = keras.ops.one_hot(columns, predicted.shape[-1])
    mask = keras.ops.reshape(mask, (mask.shape[0],) + (1,) * (len(predicted.shape) - 2) + (predicted.shape[-1],))
    return keras.ops.sum(predicted * mask)


def _objective(predicted, columns):
    """What the gradient is taken of, summed over the batch: each row's output `columns[row]` (see `_selected`),
    or for (n, positions) `columns` the log-probability of the row's output sequence: the sum over positions of
    the log of the probability given to the token `columns[row, position]`, -1 marking positions past its end."""
    import keras

    if columns.ndim == 1:
        return _selected(predicted, columns)
    predicted = keras.ops.cast(predicted, "float32")
    chosen = keras.ops.one_hot(np.maximum(columns, 0), predicted.shape[-1]) * (columns >= 0)[..., None]
    return keras.ops.sum(keras.ops.log(keras.ops.clip(predicted, 1e-12, 1.0)) * chosen)


def integrated_gradients(model, inputs, columns, key=None, baseline=None, steps=STEPS, batch_rows=BATCH_ROWS):
    """Integrated gradients of output `columns[i]` of `model` for each example `i` of `inputs`.

    Args:
        model (keras.Model): any callable Keras model (a `BatchPredictor` too) answering (n, ..., columns).
        inputs (np.ndarray | dict[str, np.ndarray]): the examples: the model's one float input, or its dict of
            inputs, of which `key` names the float one attributed (the others are held as they are).
        columns (np.ndarray): the output column explained per example (`explained_outputs`), shape (n,); or,
            for a model of sequences answering (n, positions, vocabulary), the output sequence whose
            log-probability is explained, a token id per position and -1 past its end, shape (n, positions).
        key (str | None): the attributed input of a dict; None when `inputs` is one array.
        baseline (np.ndarray | None): the reference input, broadcast to one example (e.g. a mean image);
            None: zeros.
        steps (int): Riemann midpoints along the path.
        batch_rows (int): path points per gradient call (whole examples at a time).

    Returns:
        np.ndarray: float32 attributions shaped like the attributed input.

    Raises:
        ValueError: `key` names no input of the dict, or fewer than one step.
    """
    if key is not None and key not in inputs:
        raise ValueError(f"the model's inputs {sorted(inputs)} hold no '{key}' to explain.")
    attributed = np.asarray(inputs if key is None else inputs[key], "float32")
    reference = np.zeros(attributed.shape[1:], "float32") if baseline is None else np.asarray(baseline, "float32")

    def forward(part, repeats):
        held = _held(inputs, key, part, repeats)
        return lambda points: model(points if key is None else {**held, key: points}, training=False)

    return _along_path(attributed, reference, columns, forward, steps, batch_rows)


def _held(inputs, key, part, repeats):
    """The inputs of examples `part` other than the attributed `key`, repeated for each of their `repeats` path
    points, as tensors (as the attributed input is: Keras refuses a dict mixing tensors and arrays); {} for a model
    of one input."""
    import keras

    if key is None:
        return {}
    return {
        name: keras.ops.convert_to_tensor(np.repeat(np.asarray(value)[part], repeats, axis=0))
        for name, value in inputs.items()
        if name != key
    }


def _along_path(attributed, reference, columns, forward, steps, batch_rows):
    """The integrated-gradients loop: the gradient of `_objective` at `steps` midpoints of the straight path from
    `reference` to each example of `attributed`, averaged, times their difference; whole examples per call, or one
    example's points in parts where they alone exceed `batch_rows` (a large image through a segmentation model).

    Args:
        attributed (np.ndarray): (n, ...) float32 values attributed.
        reference (np.ndarray): the baseline, broadcast to one example.
        columns (np.ndarray): what is explained per example (see `integrated_gradients`).
        forward (Callable): a slice of examples and a number of points per example -> a function of those path
            points (examples x points, ...) that returns the model's outputs for them.
        steps (int): Riemann midpoints along the path.
        batch_rows (int): path points per gradient call.

    Returns:
        np.ndarray: float32 attributions shaped like `attributed`.

    Raises:
        ValueError: fewer than one step.
    """
    if steps < 1:
        raise ValueError(f"integrated gradients need at least one step, got {steps}.")
    reference = np.broadcast_to(reference, attributed.shape[1:])
    alphas = ((np.arange(steps, dtype="float32") + 0.5) / steps).reshape((1, steps) + (1,) * reference.ndim)
    columns = np.asarray(columns, "int64")
    attributions = np.zeros_like(attributed)
    chunk, group = max(1, batch_rows // steps), max(1, min(steps, batch_rows))
    for start in range(0, len(attributed), chunk):
        part = slice(start, start + chunk)
        difference = attributed[part] - reference
        total = np.zeros_like(difference)
        for first in range(0, steps, group):
            points = alphas[:, first : first + group]
            path = (reference + points * difference[:, None]).reshape((-1,) + reference.shape)
            run, chosen = forward(part, points.shape[1]), np.repeat(columns[part], points.shape[1], axis=0)
            gradients = gradient(lambda values, run=run, chosen=chosen: _objective(run(values), chosen), path)
            total += gradients.reshape((len(difference), points.shape[1]) + reference.shape).sum(axis=1)
        attributions[part] = total / steps * difference
    return attributions


def token_embeddings(model, key=None):
    """The layers that turn the model's token ids into vectors: every layer the id input enters directly (one per
    member of an ensemble) that is an embedding, or a layer that holds one as `token_embedding` (a positional
    embedding, whose positions are then held, or a keras-hub backbone). Layers computing ids or masks from the
    ids (integer or boolean outputs) are left alone.

    Args:
        model (keras.Model): a functional model (a `BatchPredictor` too) taking token ids.
        key (str | None): the name of the token-id input of a model of several inputs; None: its first input.

    Returns:
        list[keras.layers.Layer]: the embedding layers, in the model's order.

    Raises:
        ValueError: the model has no such input, or its ids enter a layer whose vectors cannot be told apart.
    """
    import keras

    names = [tensor.name for tensor in model.inputs]
    if key is not None and key not in names:
        raise ValueError(f"the model's inputs {names} hold no '{key}' to explain.")
    entry = model.inputs[names.index(key) if key is not None else 0]
    found = []
    for layer in model.layers:
        for node in getattr(layer, "_inbound_nodes", []):
            if isinstance(layer, keras.layers.InputLayer) or not any(item is entry for item in node.input_tensors):
                continue
            inner = getattr(layer, "token_embedding", None)
            floats = [tensor for tensor in node.output_tensors if "float" in str(tensor.dtype)]
            if isinstance(inner, keras.layers.Layer):
                found.append(inner)
            elif len(floats) == len(node.output_tensors) == 1 and len(floats[0].shape) == len(entry.shape) + 1:
                found.append(layer)
            elif floats:
                raise ValueError(
                    f"the token ids '{entry.name}' enter layer '{layer.name}' ({type(layer).__name__}), whose token "
                    f"embedding explanations cannot reach; they cover an Embedding the ids enter directly."
                )
    if not found:
        raise ValueError(f"model '{model.name}' embeds no token ids of '{entry.name}' that explanations can reach.")
    return list(dict.fromkeys(found))


def token_integrated_gradients(model, inputs, columns, key=None, steps=STEPS, batch_rows=BATCH_ROWS):
    """Integrated gradients over token embeddings: token ids are not differentiable, so the path runs from zero
    vectors (no word at all) to each token's embedding, through the rest of the model, in every embedding the ids
    enter (`token_embeddings`: each member of an ensemble has its own); the weights of a token are summed over
    its embedding dimensions and embeddings. Padding (masked by the model) gets no weight.

    Args:
        model (keras.Model): a functional model taking token ids (`token_embeddings`).
        inputs (np.ndarray | dict[str, np.ndarray]): the token ids (n, positions), or the model's dict of
            inputs, of which `key` names the token ids (the others are held as they are).
        columns (np.ndarray): what is explained per example (see `integrated_gradients`).
        key (str | None): the token-id input of a dict; None when `inputs` is one array.
        steps (int): Riemann midpoints along the path.
        batch_rows (int): path points per gradient call (whole examples at a time).

    Returns:
        np.ndarray: float32 (n, positions) signed weights; an example's weights add up to its output minus the
        output with every token's embedding zero.

    Raises:
        ValueError: see `token_embeddings`.
    """
    import keras

    layers = token_embeddings(model, key)
    ids = np.asarray(inputs if key is None else inputs[key])
    vectors = [np.asarray(keras.ops.convert_to_numpy(layer(ids)), "float32") for layer in layers]
    bounds = np.cumsum([vector.shape[-1] for vector in vectors])[:-1].tolist()
    attributed = np.concatenate(vectors, axis=-1)

    def forward(part, repeats):
        fed = keras.ops.convert_to_tensor(np.repeat(ids[part], repeats, axis=0))
        held = _held(inputs, key, part, repeats)

        def run(points):
            with _embedded(layers, keras.ops.split(points, bounds, axis=-1) if bounds else [points]):
                return model(fed if key is None else {**held, key: fed}, training=False)

        return run

    reference = np.zeros(attributed.shape[1:], "float32")
    return _along_path(attributed, reference, columns, forward, steps, batch_rows).sum(axis=-1)


@contextlib.contextmanager
def _embedded(layers, vectors):
    """Within it, each layer answers its vectors instead of embedding its ids; masks are still computed from the
    ids, by the layer's own `compute_mask`, so padding stays masked."""
    import keras

    for layer, value in zip(layers, vectors):
        layer.call = lambda *arguments, value=value, layer=layer, **options: keras.ops.cast(value, layer.compute_dtype)
    try:
        yield
    finally:
        for layer in layers:
            del layer.call


def grad_cam_layer(model):
    """The model's own last global-pooling layer over a 2D feature map (a layer of the model itself, not of a
    nested backbone), or None."""
    import keras

    pooling = [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D))
    ]
    return pooling[-1] if pooling else None


def grad_cam(model, images, columns):
    """Grad-CAM heatmaps: where the last convolutional feature map drives each chosen class.

    Args:
        model (keras.Model): a classifier with a global-pooling layer of its own (`grad_cam_layer`) before its head.
        images (np.ndarray): a batch (n, h, w, c) in the model's input format.
        columns (np.ndarray): the class explained per image, shape (n,).

    Returns:
        np.ndarray: heatmaps (n, h, w) in [0, 1], resized to the image size.

    Raises:
        ValueError: the model has no such layer, or the backend is neither TensorFlow nor JAX.
    """
    import keras

    pooling = grad_cam_layer(model)
    if pooling is None:
        raise ValueError(f"Grad-CAM needs a global pooling layer of the model's own; '{model.name}' has none.")
    images = np.asarray(images, dtype="float32")
    features = np.asarray(keras.Model(model.inputs[0], pooling.input)(images, training=False))
    head = keras.Model(pooling.input, model.outputs[0])
    chosen = np.asarray(columns, "int64")
    gradients = gradient(lambda mapped: _selected(head(mapped, training=False), chosen), features)
    heatmaps = np.maximum((gradients.mean(axis=(1, 2), keepdims=True) * features).sum(axis=-1), 0)
    heatmaps = heatmaps / np.maximum(heatmaps.max(axis=(1, 2), keepdims=True), 1e-8)
    resized = keras.ops.image.resize(heatmaps[..., None], images.shape[1:3], data_format="channels_last")
    return np.clip(np.asarray(resized)[..., 0], 0, 1)


def heatmaps(attributions):
    """Image attributions (..., h, w, channels) as heatmaps (..., h, w) in [0, 1]: the sum over channels of
    |attribution|, over its largest value in each map."""
    summed = np.abs(attributions).sum(axis=-1)
    return summed / np.maximum(summed.max(axis=(-2, -1), keepdims=True), 1e-12)


def class_saliency(model, images, masks, classes):
    """Per-class integrated gradients of a segmentation model: for each image and each class its mask holds, the
    attributions of the class's probability summed over the pixels the mask gives it, from a black image.

    Args:
        model (keras.Model): images (n, h, w, c) -> per-pixel class probabilities (n, h, w, classes).
        images (np.ndarray): (n, h, w, c) images as the model takes them.
        masks (np.ndarray): (n, h, w) the class each pixel's output counts for (the predicted mask), -1 for
            pixels whose outputs count for none (padding, context kept out of a tile's answer).
        classes (int): the model's classes.

    Returns:
        np.ndarray: float32 attributions (n, classes, h, w, c), zeros for the classes a mask does not hold; those
        of class k add up to its summed probability over its pixels minus that at the black image.
    """
    images, masks = np.asarray(images, "float32"), np.asarray(masks)
    pairs = [(index, label) for index, mask in enumerate(masks) for label in np.unique(mask) if label >= 0]
    attributions = np.zeros((len(images), classes, *images.shape[1:]), "float32")
    if not pairs:
        return attributions
    index, label = (np.array(part) for part in zip(*pairs))
    regions = (masks[index] == label[:, None, None])[..., None].astype("float32")

    def regional(inputs, training=False):
        """The model's probabilities on the explained region; the image's other outputs count for nothing."""
        return model(inputs["image"], training=training) * inputs["region"]

    rows = max(1, BATCH_PIXELS // int(np.prod(masks.shape[1:])))
    found = integrated_gradients(
        regional, {"image": images[index], "region": regions}, label, key="image", batch_rows=rows
    )
    attributions[index, label] = found
    return attributions


def embedding_fields(model, inputs, columns, output=None):
    """Integrated gradients over the embeddings an output of a model of ids is computed from (user, item and history
    embeddings, biases): ids are not differentiable, so the path runs from all-zero vectors to the examples'
    embeddings, all of them together, through the layers above them. An embedding's attributions are summed over
    its vector: one weight per embedded id.

    Args:
        model (keras.Model): a functional model whose ids enter `keras.layers.Embedding` layers.
        inputs (dict[str, np.ndarray]): its inputs.
        columns (np.ndarray): the output column explained per example.
        output (str | None): the explained output of a model of several (a key of its output dict); None: its one.

    Returns:
        tuple[dict[str, np.ndarray], np.ndarray]: by embedding layer name, in the model's order, the weights of those
        that feed the output: (n,) for one id per example, (n, positions) for a sequence of ids; and each example's
        explained output with every embedding zero, from which its weights add up to its output.

    Raises:
        ValueError: no embedding feeds the output.
    """
    import keras

    target = model.output if output is None else model.output[output]
    fed = _feeding(target, [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)])
    if not fed:
        raise ValueError(
            f"no Embedding layer of model '{model.name}' feeds its output {output or ''}; nothing to explain."
        )
    embedded = keras.Model(model.input, {layer.name: layer.output for layer in fed})(inputs)  # a dict: one or many
    vectors = [np.asarray(embedded[layer.name], "float32") for layer in fed]
    head = keras.Model([layer.output for layer in fed], target)
    shapes = [vector.shape[1:] for vector in vectors]
    ends = np.cumsum([int(np.prod(shape)) for shape in shapes]).tolist()

    def joined(points, training=False):
        """The layers above the embeddings on path points, each embedding's part of them cut back to its shape."""
        parts = [points[:, start:end] for start, end in zip([0, *ends], ends)]
        return head([keras.ops.reshape(part, (-1, *shape)) for part, shape in zip(parts, shapes)], training=training)

    columns = np.asarray(columns, "int64")
    attributions = integrated_gradients(
        joined, np.concatenate([vector.reshape(len(vector), -1) for vector in vectors], 1), columns
    )
    parts = np.split(attributions, ends[:-1], axis=1)
    weights = {layer.name: part.reshape(-1, *shape).sum(axis=-1) for layer, part, shape in zip(fed, parts, shapes)}
    baseline = np.asarray(head([np.zeros((1, *shape), "float32") for shape in shapes], training=False)).reshape(1, -1)
    return weights, baseline[0, columns]


def _feeding(tensor, layers):
    """Those of `layers` that `tensor` is computed from, in their order (a walk up the functional graph)."""
    found, waiting, seen = set(), [tensor], set()
    while waiting:
        operation, node, _ = waiting.pop()._keras_history
        if id(operation) in seen:
            continue
        seen.add(id(operation))
        if any(operation is layer for layer in layers):
            found.add(id(operation))
            continue
        waiting.extend(operation._inbound_nodes[node].input_tensors)
    return [layer for layer in layers if id(layer) in found]


def explain(kind, model, inputs, columns, key=None, vocabulary=None):
    """Explains output `columns[i]` of each example and summarises it by the kind of input.

    Images are explained with Grad-CAM where the model has a global-pooling layer of its own
    (`grad_cam_layer`), else with integrated gradients; token ids with integrated gradients over their
    embeddings (`token_integrated_gradients`); every other kind with integrated gradients from a zero baseline
    (the training mean of standardised inputs).

    Args:
        kind (str): one of `KINDS`; "image" inputs are (n, h, w, c), "table" (n, features), "sequence"
            (n, time steps, sensors), "spectrogram" (n, frames, bins[, channels]), "tokens" (n, positions)
            token ids, 0 for padding.
        model (keras.Model): the model.
        inputs (np.ndarray | dict[str, np.ndarray]): the examples (a dict when `key` names the attributed one).
        columns (np.ndarray): the output column explained per example, or the output sequence (see
            `integrated_gradients`).
        key (str | None): see `integrated_gradients`.
        vocabulary (list[str] | None): tokens: the word of each token id, for the explanation's `tokens`.

    Returns:
        Explanation: the method and the summaries ("segmentation" comes from `class_saliency`, which the task
        runs tile by tile as it predicts).

    Raises:
        ValueError: an unknown kind, or token ids whose embedding cannot be reached (`token_embeddings`).
    """
    if kind == "segmentation":
        raise ValueError("segmentation is explained by class_saliency, window by window as the task predicts.")
    if kind not in KINDS:
        raise ValueError(f"unknown explanation kind '{kind}'; use one of {', '.join(KINDS)}.")
    columns = np.asarray(columns, "int64")
    if kind == "image" and key is None and grad_cam_layer(model) is not None:
        return Explanation(kind, "grad_cam", grad_cam(model, inputs, columns), columns)
    if kind == "tokens":
        ids = np.asarray(inputs if key is None else inputs[key])
        words = np.where(ids == 0, "", np.asarray(vocabulary, dtype=object)[ids])
        weights = token_integrated_gradients(model, inputs, columns, key=key)
        return Explanation(kind, "integrated_gradients", weights, columns, words)
    attributions = integrated_gradients(model, inputs, columns, key=key)
    if kind == "image":
        summaries = heatmaps(attributions)
    elif kind == "sequence":
        summaries = attributions.transpose(0, 2, 1)
    elif kind == "spectrogram" and attributions.ndim == 4:
        summaries = attributions.sum(axis=-1)
    else:
        summaries = attributions
    return Explanation(kind, "integrated_gradients", summaries, columns)


def figure(explanation, inputs, titles, names=None):
    """A figure of the explained examples (`shared.plots`): heatmaps over the images, the top features' weights,
    sensor x time or frame x bin maps, texts with each token shaded by its weight.

    Args:
        explanation (Explanation): from `explain`.
        inputs (np.ndarray | dict): the explained examples as `explain` took them (images drawn under their heatmaps).
        titles (list[str]): one per example.
        names (list[str] | None): the features' or sensors' names (tables, sequences; None numbers them), or the
            class names (segmentation).
    """
    from shared import plots

    title = f"{explanation.method.replace('_', ' ')} ({explanation.kind})"
    if explanation.kind == "tokens":
        kept = [words != "" for words in explanation.tokens]
        return plots.token_weights(
            [words[keep] for words, keep in zip(explanation.tokens, kept)],
            [weights[keep] for weights, keep in zip(explanation.summaries, kept)],
            titles,
            title=title,
        )
    if explanation.kind == "segmentation":
        return plots.class_saliency_rows(
            np.asarray(inputs), explanation.outputs, explanation.summaries, names, titles, title
        )
    if explanation.kind == "image":
        return plots.heatmap_overlays(np.asarray(inputs), explanation.summaries, titles, title=title)
    if explanation.kind == "table":
        count = explanation.summaries.shape[-1]
        return plots.attribution_bars(explanation.summaries, _names(names, count), titles, title=title)
    if explanation.kind == "sequence":
        count = explanation.summaries.shape[1]
        return plots.attribution_maps(
            explanation.summaries, titles, "time step", "sensor", _names(names, count), title=title
        )
    bins_by_frames = explanation.summaries.transpose(0, 2, 1)
    return plots.attribution_maps(bins_by_frames, titles, "frame", "frequency bin", title=title)


def _names(names, count):
    return list(names) if names is not None else [f"feature_{index}" for index in range(count)]


def _top(weights, labels):
    """The `TOP` labels of largest |weight|, with their signed weights rounded, largest first."""
    order = np.argsort(-np.abs(weights), kind="stable")[:TOP]
    return {str(labels[index]): round(float(weights[index]), 6) for index in order}


def answers(explanation, inputs, output_names, folder, sources, names=None):
    """Each example's `explanation` field for a predict answer.

    Every field holds `method` and `output` (the explained class or output). Tables add `weights` (every
    feature's signed weight, largest |weight| first); sequences the `TOP` `sensors` (summed over time) and
    `time_steps` (`t-0` the window's last, summed over sensors); spectrograms the `TOP` `frames` and `bins`
    and `map_path`, a PNG of the map over the spectrogram; images `heatmap_path`, a PNG of the heatmap over
    the image; tokens `tokens` (every token in order, as [token, weight] pairs) and the `TOP` `words` (a word's
    occurrences summed). PNG files go to `folder` (created when needed), named after each source.

    Args:
        explanation (Explanation): from `explain`.
        inputs (np.ndarray | dict): the examples as `explain` took them.
        output_names (list[str]): the model's output columns by name (class names, or the answer's key; the
            first names an explained output sequence).
        folder (str): where PNG files go.
        sources (list): the raw inputs (paths name their PNG file; others a digest of their content).
        names (list[str] | None): the features' or sensors' names.

    Segmentation fields hold `method` and `heatmap_paths` instead: by class name, a PNG of the heatmap of each
    class the predicted mask holds (`<source>-<digest>-<class index>.png`).

    Returns:
        list[dict]: one field per example.
    """
    fields = []
    for index, (summary, column) in enumerate(zip(explanation.summaries, explanation.outputs)):
        if explanation.kind == "segmentation":
            picture, labels = np.asarray(inputs)[index], np.unique(column)
            paths = {
                output_names[label]: _write(folder, sources[index], _overlay(picture, summary[label]), label)
                for label in labels
            }
            fields.append({"method": explanation.method, "heatmap_paths": paths})
            continue
        field = {"method": explanation.method, "output": str(output_names[int(column) if np.ndim(column) == 0 else 0])}
        if explanation.kind == "tokens":
            words, weights = explanation.tokens[index], summary
            words, weights = words[words != ""], weights[words != ""]
            field["tokens"] = [[str(word), round(float(weight), 6)] for word, weight in zip(words, weights)]
            summed = dict.fromkeys(words, 0.0)
            for word, weight in zip(words, weights):
                summed[word] += float(weight)
            field["words"] = _top(np.array(list(summed.values())), list(summed))
        elif explanation.kind == "table":
            order = np.argsort(-np.abs(summary), kind="stable")
            labels = _names(names, len(summary))
            field["weights"] = {labels[item]: round(float(summary[item]), 6) for item in order}
        elif explanation.kind == "sequence":
            field["sensors"] = _top(summary.sum(axis=1), _names(names, len(summary)))
            field["time_steps"] = _top(summary.sum(axis=0), [f"t-{step}" for step in range(summary.shape[1])][::-1])
        elif explanation.kind == "spectrogram":
            field["frames"] = _top(summary.sum(axis=1), [f"frame_{frame}" for frame in range(summary.shape[0])])
            field["bins"] = _top(summary.sum(axis=0), [f"bin_{band}" for band in range(summary.shape[1])])
            field["map_path"] = _write(folder, sources[index], _spectrogram_picture(np.asarray(inputs)[index], summary))
        else:
            field["heatmap_path"] = _write(folder, sources[index], _overlay(np.asarray(inputs)[index], summary))
        fields.append(field)
    return fields


def _overlay(picture, heatmap):
    """The image (h, w, 1 or 3) in [0, 1] with a jet-coloured heatmap blended over it."""
    import matplotlib

    base = np.repeat(picture, 3, axis=-1) if picture.shape[-1] == 1 else picture[..., :3]
    return 0.6 * np.clip(base, 0, 1) + 0.4 * matplotlib.colormaps["jet"](heatmap)[..., :3]


def _spectrogram_picture(spectrogram, weights):
    """The spectrogram (grey, low frequencies at the bottom) above its map (red for, blue against), as RGB."""
    import matplotlib

    spectrogram = spectrogram[..., 0] if spectrogram.ndim == 3 else spectrogram
    low, high = spectrogram.min(), spectrogram.max()
    grey = np.repeat(((spectrogram - low) / max(high - low, 1e-12))[..., None], 3, axis=-1)
    scale = max(float(np.abs(weights).max()), 1e-12)
    colored = matplotlib.colormaps["RdBu_r"](0.5 + 0.5 * weights / scale)[..., :3]
    return np.concatenate([colored, grey], axis=1).transpose(1, 0, 2)[::-1]  # bins up, frames across


def _write(folder, source, picture, suffix=None):
    """Writes an RGB picture in [0, 1] as `folder/<source's stem>-<digest>[-<suffix>].png`; returns the path."""
    from shared import images

    if isinstance(source, (str, pathlib.Path)):
        stem, content = pathlib.Path(source).stem or "input", str(source).encode()
    else:
        stem, content = "input", source if isinstance(source, bytes) else np.asarray(source).tobytes()
    name = "-".join([stem, hashlib.sha256(content).hexdigest()[:10], *([] if suffix is None else [str(suffix)])])
    path = pathlib.Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    images.save_png(np.clip(picture, 0, 1), path)
    return str(path)
