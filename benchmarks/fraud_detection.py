"""Benchmark fraud_detection on the Kaggle credit-card subset in ../shared/data/creditcard_fraud.

Drops `Time` (all normal rows fall in the first hour of this subset, so it gives the label away) and
uses a stratified 60/20/20 split with seed 0, as the reference figures in the issue (keras-io MLP
PR-AUC 0.972, HistGradientBoosting 0.980). The HistGradientBoosting baseline is retrained by the task
on the same split and reported as `baseline_hgb_pr_auc`. Target: test PR-AUC >= that baseline. The task's
default `blend` serves the MLP blended with those trees at the weight validation PR-AUC chooses
(`blend_weight`; 0 is the MLP alone).

Usage: `python -m benchmarks.fraud_detection [--set key=value ...]`. Progress goes to
stderr; the last stdout line is one JSON object.
"""

from benchmarks import common

DATA = common.ROOT.parent / "shared" / "data" / "creditcard_fraud" / "creditcard_4000normal_492fraud.csv"
# chosen on validation PR-AUC, never on test: the wider MLP (0.9804 vs 0.9790 default, 0.9770 with noise=0.1),
# then no class weights (0.9824: at 11% frauds the plain loss ranks better; a learning rate of 5e-4 gave
# 0.9821). Early stopping on val_pr_auc is not comparable this way (it picks its epoch on that figure).
SETTINGS = [
    "drop_columns=[Time]",
    "validation_fraction=0.2",
    "test_fraction=0.2",
    "seed=0",
    "hidden_units=[512, 256, 128]",
    "dropout=0.4",
    "class_weight=false",
]


def main():
    keys = (
        "pr_auc",
        "baseline_hgb_pr_auc",
        "pr_auc_minus_baseline",
        "blend_weight",
        "roc_auc",
        "baseline_hgb_roc_auc",
        "precision",
        "recall",
        "f1",
        "recall_at_precision",
        "expected_cost",
        "threshold",
    )
    common.run_and_report("fraud_detection", DATA, SETTINGS, keys, description=__doc__.splitlines()[0], backend="jax")


if __name__ == "__main__":
    main()
