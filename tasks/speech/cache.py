"""The on-disk cache of speech features: one file per clip and perturbed copy, keyed by the feature settings."""

import dataclasses
import functools
import os
from collections.abc import Callable

import numpy as np

from tasks.speech.audio import fix_length, prepare, read_audio
from tasks.speech.features import clip_features

# Bump when `read_audio`, `prepare` or `clip_features` change, so that features cached by earlier code are
# recomputed (2: files are read at most `read_seconds` around their centre; 3: saved in C order, read raw).
FEATURE_CACHE_VERSION = 3


@dataclasses.dataclass
class Clip:
    """One clip to featurise: a stable identity (the cache key), how to read it, and what to keep.

    Attributes:
        key (str): identifies the audio: a file's path, size and modification time, or the generator
            settings and index of a generated clip, or the TFDS split and position.
        load (Callable[[], tuple[np.ndarray, int, str]]): returns the samples, their rate and a name for errors.
        copies (int): perturbed copies to featurise besides the clip itself (training clips).
        keep_clip (bool): also keep the prepared waveform (test clips: the model's input example).
    """

    key: str
    load: Callable
    copies: int = 0
    keep_clip: bool = False


def file_clip(path, copies=0, keep_clip=False, seconds=None):
    """A `Clip` of an audio file (at most `seconds` of it, see `read_audio`); its key changes when the file does."""
    stat = os.stat(path)
    return Clip(
        f"file:{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}",
        lambda: (*read_audio(path, seconds), f"'{path}'"),
        copies,
        keep_clip,
    )


def memory_clip(key, samples, rate, name):
    """A maker of `Clip`s (`(copies, keep_clip) -> Clip`) for samples held in memory."""
    return functools.partial(Clip, key, lambda: (samples, rate, name))


def feature_folder(settings, perturbation):
    """The cache folder of features computed with these settings, beside the MLflow store."""
    import hashlib
    import json

    from shared import tracking

    key = json.dumps(
        {"version": FEATURE_CACHE_VERSION, "features": settings, "perturbation": perturbation}, sort_keys=True
    )
    folder = tracking.store_folder() / "cache" / "speech" / hashlib.sha256(key.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save(path, array):
    """Writes an .npy atomically, so that a run reading the cache never sees half a file."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array, "<f4"))  # C order: `feature_step` reads the raw bytes
    os.replace(temporary, path)


def extract(clips, settings, folder, perturb, description, total):
    """Features of clips, read from the cache or computed in parallel (with a progress bar) and cached.

    Args:
        clips (Iterable[Clip]): the clips (a generator is read lazily, so streams stay streamed).
        settings (dict): from `feature_settings`.
        folder (pathlib.Path): from `feature_folder`.
        perturb (Callable): `(samples, rate, key) -> samples`, for the perturbed copies (see
            `shared.augmentation.audio_waveform`).
        description (str): the progress bar's label.
        total (int): how many clips, for the progress bar.

    Returns:
        list[list[str] | ValueError]: per clip, the feature files of the clip and its copies, or the
        error that made it unusable (not audio, silent, too short...).
    """
    import concurrent.futures
    import hashlib
    import itertools

    from shared.data.sources import progress

    def one(clip):
        digest = hashlib.sha256(clip.key.encode()).hexdigest()[:24]
        paths = [folder / f"{digest}-{copy}.npy" for copy in range(clip.copies + 1)]
        waveform = folder / f"{digest}-clip.npy"
        if all(path.exists() for path in paths) and (waveform.exists() or not clip.keep_clip):
            return [str(path) for path in paths]
        try:
            samples, rate, name = clip.load()
            prepared = prepare(samples, rate, settings, name)
        except ValueError as error:
            return error
        if clip.keep_clip:
            _save(waveform, fix_length(prepared, settings["samples"]))
        for copy, path in enumerate(paths):
            if not path.exists():
                heard = prepared if copy == 0 else perturb(prepared, settings["sample_rate"], f"{clip.key}:{copy}")
                _save(path, clip_features(heard, settings))
        return [str(path) for path in paths]

    clips, results = iter(clips), []
    with (
        concurrent.futures.ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool,
        progress(None, description, total=total) as bar,
    ):
        while chunk := list(itertools.islice(clips, 256)):  # a stream is read 256 clips at a time
            results += pool.map(one, chunk)
            bar.update(len(chunk))
    return results
