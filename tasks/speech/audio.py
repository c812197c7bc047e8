"""Reading audio for speech: decoding files and bytes within bounds, checking, resampling, trimming, fixing length."""

import os

import numpy as np

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
SILENCE_PEAK = 1e-4  # -80 dBFS: quieter than any microphone's noise floor, so nothing was recorded
# Seconds read beyond the clip's duration on each side of a recording's centre, for trimming to find
# the word in: one-word recordings often start early and stop late (push-to-talk, a recorder's
# pre-roll) and are read whole, while an hour-long file costs a few seconds of audio, not an hour.
TRIM_MARGIN_SECONDS = 2.0
# What one read may allocate: above the highest rate audio interfaces record at, or more channels than
# a microphone array has, the header is lying or the file is not a recording of speech.
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 16


def _wav_header_rate(head):
    """The sample rate written in a WAV header (the bytes of the file's start), or None if not a WAV."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    position = head.find(b"fmt ")
    return int.from_bytes(head[position + 12 : position + 16], "little") if position >= 0 else None


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
                raise ValueError(
                    f"{name} declares {rate} Hz and {channels} channel(s); readable audio has 1 to "
                    f"{MAX_SAMPLE_RATE:,} Hz and 1 to {MAX_CHANNELS} channels."
                )
            wanted = -1 if seconds is None else int(seconds * rate)
            if 0 <= wanted < frames and audio.seekable():
                audio.seek((frames - wanted) // 2)
            samples = audio.read(wanted, dtype="float32", always_2d=True)
    except (RuntimeError, TypeError) as error:  # soundfile's LibsndfileError is a RuntimeError
        reason = str(error).rstrip(".")
        raise ValueError(f"{name} is not a readable audio file (WAV, FLAC, OGG or MP3): {reason}.") from None
    return samples.mean(axis=1), int(rate)


def sample_window(raw, name, settings):
    """The centre `read_seconds` of a sample list (or 1-D array) at the model's rate, as float32."""
    from shared import inputs

    shape = inputs.outline(raw, 1)
    if len(shape) != 1:
        raise ValueError(
            f"{name}: expected a list of samples at {settings['sample_rate']} Hz, got an array of "
            f"{len(shape) if len(shape) <= 1 else 'several'} dimensions."
        )
    size = int(read_seconds(settings) * settings["sample_rate"])
    start = max(0, (shape[0] - size) // 2)
    return inputs.numbers(raw[start : start + size], name)


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
        raise ValueError(
            f"{name} is {1000 * len(samples) / settings['sample_rate']:.1f} ms long, shorter than "
            f"one {settings['window_ms']:g} ms analysis window."
        )
    if settings["trim_db"]:
        samples, _ = librosa.effects.trim(
            samples, top_db=settings["trim_db"], frame_length=settings["n_fft"], hop_length=settings["hop"]
        )
    return samples.astype("float32")


def fix_length(samples, size):
    """Centre-crops or centre-pads (with silence) a waveform to `size` samples, keeping the word in the middle."""
    if len(samples) >= size:
        start = (len(samples) - size) // 2
        return samples[start : start + size]
    before = (size - len(samples)) // 2
    return np.pad(samples, (before, size - len(samples) - before))
