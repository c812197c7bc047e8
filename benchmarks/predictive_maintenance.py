"""Benchmark predictive_maintenance on NASA C-MAPSS FD001 and AI4I 2020 in ../shared/data.

FD001 (regression): 100 run-to-failure training engines (15% of them held out for validation), each of
the 100 test engines scored on its last 30-cycle window against RUL_FD001.txt, truth capped at 125 as in
the literature. A 2-layer LSTM on the 14 informative sensors (constant ones dropped by the task, the two
noise-only operating settings dropped here) with sensor noise augmentation. Targets: test RMSE <= 12.5
and NASA score <= 280 (literature: LSTM 16.1, deep CNN 12.6).
AI4I 2020 (classification): machine failure from one row of process readings (failure-type flags and ids
dropped because they leak or identify), stratified 70/15/15 split; reports PR-AUC.

Usage: `python -m benchmarks.predictive_maintenance [--set key=value ...]` (extra settings apply to both
runs). Progress goes to stderr; the last stdout line is one JSON object (benchmarks/common.py).
"""

from benchmarks import common

CMAPSS = common.DATA / "cmapss_fd001"
AI4I = common.DATA / "ai4i2020" / "ai4i2020.csv"
# chosen on the validation engines (best validation RMSE): CNN 18.8 -> CNN without the two noisy FD001
# operating settings 17.5; LSTM 16.2 (with settings); this combines both (14.9 on 2026-12-02). Tried then,
# none clearly better on validation: the Li et al. CNN (4 x 10 filters of 10, dense 100, dropout 0.5) 18.2,
# CNN 3 x 32 with noise 17.9, GRU 15.3, noise 0.4 15.1, LSTM 1 x 128 14.6, 32 units 17.6, learning rate
# 3e-4 15.4, 3e-3 with batch 128 15.0, weight decay 1e-2 14.9; on 2026-12-03-04, at seed 0 against 14.8:
# weight averaging 15.6, three LSTMs side by side with averaged outputs (a prototype) 14.9, dropout 0.4
# 16.1, 96 units 14.8, patience 20 14.8 (the same best epoch), plateau schedule 14.7, batch 128 14.7 (over
# seeds 0-2 15.01 against 15.04: a tie, so 256 stays). Never tuned on the test engines.
# The task's defaults stay CNN without noise: as defaults, LSTM with noise 0.2 kept FD001 at 14.25 but
# took AI4I's PR-AUC from 0.627 to 0.547 (seed 0), so they would not transfer to row data.
CMAPSS_SETTINGS = ["seed=0", "model=lstm", "drop_columns=[setting_1, setting_2]", "noise=0.2"]
AI4I_SETTINGS = [
    "seed=0",
    "mode=classification",
    "unit_column=",
    "time_column=",
    "target_column=Machine failure",
    "drop_columns=[UDI, Product ID, TWF, HDF, PWF, OSF, RNF]",
]


def main():
    common.run_protocols(
        "predictive_maintenance",
        [
            common.Protocol("fd001", CMAPSS, CMAPSS_SETTINGS, ("rmse", "nasa_score", "mae", "rmse_uncapped", "r2")),
            common.Protocol(
                "ai4i", AI4I, AI4I_SETTINGS, ("pr_auc", "roc_auc", "precision", "recall", "f1", "threshold")
            ),
        ],
        description=__doc__.splitlines()[0],
        backend="jax",
    )


if __name__ == "__main__":
    main()
