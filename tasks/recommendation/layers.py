"""The recommender's custom Keras layer (the retrieval head's item scores)."""

import functools


@functools.cache
def layers():
    """Custom Keras layers, defined on first use so that importing the task stays light."""
    import keras

    @keras.saving.register_keras_serializable(package="recommendation")
    class ItemScores(keras.layers.Layer):
        """Scores a batch of user vectors against every item: logits = users @ items.T + item bias."""

        def __init__(self, items, dimension, **kwargs):
            super().__init__(**kwargs)
            self.items, self.dimension = items, dimension

        def build(self, input_shape):
            self.item_vectors = self.add_weight(
                name="item_vectors",
                shape=(self.items, self.dimension),
                initializer=keras.initializers.RandomNormal(stddev=0.05),
            )
            self.item_bias = self.add_weight(name="item_bias", shape=(self.items,), initializer="zeros")

        def call(self, user_vectors):
            return keras.ops.matmul(user_vectors, keras.ops.transpose(self.item_vectors)) + self.item_bias

        def get_config(self):
            return {**super().get_config(), "items": self.items, "dimension": self.dimension}

    return {"ItemScores": ItemScores}
