"""keras-io "Text classification from scratch" (M. Omernick and F. Chollet, created 2019/11/06,
keras.io/examples/nlp/text_classification_from_scratch) on our SST-2 split.

Published (on IMDB reviews): a TextVectorization layer adapted on the training texts (20,000 tokens, 500
tokens per text, lowercased with `<br />` and punctuation stripped), applied in the tf.data pipeline, whose
batches of 32 are cached and prefetched (10); Embedding 128, dropout 0.5, two Conv1D 128 of width 7 and
stride 3 (ReLU, valid padding), global max pooling, dense 128 ReLU, dropout 0.5, one sigmoid; binary
cross-entropy, Adam at Keras' defaults (learning rate 1e-3), 3 epochs; reports test accuracy.

On our data: benchmarks/nlp_sentiment.py's split of SST-2's train.tsv (3% validation and a 2% internal test
carved by the seed, the rest for training) and its reported figure, accuracy on the 872 dev.tsv sentences.
SST-2 holds no `<br />`, so the recipe's standardisation is Keras' default `lower_and_strip_punctuation`.
"""

import keras
import tensorflow as tf

from benchmarks import common, nlp_sentiment as benchmark, recipes
from shared import baselines

FOLDER = benchmark.DATA.relative_to(common.DATA)
DATA = recipes.Data(
    "nlp_sentiment",
    FOLDER / "train.tsv",
    # the default text_column reads train.tsv's `sentence` column and dev.tsv's `content` alike
    recipes.data_settings(benchmark.SETTINGS, ("validation_fraction", "test_fraction")),
    baselines.ACCURACY,
    test_path=FOLDER / "dev.tsv",
)
MAX_FEATURES = 20_000  # published vocabulary
SEQUENCE_LENGTH = 500  # published: every text padded or cut to 500 tokens
EMBEDDING_DIM = 128  # published
BATCH_SIZE = 32  # published (text_dataset_from_directory's default, which the recipe keeps)
EPOCHS = 3  # published


def build():
    """The published 1D convnet over token ids."""
    inputs = keras.Input(shape=(None,), dtype="int64")
    x = keras.layers.Embedding(MAX_FEATURES, EMBEDDING_DIM)(inputs)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = keras.layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="predictions")(x)
    return keras.Model(inputs, outputs, name="text_cnn")


def run(seed, data_root, quick=False):
    """Trains the recipe once on our split (see `benchmarks.recipes`).

    Returns:
        dict: dev accuracy and the seconds in `model.fit`.
    """
    recipes.start(seed)
    task, config = recipes.resolve(DATA, data_root, seed, quick)
    found = recipes.splits(task, config, DATA, data_root)
    texts = {role: getattr(found, role).sample(len(getattr(found, role))) for role in ("train", "validation", "test")}
    vectorize = keras.layers.TextVectorization(
        max_tokens=MAX_FEATURES, output_mode="int", output_sequence_length=SEQUENCE_LENGTH
    )
    vectorize.adapt(tf.data.Dataset.from_tensor_slices(texts["train"][0]).batch(1024))  # training texts only

    def batches(role):
        """The recipe's pipeline: (shuffled, for training) batches of 32, vectorised, cached, prefetched."""
        dataset = tf.data.Dataset.from_tensor_slices(texts[role])
        if role == "train":  # text_dataset_from_directory shuffles; the cache then replays that order
            dataset = dataset.shuffle(len(texts[role][1]), seed=seed)
        return dataset.batch(BATCH_SIZE).map(lambda text, label: (vectorize(text), label)).cache().prefetch(10)

    model = build()
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    _, seconds = recipes.fit(
        model, batches("train"), validation_data=batches("validation"), epochs=recipes.epochs(EPOCHS, quick)
    )
    scores = model.predict(batches("test"), verbose=0).reshape(-1)  # the probability of class 1
    return recipes.result(DATA, texts["test"][1], scores, seconds)
