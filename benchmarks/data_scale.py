"""Benchmark: memory and speed of training on image folders of growing size (streamed through tf.data).

Generates class folders of N JPEG photos (10 classes of textured 64 px pictures; N = 2,000 and 16,000
by default, any sizes with --sizes), trains one epoch of vision_classification's small ResNet on each
in a child process, and reports each child's peak resident memory (`os.wait4`'s rusage, the whole
process: Python, TensorFlow, MLflow and the data) and examples per second. Target: the peak at the
largest size is at most 1.15x the peak at the smallest, i.e. memory does not grow with the dataset.

Needs no team data: the pictures are generated (and kept in --folder for reuse). Prints progress to
stderr and one JSON line on stdout:
    python -m benchmarks.data_scale [--sizes 2000,16000] [--image-size 64] [--folder DIR] [--set key=value ...]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEAM_DATA = False  # the photos are generated: any number of them, without ../shared/data
CLASSES = 10
# One epoch of a small ResNet: the data path, not the model, is what is measured.
SETTINGS = ["epochs=1", "base_filters=16", "batch_size=64", "validation_fraction=0.1", "test_fraction=0.1"]


def make_folder(root, count, size):
    """Writes `count` JPEGs in `CLASSES` class folders (kept between runs: files are only added)."""
    import numpy as np
    from PIL import Image

    generator = np.random.default_rng(0)
    rows, columns = np.mgrid[0:size, 0:size] / size
    written = 0
    for index in range(count):
        label = index % CLASSES
        path = root / f"class_{label}" / f"{index}.jpg"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        # a class-specific stripe frequency under colour noise: learnable, and JPEG-sized like photos
        stripes = np.sin(2 * np.pi * (label + 1) * (rows * np.cos(label) + columns * np.sin(label)))
        pixels = 127 + 60 * stripes[..., None] + generator.normal(0, 30, (size, size, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(path, quality=90)
        written += 1
    return written


def child(folder, settings):
    """Trains once on `folder` in this process and prints the run's figures as JSON."""
    import tasks
    from pipelines import config, runner

    task = tasks.get("vision_classification")
    resolved = config.resolve(task, data=str(folder), assignments=settings)
    result = runner.run(task, resolved, experiment="benchmark_data_scale", promote="never")
    print(
        json.dumps(
            {
                "train_seconds": result.train_seconds,
                "train_examples": result.train_examples,
                "accuracy": result.metrics["accuracy"],
            }
        )
    )


def measure(folder, settings, store):
    """Runs `child` in a subprocess; returns its figures and its peak resident memory in MB."""
    environment = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{store}/mlflow.db", TF_CPP_MIN_LOG_LEVEL="2")
    command = [
        sys.executable,
        "-m",
        "benchmarks.data_scale",
        "--child",
        str(folder),
        *(part for item in settings for part in ("--set", item)),
    ]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, cwd=ROOT)  # cwd: `-m` finds it
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        sys.exit(f"training on {folder} failed (exit status {status >> 8})")
    figures = json.loads(output.decode().strip().splitlines()[-1])
    return figures, usage.ru_maxrss / 1024  # Linux reports kilobytes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,16000", help="comma-separated image counts (default 2000,16000)")
    parser.add_argument("--image-size", type=int, default=64, help="side of the generated JPEGs (default 64)")
    parser.add_argument("--folder", help="where the generated folders are kept (default: a temporary folder)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        return child(arguments.child, arguments.set)
    sizes = [int(size) for size in arguments.sizes.split(",")]
    settings = [*SETTINGS, f"image_size={arguments.image_size}", *arguments.set]
    with tempfile.TemporaryDirectory() as scratch:
        base = pathlib.Path(arguments.folder or scratch)
        results = {}
        for size in sizes:
            folder = base / f"photos_{size}_{arguments.image_size}px"
            print(f"writing {make_folder(folder, size, arguments.image_size)} new JPEGs into {folder}", file=sys.stderr)
            store = pathlib.Path(scratch) / f"store_{size}"
            store.mkdir()
            figures, peak = measure(folder, settings, store)
            results[size] = {
                "peak_rss_mb": round(peak, 1),
                "examples_per_second": round(figures["train_examples"] / figures["train_seconds"], 1),
                "train_seconds": round(figures["train_seconds"], 1),
                "accuracy": round(figures["accuracy"], 4),
            }
            print(f"{size} images: {results[size]}", file=sys.stderr)
    smallest, largest = min(sizes), max(sizes)
    ratio = results[largest]["peak_rss_mb"] / results[smallest]["peak_rss_mb"]
    print(
        json.dumps(
            {
                "task": "vision_classification",
                "data": f"generated JPEG class folders, {arguments.image_size} px",
                "metrics": {"peak_rss_ratio": round(ratio, 3), "target_ratio": 1.15, "target_met": ratio <= 1.15},
                "train_seconds": round(sum(item["train_seconds"] for item in results.values()), 1),
                "examples_per_second": results[largest]["examples_per_second"],
                "sizes": {str(size): item for size, item in results.items()},
                "settings": settings,
                "machine": f"{os.cpu_count()} CPUs",
            }
        )
    )


if __name__ == "__main__":
    main()
