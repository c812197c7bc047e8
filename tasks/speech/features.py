"""Speech features: log-mel or MFCC spectrograms of prepared clips, their band statistics and tf.data decoding."""

import dataclasses
import functools

import numpy as np

from shared.fitted_state import LabelledState
from tasks.speech.audio import fix_length


@dataclasses.dataclass(kw_only=True)
class AudioState(LabelledState):
    """A keyword spotter's classes (`LabelledState`), its feature settings and the training clips' statistics.

    Attributes:
        features (dict): the log-mel settings (`feature_settings`), so predict computes the features trained on.
        mean (list[float]): each mel band's mean over the training clips.
        std (list[float]): each band's standard deviation (at least 1e-3).
        input_shape (list[int]): one clip's (frames, bands).
    """

    features: dict
    mean: list
    std: list
    input_shape: list


FEATURES = ("logmel", "mfcc")


def feature_settings(config):
    """Returns the JSON-friendly feature parameters saved in `Splits.info` and used at predict time."""
    fmax = config.fmax or config.sample_rate / 2
    window = int(round(config.sample_rate * config.window_ms / 1000))
    return {
        "sample_rate": config.sample_rate,
        "samples": int(round(config.duration * config.sample_rate)),
        "kind": config.features,
        "n_mels": config.n_mels,
        "n_mfcc": config.n_mfcc,
        "deltas": config.deltas,
        "window": window,
        "n_fft": 1 << max(0, window - 1).bit_length(),
        "hop": max(1, int(round(config.sample_rate * config.hop_ms / 1000))),
        "fmin": config.fmin,
        "fmax": fmax,
        "trim_db": config.trim_db,
        "window_ms": config.window_ms,
    }


@functools.lru_cache(maxsize=4)
def _mel_basis(sample_rate, n_fft, n_mels, fmin, fmax):
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)


def clip_features(samples, settings):
    """Log-mel or MFCC features of a prepared waveform (see `prepare`), unstandardised.

    Returns:
        np.ndarray: float32 (frames, bins, channels); channels are the features and, with deltas,
        their first and second time derivatives.
    """
    import librosa

    samples = fix_length(samples, settings["samples"])
    power = (
        np.abs(
            librosa.stft(samples, n_fft=settings["n_fft"], hop_length=settings["hop"], win_length=settings["window"])
        )
        ** 2
    )
    basis = _mel_basis(
        settings["sample_rate"], settings["n_fft"], settings["n_mels"], settings["fmin"], settings["fmax"]
    )
    mel = np.einsum("mf,ft->mt", basis, power)  # not BLAS `@`: its threads thrash on tiny products on a busy CPU
    features = librosa.power_to_db(mel, ref=np.max, top_db=80.0)  # relative to the clip's peak: loudness-free
    if settings["kind"] == "mfcc":
        features = librosa.feature.mfcc(S=features, n_mfcc=settings["n_mfcc"])
    channels = [features]
    if settings["deltas"]:
        channels += [librosa.feature.delta(features, order=1), librosa.feature.delta(features, order=2)]
    return np.stack(channels, axis=-1).transpose(1, 0, 2).astype("float32")


def band_statistics(paths):
    """Mean and standard deviation per band and channel over every frame of the given feature files."""
    total = squares = count = 0
    for path in paths:
        features = np.load(path).astype("float64")
        total = total + features.sum(axis=0)
        squares = squares + (features**2).sum(axis=0)
        count += len(features)
    mean = total / count
    return mean, np.sqrt(np.maximum(squares / count - mean**2, 0))


def mfcc_statistics(paths, settings, coefficients=20):
    """Each clip's MFCCs summarised over time: the classical keyword-spotting features of a linear baseline.

    Args:
        paths (list[str]): cached feature files (`clip_features`, unstandardised).
        settings (dict): the feature settings; log-mel features are turned into MFCCs (their cosine transform).
        coefficients (int): MFCCs kept (20: the usual speech choice).

    Returns:
        np.ndarray: (clips, 2 * coefficients) means and standard deviations over frames.
    """
    from scipy import fft

    rows = []
    for path in paths:
        features = np.load(path)[..., 0].astype("float64")  # (frames, bands): the features, not their deltas
        if settings["kind"] == "logmel":
            features = fft.dct(features, type=2, norm="ortho", axis=1)  # librosa's MFCC of a log-mel spectrogram
        features = features[:, :coefficients]
        rows.append(np.concatenate([features.mean(axis=0), features.std(axis=0)]))
    return np.array(rows)


def feature_step(info):
    """The tf.data decode of cached feature files: load, standardise with the training statistics."""
    import tensorflow as tf

    mean, std = np.asarray(info.mean, "float32"), np.asarray(info.std, "float32")

    def load(path, label):
        # The .npy is parsed in TF, not by np.load in a py_function: np.load's header parser
        # (ast.literal_eval) is not thread-safe on CPython 3.11 and the parallel map calls it from
        # many threads. `_save` writes format 1.0: 8 magic bytes, a little-endian uint16 header length.
        content = tf.io.read_file(path)
        header = tf.cast(tf.io.decode_raw(tf.strings.substr(content, 8, 2), tf.uint16)[0], tf.int32)
        values = tf.io.decode_raw(tf.strings.substr(content, 10 + header, tf.strings.length(content)), tf.float32)
        return (tf.reshape(values, info.input_shape) - mean) / std, label

    return lambda dataset: dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def standardize(features, info):
    return (features - np.asarray(info.mean, "float32")) / np.asarray(info.std, "float32")
