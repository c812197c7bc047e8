"""Benchmark predictive_maintenance on NASA C-MAPSS FD001 and AI4I 2020 in ../shared/data.

FD001 (regression): 100 run-to-failure training engines (15% of them held out for validation), each of
the 100 test engines scored on its last 30-cycle window against RUL_FD001.txt, truth capped at 125 as in
the literature. A 2-layer LSTM on the 14 informative sensors (constant ones dropped by the task, the two
noise-only operating settings dropped here) with sensor noise augmentation. Targets: test RMSE <= 12.5 and NASA score <= 250 (literature: LSTM 16.1, deep CNN 12.6).
AI4I 2020 (classification): machine failure from one row of process readings (failure-type flags and ids
dropped because they leak or identify), stratified 70/15/15 split; reports PR-AUC.

Usage: `KERAS_BACKEND=jax python benchmarks/predictive_maintenance.py [--set key=value ...]` (extra settings
apply to FD001, after the ones above). Progress goes to stderr; the last stdout line is one JSON object.
"""

import argparse
import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CMAPSS = DATA / "cmapss_fd001"
AI4I = DATA / "ai4i2020" / "ai4i2020.csv"
# chosen on the validation engines (best validation RMSE): CNN 18.8 -> CNN without the two noisy FD001
# operating settings 17.5; LSTM 16.2 (with settings); this combines both. Never tuned on the test engines.
CMAPSS_SETTINGS = ["seed=0", "model=lstm", "drop_columns=[setting_1, setting_2]", "noise=0.2"]
AI4I_SETTINGS = ["seed=0", "mode=classification", "unit_column=", "time_column=", "target_column=Machine failure",
                 "drop_columns=[UDI, Product ID, TWF, HDF, PWF, OSF, RNF]"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra FD001 overrides")
    arguments = parser.parse_args()
    for path in (CMAPSS, AI4I):
        if not path.exists():
            sys.exit(f"benchmark data {path} is absent (the team's ../shared/data folder must sit beside the repo)")
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.path.insert(0, str(ROOT))
    import tasks
    from pipelines import config, runner

    task = tasks.get("predictive_maintenance")
    metrics, seconds, examples, runs = {}, 0.0, 0, {}
    for label, path, settings, keys in (
        ("fd001", CMAPSS, CMAPSS_SETTINGS + arguments.set, ("rmse", "nasa_score", "mae", "rmse_uncapped", "r2")),
        ("ai4i", AI4I, AI4I_SETTINGS, ("pr_auc", "roc_auc", "precision", "recall", "f1", "threshold")),
    ):
        resolved = config.resolve(task, data=str(path), assignments=settings)
        print(f"benchmark predictive_maintenance on {path.name} with {settings}", file=sys.stderr)
        result = runner.run(task, resolved, experiment="benchmark_predictive_maintenance")
        metrics.update({f"{label}_{key}": round(result.metrics[key], 4) for key in keys})
        seconds += result.train_seconds
        examples += result.train_examples
        runs[label] = result.run_id
    print(json.dumps({
        "task": task.name, "data": "shared/data/cmapss_fd001 + shared/data/ai4i2020", "metrics": metrics,
        "train_seconds": round(seconds, 1), "examples_per_second": round(examples / max(seconds, 1e-9), 1),
        "run_ids": runs,
    }))


if __name__ == "__main__":
    main()
