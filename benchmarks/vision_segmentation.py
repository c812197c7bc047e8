"""Benchmark vision_segmentation on ISBI 2012 EM membranes in ../shared/data/isbi2012_membrane/train.

Split (stated, not random): the 30 images in natural file order; images 0-20 train, 21-23
validation (early stopping), 24-29 test, the same test images as the issue's reference (the
keras-io Oxford-pets U-Net recipe: pixel accuracy 0.80, mean IoU 0.40). Masks are 0/255:
0 = membrane, 255 = cell. Training uses 128 px tiles of the 512 px images (a depth-4 U-Net with
8 base filters: the width a shared 2-core CPU can train in minutes) with flips, 90-degree turns,
shifts and photometric jitter; evaluation runs on the whole 512 px test images.
Targets: pixel accuracy >= 0.94 and mean IoU >= 0.80 within 15 minutes on 2 cores.
Predictions see a 16 px mirrored border (`context`) and average the 8 flips and turns (`tta`); 40
epochs fit the 15 minutes. docs/benchmarks.md's table holds the figures (`--seeds 0,1,2`).
Usage: `python -m benchmarks.vision_segmentation [--set key=value ...]`. Progress goes to stderr;
the last stdout line is one JSON object.
"""

from benchmarks import common

DATA = common.ROOT.parent / "shared" / "data" / "isbi2012_membrane" / "train"
SETTINGS = [
    "split=ordered",
    "test_fraction=0.2",
    "validation_fraction=0.1",
    "seed=0",
    "tile_size=128",
    "depth=4",
    "base_filters=8",
    "batch_size=8",
    "epochs=40",
    "early_stopping_patience=6",
    "learning_rate=0.003",
    "class_names=membrane,cell",
    "shift=8",
    "context=16",
    "tta=true",
]


def main():
    common.run_and_report(
        "vision_segmentation",
        DATA,
        SETTINGS,
        ("pixel_accuracy", "mean_iou", "mean_dice", "iou_membrane", "iou_cell", "dice_membrane", "dice_cell"),
        description=__doc__.splitlines()[0],
    )


if __name__ == "__main__":
    main()
