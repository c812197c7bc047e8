"""Speech: spoken-word classification with a small CNN on librosa log-mel or MFCC features.

Data sources:
    embedded            generated "words" (8 pitch / formant / hiss contours) said by 6 synthetic speakers
                        with random pitch, speed, loudness, onset and background noise. Synthetic.
    tfds:NAME[:SPLIT]   e.g. tfds:speech_commands (12 keyword classes at 16 kHz; needs internet once).
    FOLDER              one subfolder of audio files per class; or, with `filename_pattern` set, flat files
                        labelled by a regular expression on the file name with a `label` group and an
                        optional `speaker` (or `group`) group, e.g. FSDD's `(?P<label>\\d)_(?P<speaker>[a-z]+)_\\d+`.
    FILE.csv            a manifest with columns `path,label[,group]` (or `speaker`); relative paths are
                        read from the CSV's folder.
Audio: WAV, FLAC, OGG or MP3 (whatever soundfile reads), any sample rate, mono or stereo (averaged).

Features: resample to `sample_rate`, trim leading and trailing silence, centre-pad or centre-crop to
`duration`, then a log-mel spectrogram or MFCCs (optionally with deltas), standardised per band with
training statistics. They are computed once per run, before training, with a progress bar; the logged
model runs the same `clip_features` on raw audio, so training and serving cannot drift apart. The
Keras model sees features only, so it trains on every backend.

Bad input: while reading a dataset, files that are not audio, empty, silent (peak below -80 dBFS),
shorter than one analysis window or with a sample rate of 0 are skipped with a warning naming each
(an error if nothing is left); at prediction time the same problems raise a one-line ValueError.
A `filename_pattern` without a `label` group and a class folder with no audio are errors.
"""

import dataclasses
import functools
import logging
import os
from collections.abc import Callable
import pathlib
import re

import numpy as np

from tasks import register
from shared.constraints import Choice, Count, Fraction, NonNegative, Positive, Size
from tasks.base import ClassificationTask, Splits, TaskConfig, search_space, softmax_head

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
FEATURES = ("logmel", "mfcc")
SILENCE_PEAK = 1e-4  # -80 dBFS: quieter than any microphone's noise floor, so nothing was recorded
# Seconds read beyond the clip's duration on each side of a recording's centre, for trimming to find
# the word in: one-word recordings often start early and stop late (push-to-talk, a recorder's
# pre-roll) and are read whole, while an hour-long file costs a few seconds of audio, not an hour.
TRIM_MARGIN_SECONDS = 2.0
# What one read may allocate: above the highest rate audio interfaces record at, or more channels than
# a microphone array has, the header is lying or the file is not a recording of speech.
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 16
logger = logging.getLogger(__name__)


@dataclasses.dataclass
class SpeechConfig(TaskConfig):
    epochs: int = 25  # the embedded words are learned in ~15; the FSDD benchmark uses 20
    label_smoothing: float = 0.1  # few, similar-sounding classes: softened targets calibrate better
    sample_rate: Count = 16000  # the speech standard (speech_commands); 8000 is enough for digits (FSDD)
    duration: Positive = 1.0  # seconds after centre pad/crop: one word fits in a second
    trim_db: NonNegative = 30.0  # drop leading/trailing audio this far below the peak so words are centred (0 = off)
    features: Choice(*FEATURES) = "logmel"  # log-mel spectrograms, or MFCCs (their cosine transform)
    n_mels: Count = 40  # mel bands: the usual keyword-spotting resolution
    n_mfcc: Count = 20  # cepstral coefficients kept when features=mfcc
    deltas: bool = False  # add first and second time derivatives as channels (classic for MFCCs)
    window_ms: Positive = 25.0  # analysis window: the standard speech frame
    hop_ms: Positive = 10.0  # frame step: 100 frames per second
    fmin: NonNegative = 20.0  # below any voice's pitch; drops hum and DC
    fmax: NonNegative = 0.0  # 0 means the Nyquist frequency (half of sample_rate)
    filename_pattern: str = ""  # regex on file names with a `label` group (and `speaker`/`group`) for flat folders
    split: Choice("random", "group") = "random"  # group group keeps every speaker in a single split (measures new voices)
    test_groups: str = ""  # comma-separated speakers/groups held out as the test split (empty: carved)
    validation_groups: str = ""  # comma-separated speakers/groups held out for validation (empty: carved)
    augment_copies: Size = 2  # perturbed copies of each training clip, computed once (waveform changes)
    speed: Fraction = 0.1  # +-10% speed (tempo and pitch together): cheap speaker-like variation
    pitch_semitones: NonNegative = 0.0  # extra pitch shift at constant tempo; ~30 ms per clip, so off by default
    noise_snr_db: tuple = (15.0, 40.0)  # white-noise SNR range in dB for the copies; () adds none
    time_shift_ms: NonNegative = 100.0  # per-batch random circular shift: words are not always centred in real use
    time_masks: Size = 2  # SpecAugment time masks per example
    time_mask_ms: NonNegative = 80.0  # max width of each time mask (a short syllable)
    frequency_masks: Size = 2  # SpecAugment frequency masks per example
    frequency_mask_bins: Size = 5  # max bands per frequency mask (1/8 of 40 mel bands)
    base_filters: Count = 16  # width of the first block; doubles per block (16-32-64-128 is ~100k parameters)
    blocks: Count = 4  # conv blocks, each halving time and frequency: 100x40 frames -> 6x2
    separable: bool = False  # depthwise-separable convolutions: ~5x fewer multiply-adds for small devices
    dropout: Fraction = 0.3  # before the classifier: small speech sets overfit to their speakers
    embedded_repeats: Count = 8  # utterances per word and speaker in the generated set (8 x 6 x 8 = 384)
    top_k: Count = 3  # classes returned per prediction
    search_space: dict = search_space(  # speaker overfitting against network width
        dropout=["float", 0.1, 0.5], base_filters=["choice", 8, 16, 32])

    def check(self):
        super().check()
        fmax = self.fmax or self.sample_rate / 2
        if not self.fmin < fmax <= self.sample_rate / 2:
            raise ValueError(f"need fmin < fmax <= sample_rate / 2 = {self.sample_rate / 2:g} Hz; got "
                             f"fmin={self.fmin}, fmax={self.fmax} (0 means sample_rate / 2).")
        snr = tuple(self.noise_snr_db)
        if snr and (len(snr) != 2 or snr[0] > snr[1]):
            raise ValueError(f"noise_snr_db must be [low_db, high_db] with low <= high, or [] for no noise; got {snr}.")
        if self.filename_pattern:
            try:
                compiled = re.compile(self.filename_pattern)
            except re.error as error:
                raise ValueError(f"filename_pattern '{self.filename_pattern}' is not a valid regular expression: "
                                 f"{error}.") from None
            if "label" not in compiled.groupindex:
                raise ValueError(f"filename_pattern '{self.filename_pattern}' has no named group `label`; write it "
                                 r"like '(?P<label>\d)_(?P<speaker>[a-z]+)_\d+\.wav'.")


def feature_settings(config):
    """Returns the JSON-friendly feature parameters saved in `Splits.info` and used at predict time."""
    fmax = config.fmax or config.sample_rate / 2
    window = int(round(config.sample_rate * config.window_ms / 1000))
    return {
        "sample_rate": config.sample_rate, "samples": int(round(config.duration * config.sample_rate)),
        "kind": config.features, "n_mels": config.n_mels, "n_mfcc": config.n_mfcc, "deltas": config.deltas,
        "window": window, "n_fft": 1 << max(0, window - 1).bit_length(),
        "hop": max(1, int(round(config.sample_rate * config.hop_ms / 1000))),
        "fmin": config.fmin, "fmax": fmax, "trim_db": config.trim_db, "window_ms": config.window_ms,
    }


def _wav_header_rate(head):
    """The sample rate written in a WAV header (the bytes of the file's start), or None if not a WAV."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    position = head.find(b"fmt ")
    return int.from_bytes(head[position + 12: position + 16], "little") if position >= 0 else None


def read_seconds(settings):
    """Returns:
        float: how many seconds of a file or a sample list are read: the clip's duration and the trim
        margin on both sides, taken around the recording's centre (where centre-cropping looks too).
    """
    return settings["samples"] / settings["sample_rate"] + 2 * TRIM_MARGIN_SECONDS


def read_audio(source, seconds=None):
    """Decodes one audio file (path or encoded bytes) to mono float32 samples, at most `seconds` of it.

    Args:
        source (str | bytes): the file's path or its bytes.
        seconds (float | None): read only this much around the recording's centre (see `read_seconds`);
            None reads it all.

    Returns:
        tuple[np.ndarray, int]: samples (n,) and the file's sample rate.

    Raises:
        ValueError: missing, empty or non-audio file, a sample rate of 0 or above `MAX_SAMPLE_RATE`, more
            than `MAX_CHANNELS` channels; the message names the file.
    """
    import io

    import soundfile

    name = "audio bytes" if isinstance(source, (bytes, bytearray)) else f"'{source}'"
    if isinstance(source, (bytes, bytearray)):
        head, opened = bytes(source[:64]), io.BytesIO(source)
    else:
        if not os.path.isfile(source):
            raise ValueError(f"{name}: no such audio file.")
        with open(source, "rb") as handle:
            head, opened = handle.read(64), source
    if not head:
        raise ValueError(f"{name} is empty (0 bytes); give a WAV, FLAC, OGG or MP3 recording.")
    if _wav_header_rate(head) == 0:
        raise ValueError(f"{name} has a sample rate of 0 in its WAV header; re-export it with its real rate.")
    try:
        with soundfile.SoundFile(opened) as audio:
            rate, channels, frames = audio.samplerate, audio.channels, audio.frames
            if not 0 < rate <= MAX_SAMPLE_RATE or not 0 < channels <= MAX_CHANNELS:
                raise ValueError(f"{name} declares {rate} Hz and {channels} channel(s); readable audio has 1 to "
                                 f"{MAX_SAMPLE_RATE:,} Hz and 1 to {MAX_CHANNELS} channels.")
            wanted = -1 if seconds is None else int(seconds * rate)
            if 0 <= wanted < frames and audio.seekable():
                audio.seek((frames - wanted) // 2)
            samples = audio.read(wanted, dtype="float32", always_2d=True)
    except (RuntimeError, TypeError) as error:  # soundfile's LibsndfileError is a RuntimeError
        reason = str(error).rstrip(".")
        raise ValueError(f"{name} is not a readable audio file (WAV, FLAC, OGG or MP3): {reason}.") from None
    return samples.mean(axis=1), int(rate)


def _sample_window(raw, name, settings):
    """The centre `read_seconds` of a sample list (or 1-D array) at the model's rate, as float32."""
    from shared import inputs

    shape = inputs.outline(raw, 1)
    if len(shape) != 1:
        raise ValueError(f"{name}: expected a list of samples at {settings['sample_rate']} Hz, got an array of "
                         f"{len(shape) if len(shape) <= 1 else 'several'} dimensions.")
    size = int(read_seconds(settings) * settings["sample_rate"])
    start = max(0, (shape[0] - size) // 2)
    return inputs.numbers(raw[start: start + size], name)


def prepare(samples, rate, settings, name="audio"):
    """Checks a waveform, resamples it to the feature rate and trims silence at both ends.

    Args:
        samples (np.ndarray): mono samples.
        rate (int): their sample rate in Hz.
        settings (dict): from `feature_settings`.
        name (str): how to name the clip in errors.

    Returns:
        np.ndarray: float32 samples at `settings["sample_rate"]`, of variable length.

    Raises:
        ValueError: no samples, a sample rate of 0, non-finite values, silence, or shorter than one window.
    """
    import librosa

    samples = np.asarray(samples, dtype="float32").reshape(-1)
    if rate is None or rate <= 0:
        raise ValueError(f"{name} has a sample rate of {rate}; give the rate the audio was recorded at.")
    if not samples.size:
        raise ValueError(f"{name} has no audio samples.")
    if not np.isfinite(samples).all():
        raise ValueError(f"{name} holds NaN or infinite samples; re-export the audio.")
    peak = float(np.abs(samples).max())
    if peak < SILENCE_PEAK:
        raise ValueError(f"{name} is silent (peak amplitude {peak:.1e}, below -80 dBFS); nothing to classify.")
    if rate != settings["sample_rate"]:
        samples = librosa.resample(samples, orig_sr=rate, target_sr=settings["sample_rate"], res_type="soxr_hq")
    if len(samples) < settings["window"]:
        raise ValueError(f"{name} is {1000 * len(samples) / settings['sample_rate']:.1f} ms long, shorter than "
                         f"one {settings['window_ms']:g} ms analysis window.")
    if settings["trim_db"]:
        samples, _ = librosa.effects.trim(samples, top_db=settings["trim_db"], frame_length=settings["n_fft"],
                                          hop_length=settings["hop"])
    return samples.astype("float32")


def fix_length(samples, size):
    """Centre-crops or centre-pads (with silence) a waveform to `size` samples, keeping the word in the middle."""
    if len(samples) >= size:
        start = (len(samples) - size) // 2
        return samples[start: start + size]
    before = (size - len(samples)) // 2
    return np.pad(samples, (before, size - len(samples) - before))


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
    power = np.abs(librosa.stft(samples, n_fft=settings["n_fft"], hop_length=settings["hop"],
                                win_length=settings["window"])) ** 2
    basis = _mel_basis(settings["sample_rate"], settings["n_fft"], settings["n_mels"], settings["fmin"],
                       settings["fmax"])
    mel = np.einsum("mf,ft->mt", basis, power)  # not BLAS `@`: its threads thrash on tiny products on a busy CPU
    features = librosa.power_to_db(mel, ref=np.max, top_db=80.0)  # relative to the clip's peak: loudness-free
    if settings["kind"] == "mfcc":
        features = librosa.feature.mfcc(S=features, n_mfcc=settings["n_mfcc"])
    channels = [features]
    if settings["deltas"]:
        channels += [librosa.feature.delta(features, order=1), librosa.feature.delta(features, order=2)]
    return np.stack(channels, axis=-1).transpose(1, 0, 2).astype("float32")


# Bump when `read_audio`, `prepare` or `clip_features` change, so that features cached by earlier code are
# recomputed (2: files are read at most `read_seconds` around their centre).
FEATURE_CACHE_VERSION = 2


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
    return Clip(f"file:{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}",
                lambda: (*read_audio(path, seconds), f"'{path}'"), copies, keep_clip)


def _memory_clip(key, samples, rate, name):
    """A maker of `Clip`s (`(copies, keep_clip) -> Clip`) for samples held in memory."""
    return functools.partial(Clip, key, lambda: (samples, rate, name))


def feature_folder(settings, perturbation):
    """The cache folder of features computed with these settings, beside the MLflow store."""
    import hashlib
    import json

    from shared import tracking

    key = json.dumps({"version": FEATURE_CACHE_VERSION, "features": settings, "perturbation": perturbation},
                     sort_keys=True)
    folder = tracking.store_folder() / "cache" / "speech" / hashlib.sha256(key.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save(path, array):
    """Writes an .npy atomically, so that a run reading the cache never sees half a file."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        np.save(handle, array)
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

    from shared import data

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
    with concurrent.futures.ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool, \
            data.progress(None, description, total=total) as bar:
        while chunk := list(itertools.islice(clips, 256)):  # a stream is read 256 clips at a time
            results += pool.map(one, chunk)
            bar.update(len(chunk))
    return results


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


def feature_step(info):
    """The tf.data decode of cached feature files: load, standardise with the training statistics."""
    import tensorflow as tf

    mean, std = np.asarray(info["mean"], "float32"), np.asarray(info["std"], "float32")

    def load(path, label):
        features = tf.numpy_function(lambda name: np.load(name.decode()), [path], tf.float32, stateful=False)
        return (tf.ensure_shape(features, info["input_shape"]) - mean) / std, label

    return lambda dataset: dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def _standardize(features, info):
    return (features - np.asarray(info["mean"], "float32")) / np.asarray(info["std"], "float32")


# Generated words: ("voiced", seconds, pitch start, pitch end, F1 start, F1 end, F2 start, F2 end),
# ("hiss", seconds) for a fricative, ("gap", seconds) for a pause. Pitch is relative to the speaker's.
WORDS = {
    "ah": [("voiced", 0.35, 1.0, 0.95, 750, 750, 1200, 1200)],
    "ee": [("voiced", 0.35, 1.0, 0.95, 300, 300, 2300, 2300)],
    "oo": [("voiced", 0.35, 1.0, 0.95, 320, 320, 850, 850)],
    "eye": [("voiced", 0.4, 1.0, 0.9, 750, 320, 1200, 2300)],
    "rise": [("voiced", 0.4, 0.85, 1.35, 600, 600, 1500, 1500)],
    "fall": [("voiced", 0.4, 1.35, 0.8, 600, 600, 1500, 1500)],
    "sa": [("hiss", 0.15), ("voiced", 0.3, 1.0, 0.9, 750, 750, 1200, 1200)],
    "ah_ee": [("voiced", 0.2, 1.0, 1.0, 750, 750, 1200, 1200), ("gap", 0.08),
              ("voiced", 0.2, 1.1, 0.9, 300, 300, 2300, 2300)],
}


def _syllable(part, rate, pitch, formant_scale, speed, generator):
    """One voiced syllable (harmonics shaped by three formants), hiss or pause."""
    count = max(1, int(part[1] / speed * rate))
    if part[0] == "gap":
        return np.zeros(count)
    position = np.linspace(0, 1, count)
    envelope = np.sin(np.pi * position) ** 0.5
    if part[0] == "hiss":
        spectrum = np.fft.rfft(generator.standard_normal(count))
        frequencies = np.fft.rfftfreq(count, 1 / rate)
        spectrum[(frequencies < 0.25 * rate) | (frequencies > 0.45 * rate)] = 0
        return np.fft.irfft(spectrum, count) * envelope
    _, _, pitch_start, pitch_end, f1_start, f1_end, f2_start, f2_end = part
    f0 = pitch * (pitch_start + (pitch_end - pitch_start) * position)
    formants = [(formant_scale * (f1_start + (f1_end - f1_start) * position), 90.0, 1.0),
                (formant_scale * (f2_start + (f2_end - f2_start) * position), 120.0, 0.7),
                (np.full(count, formant_scale * 2600), 160.0, 0.3)]
    harmonics = np.arange(1, int(min(rate / 2, 4000) / f0.max()))[:, None]  # formants lie below 4 kHz
    phase = 2 * np.pi * np.cumsum(f0) / rate
    coarse = np.linspace(0, count - 1, 64).astype(int)  # harmonic gains change slowly: compute 64 and interpolate
    gains = sum(gain * np.exp(-0.5 * ((harmonics * f0[coarse] - centre[coarse]) / width) ** 2)
                for centre, width, gain in formants)
    amplitude = np.stack([np.interp(np.arange(count), coarse, row) for row in gains])
    return (amplitude * np.sin(harmonics * phase)).sum(axis=0) * envelope


def generated_words(repeats, rate, seed, speakers=6):
    """Synthetic spoken words with speaker-like variation, for offline demos and tests.

    Each speaker has its own pitch (90-240 Hz) and vocal-tract length (formants x0.85-1.2); each
    utterance varies pitch (+-7%), speed (+-15%), loudness, onset within one second and noise (15-35 dB SNR).

    Args:
        repeats (int): utterances per word and speaker.
        rate (int): sample rate in Hz.
        seed (int): random seed.
        speakers (int): number of speakers.

    Returns:
        tuple[list[np.ndarray], np.ndarray, np.ndarray, list[str]]: one-second waveforms, labels,
        speaker names, class names.
    """
    from shared import augmentation

    generator = np.random.default_rng(seed)
    class_names = list(WORDS)
    waveforms, labels, names = [], [], []
    for speaker in range(speakers):
        pitch, formant_scale = generator.uniform(90, 240), generator.uniform(0.85, 1.2)
        for label, word in enumerate(class_names):
            for _ in range(repeats):
                speed = generator.uniform(0.85, 1.15)
                utterance_pitch = pitch * generator.uniform(0.93, 1.07)
                sound = np.concatenate([_syllable(part, rate, utterance_pitch, formant_scale, speed, generator)
                                        for part in WORDS[word]])
                sound = generator.uniform(0.1, 0.9) * sound / np.abs(sound).max()
                clip = np.zeros(rate)
                start = generator.integers(0, max(1, rate - len(sound)))
                clip[start: start + len(sound)] = sound[: rate - start]
                waveforms.append(augmentation.add_noise(clip, generator.uniform(15, 35), generator))
                labels.append(label)
                names.append(f"speaker{speaker}")
    return waveforms, np.array(labels), np.array(names), class_names


def _pattern_files(folder, pattern):
    """Labels (and groups) of the audio files of a flat folder from a regex on their file names (checked by
    `SpeechConfig.check`)."""
    compiled = re.compile(pattern)
    group_key = next((key for key in ("speaker", "group") if key in compiled.groupindex), None)
    paths, labels, groups, skipped = [], [], [], []
    for path in sorted(pathlib.Path(folder).rglob("*")):
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        match = compiled.search(path.name)
        if match is None or match.group("label") is None:
            skipped.append(path.name)
            continue
        paths.append(str(path))
        labels.append(match.group("label"))
        groups.append(match.group(group_key) if group_key else None)
    if skipped:
        logger.warning("skipping %d audio file(s) whose names do not match filename_pattern, e.g. %s",
                       len(skipped), ", ".join(skipped[:3]))
    if not paths:
        raise ValueError(f"no audio file ({', '.join(AUDIO_EXTENSIONS)}) in '{folder}' matches filename_pattern "
                         f"'{pattern}'.")
    return paths, labels, groups if group_key else None


def _manifest(path):
    """Paths, labels and optional groups of a CSV manifest `path,label[,group]`."""
    from shared import data

    columns = data.read_text_columns(path, {"path": "path,file,filename", "label": "label"})
    try:
        groups = data.read_text_columns(path, {"group": "group,speaker"})["group"].tolist()
    except ValueError:  # the group column is optional
        groups = None
    base = pathlib.Path(path).resolve().parent
    paths = []
    for row, relative in enumerate(columns["path"], start=2):
        resolved = base / str(relative).strip()
        if not resolved.is_file():
            raise ValueError(f"'{path}' line {row}: audio file '{relative}' does not exist (relative paths are "
                             f"read from {base}).")
        paths.append(str(resolved))
    if not paths:
        raise ValueError(f"'{path}' lists no audio files; expected rows of path,label[,group].")
    return paths, [str(label).strip() for label in columns["label"]], groups


@register
class Speech(ClassificationTask):
    name = "speech"
    config_class = SpeechConfig
    tfds_name = "speech_commands"
    input_column = "audio"
    input_kind = "file"
    input_extensions = AUDIO_EXTENSIONS
    key_params = ClassificationTask.key_params + ("features",)
    predict_chunk = 256  # features of 10,000 one-second clips are 160 MB, of 256 clips 4 MB
    quick_overrides = {"epochs": 2, "max_examples": 400, "augment_copies": 0, "embedded_repeats": 6}

    def load_data(self, config):
        from shared import augmentation, data
        from shared.data import examples

        settings = feature_settings(config)
        copies = max(0, config.augment_copies)
        perturbation = {"copies": copies, "speed": config.speed, "semitones": config.pitch_semitones,
                        "snr_db": list(config.noise_snr_db), "seed": config.seed}
        folder = feature_folder(settings, perturbation)
        perturb = augmentation.audio_waveform(speed=config.speed, semitones=config.pitch_semitones,
                                              snr_db=tuple(config.noise_snr_db), seed=config.seed)
        kind, argument = data.parse_source(config.data)
        if kind == "tfds":
            roles, class_names, name, synthetic = self._tfds_clips(argument, config, copies)
        else:
            sources, labels, groups, preset, class_names, name, synthetic = self._sources(config)
            train, validation, test = self._split(config, labels, groups, preset)
            train = train.cap(-(-config.max_examples // (1 + copies)), config.seed)
            roles = {role: ([sources[index](copies if role == "train" else 0, role == "test")
                             for index in split.features], split.targets, len(split))
                     for role, split in (("train", train), ("validation", validation), ("test", test))}
        found, failures = {}, []
        for role, (clips, labels, count) in roles.items():
            results = extract(clips, settings, folder, perturb, f"audio features ({role})", count)
            failures += [result for result in results if isinstance(result, ValueError)]
            labels = np.asarray(labels, "int64")  # a stream's labels are complete once its clips are read
            usable = [index for index, result in enumerate(results) if not isinstance(result, ValueError)]
            found[role] = ([path for index in usable for path in results[index]],
                           np.repeat(labels[usable], copies + 1 if role == "train" else 1))
        for failure in failures:
            logger.warning("skipping %s", failure)
        if not len(found["train"][0]):
            first = f"; first problem: {failures[0]}" if failures else ""
            raise ValueError(f"no usable training audio in '{config.data}'{first}")
        if not len(found["test"][0]):
            raise ValueError(f"the test split of '{config.data}' is empty; raise test_fraction or name test_groups.")
        mean, std = band_statistics(found["train"][0][:: copies + 1])  # the clips themselves, not their copies
        info = {"class_names": class_names, "top_k": config.top_k, "features": settings,
                "mean": mean.tolist(), "std": np.maximum(std, 1e-3).tolist(),
                "input_shape": list(np.load(found["train"][0][0]).shape)}
        step = feature_step(info)
        splits = [examples.Examples(np.array(found[role][0]), found[role][1], decode=step, origin="audio features")
                  for role in ("train", "validation", "test")]
        return Splits(*splits, info, config.data, name, synthetic)

    def _sources(self, config):
        """Lists the clips of a folder, a manifest or the generated words.

        Returns:
            tuple: clip makers (`(copies, keep_clip) -> Clip`), integer labels, groups (or None), preset
            split names per clip ("" = to carve), class names, dataset name, synthetic flag.
        """
        from shared import data

        kind, argument = data.parse_source(config.data)
        groups, preset, synthetic = None, None, False
        if kind == "embedded":
            waveforms, labels, groups, class_names = generated_words(config.embedded_repeats, config.sample_rate,
                                                                     config.seed)
            generator = f"embedded:{config.embedded_repeats}:{config.sample_rate}:{config.seed}"
            sources = [_memory_clip(f"{generator}:{index}", samples, config.sample_rate, f"generated clip {index}")
                       for index, samples in enumerate(waveforms)]
            return sources, labels, groups, preset, class_names, "generated_words", True
        if kind == "folder" and config.filename_pattern:
            paths, names, groups = _pattern_files(argument, config.filename_pattern)
        elif kind == "folder":
            root = pathlib.Path(argument)
            if not any(entry.is_dir() and not entry.name.startswith(".") for entry in root.iterdir()):
                raise ValueError(f"'{argument}' has no class subfolders; for flat files set filename_pattern, e.g. "
                                 r"--set 'filename_pattern=(?P<label>\d)_(?P<speaker>[a-z]+)_\d+\.wav'.")
            from shared import images

            paths, labels, class_names = images.class_folders(argument, extensions=AUDIO_EXTENSIONS)
            names = [class_names[label] for label in labels]
        elif kind in ("file", "csv") and argument.lower().endswith((".csv", ".tsv")):
            paths, names, groups = _manifest(argument)
        else:
            raise ValueError(f"speech cannot read '{config.data}'; give a class folder, a flat folder with "
                             "filename_pattern, a CSV manifest (path,label[,group]) or tfds:speech_commands.")
        class_names = sorted(set(names))
        lookup = {class_name: index for index, class_name in enumerate(class_names)}
        labels = np.array([lookup[label] for label in names])
        groups = None if groups is None else np.array([str(group) for group in groups])
        folder_name = pathlib.Path(argument).stem if kind != "folder" else pathlib.Path(argument).name
        seconds = read_seconds(feature_settings(config))  # as much of each file as prediction reads
        sources = [functools.partial(file_clip, path, seconds=seconds) for path in paths]
        return sources, labels, groups, preset, class_names, f"{kind}_{folder_name}", synthetic

    @staticmethod
    def _tfds_clips(argument, config, copies):
        """The clips of a TFDS audio dataset's splits, read as streams (no split is held in memory).

        Returns:
            tuple: role -> (clips, labels, count) with clips a generator that fills labels as it is read;
            class names, dataset name, synthetic flag.
        """
        from shared.data import tfds

        name, _, chosen = argument.partition(":")
        found = tfds.builder(name, config.tfds_data_dir, "--data embedded, a class folder, a flat folder with "
                             "filename_pattern or a CSV manifest", ("audio", "label"))
        rate = int(found.info.features["audio"].sample_rate)
        size = int(round(config.duration * rate))  # keyword sets hold one word per clip: keep its centre
        streams = dict(zip(("train", "validation", "test"), tfds.streams(found, chosen, ("audio", "label"), config)))
        streams["train"] = streams["train"].cap(-(-config.max_examples // (1 + copies)), config.seed)

        def clips(role, labels):
            stream = streams[role]
            identity = stream.describe()["digest"]
            for position, (samples, label) in enumerate(stream.index().as_numpy_iterator()):
                labels.append(label)
                scale = 32768.0 if samples.dtype == np.int16 else 1.0
                yield _memory_clip(f"tfds:{identity}:{position}", fix_length(samples / scale, size), rate,
                                   f"tfds:{name} {stream.split} #{position}")(copies if role == "train" else 0,
                                                                               role == "test")

        roles = {}
        for role in streams:
            labels = []
            roles[role] = (clips(role, labels), labels, len(streams[role]))
        return roles, list(found.info.features["label"].names), f"tfds_{name}", False

    @staticmethod
    def _split(config, labels, groups, preset):
        """Train / validation / test clip indices and labels: preset splits, named groups, then carving."""
        from shared import data
        from shared.data import examples

        preset = np.full(len(labels), "", dtype=object) if preset is None else preset.astype(object)
        for role, named in (("test", config.test_groups), ("validation", config.validation_groups)):
            wanted = [group.strip() for group in named.split(",") if group.strip()]
            if not wanted:
                continue
            if groups is None:
                raise ValueError(f"{role}_groups needs speaker/group ids: add a group column to the CSV manifest "
                                 "or a (?P<speaker>...) group to filename_pattern.")
            unknown = sorted(set(wanted) - set(groups))
            if unknown:
                raise ValueError(f"{role}_groups {unknown} not found; the data has groups {sorted(set(groups))}.")
            preset[np.isin(groups, wanted)] = role
        if config.split == "group" and groups is None:
            raise ValueError("split=group needs speaker/group ids: use a CSV manifest with a group column or a "
                             "filename_pattern with a (?P<speaker>...) group.")
        everything = examples.Examples(np.arange(len(labels)), np.asarray(labels))
        fixed = {role: everything.subset(np.flatnonzero(preset == role)) if (preset == role).any() else None
                 for role in ("validation", "test")}
        pool = preset == ""
        return data.carve(everything.subset(np.flatnonzero(pool)), config, validation=fixed["validation"],
                          test=fixed["test"], groups=groups[pool] if config.split == "group" else None)

    def build_model(self, config, info):
        import keras

        inputs = keras.Input(tuple(info["input_shape"]), name="features")
        x = inputs
        for block in range(config.blocks):
            filters = config.base_filters * 2**block
            # the first convolution sees 1-3 channels, where a depthwise split saves nothing
            if config.separable and block > 0:
                conv = keras.layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)
            else:
                conv = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)
            x = keras.layers.BatchNormalization(momentum=0.9)(conv(x))  # fast statistics for short trainings
            x = keras.layers.Activation("relu")(x)
            if min(x.shape[1], x.shape[2]) >= 2:
                x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = softmax_head(x, config.dropout, len(info["class_names"]))
        kind = "ds_cnn" if config.separable else "cnn"
        return keras.Model(inputs, outputs, name=f"{self.name}_{kind}")

    def train_map(self, config, info):
        from shared import augmentation

        frames_per_ms = 1 / (1000 * info["features"]["hop"] / info["features"]["sample_rate"])
        augment = augmentation.audio_spectrogram(
            time_shift=int(config.time_shift_ms * frames_per_ms), time_masks=config.time_masks,
            time_mask_width=int(config.time_mask_ms * frames_per_ms), frequency_masks=config.frequency_masks,
            frequency_mask_width=config.frequency_mask_bins, seed=config.seed,
        )
        return augmentation.chain(augment, self.eval_map(config, info))

    def evaluate(self, model, splits, config):
        """Accuracy, macro F1, confusion matrix and report, per-class recall, sample spectrograms."""
        from sklearn import metrics

        from shared import evaluation, plots

        from shared.data import examples

        names = splits.info["class_names"]
        probabilities, labels = examples.predict(model, splits.test, config.batch_size)
        result = evaluation.classification(labels, probabilities, names)
        predicted = probabilities.argmax(axis=1)
        recalls = metrics.recall_score(labels, predicted, labels=list(range(len(names))), average=None,
                                       zero_division=0)
        for index, (name, recall) in enumerate(zip(names, recalls)):
            if (labels == index).any():  # the recall of a class absent from the test split is undefined
                result.metrics[f"recall_{re.sub(r'[^0-9A-Za-z_.-]', '_', name)}"] = float(recall)
        shown = np.random.default_rng(config.seed).permutation(len(labels))[:12]
        titles = [f"true {names[labels[index]]} / pred {names[predicted[index]]}" for index in shown]
        result.figures["sample_spectrograms"] = plots.spectrogram_grid(splits.test.pick(shown)[0], titles)
        return result

    def input_example(self, splits):
        """The first test clip as a list of samples at the model's rate (its prepared waveform, cached)."""
        waveform = np.load(str(splits.test.features[0]).removesuffix("-0.npy") + "-clip.npy")
        return [np.round(waveform, 4).tolist()]

    def prepare_inputs(self, info, inputs):
        """Standardised features of raw inputs: file paths, encoded bytes, or sample lists at the model's rate."""
        settings = info["features"]
        batch = []
        for index, raw in enumerate(inputs):
            if isinstance(raw, (str, os.PathLike, bytes, bytearray)):
                samples, rate = read_audio(raw, read_seconds(settings))
                name = f"'{raw}'" if isinstance(raw, (str, os.PathLike)) else "audio bytes"
            else:
                name = f"input {index + 1}"
                samples, rate = _sample_window(raw, name, settings), settings["sample_rate"]
            batch.append(clip_features(prepare(samples, rate, settings, name), settings))
        return _standardize(np.stack(batch), info)

    def serving_signature(self, model, info):
        """Exports take standardised features: resampling, trimming and the log-mel are librosa, not TensorFlow."""
        settings = info["features"]
        serving = super().serving_signature(model, info)
        serving.preprocessing.update({"steps": [
            "read the audio as float32 samples; average the channels of stereo audio",
            f"resample to {settings['sample_rate']} Hz (librosa.resample, res_type='soxr_hq')",
            *([f"trim leading and trailing audio quieter than {settings['trim_db']:g} dB below the peak "
               f"(librosa.effects.trim, frame_length={settings['n_fft']}, hop_length={settings['hop']})"]
              if settings["trim_db"] else []),
            f"centre-crop or centre-pad with zeros to {settings['samples']} samples",
            f"power spectrogram |librosa.stft(n_fft={settings['n_fft']}, hop_length={settings['hop']}, "
            f"win_length={settings['window']})|**2; mel power = librosa.filters.mel(sr={settings['sample_rate']}, "
            f"n_fft={settings['n_fft']}, n_mels={settings['n_mels']}, fmin={settings['fmin']:g}, "
            f"fmax={settings['fmax']:g}) @ power",
            "librosa.power_to_db(mel, ref=np.max, top_db=80.0)",
            *([f"librosa.feature.mfcc(S=that, n_mfcc={settings['n_mfcc']})"] if settings["kind"] == "mfcc" else []),
            *(["channels: the features, librosa.feature.delta(order=1) and delta(order=2)"] if settings["deltas"]
              else ["one channel: the features"]),
            "transpose to (frames, bins, channels), then standardise: (features - mean) / std with the arrays below",
        ], "features": settings, "mean": info["mean"], "std": info["std"], "input_shape": info["input_shape"],
            "code": "tasks/speech.py: prepare() then clip_features(), the same functions the logged model runs"})
        return serving
