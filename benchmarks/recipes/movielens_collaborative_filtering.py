"""keras-io "Collaborative Filtering for Movie Recommendations" (S. Banerjee, created 2020/05/24,
keras.io/examples/structured_data/collaborative_filtering_movielens) on our MovieLens split.

Published (on MovieLens latest-small): user and movie ids encoded as indices; ratings min-max scaled to
[0, 1]; RecommenderNet: user and movie embeddings of 50 (He-normal, L2 1e-6) and a user and a movie bias
(embeddings of 1), the dot product of the two embeddings plus both biases through a sigmoid; binary
cross-entropy against the scaled rating, Adam at 1e-3, batch 64, 5 epochs, watching a 10% validation split.
The description computes one dot product per (user, movie) pair, as the first version's `Dot(axes=1)` did;
its Keras 3 port calls `ops.tensordot(user_vector, movie_vector, 2)`, which sums over the whole batch, so
every pair of a batch gets the same dot term. We implement the description.

On our data: benchmarks/recommendation.py's rating protocol, a random 80/20 split of the 100,836 ratings with
5% of all ratings carved from the 80% for validation, ids indexed by the task's vocabularies of the training
ratings (row 0 for every id unseen in training: an untrained row, as the recipe's whole-data encoding gives
each such id one of its own), ratings scaled with the training ratings' extremes (0.5 and 5, the recipe's).
Reports RMSE on the original 0.5-5 scale, as our benchmark does.
"""

import keras
import numpy as np

from benchmarks import common, recipes, recommendation as benchmark
from shared import baselines

DATA = recipes.Data(
    "recommendation",
    benchmark.DATA.relative_to(common.DATA),
    recipes.data_settings(benchmark.RATING, ("split", "validation_fraction", "test_fraction")),
    baselines.RMSE,
)
EMBEDDING_SIZE = 50  # published
L2 = 1e-6  # published, on both embedding tables
LEARNING_RATE = 1e-3  # published
BATCH_SIZE = 64  # published
EPOCHS = 5  # published


def build(users, movies):
    """RecommenderNet over (user, movie) index pairs, with `users` and `movies` rows."""
    pairs = keras.Input((2,), dtype="int32")
    user, movie = pairs[:, 0], pairs[:, 1]
    user_vector = keras.layers.Embedding(
        users, EMBEDDING_SIZE, embeddings_initializer="he_normal", embeddings_regularizer=keras.regularizers.l2(L2)
    )(user)
    movie_vector = keras.layers.Embedding(
        movies, EMBEDDING_SIZE, embeddings_initializer="he_normal", embeddings_regularizer=keras.regularizers.l2(L2)
    )(movie)
    user_bias = keras.layers.Embedding(users, 1)(user)
    movie_bias = keras.layers.Embedding(movies, 1)(movie)
    score = keras.layers.Dot(axes=1)([user_vector, movie_vector])
    outputs = keras.layers.Activation("sigmoid")(keras.layers.Add()([score, user_bias, movie_bias]))
    return keras.Model(pairs, outputs, name="recommender_net")


def run(seed, data_root, quick=False):
    """Trains the recipe once on our split (see `benchmarks.recipes`).

    Returns:
        dict: test RMSE in stars and the seconds in `model.fit`.
    """
    recipes.start(seed)
    task, config = recipes.resolve(DATA, data_root, seed, quick)
    found = recipes.splits(task, config, DATA, data_root)
    low, high = found.train.targets.min(), found.train.targets.max()

    def pairs(split):
        return np.stack([split.features["user"], split.features["item"]], axis=1)

    model = build(len(found.info.users) + 1, len(found.info.items) + 1)  # row 0: an unseen id
    model.compile(loss=keras.losses.BinaryCrossentropy(), optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE))
    _, seconds = recipes.fit(
        model,
        pairs(found.train),
        (found.train.targets - low) / (high - low),
        batch_size=BATCH_SIZE,
        epochs=recipes.epochs(EPOCHS, quick),
        validation_data=(pairs(found.validation), (found.validation.targets - low) / (high - low)),
    )
    predicted = model.predict(pairs(found.test), batch_size=4096, verbose=0).reshape(-1) * (high - low) + low
    return recipes.result(DATA, found.test.targets, predicted, seconds)
