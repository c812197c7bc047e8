"""The TensorFlow tutorial "Simple audio recognition: Recognizing keywords" (tensorflow.org/tutorials/audio/
simple_audio) on our FSDD speaker split.

Published (on mini Speech Commands, 16 kHz): waveforms decoded to [-1, 1], cut or zero-padded at the end to
1 s; magnitude spectrograms (STFT frames of 255 samples every 128, a 256-point FFT, Hann window, no
centring) with a channel axis; Resizing to 32x32, a Normalization layer adapted on the training
spectrograms, Conv2D 32 3x3 ReLU, Conv2D 64 3x3 ReLU, max-pool 2x2, dropout 0.25, flatten, dense 128 ReLU,
dropout 0.5, one logit per word; sparse categorical cross-entropy from logits, Adam at Keras' defaults
(learning rate 1e-3), batches of 64, up to 10 epochs with EarlyStopping(patience=2) on validation loss
(the last epoch's weights are kept); reports test accuracy.

On our data: benchmarks/speech.py's speaker split of the 3,000 FSDD recordings (test: theo, validation:
lucas, training: the four other speakers), read at their native 8 kHz, so 1 s is 8,000 samples (99% of
the recordings are shorter) and an STFT frame of 255 samples spans 32 ms instead of 16.
"""

import dataclasses

import keras
import numpy as np

from benchmarks import common, recipes, speech as benchmark
from shared import baselines

DATA = recipes.Data(
    "speech",
    benchmark.DATA.relative_to(common.DATA),
    # the speaker protocol of benchmarks/speech.py (its file pattern, then the held-out speakers it names)
    (*recipes.data_settings(benchmark.RECIPE, ("filename_pattern",)), "test_groups=theo", "validation_groups=lucas"),
    baselines.ACCURACY,
)
SECONDS = 1.0  # published clip length
FRAME, STEP, FFT = 255, 128, 256  # published STFT (tf.signal.stft's FFT length for 255-sample frames)
BATCH_SIZE = 64  # published
EPOCHS = 10  # published upper bound
PATIENCE = 2  # published early stopping


def clips(task, config, root):
    """The recordings of each split, as the task splits them (`tasks.speech.sources.listed_clips`).

    Returns:
        tuple[dict, list[str]]: role -> (file paths, integer labels), and the class names.
    """
    from tasks.speech import sources

    paths, names, groups = sources.pattern_files(root, config.filename_pattern)
    class_names = sorted(set(names))
    labels = np.array([class_names.index(name) for name in names])
    makers = [lambda copies, keep, path=path: path for path in paths]  # a maker returns its clip: the path itself
    listed = sources.listed_clips(
        task, dataclasses.replace(config, augment_copies=0), makers, labels, np.array(groups), class_names, "fsdd"
    )
    return {role: (files, targets) for role, (files, targets, _) in listed.roles.items()}, class_names


def spectrograms(paths):
    """Magnitude spectrograms (clips, frames, frequencies, 1) of the recordings, cut or padded to `SECONDS`."""
    from tasks.speech.audio import read_audio

    waves = []
    for path in paths:
        samples, rate = read_audio(path)
        size = int(SECONDS * rate)
        waves.append(np.pad(samples[:size], (0, max(0, size - len(samples)))))
    real, imaginary = keras.ops.stft(np.stack(waves), FRAME, STEP, FFT, window="hann", center=False)
    return keras.ops.convert_to_numpy(keras.ops.sqrt(real**2 + imaginary**2))[..., None]


def build(shape, classes, normalization):
    """The published CNN over spectrograms of `shape`, with its adapted Normalization layer."""
    inputs = keras.Input(shape)
    x = keras.layers.Resizing(32, 32)(inputs)
    x = normalization(x)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Dropout(0.25)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(classes)(x)
    return keras.Model(inputs, outputs, name="simple_audio_cnn")


def run(seed, data_root, quick=False):
    """Trains the recipe once on our split (see `benchmarks.recipes`).

    Returns:
        dict: test accuracy (of the new speaker) and the seconds in `model.fit`.
    """
    recipes.start(seed)
    task, config = recipes.resolve(DATA, data_root, seed, quick)
    roles, class_names = clips(task, config, data_root / DATA.path)
    features = {role: (spectrograms(paths), labels) for role, (paths, labels) in roles.items()}
    normalization = keras.layers.Normalization()
    normalization.adapt(features["train"][0])
    model = build(features["train"][0].shape[1:], len(class_names), normalization)
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    _, seconds = recipes.fit(
        model,
        *features["train"],
        batch_size=BATCH_SIZE,
        epochs=recipes.epochs(EPOCHS, quick),
        validation_data=features["validation"],
        callbacks=[keras.callbacks.EarlyStopping(verbose=1, patience=PATIENCE)],
    )
    images, labels = features["test"]
    return recipes.result(DATA, labels, model.predict(images, verbose=0), seconds)  # the argmax of logits decides
