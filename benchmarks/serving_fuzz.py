"""Benchmark: hostile and random requests against `mlflow models serve`, per served model.

Trains quick models (vision_classification, nlp_sentiment, fraud_detection and speech, the image, text,
tabular and audio models) into a temporary store, serves each one (its latest version) on 127.0.0.1 with an input
folder (`PIPELINES_INPUT_ROOT`) holding one good file and a symbolic link out of it, and sends
`--requests` requests (default 500) drawn from hostile kinds: random and truncated files as base64,
a 20,000 x 20,000 PNG bomb, lying audio headers, numbers or nested lists where a path, sentence or row
is expected, NaN and infinities in rows, path escapes, a 1 MB sentence, 10,000-row requests, rows of
mixed good and bad inputs, and malformed bodies. Checks, per request: an answer came (no dropped
connection, no 5xx); a multi-row request gets one answer per row, its good rows answered and its bad
rows an error; a bad single row gets a 4xx or an error row. Afterwards a good request must get the
same answer as before the fuzz. Reports requests tried and answered, failures by kind, the server's
peak resident memory (the sum of each server process's high-water mark, `VmHWM`, so an upper bound of
the peak) and good requests per second (one client, one request at a time).

The requests and their judging are `pipelines.serving_fuzz`, shared with the tests. Needs no team data (the
models train on embedded data). Prints progress to stderr and one JSON line:
    python -m benchmarks.serving_fuzz [--requests 500] [--tasks vision_classification,...] [--seed 0]
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile

from pipelines import serving_fuzz

TEAM_DATA = False  # quick models on embedded data: the requests, not the models, are measured


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="hostile and random requests per model")
    parser.add_argument("--tasks", default=",".join(serving_fuzz.TASKS), help="comma-separated tasks to serve")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    names = [name for name in arguments.tasks.split(",") if name]

    def log(message):
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as folder:
        store = f"sqlite:///{folder}/mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = store
        seconds = serving_fuzz.train(names, store, log)
        results = {}
        for name in names:
            results[name] = serving_fuzz.fuzz_one(
                name, store, pathlib.Path(folder) / name, arguments.requests, arguments.seed, log
            )
            log(f"{name}: {json.dumps(results[name])}")
    metrics = {
        f"{name}_{key}": value
        for name, result in results.items()
        for key, value in result.items()
        if key
        in (
            "requests",
            "answered",
            "startup_peak_rss_mb",
            "peak_rss_mb",
            "good_requests_per_second",
            "good_still_correct",
        )
    }
    print(
        json.dumps(
            {
                "task": "serving_fuzz",
                "data": "embedded (quick models)",
                "metrics": metrics,
                "train_seconds": round(seconds, 1),
                "examples_per_second": min(result["good_requests_per_second"] for result in results.values()),
                "failures": {name: result["failures"] for name, result in results.items() if result["failures"]},
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
