"""Generated speech: synthetic spoken words with speaker-like variation, for offline demos and tests."""

import numpy as np

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
    "ah_ee": [
        ("voiced", 0.2, 1.0, 1.0, 750, 750, 1200, 1200),
        ("gap", 0.08),
        ("voiced", 0.2, 1.1, 0.9, 300, 300, 2300, 2300),
    ],
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
    formants = [
        (formant_scale * (f1_start + (f1_end - f1_start) * position), 90.0, 1.0),
        (formant_scale * (f2_start + (f2_end - f2_start) * position), 120.0, 0.7),
        (np.full(count, formant_scale * 2600), 160.0, 0.3),
    ]
    harmonics = np.arange(1, int(min(rate / 2, 4000) / f0.max()))[:, None]  # formants lie below 4 kHz
    phase = 2 * np.pi * np.cumsum(f0) / rate
    coarse = np.linspace(0, count - 1, 64).astype(int)  # harmonic gains change slowly: compute 64 and interpolate
    gains = sum(
        gain * np.exp(-0.5 * ((harmonics * f0[coarse] - centre[coarse]) / width) ** 2)
        for centre, width, gain in formants
    )
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
                sound = np.concatenate(
                    [_syllable(part, rate, utterance_pitch, formant_scale, speed, generator) for part in WORDS[word]]
                )
                sound = generator.uniform(0.1, 0.9) * sound / np.abs(sound).max()
                clip = np.zeros(rate)
                start = generator.integers(0, max(1, rate - len(sound)))
                clip[start : start + len(sound)] = sound[: rate - start]
                waveforms.append(augmentation.add_noise(clip, generator.uniform(15, 35), generator))
                labels.append(label)
                names.append(f"speaker{speaker}")
    return waveforms, np.array(labels), np.array(names), class_names
