"""Speech benchmark on the Free Spoken Digit Dataset (../shared/data/fsdd/recordings).

Two trainings with the same recipe: a random stratified 80/10/10 split, and a speaker split
(test = theo, validation = lucas, train = the other four speakers), which measures new voices.
Targets: accuracy >= 0.99 (random) and >= 0.95 (speaker). Reference: the TensorFlow simple-audio
recipe reaches 0.937 and 0.30. Model selection uses validation loss only; the test split is read once.
Measured 2026-11-25 on 2 cores shared with five other jobs: random 0.990, speaker 0.960 (macro F1 0.960),
560 s and 310 s of training, 16.7 min wall for both runs including feature extraction and logging.

Progress goes to stderr; the last stdout line is one JSON object (benchmarks/common.py).

Usage: python -m benchmarks.speech [--set KEY=VALUE ...]
"""

from benchmarks import common

DATA = common.DATA / "fsdd" / "recordings"

# FSDD is 8 kHz digits, under ~1 s once trimmed: keep the native rate, 0.8 s clips, and 20 ms frames
# (a digit still spans 15-40 frames) with one perturbed copy per clip, to train within minutes on 2 cores.
RECIPE = [
    r"filename_pattern=(?P<label>\d)_(?P<speaker>[a-z]+)_\d+\.wav",
    "sample_rate=8000",
    "duration=0.8",
    "window_ms=32",
    "hop_ms=20",
    "augment_copies=1",
    "epochs=20",
]
# Tried 2026-12-04 on the speaker split, best validation loss at seeds 0 / 1 / 2: three CNNs side by side
# with averaged logits (a prototype of nlp_sentiment's `ensemble`) 0.678 / 0.666 / 0.674 against 0.689 /
# 0.661 / 0.675 for one (test 0.950 / 0.950 / 0.946 against 0.946 / 0.950 / 0.946), at 2.4x the time: no
# clear gain, so not kept.
KEYS = ("accuracy", "macro_f1")


def main():
    common.run_protocols(
        "speech",
        [
            common.Protocol("random", DATA, RECIPE + ["validation_fraction=0.1", "test_fraction=0.1"], KEYS),
            common.Protocol("speaker", DATA, RECIPE + ["test_groups=theo", "validation_groups=lucas"], KEYS),
        ],
        description=__doc__.splitlines()[0],
    )


if __name__ == "__main__":
    main()
