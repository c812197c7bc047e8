"""Keras layers of the text models (sentiment and translation), registered so saved models load by name.

Token id 0 is padding everywhere: embeddings derive their mask from it and every layer respects the mask.
"""

import functools


@functools.cache
def layers():
    """The custom text layers, by class name.

    Defined inside a cached function so that importing this module does not import Keras.

    Returns:
        dict[str, type]: PositionalEmbedding, TransformerEncoder, TransformerDecoder, ConvMaxPooling,
        ExtendedEmbedding and MaskedMaxPooling.
    """
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="nlp")
    class PositionalEmbedding(keras.layers.Layer):
        """Token embedding plus a learned position embedding; id 0 is padding and produces the mask.

        Called with `reverse=True` on hidden states, it scores every vocabulary token with the transposed
        token embedding (weight tying, Press & Wolf 2017): one matrix serves input and output.
        """

        def __init__(self, sequence_length, vocabulary_size, embedding_dim, **kwargs):
            super().__init__(**kwargs)
            self.sequence_length, self.vocabulary_size = sequence_length, vocabulary_size
            self.embedding_dim = embedding_dim
            self.token_embedding = keras.layers.Embedding(vocabulary_size, embedding_dim)
            self.position_embedding = keras.layers.Embedding(sequence_length, embedding_dim)

        def build(self, input_shape):
            self.token_embedding.build(input_shape)
            self.position_embedding.build((input_shape[-1],))

        def call(self, inputs, reverse=False):
            if reverse:
                return ops.matmul(inputs, ops.transpose(self.token_embedding.embeddings))
            positions = ops.arange(ops.shape(inputs)[-1])
            return self.token_embedding(inputs) + self.position_embedding(positions)

        def compute_mask(self, inputs, mask=None):
            if "float" in str(inputs.dtype):  # reverse call on hidden states: keep their mask
                return mask
            return ops.not_equal(inputs, 0)

        def get_config(self):
            return {
                **super().get_config(),
                "sequence_length": self.sequence_length,
                "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim,
            }

    @keras.saving.register_keras_serializable(package="nlp")
    class TransformerEncoder(keras.layers.Layer):
        """Self-attention over non-padding tokens, then a position-wise feed-forward net (post-norm)."""

        def __init__(self, embedding_dim, dense_dim, heads, dropout, **kwargs):
            super().__init__(**kwargs)
            self.embedding_dim, self.dense_dim, self.heads, self.rate = embedding_dim, dense_dim, heads, dropout
            self.attention = keras.layers.MultiHeadAttention(heads, embedding_dim // heads, dropout=dropout)
            self.dense_1 = keras.layers.Dense(dense_dim, activation="relu")
            self.dense_2 = keras.layers.Dense(embedding_dim)
            self.norm_1, self.norm_2 = keras.layers.LayerNormalization(), keras.layers.LayerNormalization()
            self.dropout = keras.layers.Dropout(dropout)
            self.supports_masking = True

        def build(self, inputs_shape):
            self.attention.build(inputs_shape, inputs_shape)
            self.dense_1.build(inputs_shape)
            self.dense_2.build((*inputs_shape[:-1], self.dense_dim))
            self.norm_1.build(inputs_shape)
            self.norm_2.build(inputs_shape)

        def call(self, inputs, mask=None, training=None):
            attended = self.attention(inputs, inputs, query_mask=mask, value_mask=mask, training=training)
            x = self.norm_1(inputs + self.dropout(attended, training=training))
            return self.norm_2(x + self.dropout(self.dense_2(self.dense_1(x)), training=training))

        def get_config(self):
            return {
                **super().get_config(),
                "embedding_dim": self.embedding_dim,
                "dense_dim": self.dense_dim,
                "heads": self.heads,
                "dropout": self.rate,
            }

    @keras.saving.register_keras_serializable(package="nlp")
    class TransformerDecoder(keras.layers.Layer):
        """Causal self-attention, attention over the encoder outputs, then a feed-forward net (post-norm)."""

        def __init__(self, embedding_dim, dense_dim, heads, dropout, **kwargs):
            super().__init__(**kwargs)
            self.embedding_dim, self.dense_dim, self.heads, self.rate = embedding_dim, dense_dim, heads, dropout
            self.self_attention = keras.layers.MultiHeadAttention(heads, embedding_dim // heads, dropout=dropout)
            self.cross_attention = keras.layers.MultiHeadAttention(heads, embedding_dim // heads, dropout=dropout)
            self.dense_1 = keras.layers.Dense(dense_dim, activation="relu")
            self.dense_2 = keras.layers.Dense(embedding_dim)
            self.norms = [keras.layers.LayerNormalization() for _ in range(3)]
            self.dropout = keras.layers.Dropout(dropout)
            self.supports_masking = True

        def build(self, inputs_shape, encoder_outputs_shape):
            self.self_attention.build(inputs_shape, inputs_shape)
            self.cross_attention.build(inputs_shape, encoder_outputs_shape)
            self.dense_1.build(inputs_shape)
            self.dense_2.build((*inputs_shape[:-1], self.dense_dim))
            for norm in self.norms:
                norm.build(inputs_shape)

        def call(self, inputs, encoder_outputs, inputs_mask=None, encoder_outputs_mask=None, training=None):
            attended = self.self_attention(
                inputs, inputs, query_mask=inputs_mask, value_mask=inputs_mask, use_causal_mask=True, training=training
            )
            x = self.norms[0](inputs + self.dropout(attended, training=training))
            attended = self.cross_attention(
                x, encoder_outputs, query_mask=inputs_mask, value_mask=encoder_outputs_mask, training=training
            )
            x = self.norms[1](x + self.dropout(attended, training=training))
            return self.norms[2](x + self.dropout(self.dense_2(self.dense_1(x)), training=training))

        def compute_mask(self, inputs, encoder_outputs=None, inputs_mask=None, encoder_outputs_mask=None):
            return inputs_mask

        def get_config(self):
            return {
                **super().get_config(),
                "embedding_dim": self.embedding_dim,
                "dense_dim": self.dense_dim,
                "heads": self.heads,
                "dropout": self.rate,
            }

    @keras.saving.register_keras_serializable(package="nlp")
    class ConvMaxPooling(keras.layers.Layer):
        """Convolutions of several widths over token embeddings, each max-pooled over time (Kim, 2014).

        Padding (masked) positions read as zero vectors and never win the max, so a sentence gets the
        same features however much its batch is padded.
        """

        def __init__(self, filters, widths, **kwargs):
            super().__init__(**kwargs)
            self.filters, self.widths = filters, tuple(widths)
            self.convolutions = [
                keras.layers.Conv1D(filters, width, padding="same", activation="relu") for width in self.widths
            ]

        def build(self, inputs_shape):
            for convolution in self.convolutions:
                convolution.build(inputs_shape)

        def call(self, inputs, mask=None):
            keep = None if mask is None else ops.expand_dims(ops.cast(mask, inputs.dtype), -1)
            if keep is not None:
                inputs = inputs * keep
            pooled = []
            for convolution in self.convolutions:
                features = convolution(inputs)
                # ReLU outputs are >= 0, so zeroing padded positions leaves the max over real tokens unchanged.
                pooled.append(ops.max(features if keep is None else features * keep, axis=1))
            return ops.concatenate(pooled, axis=-1)

        def compute_output_shape(self, inputs_shape):
            return (inputs_shape[0], self.filters * len(self.widths))

        def compute_mask(self, inputs, mask=None):
            return None

        def get_config(self):
            return {**super().get_config(), "filters": self.filters, "widths": list(self.widths)}

    @keras.saving.register_keras_serializable(package="nlp")
    class ExtendedEmbedding(keras.layers.Layer):
        """A trained token embedding whose rows past `trained_rows` are frozen pretrained vectors; id 0 is padding.

        The frozen rows are words a vector file adds beyond the training vocabulary: rare or absent in
        training, they keep their pretrained values and cost no optimizer step (updating 100k more rows
        densely doubled the time of an SST-2 epoch).
        """

        def __init__(self, trained_rows, fixed_rows, embedding_dim, **kwargs):
            super().__init__(**kwargs)
            self.trained_rows, self.fixed_rows, self.embedding_dim = trained_rows, fixed_rows, embedding_dim

        def build(self, input_shape):
            self.trained = self.add_weight(
                shape=(self.trained_rows, self.embedding_dim), name="trained", initializer="uniform"
            )
            self.fixed = self.add_weight(
                shape=(self.fixed_rows, self.embedding_dim), name="fixed", initializer="zeros", trainable=False
            )

        def call(self, inputs):
            inputs = ops.cast(inputs, "int32")
            trained = ops.take(self.trained, ops.minimum(inputs, self.trained_rows - 1), axis=0)
            fixed = ops.take(self.fixed, ops.clip(inputs - self.trained_rows, 0, self.fixed_rows - 1), axis=0)
            return ops.where(ops.expand_dims(inputs < self.trained_rows, -1), trained, fixed)

        def compute_output_shape(self, inputs_shape):
            return (*inputs_shape, self.embedding_dim)

        def compute_mask(self, inputs, mask=None):
            return ops.not_equal(inputs, 0)

        def get_config(self):
            return {
                **super().get_config(),
                "trained_rows": self.trained_rows,
                "fixed_rows": self.fixed_rows,
                "embedding_dim": self.embedding_dim,
            }

    @keras.saving.register_keras_serializable(package="nlp")
    class MaskedMaxPooling(keras.layers.Layer):
        """The max over time of each feature, over real (unmasked) tokens only (BiLSTM-max, Conneau et al. 2017)."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs, mask=None):
            if mask is not None:
                inputs = ops.where(ops.expand_dims(mask, -1), inputs, ops.full_like(inputs, -1e4))
            return ops.max(inputs, axis=1)

        def compute_output_shape(self, inputs_shape):
            return (inputs_shape[0], inputs_shape[2])

        def compute_mask(self, inputs, mask=None):
            return None

    return {
        layer.__name__: layer
        for layer in (
            PositionalEmbedding,
            TransformerEncoder,
            TransformerDecoder,
            ConvMaxPooling,
            ExtendedEmbedding,
            MaskedMaxPooling,
        )
    }
