"""The output layers models end with, shared by the tasks that classify."""


def softmax_head(features, dropout, classes):
    """The classifier every classification model ends with: dropout, then float32 class probabilities
    (float32 even under mixed precision, so losses and probabilities keep full precision).

    Args:
        features (keras.KerasTensor | list): the features, or one tensor per ensemble member: several members
            get a classifier each and the softmax takes the mean of their logits, a geometric mean of
            their probabilities trained as one model (a coupled ensemble, Dutt et al. 2020).
        dropout (float): dropout rate before each classifier.
        classes (int): how many classes.
    """
    import keras

    members = features if isinstance(features, list) else [features]
    if len(members) == 1:
        features = keras.layers.Dropout(dropout)(members[0])
        return keras.layers.Dense(classes, activation="softmax", dtype="float32", name="probabilities")(features)
    logits = [
        keras.layers.Dense(classes, dtype="float32", name=f"member_{index}_logits")(
            keras.layers.Dropout(dropout)(member)
        )
        for index, member in enumerate(members)
    ]
    return keras.layers.Activation("softmax", dtype="float32", name="probabilities")(
        keras.layers.Average(dtype="float32")(logits)
    )
