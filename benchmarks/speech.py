"""Speech benchmark on the Free Spoken Digit Dataset (../shared/data/fsdd/recordings).

Two trainings with the same recipe: a random stratified 80/10/10 split, and a speaker split
(test = theo, validation = lucas, train = the other four speakers), which measures new voices.
Targets: accuracy >= 0.99 (random) and >= 0.95 (speaker). Reference: the TensorFlow simple-audio
recipe reaches 0.937 and 0.30. Model selection uses validation loss only; the test split is read once.
Measured 2026-11-25 on 2 cores shared with five other jobs: random 0.990, speaker 0.960 (macro F1 0.960),
560 s and 310 s of training, 16.7 min wall for both runs including feature extraction and logging.

Progress goes to stderr; the last stdout line is one JSON object:
    {"task", "data", "metrics", "train_seconds", "examples_per_second"}.

Usage: python benchmarks/speech.py [--set KEY=VALUE ...]   (MLflow store: MLFLOW_TRACKING_URI, else a temp one)
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "fsdd" / "recordings"

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
SPLITS = {
    "random": ["validation_fraction=0.1", "test_fraction=0.1"],
    "speaker": ["test_groups=theo", "validation_groups=lucas"],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    arguments = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"error: {DATA} is absent; the benchmark needs the team's ../shared/data folder.")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tempfile.mkdtemp(prefix='speech_bench_')}/mlflow.db")

    import tasks
    from pipelines import config, runner

    task = tasks.get("speech")
    metrics, train_seconds, examples = {}, 0.0, 0
    started = time.perf_counter()
    for name, split in SPLITS.items():
        resolved = config.resolve(task, data=str(DATA), assignments=RECIPE + split + arguments.set)
        print(f"[speech benchmark] {name} split: training ...", file=sys.stderr, flush=True)
        result = runner.run(task, resolved, experiment="speech_benchmark")
        metrics[f"{name}_accuracy"] = round(result.metrics["accuracy"], 4)
        metrics[f"{name}_macro_f1"] = round(result.metrics["macro_f1"], 4)
        train_seconds += result.train_seconds
        examples += result.train_examples
        print(f"[speech benchmark] {name} split: accuracy {result.metrics['accuracy']:.4f}, "
              f"train {result.train_seconds:.0f} s, run {result.run_id}", file=sys.stderr, flush=True)
    metrics["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps({"task": "speech", "data": str(DATA), "metrics": metrics, "train_seconds": round(train_seconds, 1),
                      "examples_per_second": round(examples / max(train_seconds, 1e-9), 1)}))


if __name__ == "__main__":
    main()
