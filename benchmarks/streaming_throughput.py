"""Benchmark: training throughput of the streamed data path against the old in-RAM path, on one machine.

The in-RAM path (every split decoded into float32 numpy before training) lives on in commit b658c86,
the last one before streaming. Check it out beside this tree and give its folder:

    git worktree add ../old-path b658c86
    python -m benchmarks.streaming_throughput --baseline ../old-path [--epochs 3] [--data mnist,isbi]

Each dataset of ../shared/data trains the same settings with both trees, interleaved (old, new, old,
new) in fresh child processes with their own temporary MLflow stores, so a change of machine load
hits both alike. Reports per dataset the examples per second during `fit` of each path (the streamed
path decodes inside its first epoch, the old one before `fit`), the wall-clock seconds of the whole
run (loading included) and their ratios, and the test metric of each run (the same seed gives the
same split, so the figures should agree within noise). Progress goes to stderr; the last stdout line
is one JSON object.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import common

SHARED = common.ROOT.parent / "shared" / "data"
RUNS = {  # the settings of each task's benchmark script, shortened to a few epochs
    "mnist": (
        "vision_classification",
        SHARED / "mnist_test",
        [
            "validation_fraction=0.1",
            "test_fraction=0.2",
            "batch_size=128",
            "learning_rate=0.003",
            "base_filters=24",
            "rotation=0.03",
            "zoom=0.08",
            "crop_padding=2",
        ],
        "accuracy",
    ),
    "pneumonia": (
        "medical_imaging",
        SHARED / "pneumoniamnist" / "pneumoniamnist.npz",
        [
            "class_names=normal,pneumonia",
            "base_filters=16",
            "batch_size=64",
            "learning_rate=0.002",
            "rotation=0.03",
            "zoom=0.1",
            "contrast=0.1",
            "crop_padding=2",
        ],
        "roc_auc",
    ),
    "isbi": (
        "vision_segmentation",
        SHARED / "isbi2012_membrane" / "train",
        [
            "split=ordered",
            "test_fraction=0.2",
            "validation_fraction=0.1",
            "tile_size=128",
            "depth=4",
            "base_filters=8",
            "batch_size=8",
            "learning_rate=0.003",
            "class_names=membrane,cell",
            "shift=8",
        ],
        "mean_iou",
    ),
    "fsdd": (
        "speech",
        SHARED / "fsdd" / "recordings",
        [
            r"filename_pattern=(?P<label>\d)_(?P<speaker>[a-z]+)_\d+\.wav",
            "sample_rate=8000",
            "duration=0.8",
            "window_ms=32",
            "hop_ms=20",
            "augment_copies=1",
            "test_groups=theo",
            "validation_groups=lucas",
            "split=group",
        ],
        "accuracy",
    ),
}
CHILD = r"""
import json, sys
import tasks
from pipelines import config, runner
task = tasks.get(sys.argv[1])
resolved = config.resolve(task, data=sys.argv[2], assignments=sys.argv[3:])
result = runner.run(task, resolved, experiment="streaming_throughput", promote="never")
print(json.dumps({"examples_per_second": result.train_examples / result.train_seconds,
                  "train_seconds": result.train_seconds, "metrics": result.metrics}))
"""


def without_stray_masks(folder, scratch):
    """A copy (symbolic links) of a segmentation folder without `NAME_mask.png` files: the team's ISBI
    folder holds one that `predict` once wrote there, which the in-RAM path reads as an image without a mask."""
    for part in ("image", "label"):
        (scratch / part).mkdir(parents=True)
        for path in (folder / part).iterdir():
            if not path.stem.endswith("_mask"):
                (scratch / part / path.name).symlink_to(path)
    return scratch


def train(tree, task, data, settings):
    """Trains in a child process on `tree`'s code; returns its figures and wall-clock seconds."""
    with tempfile.TemporaryDirectory() as store:
        env = dict(
            os.environ,
            MLFLOW_TRACKING_URI=f"sqlite:///{store}/mlflow.db",
            TF_CPP_MIN_LOG_LEVEL="3",
            PYTHONPATH=str(tree),
        )
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, task, str(data), *settings], env=env, cwd=tree, capture_output=True, text=True
        )
        if done.returncode:
            raise SystemExit(f"{task} on {tree} failed:\n{done.stderr[-3000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        return {**row, "wall_seconds": time.monotonic() - began}


def mean(rows, key):
    return sum(row[key] for row in rows) / len(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="a checkout of the in-RAM path (commit b658c86)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (no early stopping)")
    parser.add_argument("--data", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--pairs", type=int, default=2, help="old/new pairs per dataset")
    options = parser.parse_args()
    trees = {"in_ram": os.path.abspath(options.baseline), "streamed": str(common.ROOT)}
    report, metrics, seconds, examples = {}, {}, 0.0, 0
    scratch = pathlib.Path(tempfile.mkdtemp())
    for name in options.data.split(","):
        task, data, settings, metric = RUNS[name]
        if task == "vision_segmentation":
            data = without_stray_masks(data, scratch / name)
        settings = [*settings, f"epochs={options.epochs}", f"early_stopping_patience={options.epochs}"]
        rows = {"in_ram": [], "streamed": []}
        for _ in range(options.pairs):
            for path, tree in trees.items():
                row = train(tree, task, data, settings)
                rows[path].append(row)
                print(
                    f"{name} {path}: {row['examples_per_second']:.1f} examples/s, {row['wall_seconds']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
        old, new = rows["in_ram"], rows["streamed"]
        report[name] = {
            "in_ram_examples_per_second": round(mean(old, "examples_per_second"), 1),
            "streamed_examples_per_second": round(mean(new, "examples_per_second"), 1),
            "fit_ratio": round(mean(new, "examples_per_second") / mean(old, "examples_per_second"), 3),
            "wall_ratio": round(mean(old, "wall_seconds") / mean(new, "wall_seconds"), 3),
            f"in_ram_{metric}": [round(row["metrics"][metric], 4) for row in old],
            f"streamed_{metric}": [round(row["metrics"][metric], 4) for row in new],
        }
        metrics[f"{name}_fit_ratio"] = report[name]["fit_ratio"]
        metrics[f"{name}_wall_ratio"] = report[name]["wall_ratio"]
        seconds += sum(row["train_seconds"] for row in new)
        examples += sum(row["examples_per_second"] * row["train_seconds"] for row in new)
    shutil.rmtree(scratch)
    print(
        json.dumps(
            {
                "task": ",".join(RUNS[name][0] for name in options.data.split(",")),
                "data": options.data,
                "metrics": metrics,
                "train_seconds": round(seconds, 1),
                "examples_per_second": round(examples / seconds, 1),
                "epochs": options.epochs,
                "per_dataset": report,
            }
        )
    )


if __name__ == "__main__":
    main()
