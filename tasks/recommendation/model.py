"""The recommender's Keras models: matrix factorisation, the neural model and the two-tower retrieval model."""

import numpy as np

from tasks.recommendation.layers import layers


def build(config, info):
    """Returns the uncompiled model `info.model` names, with the retrieval head when `info.outputs`
    holds "items"."""
    import keras

    from shared import regularization

    users, items = len(info.users) + 1, len(info.items) + 1
    user = keras.Input((), dtype="int32", name="user")
    history = keras.Input((info.history_length,), dtype="int32", name="history")
    extra = {"history": history} if info.history_length else {}
    # stddev sqrt(2 / rows): a large catalogue starts near zero, so rare items' scores start near their bias;
    # on MovieLens it validated better than a fixed stddev of 0.05
    initializer = "he_normal"

    def embed(ids, count, name):
        return keras.layers.Embedding(
            count,
            config.embedding_dim,
            embeddings_initializer=initializer,
            embeddings_regularizer=regularization.l2(config.l2),
            name=name,
        )(ids)

    outputs = {}
    if "items" in info.outputs:
        # its own user embedding: the softmax loss would otherwise dominate the rating head's gradients
        tower = embed(user, users, "retrieval_user_embedding")
        if info.history_length:
            # mean of the recent items' embeddings; the padding index 0 has its own learned vector
            recent_items = keras.layers.Embedding(
                items, config.embedding_dim, embeddings_initializer=initializer, name="history_embedding"
            )(history)
            tower = keras.layers.Concatenate()([tower, keras.layers.GlobalAveragePooling1D()(recent_items)])
        tower = keras.layers.Dropout(config.dropout)(tower)
        tower = keras.layers.Dense(config.embedding_dim, name="user_tower")(tower)
        # float32 logits under mixed precision: a softmax over thousands of items overflows float16
        outputs["items"] = layers()["ItemScores"](items, config.embedding_dim, dtype="float32", name="items")(tower)
    if info.model == "two_tower":
        return keras.Model({"user": user, **extra}, outputs, name="recommendation_two_tower")
    item = keras.Input((), dtype="int32", name="item")
    user_vector, item_vector = embed(user, users, "user_embedding"), embed(item, items, "item_embedding")
    user_bias = keras.layers.Embedding(users, 1, embeddings_initializer="zeros", name="user_bias")(user)
    item_bias = keras.layers.Embedding(items, 1, embeddings_initializer="zeros", name="item_bias")(item)
    interaction = keras.layers.Dot(axes=1, name="dot")([user_vector, item_vector])
    if info.model == "neural":
        hidden = keras.layers.Dropout(config.dropout)(keras.layers.Concatenate()([user_vector, item_vector]))
        for units in config.hidden_units:
            hidden = keras.layers.Dense(units, activation="relu")(hidden)
        interaction = keras.layers.Dense(1, name="mlp_score")(keras.layers.Concatenate()([hidden, interaction]))
    score = keras.layers.Add()([interaction, user_bias, item_bias])
    # a sigmoid squashed onto [rating_min, rating_max]: predictions never leave the scale, and extreme
    # ratings need large scores, which the L2 penalty resists; the offset starts at the global mean
    low, high = info.rating_scale
    middle = min(max((info.global_mean - low) / (high - low), 0.01), 0.99)
    score = keras.layers.Rescaling(1.0, offset=float(np.log(middle / (1 - middle))))(score)
    probability = keras.layers.Activation("sigmoid", dtype="float32")(score)
    outputs["rating"] = keras.layers.Rescaling(high - low, offset=low, dtype="float32", name="rating")(probability)
    return keras.Model({"user": user, "item": item, **extra}, outputs, name=f"recommendation_{info.model}")
