"""Benchmark: batch prediction against one model call per input, on 1,000 PNG digits.

Trains a `--quick` vision_classification model on the embedded digits into a temporary MLflow store,
writes 1,000 8x8 PNG files (the digits, cycled) and answers all of them, after a warm-up, two ways:
    batch   the `predict` command's path (`pipelines.predict.answers`, --batch-size inputs per call)
    single  1,000 `model.predict` calls with one input each, in the same process
Each way is timed --repeats times; the median counts. Target: the batch path is at least 5x faster
per input. It generates its own data, so it needs no ../shared/data folder.

Prints progress to stderr and one JSON line on stdout:
    python -m benchmarks.batch_predict [--images 1000] [--batch-size 64] [--repeats 3]
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

TEAM_DATA = False  # the images are generated from the embedded digits
TARGET_SPEEDUP = 5.0


def _median_seconds(function, repeats):
    """Runs `function` `repeats` times; returns the median wall time and its last result."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="PNG files to predict (default 1000)")
    parser.add_argument("--batch-size", type=int, default=64, help="inputs per call on the batch path (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timings of each path; the median counts (default 3)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
        import pandas as pd
        from sklearn import datasets

        import tasks
        from pipelines import config, predict, runner
        from shared import images, tracking

        task = tasks.get("vision_classification")
        print("training a --quick vision_classification model on the embedded digits", file=sys.stderr)
        result = runner.run(task, config.resolve(task, quick=True))
        model = tracking.load(result.model_uri)
        digits = datasets.load_digits()
        pictures = pathlib.Path(folder, "pictures")
        pictures.mkdir()
        for index in range(arguments.images):
            images.save_png(
                digits.images[index % len(digits.images)][..., None] / 16.0, pictures / f"digit_{index:05d}.png"
            )
        pairs = task.cli_inputs([str(pictures)])

        def batch():
            return [row["label"] for row in predict.answers(model, task, pairs, arguments.batch_size)]

        def single():
            return [model.predict(pd.DataFrame({task.input_column: [raw]}))[0]["label"] for _, raw in pairs]

        model.predict(pd.DataFrame({task.input_column: [raw for _, raw in pairs[: arguments.batch_size]]}))
        model.predict(pd.DataFrame({task.input_column: [pairs[0][1]]}))  # warm-up: both shapes traced
        print(f"timing {len(pairs)} images, {arguments.repeats} times each way", file=sys.stderr)
        batch_seconds, batch_labels = _median_seconds(batch, arguments.repeats)
        single_seconds, single_labels = _median_seconds(single, arguments.repeats)
    speedup = single_seconds / batch_seconds
    print(f"batch {batch_seconds:.2f} s, single {single_seconds:.2f} s: {speedup:.1f}x", file=sys.stderr)
    print(
        json.dumps(
            {
                "task": task.name,
                "data": f"embedded digits written as {len(pairs)} PNG files",
                "metrics": {
                    "batch_seconds": round(batch_seconds, 3),
                    "single_seconds": round(single_seconds, 3),
                    "batch_inputs_per_second": round(len(pairs) / batch_seconds, 1),
                    "single_inputs_per_second": round(len(pairs) / single_seconds, 1),
                    "speedup": round(speedup, 2),
                    "meets_target": speedup >= TARGET_SPEEDUP,
                    "same_labels": batch_labels == single_labels,
                },
                "batch_size": arguments.batch_size,
                "repeats": arguments.repeats,
                "load_average": [round(value, 2) for value in os.getloadavg()],
                "train_seconds": round(result.train_seconds, 1),
                "examples_per_second": round(result.train_examples / result.train_seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
