"""Task registry: the domain modules and packages of this package register their tasks with `@register`
(`base`, `detection` and `image_classification` hold base classes and register none).

Task modules import only light libraries at top level (TensorFlow and Keras are
imported inside the methods that need them) so that `python -m pipelines list`
and every `--help` answer in well under three seconds.
"""

import difflib
import importlib
import pkgutil

TASKS = {}


def register(task_class):
    """Class decorator that adds a task to the registry under its `name`."""
    TASKS[task_class.name] = task_class
    return task_class


def _import_all():
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")


def names():
    """Returns:
    list[str]: the registered task names, sorted.
    """
    _import_all()
    return sorted(TASKS)


def get(name):
    """Returns a new instance of the task registered as `name`.

    Args:
        name (str): a task name such as "vision_classification".

    Raises:
        ValueError: the name is not registered; the message lists the known tasks.
    """
    _import_all()
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(
            f"unknown task '{name}'.{hint} Known tasks: {', '.join(sorted(TASKS))} (see `python -m pipelines list`)."
        )
    return TASKS[name]()
