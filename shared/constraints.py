"""What values a config field accepts, declared beside it and checked in one place (`check`).

A field says it in its annotation, with the types below (`batch_size: Count = 64`, `dropout: Fraction
= 0.2`, `schedule: Choice(*SCHEDULES) = "cosine"`) or any `typing.Annotated[type, rule]`; `check`
reads every field's declaration before any data is read or any run is created, and a config class
adds rules that tie several fields together in a `check` method of its own.
"""

import dataclasses
import math
import typing
from typing import Annotated


@dataclasses.dataclass(frozen=True)
class Range:
    """A number between `low` and `high` (None: unbounded), each end included unless marked open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self):
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return "a number " + " and ".join(parts)


def AtLeast(low):  # CamelCase (pep8-naming's N802): reads as a type in annotations, like the Range it returns
    """A number >= `low` (counts, sizes, epochs)."""
    return Range(low)


Count = Annotated[int, AtLeast(1)]  # epochs, batch sizes, widths, layers: at least one
Size = Annotated[int, AtLeast(0)]  # sizes and caps where 0 means "keep the data's own" or "off"
Positive = Annotated[float, Range(0, low_open=True)]  # rates and durations: zero or less means nothing
NonNegative = Annotated[float, Range(0)]  # strengths where 0 switches the feature off
Fraction = Annotated[float, Range(0, 1, high_open=True)]  # shares of the data, dropout rates: [0, 1)
# the validation and test shares carved from the data: an empty split leaves nothing to stop early on or to score
Share = Annotated[float, Range(0, 1, low_open=True, high_open=True)]
Probability = Annotated[float, Range(0, 1)]  # target precisions and recalls, where 1 is reachable: [0, 1]
# Image and tile sides, 0 for the data's own: at 1,024 px one 32-filter float32 feature map of a 64-image batch is
# 8.6 GB, and a model keeps a dozen for its gradients, so larger squares cannot train in a workstation's memory
# (`MEMORY_SHARE` then checks the batch and width that go with a side).
Side = Annotated[int, Range(0, 1024)]
# Sides images are resized to before they are cut into tiles: at most a square of the 40-megapixel limit images are
# decoded within (`shared.images.MAX_PIXELS`); the tiles, or whole images, that train are checked as `Side`s are.
ResizedSide = Annotated[int, Range(0, 6324)]
# Training may plan on this share of the machine's memory: the data pipeline, TensorFlow's own buffers and the
# rest of the machine need the other half, and an estimate that is off by 2x still fits.
MEMORY_SHARE = 0.5


def pyramid_bytes(batch, side, filters, maps, levels):
    """Estimates the float32 feature maps a convolutional pyramid keeps for its gradients.

    Args:
        batch (int): examples per step.
        side (int): the input's side in pixels.
        filters (int): channels of the first level; each later level has twice the channels on a quarter of the
            pixels, so half the values.
        maps (float): feature maps kept per level (convolution, normalisation and activation outputs).
        levels (int): resolution levels.

    Returns:
        float: bytes.
    """
    return 4.0 * batch * side**2 * filters * maps * sum(0.5**level for level in range(levels))


def fits_memory(needed, settings):
    """Checks an estimate of the memory training needs against `MEMORY_SHARE` of this machine's.

    Args:
        needed (float): the estimated bytes.
        settings (str): the settings that need them, named in the message, e.g. "image_size=512 with batch_size=64".

    Raises:
        ValueError: the estimate is above the share, naming the settings and the memory.
    """
    import psutil

    total = psutil.virtual_memory().total
    if needed > MEMORY_SHARE * total:
        raise ValueError(
            f"{settings} needs about {needed / 2**30:.0f} GB to train, more than {MEMORY_SHARE:.0%} of "
            f"this machine's {total / 2**30:.0f} GB; lower one of them."
        )


@dataclasses.dataclass(frozen=True)
class Each:
    """A list (a tuple in the config) whose every item passes `rule`; an empty list passes."""

    rule: object

    def allows(self, value):
        return isinstance(value, (tuple, list)) and all(self.rule.allows(item) for item in value)

    def describe(self):
        return f"a list of items that are each {self.rule.describe()}"


# Layer widths (units, filters, embedding sizes): the widest layers of ImageNet-scale networks have 4,096 units; a
# square dense layer that wide holds 16.8 M weights, and wider ones take more memory than a CPU trains them in.
WIDEST = 4096
Width = Annotated[int, Range(1, WIDEST)]
Widths = Annotated[tuple, Each(Range(1, WIDEST))]  # hidden layer sizes, one per layer: each a Width
# First-stage widths of networks that double them at every later stage: ResNet-50's stages reach 2,048 channels, and
# 512 doubled over three stages already does.
BaseWidth = Annotated[int, Range(1, 512)]
# Tokens per text: padded batches grow with it, attention with its square; 4,096 holds whole IMDB reviews.
Length = Annotated[int, Range(1, 4096)]


@dataclasses.dataclass(frozen=True)
class OneOf:
    """One of the listed values."""

    choices: tuple

    def __init__(self, *choices):
        object.__setattr__(self, "choices", choices)

    def allows(self, value):
        return value in self.choices

    def describe(self):
        return "one of " + ", ".join(str(choice) for choice in self.choices)


def Choice(*choices):  # CamelCase (pep8-naming's N802): used as a type in annotations
    """A string (or other value) that must be one of `choices`."""
    return Annotated[type(choices[0]), OneOf(*choices)]


def declared(config_class):
    """Returns:
    dict[str, list]: each field's declared constraints (fields without any are left out). A field a
    subclass redeclares (a new default) keeps the constraints its base classes declared.
    """
    found = {}
    for klass in reversed(config_class.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        hints = typing.get_type_hints(klass, include_extras=True)
        for name in vars(klass).get("__annotations__", {}):
            rules = [rule for rule in getattr(hints[name], "__metadata__", ()) if hasattr(rule, "allows")]
            found.setdefault(name, [])
            found[name] += [rule for rule in rules if rule not in found[name]]
    return {name: rules for name, rules in found.items() if rules}


def check(config, owner):
    """Checks every declared constraint of `config`, then the class's own cross-field `check`.

    Args:
        config (TaskConfig): a resolved config.
        owner (str): who the config belongs to, named in the message (a task name).

    Raises:
        ValueError: the first field whose value is not allowed, naming the field, the value, what is
            allowed and the default.
    """
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    for name, rules in declared(type(config)).items():
        value = getattr(config, name)
        for rule in rules:
            if not rule.allows(value):
                default = defaults[name]
                example = f"[{','.join(map(str, default))}]" if isinstance(default, tuple) else default  # YAML's list
                raise ValueError(
                    f"{owner}: {name}={value!r} is not allowed; it must be {rule.describe()} "
                    f"(default {default!r}, e.g. --set {name}={example})."
                )
    if hasattr(config, "check"):
        try:
            config.check()
        except ValueError as error:
            raise ValueError(f"{owner}: {error}") from None
