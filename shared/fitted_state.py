"""`FittedState`: what a model needs besides its weights, typed per kind of input and saved beside it as info.json.

A task's readers fit it on the training split (class names, vocabularies, statistics, sizes); the runner adds
what evaluation chose on validation (a threshold, a temperature). The tf.data maps, the predictor, `evaluate`
and `export` read the same object through named attributes, so a misspelt key fails where it is written, not
at predict time. The JSON keys are the field names, so models logged before these classes existed load as they
are (`from_json`).
"""

import dataclasses


@dataclasses.dataclass(kw_only=True)
class FittedState:
    """The base every task's state extends with its own fields (keyword-only, so subclasses add fields freely).

    Attributes:
        temperature (float | None): the softmax temperature fitted on validation (`shared.temperature`), when the
            run scaled the model's probabilities; None otherwise.
    """

    temperature: float | None = None

    def to_json(self):
        """The JSON object saved as info.json: every field by its name (None as null, as a field left unset).

        Returns:
            dict
        """
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data, origin="the model's info.json"):
        """The state a saved info.json holds; keys this version no longer reads (a model's `task`) are ignored.

        Args:
            data (dict): the parsed info.json.
            origin (str): where it came from, for the error.

        Returns:
            FittedState: of this class.

        Raises:
            ValueError: a field this class needs is missing (a model of another task or a damaged file).
        """
        names = {field.name for field in dataclasses.fields(cls)}
        missing = sorted(
            field.name
            for field in dataclasses.fields(cls)
            if field.name not in data
            and field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING
        )
        if missing:
            raise ValueError(
                f"{origin} lacks {', '.join(missing)}, which a {cls.__name__} needs; was the model logged by "
                "another task? Train it again with this version."
            )
        return cls(**{key: value for key, value in data.items() if key in names})

    def updated(self, changes):
        """A copy with `changes` (a dict of field values, e.g. an evaluation's serving values) applied.

        Raises:
            TypeError: a key that is no field of this state (a programming error, not a user's).
        """
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(kw_only=True)
class LabelledState(FittedState):
    """The state of a classifier of named classes.

    Attributes:
        class_names (list[str]): the names in the model's output order.
        top_k (int): how many classes a prediction returns.
    """

    class_names: list
    top_k: int = 3
