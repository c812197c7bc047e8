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
            images = _random_windows(padded, height, width, seed)
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


def _random_windows(images, height, width, seed):
    """A `height` x `width` window of each image at its own random offset (one draw per image, not per batch).

    Args:
        images (tf.Tensor): (b, H, W, c), at least `height` x `width`.
        height (int | tf.Tensor): window height.
        width (int | tf.Tensor): window width.
        seed (int): offset seed.

    Returns:
        tf.Tensor: (b, height, width, c).
    """
    import tensorflow as tf

    count, full_height, full_width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    offsets = tf.random.uniform([count, 2], seed=seed)
    top = tf.cast(offsets[:, 0] * tf.cast(full_height - height + 1, tf.float32), tf.int32)
    left = tf.cast(offsets[:, 1] * tf.cast(full_width - width + 1, tf.float32), tf.int32)
    windows = tf.gather(images, top[:, None] + tf.range(height)[None, :], axis=1, batch_dims=1)
    windows = tf.gather(windows, left[:, None] + tf.range(width)[None, :], axis=2, batch_dims=1)
    static = [side if isinstance(side, int) else None for side in (height, width)]
    return tf.ensure_shape(windows, [None, *static, images.shape[-1]])


def _stack_pair(images, masks):
    """Images and masks as one (b, h, w, c + 1) float tensor, so that geometric changes move both."""
    import tensorflow as tf

    return tf.concat([images, tf.cast(masks, images.dtype)[..., None]], axis=-1)


def paired_geometric(flip=True, rotate90=True, crop_padding=0, seed=0):
    """Builds a batch augmenter that moves images and their dense targets (masks) identically.

    Image and mask are stacked along the channel axis and transformed together, so a pixel's
    label always follows the pixel: random horizontal / vertical flips, random transposes (with
    flips these give all eight 90-degree rotations and mirrors), and pad-and-crop shifts.

    Args:
        flip (bool): random left-right and up-down flips.
        rotate90 (bool): random transposes (square images only; ignored otherwise).
        crop_padding (int): pad by this many pixels (reflecting the image) and crop back at a random offset.
        seed (int): augmentation seed.

    Returns:
        Callable | None: `(images, masks) -> (images, masks)` for (b, h, w, c) images and (b, h, w)
        integer masks, or None when every option is off.
    """
    import tensorflow as tf

    if not flip and not rotate90 and not crop_padding:
        return None

    def maybe(condition_seed, transformed, original):
        batch = tf.shape(original)[0]
        chosen = tf.random.uniform([batch, 1, 1, 1], seed=seed + condition_seed) < 0.5
        return tf.where(chosen, transformed, original)

    def augment(images, masks):
        channels = images.shape[-1]
        stacked = _stack_pair(images, masks)
        if flip:
            stacked = maybe(1, tf.reverse(stacked, axis=[2]), stacked)
            stacked = maybe(2, tf.reverse(stacked, axis=[1]), stacked)
        if rotate90 and images.shape[1] is not None and images.shape[1] == images.shape[2]:
            stacked = maybe(3, tf.transpose(stacked, [0, 2, 1, 3]), stacked)
        if crop_padding:
            padding = [[0, 0], [crop_padding] * 2, [crop_padding] * 2, [0, 0]]
            stacked = _random_windows(
                tf.pad(stacked, padding, mode="REFLECT"), tf.shape(stacked)[1], tf.shape(stacked)[2], seed + 4
            )
        images = tf.ensure_shape(stacked[..., :channels], images.shape)
        masks = tf.ensure_shape(tf.cast(tf.round(stacked[..., channels]), masks.dtype), masks.shape)
        return images, masks

    return augment


def paired_random_crop(size, crops=1, seed=0):
    """Builds a batch function that cuts random `size` x `size` crops out of whole images and their masks.

    Each epoch then sees new crops of every image (fixed tiles show the same ones every epoch), the
    training-data side of the U-Net recipe (Ronneberger et al. 2015).

    Args:
        size (int): crop side in pixels (at most the images' smaller side).
        crops (int): crops per image: a batch of b images becomes b * crops crops.
        seed (int): augmentation seed.

    Returns:
        Callable: `(images, masks) -> (crops, crop masks)` for (b, h, w, c) images and (b, h, w) masks.
    """
    import tensorflow as tf

    def augment(images, masks):
        channels = images.shape[-1]
        stacked = _random_windows(tf.repeat(_stack_pair(images, masks), crops, axis=0), size, size, seed + 31)
        return stacked[..., :channels], tf.cast(tf.round(stacked[..., channels]), masks.dtype)

    return augment


def paired_elastic(sigma, grid=3, seed=0):
    """Builds a batch augmenter that bends images and their masks with the same smooth random warp.

    The elastic deformation of the U-Net paper (Ronneberger et al. 2015): displacements drawn on a
    coarse `grid` x `grid` lattice (Gaussian, `sigma` pixels), interpolated bicubically to every pixel;
    images are resampled bilinearly and masks at the nearest pixel, so a mask keeps its class indices.
    Coordinates beyond the border take the edge pixel.

    Args:
        sigma (float): standard deviation of the lattice displacements in pixels (0 = off).
        grid (int): lattice points per side (at least 2); fewer points give smoother warps.
        seed (int): augmentation seed.

    Returns:
        Callable | None: `(images, masks) -> (images, masks)` for (b, h, w, c) images and (b, h, w)
        integer masks, or None when `sigma` is 0.
    """
    import tensorflow as tf

    if not sigma:
        return None
    if grid < 2:
        raise ValueError(f"the elastic lattice needs at least 2 points per side, got {grid}.")

    def augment(images, masks):
        channels = images.shape[-1]
        stacked = _stack_pair(images, masks)
        count, height, width = tf.shape(stacked)[0], tf.shape(stacked)[1], tf.shape(stacked)[2]
        lattice = tf.random.normal([count, grid, grid, 2], stddev=sigma, seed=seed + 41)
        displacement = tf.image.resize(lattice, [height, width], method="bicubic")
        rows = tf.cast(tf.range(height), tf.float32)[None, :, None] + displacement[..., 0]
        columns = tf.cast(tf.range(width), tf.float32)[None, None, :] + displacement[..., 1]
        rows = tf.clip_by_value(rows, 0.0, tf.cast(height - 1, tf.float32))
        columns = tf.clip_by_value(columns, 0.0, tf.cast(width - 1, tf.float32))

        def pixels(row_index, column_index):
            return tf.gather_nd(stacked, tf.stack([row_index, column_index], axis=-1), batch_dims=1)

        top, left = tf.floor(rows), tf.floor(columns)
        bottom = tf.minimum(top + 1, tf.cast(height - 1, tf.float32))
        right = tf.minimum(left + 1, tf.cast(width - 1, tf.float32))
        down, across = (rows - top)[..., None], (columns - left)[..., None]
        top, left, bottom, right = (tf.cast(edge, tf.int32) for edge in (top, left, bottom, right))
        upper = pixels(top, left) * (1 - across) + pixels(top, right) * across
        lower = pixels(bottom, left) * (1 - across) + pixels(bottom, right) * across
        warped = upper * (1 - down) + lower * down
        nearest = pixels(tf.cast(tf.round(rows), tf.int32), tf.cast(tf.round(columns), tf.int32))
        warped_images = tf.ensure_shape(warped[..., :channels], images.shape)
        warped_masks = tf.ensure_shape(tf.cast(tf.round(nearest[..., channels]), masks.dtype), masks.shape)
        return warped_images, warped_masks

    return augment


def photometric(brightness=0.0, contrast=0.0, seed=0):
    """Builds a batch augmenter that changes pixel values only, leaving the targets untouched.

    Safe for any task whose targets do not depend on intensity (masks, classes): a per-image
    random brightness offset and contrast factor around the image mean, clipped to [0, 1].
    Chain `gaussian_noise` after it for sensor noise.

    Args:
        brightness (float): max absolute brightness offset (images in [0, 1]).
        contrast (float): max relative contrast change.
        seed (int): augmentation seed.

    Returns:
        Callable | None: `(images, targets) -> (images, targets)`, or None when both are 0.
    """
    import tensorflow as tf

    if not brightness and not contrast:
        return None

    def augment(images, targets):
        per_image = [tf.shape(images)[0], 1, 1, 1]
        if contrast:
            mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
            factor = tf.random.uniform(per_image, 1 - contrast, 1 + contrast, seed=seed + 11)
            images = (images - mean) * factor + mean
        if brightness:
            images = images + tf.random.uniform(per_image, -brightness, brightness, seed=seed + 12)
        return tf.clip_by_value(images, 0.0, 1.0), targets

    return augment


def token_dropout(rate, seed=0, key=None, unknown_id=1):
    """Builds a batch function that replaces random tokens with the out-of-vocabulary id.

    Word dropout: the model cannot lean on any single word, the text analogue of Cutout.
    Padding (id 0) is never touched.

    Args:
        rate (float): probability of replacing each real token (0 = off).
        seed (int): augmentation seed.
        key (str | None): the feature to augment when features are a dict (e.g. "encoder_inputs").
        unknown_id (int): the out-of-vocabulary id (1 for `keras.layers.TextVectorization`).

    Returns:
        Callable | None: the batch function, or None when `rate` is 0.
    """
    import tensorflow as tf

    if not 0 <= rate < 1:
        raise ValueError(f"token dropout rate must be in [0, 1), got {rate}.")
    if not rate:
        return None
    generator = tf.random.Generator.from_seed(seed)

    def drop(token_ids):
        hit = generator.uniform(tf.shape(token_ids)) < rate
        return tf.where(hit & (token_ids != 0), tf.cast(unknown_id, token_ids.dtype), token_ids)

    def augment(features, *rest):
        if key is None:
            return (drop(features), *rest)
        return (dict(features, **{key: drop(features[key])}), *rest)

    return augment


def gaussian_noise(stddev, key=None, seed=0):
    """Builds a batch augmenter adding Gaussian noise to standardised numeric features (tabular, sensors).

    Args:
        stddev (float): noise standard deviation in standardised units (0 = off).
        key (str | None): the feature-dict key to perturb (e.g. "numeric"); None when features are one tensor.
        seed (int): augmentation seed.

    Returns:
        Callable | None: the batch function, or None when `stddev` is 0.
    """
    import tensorflow as tf

    if not stddev:
        return None

    def perturb(values):
        return values + tf.random.normal(tf.shape(values), stddev=stddev, seed=seed, dtype=values.dtype)

    def augment(features, targets):
        if key is None:
            return perturb(features), targets
        return dict(features, **{key: perturb(features[key])}), targets

    return augment


def oversample(pair, ratio, seed=0):
    """Repeats positive (label 1) rows until positives are `ratio` times the negatives (training data only).

    Args:
        pair (tuple): `(features, labels)` with features an array or a dict of arrays and 0/1 labels.
        ratio (float): wanted positives / negatives (e.g. 0.2); 0 or a ratio already reached changes nothing.
        seed (int): sampling seed.

    Returns:
        tuple: the enlarged, shuffled `(features, labels)`.
    """
    import numpy as np

    from shared.data import examples

    features, labels = pair
    positives = np.flatnonzero(labels == 1)
    wanted = int(ratio * (len(labels) - len(positives)))
    if not ratio or not len(positives) or wanted <= len(positives):
        return pair
    generator = np.random.default_rng(seed)
    extra = generator.choice(positives, wanted - len(positives), replace=True)
    order = generator.permutation(np.concatenate([np.arange(len(labels)), extra]))
    return examples.take(features, order), labels[order]


def add_noise(waveform, snr_db, generator):
    """Adds white noise at a given signal-to-noise ratio (NumPy, for offline audio copies).

    Args:
        waveform (np.ndarray): mono samples, shape (n,).
        snr_db (float): wanted ratio of signal power to noise power, in dB.
        generator (np.random.Generator): noise source.

    Returns:
        np.ndarray: the noisy float32 waveform.
    """
    import numpy as np

    power = float(np.mean(np.square(waveform))) or 1e-10
    noise = generator.standard_normal(len(waveform)) * np.sqrt(power / 10 ** (snr_db / 10))
    return (waveform + noise).astype("float32")


def speed_pitch(waveform, sample_rate, speed=1.0, semitones=0.0):
    """Speed perturbation (resampling: tempo and pitch move together, as in Kaldi) and pitch shift.

    Args:
        waveform (np.ndarray): mono samples, shape (n,).
        sample_rate (int): its rate in Hz.
        speed (float): playback speed factor (1.1 = 10% faster and higher).
        semitones (float): extra pitch shift keeping the tempo (librosa phase vocoder; slower).

    Returns:
        np.ndarray: the perturbed float32 waveform (its length changes with `speed`).
    """
    import librosa

    if speed != 1.0:
        waveform = librosa.resample(waveform, orig_sr=sample_rate * speed, target_sr=sample_rate, res_type="soxr_hq")
    if semitones:
        waveform = librosa.effects.pitch_shift(waveform, sr=sample_rate, n_steps=semitones)
    return waveform.astype("float32")


def audio_waveform(speed=0.0, semitones=0.0, snr_db=(), seed=0):
    """Builds a random waveform perturber for offline audio copies (speaker- and channel-like variation).

    Waveform changes need features recomputed, so they make extra training copies once, before
    training, rather than running per batch; `audio_spectrogram` adds the cheap per-batch part.

    Args:
        speed (float): max relative speed change: factors drawn from [1 - speed, 1 + speed] (0 = off).
        semitones (float): max pitch shift either way (0 = off).
        snr_db (tuple[float, float]): noise SNR range in dB, drawn uniformly (empty = no noise).
        seed (int): perturbation seed.

    Returns:
        Callable: `(waveform, sample_rate, key) -> waveform`; its random draws depend only on `seed` and
        `key` (e.g. a clip's identity and copy number), so copies are reproducible in any order.
    """
    import zlib

    import numpy as np

    def perturb(samples, sample_rate, key):
        generator = np.random.default_rng([seed, zlib.crc32(str(key).encode())])
        samples = speed_pitch(
            samples,
            sample_rate,
            speed=1 + generator.uniform(-speed, speed),
            semitones=generator.uniform(-semitones, semitones) if semitones else 0.0,
        )
        if snr_db:
            samples = add_noise(samples, generator.uniform(*snr_db), generator)
        return samples

    return perturb


def audio_spectrogram(time_shift=0, time_masks=0, time_mask_width=0, frequency_masks=0, frequency_mask_width=0, seed=0):
    """Builds a per-batch spectrogram augmenter: random circular time shift and SpecAugment masks.

    Features are (batch, frames, bins, channels), standardised, so masks fill with 0 (the mean).
    The shift is circular: centred clips have silence at both ends, so rolling moves the word.

    Args:
        time_shift (int): max shift in frames, either way (0 = off).
        time_masks (int): time masks per example.
        time_mask_width (int): max frames per time mask.
        frequency_masks (int): frequency masks per example.
        frequency_mask_width (int): max bins per frequency mask.
        seed (int): augmentation seed.

    Returns:
        Callable | None: `(features, targets) -> (features, targets)`, or None when every option is off.
    """
    import tensorflow as tf

    if not time_shift and not (time_masks and time_mask_width) and not (frequency_masks and frequency_mask_width):
        return None

    def mask(features, axis, max_width, mask_seed):
        batch, size = tf.shape(features)[0], tf.shape(features)[axis]
        width = tf.random.uniform([batch, 1], 0, max_width + 1, dtype=tf.int32, seed=mask_seed)
        fraction = tf.random.uniform([batch, 1], seed=mask_seed + 1)
        start = tf.cast(fraction * tf.cast(size - width + 1, tf.float32), tf.int32)
        positions = tf.range(size)[None, :]
        hidden = (positions >= start) & (positions < start + width)
        hidden = hidden[:, :, None, None] if axis == 1 else hidden[:, None, :, None]
        return tf.where(hidden, tf.zeros_like(features), features)

    def augment(features, targets):
        if time_shift:
            frames = tf.shape(features)[1]
            shifts = tf.random.uniform(
                [tf.shape(features)[0], 1], -time_shift, time_shift + 1, dtype=tf.int32, seed=seed
            )
            features = tf.gather(features, tf.math.floormod(tf.range(frames)[None, :] - shifts, frames), batch_dims=1)
        for index in range(time_masks if time_mask_width else 0):
            features = mask(features, 1, time_mask_width, seed + 10 + 2 * index)
        for index in range(frequency_masks if frequency_mask_width else 0):
            features = mask(features, 2, frequency_mask_width, seed + 50 + 2 * index)
        return features, targets

    return augment
