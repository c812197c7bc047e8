"""keras-io "Simple MNIST convnet" (F. Chollet, created 2015/06/19, keras.io/examples/vision/mnist_convnet) on our
MNIST split.

Published: 28x28x1 digits scaled to [0, 1], one-hot labels; Conv2D 32 3x3 ReLU, max-pool 2x2, Conv2D 64 3x3
ReLU, max-pool 2x2, flatten, dropout 0.5, softmax over the 10 classes; categorical cross-entropy, Adam at
Keras' defaults (learning rate 1e-3), batch 128, 15 epochs, `validation_split=0.1`; reports test accuracy.

On our data: benchmarks/vision_classification.py's split of the 10,000 t10k digits (70% train, 10% validation,
20% test, stratified by the seed), decoded to [0, 1] by the task's loader as the recipe scales them. The
recipe's `validation_split=0.1` holds out a tenth of its training digits to watch (never to choose by); our
10% validation split plays that part, so the recipe trains on the same 7,000 digits as our pipeline.
"""

import keras

from benchmarks import common, recipes, vision_classification as benchmark
from shared import baselines

DATA = recipes.Data(
    "vision_classification",
    benchmark.DATA.relative_to(common.DATA),
    recipes.data_settings(benchmark.SETTINGS, ("validation_fraction", "test_fraction")),
    baselines.ACCURACY,
)
EPOCHS = 15  # published
BATCH_SIZE = 128  # published


def build(shape, classes):
    """The published convnet, for images of `shape` (height, width, channels) and `classes` classes."""
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu")(x)
    x = keras.layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mnist_convnet")


def run(seed, data_root, quick=False):
    """Trains the recipe once on our split (see `benchmarks.recipes`).

    Returns:
        dict: test accuracy and the seconds in `model.fit`.
    """
    recipes.start(seed)
    task, config = recipes.resolve(DATA, data_root, seed, quick)
    found = recipes.splits(task, config, DATA, data_root)
    (images, labels), (val_images, val_labels), (test_images, test_labels) = (
        split.sample(len(split)) for split in (found.train, found.validation, found.test)
    )
    classes = len(found.info.class_names)
    model = build(images.shape[1:], classes)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    _, seconds = recipes.fit(
        model,
        images,
        keras.utils.to_categorical(labels, classes),
        batch_size=BATCH_SIZE,
        epochs=recipes.epochs(EPOCHS, quick),
        validation_data=(val_images, keras.utils.to_categorical(val_labels, classes)),
    )
    return recipes.result(DATA, test_labels, model.predict(test_images, verbose=0), seconds)
