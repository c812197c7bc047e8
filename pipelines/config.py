"""Resolve a task's config: dataclass defaults <- a logged model's config <- --quick <- YAML file <- --set key=value."""

import dataclasses
import typing
import warnings

import yaml

from shared import constraints


def field_types(config_class):
    """Returns:
    dict[str, type]: each config field's declared type.
    """
    hints = typing.get_type_hints(config_class)
    return {field.name: hints[field.name] for field in dataclasses.fields(config_class)}


def coerce(key, value, expected):
    """Checks `value` against the field type, converting where the meaning is unambiguous.

    Args:
        key (str): the config field, named in the error.
        value (object): the value given.
        expected (type): the field's declared type.

    Returns:
        object: `value`, converted (int or numeric text -> float, number -> str, list -> tuple) where needed.

    Raises:
        ValueError: the value does not fit the type.
    """
    if expected is float:
        value = as_number(value)  # YAML 1.1 reads 1e-5 (no dot) as text
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is str and isinstance(value, bool):  # YAML reads true/false as booleans
        return str(value).lower()
    if expected is str and isinstance(value, (int, float)):
        return str(value)
    if expected is tuple and isinstance(value, list):
        return tuple(value)
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise ValueError(
        f"config key '{key}' expects {expected.__name__}, got {value!r} "
        f"({type(value).__name__}); for example --set {key}={_example(expected)}."
    )


def as_number(value):
    """Returns:
    object: `value` as a float when it is text spelling a number (PyYAML reads `1e-3`, without
    a dot, as text), else `value` unchanged.
    """
    if not isinstance(value, str):
        return value
    try:
        return float(value)
    except ValueError:
        return value


def _example(expected):
    examples = {
        int: "3",
        float: "0.001",
        bool: "true",
        str: "text",
        tuple: "[1,2]",
        dict: "'{learning_rate: [log, 1e-4, 1e-2]}'",
    }
    return examples.get(expected, "...")


def _check_keys(config_class, overrides, origin):
    types = field_types(config_class)
    unknown = sorted(set(overrides) - set(types))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {', '.join(unknown)} in {origin}; valid keys: {', '.join(sorted(types))}."
        )
    return {key: coerce(key, value, types[key]) for key, value in overrides.items()}


def parse_set(assignments):
    """Parses `--set key=value` strings; values are read as YAML scalars (3, 0.1, true, text).

    Raises:
        ValueError: an assignment without `=`.
    """
    overrides = {}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        if not separator or not key:
            raise ValueError(f"--set expects key=value, got '{assignment}'.")
        try:
            overrides[key.strip()] = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            overrides[key.strip()] = text
    return overrides


def read_yaml(path):
    """Reads a YAML mapping of config overrides.

    Raises:
        ValueError: the file is missing, unreadable or not a mapping.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            content = yaml.safe_load(handle)
    except OSError as error:
        raise ValueError(f"cannot read config file '{path}': {error.strerror}.") from None
    except UnicodeDecodeError as error:
        raise ValueError(
            f"config file '{path}' is not UTF-8 text (byte 0x{error.object[error.start]:02x} at "
            f"offset {error.start}); save it as UTF-8 YAML."
        ) from None
    except yaml.YAMLError as error:
        first_line = str(error).splitlines()[0]
        raise ValueError(f"config file '{path}' is not valid YAML: {first_line}.") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ValueError(f"config file '{path}' must be a mapping of key: value, got {type(content).__name__}.")
    return content


def resolve(task, quick=False, config_file=None, assignments=(), base=None, preset=None, **explicit):
    """Builds the task's config from its defaults and the user's overrides.

    Args:
        task (tasks.base.Task): the task.
        quick (bool): apply the task's tiny smoke-run budget first (over `base`).
        preset (str | None): a named budget (`pipelines.portfolio.PRESETS`), applied before the YAML file and
            `--set`, which can still change it.
        base (dict | None): a config logged with a trained model (`evaluate`), applied over the defaults;
            keys the task no longer has are dropped with a warning. An `init_from` among the user's values
            (`run --init-from URI`) makes that model's logged config the base (`pipelines.continued`).
        config_file (str | None): a YAML mapping of overrides.
        assignments (Iterable[str]): `key=value` strings from `--set`, applied last.
        **explicit: values from dedicated flags (`data`, `seed`); None means not given.

    Returns:
        TaskConfig: the resolved config.

    Raises:
        ValueError: an unknown key, a value of the wrong type, or a value its field does not allow
            (`shared.constraints`), named with the task, the field and what is allowed.
    """
    user = dict(task.quick_overrides) if quick else {}
    if preset is not None:
        from pipelines.portfolio import PRESETS

        if preset not in PRESETS:
            raise ValueError(f"unknown --preset '{preset}'; use one of {', '.join(PRESETS)}.")
        user.update(PRESETS[preset])
    if config_file:
        user.update(_check_keys(task.config_class, read_yaml(config_file), f"'{config_file}'"))
    user.update({key: value for key, value in explicit.items() if value is not None})
    user.update(parse_set(assignments))
    if user.get("init_from"):  # a continued model keeps its settings (its architecture) unless the user changes them
        from pipelines import continued

        base = continued.logged_config(task, str(user["init_from"]))
    values = {}
    if base:
        known = set(field_types(task.config_class))
        dropped = sorted(set(base) - known)
        if dropped:
            warnings.warn(
                f"ignoring the model's config key(s) {', '.join(dropped)}, which {task.name} no longer has.",
                stacklevel=2,
            )
        values.update(
            _check_keys(
                task.config_class, {key: base[key] for key in base if key in known}, "the model's logged config"
            )
        )
    values.update(user)
    config = task.config_class(**_check_keys(task.config_class, values, "--set"))
    constraints.check(config, task.name)
    return config


def flatten(config):
    """Returns:
    dict[str, object]: the config as a flat dict, ready to log as params.
    """
    return dataclasses.asdict(config)
