"""Benchmark medical_imaging on PneumoniaMNIST in ../shared/data/pneumoniamnist/pneumoniamnist.npz.

Uses the official MedMNIST v2 splits (4,708 train, 524 validation, 624 test, 28x28 grayscale;
0 = normal, 1 = pneumonia). The decision threshold is chosen on the validation split (Youden's J),
never on test. Balanced class weights counter the 3:1 pneumonia majority of the training split.
Targets: test ROC-AUC >= 0.97 and accuracy >= 0.90 within 15 minutes on 2 cores (MedMNIST v2
reports ResNet-18 (28) at AUC 0.944 / ACC 0.854).
The task's defaults are what it runs (16 filters, 20 epochs, early stopping on validation ROC-AUC,
2-px crop shifts): a user's small scan set gets the same. Measured 2026-12-02 (2 cores, load 2-3),
`--seeds 0,1,2`: test ROC-AUC 0.975 +- 0.002, accuracy 0.911 +- 0.012, 129-162 s of training per seed.

Usage: `python -m benchmarks.medical_imaging [--set key=value ...]`. Progress goes to stderr;
the last stdout line is one JSON object.
"""

from benchmarks import common

DATA = common.ROOT.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"
SETTINGS = ["class_names=normal,pneumonia"]  # the task's defaults: what a user with a small scan set gets


def main():
    common.run_and_report(
        "medical_imaging",
        DATA,
        SETTINGS,
        (
            "roc_auc",
            "pr_auc",
            "accuracy",
            "sensitivity",
            "specificity",
            "balanced_accuracy",
            "f1",
            "threshold",
            "ece",
            "brier",
        ),
        description=__doc__.splitlines()[0],
    )


if __name__ == "__main__":
    main()
