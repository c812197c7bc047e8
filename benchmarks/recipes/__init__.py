"""Published Keras recipes re-implemented on the team's data and splits, for `benchmarks/time_to_quality.py`.

Each module re-implements one recipe from its published description in plain Keras 3 (Functional API,
`keras.ops` only), on the data and split of our benchmark for its task (the task's own loader carves them,
so the recipe and our pipeline train, validate and test on the same examples), and exposes:

    DATA (Data): the task, data, split and test figure the recipe shares with our pipeline's run;
    run(seed, data_root, quick=False) -> dict: trains the recipe once and returns `{"metric", "value",
        "train_seconds"}`: the name of the test figure, its value, and the seconds spent in `model.fit`.

Recipes train in float32, Keras' default and what they were published with, whatever policy a run before
them left set; they are seeded and deterministic as our runner is (`pipelines.runner.set_seed`). `quick`
caps the training examples as the task's `--quick` does and trains one epoch: a smoke test of every line,
no figure to report.
"""

import contextlib
import dataclasses
import importlib
import pathlib
import sys
import time

# task -> the module of its recipe, in the order `time_to_quality` runs them
RECIPES = {
    "vision_classification": "mnist_convnet",
    "nlp_sentiment": "sst2_text_cnn",
    "speech": "fsdd_audio_cnn",
    "recommendation": "movielens_collaborative_filtering",
    "predictive_maintenance": "cmapss_lstm",
    "fraud_detection": "creditcard_mlp",
}


@dataclasses.dataclass(frozen=True)
class Data:
    """What a recipe shares with our pipeline's run of its task.

    Attributes:
        task (str): the registered task.
        path (pathlib.Path): the data, relative to the team's data folder (`benchmarks.common.DATA`).
        split (tuple[str, ...]): `key=value` settings that make the task carve our benchmark's split; no tuning.
        scorer (shared.baselines.Scorer): the test figure, named and computed as the task's evaluation does.
        test_path (pathlib.Path | None): a labelled file, relative to the data folder, that the figure is
            reported on instead of the split's own test examples (None: the split's).
    """

    task: str
    path: pathlib.Path
    split: tuple
    scorer: object
    test_path: pathlib.Path | None = None


def get(task):
    """Returns:
    module: the recipe module of `task` (a key of `RECIPES`).
    """
    return importlib.import_module(f"{__name__}.{RECIPES[task]}")


def data_settings(settings, keys):
    """Returns:
    tuple[str, ...]: those of a benchmark's `key=value` settings whose key is in `keys` (the ones that choose
        its data and split), in order, leaving its tuning out.
    """
    return tuple(setting for setting in settings if setting.partition("=")[0] in keys)


def resolve(data, data_root, seed, quick=False, settings=()):
    """Resolves the task's config for `data` as `python -m pipelines run TASK --data PATH` would.

    Args:
        data (Data): the recipe's data.
        data_root (pathlib.Path): the team's data folder.
        seed (int): drives the split, as it does our pipeline's.
        quick (bool): apply the task's `--quick` budget first (its `max_examples` then caps training).
        settings (Iterable[str]): more `key=value` settings, after the split's.

    Returns:
        tuple[tasks.base.Task, tasks.base.TaskConfig]
    """
    import tasks
    from pipelines import config

    task = tasks.get(data.task)
    resolved = config.resolve(
        task, quick=quick, data=str(data_root / data.path), assignments=[*data.split, *settings, f"seed={seed}"]
    )
    return task, resolved


def splits(task, config, data, data_root):
    """The task's splits of `config.data`, training capped at `max_examples` as our runner caps it, and the test
    split swapped for `data.test_path`'s examples where the recipe reports on another file.

    Returns:
        tasks.base.Splits
    """
    found = task.load_data(config)
    found.train = found.train.cap(config.max_examples, config.seed)
    if data.test_path is not None:
        other = dataclasses.replace(config, data=str(data_root / data.test_path))
        found.test = task.evaluation_data(other, found.info).test  # class indices renumbered to training's
    return found


def start(seed):
    """Seeds and makes deterministic as our runner does, and builds in float32 from here on."""
    import keras

    from pipelines import runner

    runner.set_seed(seed)
    keras.mixed_precision.set_global_policy("float32")


def epochs(published, quick):
    """Returns:
    int: the recipe's published epochs, or one under `quick` (enough to run every line).
    """
    return 1 if quick else published


def fit(model, *arguments, **options):
    """`model.fit` with progress on stderr, as our runner prints it.

    Returns:
        tuple[keras.callbacks.History, float]: the history and the seconds `fit` took.
    """
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the benchmark's JSON line only
        history = model.fit(*arguments, verbose=1 if sys.stderr.isatty() else 2, **options)
    return history, time.perf_counter() - started


def result(data, targets, outputs, seconds):
    """Returns:
    dict: what `run` returns: the test figure `data.scorer` gives `outputs` against `targets` and the training
        seconds.
    """
    return {"metric": data.scorer.name, "value": round(data.scorer(targets, outputs), 4), "train_seconds": seconds}
