"""keras-io "Imbalanced classification: credit card fraud detection" (F. Chollet, created 2019/05/28,
keras.io/examples/structured_data/imbalanced_classification) on our credit-card split.

Published (on the full Kaggle credit-card table): every column but the label, standardised with the
training rows' mean and standard deviation; dense 256 ReLU, dense 256 ReLU, dropout 0.3, dense 256 ReLU,
dropout 0.3, one sigmoid; binary cross-entropy, Adam at 1e-2, batch 2048, 30 epochs, class weights
1 / (the class's training count), the last 20% of rows for validation; reports confusion counts there.

On our data: benchmarks/fraud_detection.py's stratified 60/20/20 split of the 4,492-row subset with `Time`
dropped (all normal rows fall in its first hour, so it gives the label away), standardised by the task's
loader exactly as the recipe does (training mean, population standard deviation); reports test PR-AUC
(average precision) as our benchmark does.
"""

import keras
import numpy as np

from benchmarks import common, fraud_detection as benchmark, recipes
from shared import baselines

DATA = recipes.Data(
    "fraud_detection",
    benchmark.DATA.relative_to(common.DATA),
    recipes.data_settings(benchmark.SETTINGS, ("drop_columns", "validation_fraction", "test_fraction")),
    baselines.PR_AUC,
)
UNITS = 256  # published, each of the three dense layers
DROPOUT = 0.3  # published, after the second and third dense layers
LEARNING_RATE = 1e-2  # published
BATCH_SIZE = 2048  # published
EPOCHS = 30  # published


def build(features):
    """The published MLP over `features` standardised columns."""
    inputs = keras.Input((features,))
    x = keras.layers.Dense(UNITS, activation="relu")(inputs)
    x = keras.layers.Dense(UNITS, activation="relu")(x)
    x = keras.layers.Dropout(DROPOUT)(x)
    x = keras.layers.Dense(UNITS, activation="relu")(x)
    x = keras.layers.Dropout(DROPOUT)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="fraud_mlp")


def run(seed, data_root, quick=False):
    """Trains the recipe once on our split (see `benchmarks.recipes`).

    Returns:
        dict: test PR-AUC and the seconds in `model.fit`.
    """
    recipes.start(seed)
    task, config = recipes.resolve(DATA, data_root, seed, quick)
    found = recipes.splits(task, config, DATA, data_root)
    counts = np.bincount(found.train.targets, minlength=2)
    model = build(found.train.features["numeric"].shape[1])
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss="binary_crossentropy",
        metrics=[  # published: the confusion counts, precision and recall on validation
            keras.metrics.FalseNegatives(name="fn"),
            keras.metrics.FalsePositives(name="fp"),
            keras.metrics.TrueNegatives(name="tn"),
            keras.metrics.TruePositives(name="tp"),
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
        ],
    )
    _, seconds = recipes.fit(
        model,
        found.train.features["numeric"],
        found.train.targets,
        batch_size=BATCH_SIZE,
        epochs=recipes.epochs(EPOCHS, quick),
        validation_data=(found.validation.features["numeric"], found.validation.targets),
        class_weight={0: 1.0 / counts[0], 1: 1.0 / counts[1]},
    )
    scores = model.predict(found.test.features["numeric"], verbose=0).reshape(-1)
    return recipes.result(DATA, found.test.targets, scores, seconds)
