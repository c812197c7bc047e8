"""Time to quality: our pipeline against published Keras recipes on the same split, and against a plain fit.

For each task with a recipe in benchmarks/recipes/ (`--tasks` chooses; all six by default) and each seed, back
to back on the same data and split (the task's own loader carves both; see benchmarks/recipes/__init__.py):

1. The recipe, re-implemented from its publication: its final test figure and the seconds it spent in
   `model.fit`.
2. Our pipeline: the task's defaults plus only the settings that select our benchmark's data and split, through
   `pipelines.runner.run` (logged to MLflow under `benchmark_time_to_quality`, never promoted). A Keras callback
   scores the recipe's test data after every epoch through the task's own evaluation, as the run scores its
   test split at the end; the callback's own time is taken off the clock, as `seconds_to_0.982` is in
   benchmarks/vision_classification.py. Reported: our training seconds until the figure first reached the
   recipe's (None if it never did) and after how many epochs, our final figure (the weights the run keeps,
   on the recipe's test data), our training seconds, and `time_ratio`, our seconds to the recipe's figure
   over the recipe's training seconds.
3. Throughput: our runner's training examples per second (every epoch's examples over its training seconds,
   as every benchmark reports them) against a plain `model.fit` of the same Keras model (`task.build_model`,
   compiled with the task's loss, metrics, optimiser and precision) on the same tf.data input
   (`shared.data.examples.make_dataset`, as the runner builds it), timed over at least `--steps` steps in
   whole epochs after one warm-up epoch that traces the step and fills the input cache. We want
   `throughput_ratio` (ours / plain) >= 0.95. The callback measures what the runner adds to the plain loop:
   `validation_seconds`, the validation pass each epoch that early stopping needs; `callback_seconds`, the
   runner's epoch-end callbacks (early stopping, MLflow's per-epoch metric logging, the resume backup's
   checkpoint); and `steady_examples_per_second`, our rate in the training steps alone from the second epoch
   on, whose `steady_ratio` to the plain rate is what the runner's own input and step cost (1: nothing). The
   rest is the first epoch's tracing and input decoding, which the plain figure's warm-up leaves out; it
   weighs most on small data, whose epochs take a second or two.

Usage:
    python -m benchmarks.time_to_quality [--tasks T,T] [--seeds 0,1,2] [--steps N] [--set key=value ...]
    python -m benchmarks.time_to_quality --quick --tasks fraud_detection     # a smoke test in seconds

`--set` applies to our pipeline's runs only. `--quick` gives both sides the task's `--quick` budget (the
recipes one epoch) and times `QUICK_STEPS` plain steps: its figures only show that everything runs.
Progress goes to stderr; the last stdout line is one JSON object: `task` ("time_to_quality"), `data`, `seeds`,
`quick`, `metrics` (per task: the test metric's name, `recipe_<metric>`, `recipe_train_seconds`,
`ours_<metric>`, `ours_train_seconds`, `ours_seconds_to_recipe`, `ours_epochs_to_recipe`, `time_ratio`,
`examples_per_second`, `plain_fit_examples_per_second`, `throughput_ratio`, `steady_examples_per_second`,
`steady_ratio`, `validation_seconds`, `callback_seconds`, the dtype `precision` our run trained in, its
`run_id`; means over several seeds, with their `sd` and `per_seed`), `train_seconds` (every training, recipes
and ours), `examples_per_second` (our runner's over all its trainings), the Keras `backend` and the `cpu`.
"""

import json
import math
import pathlib
import platform
import sys
import time

import keras

from benchmarks import common, recipes

STEPS = 200  # plain-fit steps timed: tens of seconds on the slower tasks, so start-up is a small share
QUICK_STEPS = 20  # under --quick: enough to run the timed loop, in a second or two


class QualityProbe(keras.callbacks.Callback):
    """Scores the recipe's test data after each epoch of our run, and times the runner's validation and callbacks.

    Keras calls callbacks in order and the runner puts its own first, so this one's epoch end comes after
    theirs, and its train end after early stopping restored the best epoch.

    Args:
        task (tasks.base.Task): the task.
        config (tasks.base.TaskConfig): the run's config (the same seed carves the same split here).
        data (benchmarks.recipes.Data): the recipe's data and test figure.
        data_root (pathlib.Path): the team's data folder.
        target (float): the recipe's test figure.

    Attributes:
        splits (tasks.base.Splits): the run's data with the recipe's test examples, baselines fitted as the run
            fits them before it evaluates (fraud detection's evaluation blends its trees in).
        reached (tuple[float, int] | None): training seconds and epochs when the figure first reached `target`.
        final (float | None): the figure of the weights training ended with.
        overhead_seconds (float): this callback's own time inside training, off every clock.
        step_seconds (list[float]): per epoch, the time from its start to its validation pass: the training
            steps and the epoch's input pipeline start.
        validation_seconds (float): time in the validation passes.
        callback_seconds (float): time in the runner's epoch-end callbacks.
        policy (str): the dtype policy the model trained in.
    """

    def __init__(self, task, config, data, data_root, target):
        super().__init__()
        self.task, self.config, self.scorer, self.target = task, config, data.scorer, target
        self.splits = recipes.splits(task, config, data, data_root)
        self.splits.baselines = task.baselines(self.splits, config)
        self.reached = self.final = None
        self.overhead_seconds = self.validation_seconds = self.callback_seconds = 0.0
        self.step_seconds = []

    def figure(self):
        """Returns:
        float: the test figure of the model's current weights, by the task's evaluation.
        """
        from pipelines import serving_model
        from shared import plots

        evaluation = self.task.evaluate(serving_model.BatchPredictor(self.model), self.splits, self.config)
        plots.close(evaluation.figures.values())
        return evaluation.metrics[self.scorer.name]

    def on_train_begin(self, logs=None):
        self.started, self.policy = time.perf_counter(), self.model.dtype_policy.name

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started, self.validated = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        self.testing = time.perf_counter()
        self.step_seconds.append(self.testing - self.epoch_started)

    def on_test_end(self, logs=None):
        self.validated = time.perf_counter()
        self.validation_seconds += self.validated - self.testing

    def on_epoch_end(self, epoch, logs=None):
        began = time.perf_counter()
        if self.validated is not None:  # the runner's epoch-end callbacks ran since
            self.callback_seconds += began - self.validated
        if self.reached is None:
            value = self.figure()
            if self.scorer.gain(value, self.target) >= 0:
                self.reached = (round(began - self.started - self.overhead_seconds, 1), epoch + 1)
        self.overhead_seconds += time.perf_counter() - began

    def on_train_end(self, logs=None):
        began = time.perf_counter()
        self.final = self.figure()
        self.overhead_seconds += time.perf_counter() - began


def plain_fit(task, config, splits, steps):
    """Training examples per second of a plain `model.fit` of the task's model on the runner's training input.

    Args:
        task (tasks.base.Task): the task.
        config (tasks.base.TaskConfig): the run's config.
        splits (tasks.base.Splits): the run's splits (training capped as the runner caps it).
        steps (int): the least steps timed; whole epochs, so every example counts once per epoch.

    Returns:
        float: examples per second over the timed epochs.
    """
    from shared import distribution, regularization
    from shared.data import examples

    train, info = splits.train, splits.info
    dataset = examples.make_dataset(
        train,
        shuffle=True,
        seed=config.seed,
        batch_map=task.train_map(config, info),
        cache=examples.cache_plan(config.cache, [train, splits.validation], config.cache_budget_mb)[0],
        buckets=task.length_buckets(config, info),
        **distribution.Placement().feed(config.batch_size, len(train)),
    )
    steps_per_epoch = -(-len(train) // config.batch_size)
    regularization.set_precision(config.precision, task.cpu_bfloat16)
    model = task.build_model(config, info)
    model.compile(
        optimizer=regularization.optimizer(config, steps_per_epoch),
        loss=task.loss(config, info),
        metrics=task.metrics(config, info),
        jit_compile=regularization.jit_compile(config),
    )
    weights = task.class_weight(config, splits)
    # shuffle=False as the runner passes it: make_dataset reshuffles every epoch itself
    model.fit(dataset, epochs=1, class_weight=weights, shuffle=False, verbose=0)  # traces the step, fills the cache
    epochs = math.ceil(steps / steps_per_epoch)
    started = time.perf_counter()
    model.fit(dataset, epochs=epochs, class_weight=weights, shuffle=False, verbose=0)
    return epochs * len(train) / (time.perf_counter() - started)


def measure(name, seed, arguments):
    """The recipe of task `name`, then our pipeline and the plain fit, at `seed`.

    Returns:
        tuple[dict, int, float, float]: the seed's metrics (see the module docstring), our run's training
        examples and seconds, and every training's seconds (recipe and ours).
    """
    from pipelines import runner

    recipe = recipes.get(name)
    keras.utils.clear_session()  # each training starts from a clean Keras state, as benchmarks/transfer.py's do
    print(f"time_to_quality {name} seed {seed}: the recipe ({recipe.__name__})", file=sys.stderr)
    theirs = recipe.run(seed, common.DATA, quick=arguments.quick)
    print(f"time_to_quality {name} seed {seed}: the recipe gives {theirs}", file=sys.stderr)
    task, config = recipes.resolve(recipe.DATA, common.DATA, seed, arguments.quick, arguments.set)
    probe = QualityProbe(task, config, recipe.DATA, common.DATA, theirs["value"])
    print(
        f"time_to_quality {name} seed {seed}: ours, the defaults with {[*recipe.DATA.split, *arguments.set]}",
        file=sys.stderr,
    )
    result = runner.run(task, config, experiment="benchmark_time_to_quality", promote="never", callbacks=[probe])
    ours = result.train_seconds - probe.overhead_seconds
    print(f"time_to_quality {name} seed {seed}: a plain model.fit", file=sys.stderr)
    plain = plain_fit(task, config, probe.splits, QUICK_STEPS if arguments.quick else arguments.steps)
    metric, rate = theirs["metric"], result.train_examples / ours
    # the training steps of every epoch but the first, whose tracing and input decoding the plain fit's warm-up
    # leaves out too
    later = probe.step_seconds[1:]
    steady = result.train_examples / len(probe.step_seconds) * len(later) / sum(later) if later else None
    seconds, epochs = probe.reached or (None, None)
    metrics = {
        "metric": metric,
        f"recipe_{metric}": theirs["value"],
        "recipe_train_seconds": round(theirs["train_seconds"], 1),
        f"ours_{metric}": round(probe.final, 4),
        "ours_train_seconds": round(ours, 1),
        "ours_seconds_to_recipe": seconds,
        "ours_epochs_to_recipe": epochs,
        "time_ratio": None if seconds is None else round(seconds / theirs["train_seconds"], 3),
        "examples_per_second": round(rate, 1),
        "plain_fit_examples_per_second": round(plain, 1),
        "throughput_ratio": round(rate / plain, 3),
        "steady_examples_per_second": None if steady is None else round(steady, 1),
        "steady_ratio": None if steady is None else round(steady / plain, 3),
        "validation_seconds": round(probe.validation_seconds, 1),
        "callback_seconds": round(probe.callback_seconds, 1),
        "precision": probe.policy,
        "run_id": result.run_id,
    }
    print(f"time_to_quality {name} seed {seed}: {json.dumps(metrics)}", file=sys.stderr)
    return metrics, result.train_examples, ours, theirs["train_seconds"] + ours


def over_seeds(rows, seeds):
    """Returns:
    dict: one seed's metrics as they are; for several, the means of the numeric ones (those with a None at some
        seed are left to `per_seed`), the metric's name and precision, `sd` and `per_seed`.
    """
    if len(rows) == 1:
        return rows[0]
    means, deviations = common.summarise(rows)
    return {
        "metric": rows[0]["metric"],
        "precision": rows[0]["precision"],
        **means,
        "sd": deviations,
        "per_seed": {str(seed): row for seed, row in zip(seeds, rows)},
    }


def cpu_model(path="/proc/cpuinfo"):
    """Returns:
    str: the CPU's model name as Linux lists it, or what Python's platform module knows elsewhere.
    """
    try:
        lines = pathlib.Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return platform.processor() or "unknown"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


def main():
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(recipes.RECIPES), help="comma-separated tasks (default: all six)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"plain-fit steps timed (default {STEPS})")
    parser.add_argument("--quick", action="store_true", help="smoke test: each task's --quick budget, recipes 1 epoch")
    arguments = parser.parse_args()
    names = [name.strip() for name in arguments.tasks.split(",") if name.strip()]
    unknown = sorted(set(names) - set(recipes.RECIPES))
    if unknown or not names:
        parser.error(f"--tasks {arguments.tasks!r}: choose among {', '.join(recipes.RECIPES)}")
    data = [recipes.get(name).DATA for name in names]
    paths = [common.DATA / path for found in data for path in (found.path, found.test_path) if path is not None]
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        sys.exit(
            f"benchmark data {', '.join(missing)} is absent (the team's ../shared/data folder must sit beside the repo)"
        )
    report, examples, ours, seconds = {}, 0, 0.0, 0.0
    for name in names:
        rows = []
        for seed in arguments.seeds:
            metrics, trained, ours_seconds, every_seconds = measure(name, seed, arguments)
            rows.append(metrics)
            examples, ours, seconds = examples + trained, ours + ours_seconds, seconds + every_seconds
        report[name] = over_seeds(rows, arguments.seeds)
    print(
        json.dumps(
            {
                "task": "time_to_quality",
                "data": " + ".join(str(path.relative_to(common.ROOT.parent)) for path in paths),
                "seeds": arguments.seeds,
                "quick": arguments.quick,
                "metrics": report,
                "train_seconds": round(seconds, 1),
                "examples_per_second": round(examples / max(ours, 1e-9), 1),
                "backend": keras.backend.backend(),
                "cpu": cpu_model(),
            }
        )
    )


if __name__ == "__main__":
    main()
