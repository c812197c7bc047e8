"""Benchmark: vision_classification on the real MNIST test digits in ../shared/data/mnist_test.

Split (stated, stratified, seed 0): 70% train, 10% validation, 20% test, all carved from the 10,000
t10k digits (the only MNIST file in the team folder). Target: test accuracy >= 0.99; reference: the
keras-io MNIST convnet recipe trained as published reaches 0.9845 on a stratified 80/20 split.

Prints progress to stderr and one JSON line on stdout. Extra flags go to the config as --set values:
    python benchmarks/vision_classification.py [key=value ...]
"""

import json
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import pandas  # noqa: E402

import tasks  # noqa: E402
from pipelines import config, runner  # noqa: E402
from shared import images, tracking  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist_test"
SETTINGS = [
    "validation_fraction=0.1", "test_fraction=0.2",  # the stated split
    "epochs=30", "batch_size=128", "learning_rate=0.003", "base_filters=24",
    "rotation=0.03", "zoom=0.08", "crop_padding=2",  # slant, stroke width and position jitter
    "early_stopping_patience=10",
]


def main():
    if not DATA.exists():
        sys.exit(f"benchmark data missing: {DATA} (the team's ../shared/data folder)")
    task = tasks.get("vision_classification")
    resolved = config.resolve(task, data=str(DATA), assignments=SETTINGS + sys.argv[1:])
    print(f"training on {DATA} with {config.flatten(resolved)}", file=sys.stderr)
    result = runner.run(task, resolved, experiment="benchmark_vision_classification")
    model = tracking.load(result.model_uri)
    splits = task.load_data(resolved)
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder, "digit.png")
        images.save_png(splits.test[0][0], path)
        model.predict(pandas.DataFrame({"image": [str(path)]}))  # warm-up: first call traces the predict function
        started = time.perf_counter()
        answer = model.predict(pandas.DataFrame({"image": [str(path)]}))[0]
        latency = time.perf_counter() - started
    print(f"predicted {answer['label']} for a test digit labelled {splits.test[1][0]}", file=sys.stderr)
    print(json.dumps({
        "task": task.name, "data": "mnist_test (t10k, 70/10/20 stratified, seed 0)",
        "metrics": {f"test_{name}": round(value, 4) for name, value in result.metrics.items()},
        "train_seconds": round(result.train_seconds, 1),
        "examples_per_second": round(result.train_examples / result.train_seconds, 1),
        "predict_latency_seconds": round(latency, 4), "run_id": result.run_id,
    }))


if __name__ == "__main__":
    main()
