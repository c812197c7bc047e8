"""What every task shares: the training config, the `Task` contract and a classification base.

A domain module subclasses `Task` (or `ClassificationTask`) and declares only what differs:
its name, primary metric, config dataclass, data sources, model and raw-input predictor.
"""

import dataclasses
import sys

import numpy as np

from shared.constraints import Choice, Count, Fraction, NonNegative, Positive, Share, Size
from shared.data.examples import CACHE_MODES
from shared.data.sources import reader
from shared.fitted_state import FittedState
from shared.predict_arguments import TABLE_EXTENSIONS
from shared.regularization import JIT_COMPILE, PRECISIONS, SCHEDULES

# Knobs every task has, searched by `python -m pipelines sweep`; specs are documented in pipelines/sweep.py.
SHARED_SEARCH_SPACE = {
    "learning_rate": ["log", 3e-4, 1e-2],  # the AdamW range where small models from scratch train well
    "weight_decay": ["log", 1e-5, 1e-2],  # from negligible to strong decoupled decay
}

# Files that hold many inputs, one per row; `predict FILE.csv[:COLUMN]` reads them.
INPUT_KINDS = ("text", "file", "record")  # what one raw input is: see `Task.input_kind`
EVALUATION_SPLITS = ("all", "train", "validation", "test")  # what `evaluate --split` may name


@reader("embedded", ("embedded",), "embedded (the task's own offline data)")
def _embedded(task, argument, config):
    return task.embedded(config)


def search_space(**knobs):
    """A `search_space` field default: the shared knobs updated with a domain's own.

    Args:
        **knobs: config field -> spec such as `["float", 0.1, 0.5]`; None drops a shared knob the
            domain must not tune.

    Returns:
        dataclasses.Field: a field whose every config instance gets its own copy of the space.
    """
    merged = {**SHARED_SEARCH_SPACE, **knobs}
    return dataclasses.field(
        default_factory=lambda: {name: list(spec) for name, spec in merged.items() if spec is not None}
    )


@dataclasses.dataclass
class TaskConfig:
    """Training settings common to every task. Domain configs subclass this.

    Each field's annotation declares what it accepts (`shared.constraints`); `pipelines.config.resolve`
    checks every field, and the class's `check`, before any data is read or any run is created.
    """

    data: str = "embedded"  # offline and fast; `tfds:NAME[:SPLIT]` or a path for real data
    seed: int = 0  # one seed drives the split, weight init, shuffling and augmentation
    epochs: Count = 40  # an upper bound: early stopping usually ends training sooner
    batch_size: Count = 64  # small batches generalise well and keep a 2-core CPU busy
    learning_rate: Positive = 2e-3  # AdamW default range for small models trained from scratch
    weight_decay: NonNegative = 1e-4  # decoupled (AdamW) decay: mild, rarely hurts
    schedule: Choice(*SCHEDULES) = "cosine"  # cosine needs no tuning of patience; or plateau, constant
    label_smoothing: Fraction = 0.0  # >0 softens one-hot targets and calibrates overconfident nets
    # >0 validates and keeps a moving average of the weights over about this many epochs (e.g. 1)
    weight_averaging: NonNegative = 0.0  # 0 keeps the raw weights; averaging smooths the noise of the last steps
    early_stopping_patience: Count = 8  # epochs without val_loss progress before stopping
    validation_fraction: Share = 0.15  # carved from the pool when the source has no val split
    test_fraction: Share = 0.15  # carved from the pool when the source has no test split
    max_examples: Size = 0  # 0 uses all data; a cap makes smoke runs fast
    monitor: str = ""  # what early stopping watches, e.g. val_hit_rate_at_k; empty: the task's own (mostly val_loss)
    slice_by: str = ""  # a column (or path:REGEX for files) to report the metric per value of; empty: no slices
    max_slice_gap: NonNegative = 0.0  # >0 refuses promotion when the test slices' gap exceeds it; 0 only reports it
    # auto: a validation-fitted temperature is kept where it lowers validation ECE (probabilistic classifiers only)
    temperature_scaling: Choice("auto", "true", "false") = "auto"  # overconfident nets are common; it costs one pass
    explain_count: Size = 8  # test examples explained in plots/explain/ (0: none): a figure's worth, about a second
    precision: Choice(*PRECISIONS) = "auto"  # 16-bit compute only where the device has it natively: faster, same model
    jit_compile: Choice(*JIT_COMPILE) = "auto"  # auto: Keras uses XLA where it pays (GPU/TPU, JAX)
    tfds_data_dir: str = ""  # where TFDS keeps datasets; empty means TFDS's default (~/tensorflow_datasets)
    cache: Choice(*CACHE_MODES) = "auto"  # auto: in memory while decoded splits fit the budget, else decoded anew
    cache_budget_mb: Size = 512  # small real sets train from memory; larger ones stream
    # >0 tries the task's `portfolio` of configurations in this many minutes and keeps validation's choice
    budget_minutes: NonNegative = 0.0  # 0 trains this config alone: today's run time, and what --preset fast means
    portfolio_average: Size = 0  # >1 also averages the best N candidates into one model when validation prefers it
    # a logged model (models:/NAME@ALIAS, runs:/ID/model, a model folder) whose weights and preprocessing the run
    # continues from (`run --init-from`, pipelines.continued)
    init_from: str = ""  # empty: a model trained from scratch, the usual run
    # >0 mixes this many original training examples per new one into training, with init_from; 0: some
    # forgetting is the price of learning only the new data, and re-reading the old data costs time
    replay_fraction: NonNegative = 0.0  # 0: only the new data
    search_space: dict = search_space()  # what `sweep` tunes: optimiser knobs, which every task has

    def check(self):
        """Rules that tie fields together (each field's own range is declared beside it).

        Raises:
            ValueError: validation and test would leave no training data; slice_by's path rule does not compile;
                init_from with a portfolio budget, or replay_fraction without init_from.
        """
        from shared import slices

        slices.path_pattern(self.slice_by)
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"validation_fraction {self.validation_fraction} + test_fraction {self.test_fraction} "
                "must leave data for training (sum < 1)."
            )
        if self.init_from and self.budget_minutes:
            raise ValueError(
                f"init_from continues one model, but budget_minutes {self.budget_minutes:g} (or --preset) tries a "
                "portfolio of other models; drop one of them."
            )
        if self.replay_fraction and not self.init_from:
            raise ValueError(
                f"replay_fraction {self.replay_fraction:g} replays the training data of the model a run continues "
                "from; give it with --init-from URI, or drop it."
            )


@dataclasses.dataclass
class Splits:
    """Train / validation / test data plus a JSON-friendly description.

    Attributes:
        train (shared.data.examples.Split): an index in memory (`Examples`: arrays, or file paths that
            tf.data decodes) or a `shared.data.tfds.Stream`; a `(features, targets)` pair of arrays is
            taken as `Examples` of those arrays.
        validation (Split): same kind as `train`.
        test (Split): same kind as `train`.
        info (shared.fitted_state.FittedState): what the model and predictor need later (class names, input
            shape...), of the task's `state_class`; saved with the logged model as info.json.
        source (str): where the data came from, as the user wrote it (`embedded`, `tfds:mnist`, a path).
        name (str): a short dataset name for MLflow.
        synthetic (bool): True for generated demo data, so nobody mistakes it for a benchmark.
        fitted (bool): True when `info` is a trained model's (`Task.evaluation_data`): train and validation
            are empty, and what training chose on validation (a decision threshold) is read from `info`.
        baselines (list[shared.baselines.Baseline]): fitted on the training split by the runner before the
            model is evaluated (`Task.baselines`), so that a task's evaluation may serve one (fraud's blend).
    """

    train: object
    validation: object
    test: object
    info: dict
    source: str
    name: str
    synthetic: bool
    fitted: bool = False
    baselines: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        from shared.data import examples

        for role in ("train", "validation", "test"):
            setattr(self, role, examples.as_examples(getattr(self, role)))


@dataclasses.dataclass
class ServingSignature:
    """What `python -m pipelines export` wraps around a task's Keras model (`Task.serving_signature`).

    Every export holds the model on its tensor inputs. When the task's preprocessing can be written in
    TensorFlow (`raw_inputs` set), the SavedModel takes raw inputs instead (encoded images, strings, table
    columns) and runs that preprocessing in its graph. Otherwise, and for TFLite and ONNX, the caller
    prepares the tensors as `preprocessing.json` beside the artifact states.

    Attributes:
        prepare (Callable[[list], object]): raw inputs -> the model's inputs (an array, or a dict of arrays
            by input name), exactly as the task's predictor prepares them.
        preprocessing (dict): the contract of the tensor inputs (steps, statistics, file names, what the
            outputs mean), written to `preprocessing.json`; the export adds the input and output specs.
        files (dict[str, list[str]]): files written beside the artifact, one item per line (vocabularies).
        tensor_shapes (dict[str, tuple]): input name -> shape with the batch dimension, where an export
            should fix what the Keras model leaves open (a padded sequence length).
        raw_inputs (dict[str, tuple[tuple, str]] | None): input name -> (shape, dtype) of the raw-input
            graph, e.g. `{"image": ((None,), "string")}`; None when the preprocessing is not
            TensorFlow-expressible.
        raw_graph (Callable | None): dict of raw tensors -> the model's inputs, in TensorFlow ops.
        raw_feed (Callable[[list], dict] | None): raw inputs -> arrays for the raw-input graph (file paths
            and pixel arrays -> encoded image bytes, say).
        resources (list): objects `raw_graph` uses that the SavedModel must keep (lookup tables, layers).
        examples (Callable[[list], list] | None): the logged input example -> the raw inputs of the parity
            check (default: the example itself); a task may add variants its graph must handle.
        unsupported (str): why this model cannot be exported (empty when it can); `export` stops with it.
    """

    prepare: object
    preprocessing: dict = dataclasses.field(default_factory=dict)
    files: dict = dataclasses.field(default_factory=dict)
    tensor_shapes: dict = dataclasses.field(default_factory=dict)
    raw_inputs: dict | None = None
    raw_graph: object = None
    raw_feed: object = None
    resources: list = dataclasses.field(default_factory=list)
    examples: object = None
    unsupported: str = ""


class Task:
    """The contract between a domain and the generic runner.

    Class attributes a subclass sets:
        name (str): the CLI name and the registered MLflow model name.
        config_class (type): its `TaskConfig` subclass.
        state_class (type): its `shared.fitted_state.FittedState` subclass: the `Splits.info` its readers fit
            and its logged models load (`FittedState.from_json`).
        primary_metric (str): the metric `compare` sorts by (logged as `test_<primary_metric>`).
        higher_is_better (bool): the direction of the primary metric.
        tfds_name (str): its standard TFDS dataset (empty where TFDS has none for the domain).
        input_column (str): the column holding raw inputs for the logged model.
        input_kind (str): what one raw input is: "text" (a string), "file" (a path) or "record" (a row of
            named values); `cli_inputs` expands `predict` arguments by it, and the logged model checks each
            input of a "file" task with `shared.inputs.file_input` (a path it may read, `{"b64": ...}` bytes,
            or decoded numbers).
        input_extensions (tuple[str, ...]): the files a folder INPUT stands for: for "file" tasks one input
            each (image or audio suffixes), for the others tables of inputs.
        table_columns (str): the CSV/JSONL columns holding inputs, comma-separated, first found wins
            (empty: `input_column`, for "file" tasks also path, file, filename); "record" tasks read whole
            rows instead.
        key_params (tuple[str, ...]): the config fields that most often explain why two runs differ,
            shown by `compare` (the shared training budget, plus a task's model choices).
        quick_overrides (dict): config values for `--quick` smoke runs.
        monitor (str): the validation quantity early stopping watches (its mode follows the name).
        answer_key (str): the key of each prediction answer that carries the prediction itself.
        predict_chunk (int): inputs per `predict_raw` call, for inputs that decode into large arrays
            (images, audio): a request of many rows then holds one chunk's decoded inputs at a time;
            0 passes them all at once (each Keras `predict` call costs a few tenths of a second).
        readers (tuple[str, ...]): the registered readers (`shared.data.sources.READERS`) `read` tries on
            `--data`, in order; `embedded` reads the task's own offline data (`embedded`).
        cpu_bfloat16 (bool): whether `precision=auto` trains in mixed bfloat16 on a CPU with native bfloat16
            (`shared.regularization.set_precision`); measured per task in docs/benchmarks.md.
        robustness_kind (str | None): the robustness figure the runner adds to its test metrics
            (`pipelines.runner.robustness`): "fgsm" for a softmax classifier whose decoded test features are its
            one float input, "text" for one whose decoded test features are raw strings, None for none.
        explain_kind (str | None): how the model's answers are explained (`shared.explain.KINDS`: "image",
            "table", "sequence", "spectrogram", "tokens", "segmentation"), in `plots/explain/KIND.png` of every
            run (`pipelines.runner.explain`) and in each answer of `predict --explain`; None: not explained.
        explain_input (str | None): the dict key of the float model input explained, when the model takes a
            dict (the others are held as they are); None: the model's one input.
    """

    name = ""
    config_class = TaskConfig
    state_class = FittedState
    primary_metric = ""
    higher_is_better = True
    tfds_name = ""
    input_column = "input"
    input_kind = "text"
    input_extensions = TABLE_EXTENSIONS
    table_columns = ""
    key_params = ("epochs", "batch_size", "learning_rate")
    quick_overrides = {"epochs": 1, "max_examples": 600}
    monitor = "val_loss"  # what early stopping and ReduceLROnPlateau watch; e.g. "val_pr_auc" for detectors
    answer_key = "label"
    predict_chunk = 0
    readers = ("embedded",)
    robustness_kind = None  # most tasks' inputs (tables, ids, pairs) have no perturbation of a stated size
    explain_kind = None  # a new task explains nothing until it says how (every task here does)
    explain_input = None  # a model of one float input
    # precision=auto trains in bfloat16 on CPUs that compute it natively only where benchmarks/precision.py
    # measured that it pays and the metric holds (docs/benchmarks.md); GPUs and TPUs choose regardless
    cpu_bfloat16 = False
    # The configurations `--preset balanced|best` tries in order, the defaults first (see `portfolio`).
    candidates = (("default", {}),)
    # What a user can try when a run learns no more than a trivial baseline (the CLI's warning line).
    remedies = (
        "Likely causes: too few epochs or examples, or a model too large for the data. Try more epochs "
        "(--set epochs=N), more data, or --preset balanced to try other models."
    )

    def watched(self, config):
        """Returns:
        str: the validation metric early stopping, the plateau schedule and sweeps follow: the config's
        `monitor` when set, else the task's.
        """
        return config.monitor or self.monitor

    @property
    def description(self):
        """str: the task's one-line description: the first paragraph of its module's docstring, which every task
        module opens with (e.g. "Fraud detection: a tabular MLP ... for rare positives.")."""
        text = sys.modules[type(self).__module__].__doc__ or ""
        return " ".join(text.strip().split("\n\n")[0].split())

    @property
    def key_setting(self):
        """str: the config field that most tells this task's runs apart (shown in run names and version tags):
        the first of `key_params` the task adds to the base ones, e.g. "backbone"."""
        return next((name for name in self.key_params if name not in Task.key_params), "")

    def run_setting(self, params, info):
        """Returns the short text that tells this run's model apart in its name (default: `key_setting`'s value).

        Args:
            params (dict): the run's flattened config.
            info (FittedState | None): `Splits.info` once the data is loaded, else None.
        """
        return str(params.get(self.key_setting, "")) if self.key_setting else ""

    def load_data(self, config):
        """Returns a `Splits` for `config.data`: by default what `read` returns, for tasks whose readers return
        `Splits`; a task whose readers return raw data prepares it here."""
        return self.read(config)

    def read(self, config):
        """Reads `config.data` with the first of the task's `readers` that takes its kind (what the readers return).

        Raises:
            ValueError: the source does not exist, no reader of the task takes it, or the reader refuses it.
        """
        from shared.data.sources import read_source

        return read_source(self, config, self.readers)

    def embedded(self, config):
        """Returns the task's own offline data, `--data embedded`, as its other readers return theirs."""
        raise NotImplementedError

    def load_fitted(self, config, info):
        """Reads `config.data` as `load_data` does, but in a trained model's terms: nothing is fitted on this data.

        The default is `load_data` itself, which suits a task whose examples hold raw values (texts, file
        paths, numbers) that `eval_map`, `evaluate` and the predictor prepare from `info`. A task whose loader
        bakes what it fits into the examples (class indices, statistics, vocabularies) overrides this to
        express them with the model's `info` instead.

        Args:
            config (TaskConfig): the model's logged config with the user's overrides.
            info (FittedState): the model's `Splits.info`, as saved beside it.

        Returns:
            Splits: train, validation and test of `config.data` as `load_data` carves them.

        Raises:
            ValueError: what `load_data` refuses, or data the model cannot be evaluated on (named).
        """
        return self.load_data(config)

    def load_continued(self, config, info):
        """Reads `config.data` to train a logged model further (`run --init-from`): in its terms, as `load_fitted`
        reads it (the default), but with what training adds (a detector's oversampling) where a task's
        `load_fitted` leaves that out.

        Args:
            config (TaskConfig): the run's config (the model's logged config with the user's settings).
            info (FittedState): the model's `Splits.info`, as saved beside it.

        Returns:
            Splits: train, validation and test of `config.data`; the caller gives them the model's `info`.

        Raises:
            ValueError: what `load_fitted` refuses (a class the model does not know, named), or data the model
                cannot learn from without new preprocessing (a column it does not know, named).
        """
        return self.load_fitted(config, info)

    def evaluation_data(self, config, info, split="all"):
        """The labelled examples `python -m pipelines evaluate` scores a trained model on.

        Args:
            config (TaskConfig): the model's logged config with the user's overrides.
            info (FittedState): the model's `Splits.info`.
            split (str): "all" (every example of `config.data`) or the one split `load_data` carves with
                the config's seed and fractions ("test" is the model's own test set on its training data).

        Returns:
            Splits: `test` holds the examples, `train` and `validation` are empty, `info` is the model's and
            `fitted` is True.

        Raises:
            ValueError: an unknown split, a source `load_fitted` refuses, or no example in the split.
        """
        from shared.data import examples

        if split not in EVALUATION_SPLITS:
            raise ValueError(f"unknown --split '{split}'; use one of {', '.join(EVALUATION_SPLITS)} (default all).")
        loaded = self.load_fitted(config, info)
        chosen = examples.join(
            [loaded.train, loaded.validation, loaded.test] if split == "all" else [getattr(loaded, split)]
        )
        if not len(chosen):
            raise ValueError(f"'{config.data}' has no {split} examples to evaluate on.")
        empty = examples.empty_like(chosen)
        return Splits(
            empty, empty, chosen, dataclasses.replace(info), loaded.source, loaded.name, loaded.synthetic, fitted=True
        )

    def check_splits(self, splits, config):
        """Checks what training and evaluation will need of the loaded splits, before the MLflow run is created
        (`load_data` checks the data itself). Default: nothing.

        Raises:
            ValueError: splits the run could not finish with, named (a class missing where a threshold is chosen).
        """

    def build_model(self, config, info):
        """Returns an uncompiled Keras model (Keras layers and `keras.ops` only)."""
        raise NotImplementedError

    def loss(self, config, info):
        """Returns the Keras loss."""
        raise NotImplementedError

    def metrics(self, config, info):
        """Returns the named Keras metrics tracked per epoch."""
        return []

    def class_weight(self, config, splits):
        """Returns a `class_weight` dict for `fit`, or None."""
        return None

    def train_map(self, config, info):
        """Returns a function applied to each training batch `(x, y)` (augmentation, target encoding)."""
        return self.eval_map(config, info)

    def eval_map(self, config, info):
        """Returns a function applied to each validation batch, or None."""
        return None

    def length_buckets(self, config, info):
        """Returns `(length, max_length)` to batch examples of similar length together (text), or None.

        `length(features, targets)` gives one raw example's length as a tf.int32 scalar; see
        `shared.data.examples.make_dataset`.
        """
        return None

    def evaluate(self, model, splits, config):
        """Returns an `Evaluation` of `model` on `splits.test` (what the predictor needs beyond `splits.info`,
        such as a decision threshold chosen on the validation split, goes in its `serving` dict; the test split's
        `outputs`, when it holds them, spare the runner a second pass for the baselines)."""
        raise NotImplementedError

    def scorers(self, config, info):
        """Returns the figures a model is compared with its baselines by (`shared.baselines.Scorer`, named as
        `evaluate` names them); the first decides whether the model learned anything. Default: none, no gate."""
        return []

    def outputs(self, model, splits, role, config):
        """Returns `(targets, outputs)` of `model` on the split `role` ("validation" or "test") of `splits`, one
        row per example, in the form `scorers` read (`splits.info` holds what the served model uses)."""
        raise NotImplementedError(f"{self.name} does not say how its model's outputs are scored (outputs).")

    def probabilistic(self, info):
        """Whether the model's test outputs (`Evaluation.outputs`) are class probabilities, whose calibration the
        runner then measures (`shared.evaluation.calibration`): one positive-class probability per example, or one
        probability per class. Default: False (scores, regressions, rankings, texts, pixel counts).

        Args:
            info (FittedState): `Splits.info` (a task of several modes says which one the model was trained in).
        """
        return False

    def baselines(self, splits, config):
        """Returns the baselines (`shared.baselines.Baseline`) fitted on `splits.train`, answering its validation
        and test examples: a trivial one (which uses no input) and, where one exists, a classical one."""
        return []

    def portfolio(self, config):
        """Returns the configurations a budgeted run tries, in order: `(name, settings)` pairs of config values,
        the task's defaults first (`pipelines.portfolio`). Default: the class's `candidates`."""
        return list(self.candidates)

    def folds(self, splits, count, seed):
        """Returns `count` `Splits` that hold out each fold of training + validation in turn (k-fold
        cross-validation on small data), or an empty list when the task's examples must not be folded
        (groups, time order, augmented copies). Default: empty."""
        return []

    def input_example(self, splits):
        """Returns a short list of raw inputs, logged as the model's input example."""
        raise NotImplementedError

    def custom_objects(self):
        """Returns the custom Keras classes the saved model needs to load, by name (default none)."""
        return {}

    def cli_inputs(self, inputs):
        """Turns `predict` and `monitor` arguments into (echo, raw input) pairs by the task's `input_kind`
        (`shared.predict_arguments.expand`: folders, tables of requests, text files, JSON rows); a task
        overrides it to add a form of input of its own."""
        from shared import predict_arguments

        return predict_arguments.expand(self, inputs)

    def input_groups(self, info, inputs):
        """Which raw inputs depend on each other, so that batched prediction answers them in one call.

        Args:
            info (FittedState): `Splits.info` saved with the model.
            inputs (list): the raw inputs, in order.

        Returns:
            list | None: a key per input (inputs sharing a key go to the model together), or None when
            every input is answered on its own (the default).
        """
        return None

    def predict_raw(self, model, info, inputs):
        """Runs the model on raw inputs.

        A task with an `explain_kind` takes a keyword `explain` too: None, or the folder of `predict --explain`,
        which adds an `explanation` field to each answer (`explained`).

        Args:
            model (keras.Model): the trained model.
            info (FittedState): `Splits.info` saved at training time.
            inputs (list): raw inputs (file paths, bytes, arrays, strings... by domain).

        Returns:
            list[dict]: one JSON-friendly answer per input.
        """
        raise NotImplementedError

    def output_names(self, info):
        """Returns:
        list[str]: the model's output columns by name: its class names, or the answer's key for one output.
        """
        return list(getattr(info, "class_names", None) or [self.answer_key])

    def explanation_names(self, info):
        """Returns the names of an explained input's features (tables) or sensors (sequences), or None (images,
        spectrograms, and features known by position)."""
        return None

    def explained_examples(self, info, targets, outputs, count, seed):
        """Chooses the test examples a run explains (`pipelines.runner.explain`) and titles them.

        Args:
            info (FittedState): the served `Splits.info`.
            targets (np.ndarray): the test split's targets, as `outputs` returns them.
            outputs (np.ndarray): the model's test outputs, as `outputs` returns them.
            count (int): how many.
            seed (int): the run's seed.

        Returns:
            tuple[np.ndarray, list[str]]: positions in the test split (a seeded random choice, in order) and a
            title per example: its truth, the explained output and the model's value of it.
        """
        from shared import explain

        targets, outputs = np.asarray(targets), np.asarray(outputs)
        positions = explain.chosen(len(targets), count, seed)
        names = self.output_names(info)
        titles = []
        for position, column in zip(positions, explain.explained_outputs(outputs[positions])):
            value = outputs[position].reshape(-1)[column]
            truth = (
                names[int(targets[position])] if getattr(info, "class_names", None) else f"{float(targets[position]):g}"
            )
            titles.append(f"true {truth}\n{names[column]}: {value:.2f}")
        return positions, titles

    def explanation_figure(self, model, splits, targets, outputs, config):
        """The figure of a run's explained test examples (`pipelines.runner.explain`): those `explained_examples`
        chooses, explained by `explain_kind` (`shared.explain`) for their explained output.

        Args:
            model (keras.Model): the trained model.
            splits (Splits): the served splits (`Splits.info` as the logged model has it).
            targets (np.ndarray): the test split's targets, as `outputs` returns them.
            outputs (np.ndarray): the model's test outputs, as `outputs` returns them.
            config (TaskConfig): the run's config (`explain_count`, `seed`).

        Returns:
            matplotlib.figure.Figure: logged as `plots/explain/KIND.png`.
        """
        from shared import explain

        positions, titles = self.explained_examples(splits.info, targets, outputs, config.explain_count, config.seed)
        examples = splits.test.pick(positions)[0]
        found, inputs = self.explanation(model, splits.info, examples, np.asarray(outputs)[positions])
        return explain.figure(found, inputs, titles, self.explanation_names(splits.info))

    def explanation(self, model, info, examples, outputs):
        """Explains the model's answers to some examples by `explain_kind` (`shared.explain.explain`), each for its
        predicted class (the positive one of two) or its one output.

        Args:
            model (keras.Model): the trained model.
            info (FittedState): `Splits.info` as the logged model has it.
            examples (np.ndarray | dict | list): the examples as the test split's features hold them and as
                `predict_raw` passes them to `explained`: the model's inputs (the default), or raw values (texts)
                that a task's own `explanation` prepares.
            outputs (np.ndarray | list): the model's outputs for them, as `outputs` returns them.

        Returns:
            tuple[shared.explain.Explanation, np.ndarray | dict]: the explanation, and the model inputs it explains
            (`shared.explain.figure` and `answers` draw them).
        """
        from shared import explain

        columns = explain.explained_outputs(outputs)
        return explain.explain(self.explain_kind, model, examples, columns, key=self.explain_input), examples

    def explained(self, answers, model, info, batch, outputs, explain, sources):
        """Adds to each answer its `explanation` field when `predict --explain` asks for one (`shared.explain.answers`).

        Args:
            answers (list[dict]): the answers of the batch, in order.
            model (keras.Model): the trained model.
            info (FittedState): `Splits.info` saved at training time.
            batch (np.ndarray | dict | list): the examples `explanation` takes: their model inputs
                (`prepare_inputs`), or the raw inputs where the task prepares them there.
            outputs (np.ndarray | None): the model's outputs for them (None where `explanation` needs none).
            explain (str | None): the folder image and spectrogram maps are written to; None: no explanation.
            sources (list): the raw inputs (their file names name the maps).

        Returns:
            list[dict]: the answers.
        """
        if explain is None:
            return answers
        from shared import explain as explaining

        found, inputs = self.explanation(model, info, batch, outputs)
        fields = explaining.answers(
            found, inputs, self.output_names(info), explain, sources, self.explanation_names(info)
        )
        for answer, field in zip(answers, fields):
            answer["explanation"] = field
        return answers

    def prepare_inputs(self, info, inputs):
        """Returns the model-ready batch for a list of raw inputs: the preprocessing half of `predict_raw`."""
        raise NotImplementedError(f"{self.name} does not say how raw inputs become model inputs (prepare_inputs).")

    def serving_signature(self, model, info):
        """Returns what `python -m pipelines export` wraps around the model (a `ServingSignature`).

        The default is the model on its tensor inputs, prepared by `prepare_inputs`; a task overrides it
        to put TensorFlow-expressible preprocessing into the graph or to describe its tensor contract.
        """
        serving = ServingSignature(prepare=lambda inputs: self.prepare_inputs(info, inputs))
        if info.temperature is not None:
            serving.preprocessing["temperature"] = {
                "value": info.temperature,
                "meaning": "fitted on validation and folded into the output layer: serve the outputs as they are",
            }
        return serving

    def drift_view(self, model, info, batch):
        """What `python -m pipelines monitor` measures of a batch of model inputs (see `shared.drift`).

        Args:
            model (keras.Model | BatchPredictor): the trained model (images take their embeddings from it).
            info (FittedState): `Splits.info` saved with the model.
            batch (np.ndarray | dict): model inputs, from `drift_inputs` (raw inputs) or `drift_map` (a split).

        Returns:
            shared.drift.View | None: None (the default) when the task's inputs are not monitored.
        """
        return None

    def drift_inputs(self, info, inputs):
        """Returns the batch `drift_view` reads for a list of raw inputs, as `monitor` reads them (default:
        `prepare_inputs`)."""
        return self.prepare_inputs(info, inputs)

    def drift_map(self, config, info):
        """Returns the batch map that makes a split's decoded examples the batch `drift_view` reads (default:
        `eval_map`, whose features are the model's inputs)."""
        return self.eval_map(config, info)


def balanced_class_weights(labels, classes, above=None):
    """Balanced class weights `n / (classes * count)`, the `class_weight` of `fit`.

    Args:
        labels (np.ndarray): integer class labels of the training split.
        classes (int): how many classes there are (absent ones count as one example).
        above (float | None): return None unless the largest class outnumbers the smallest by more than this
            many times, and every class is present; None always weights.

    Returns:
        dict[int, float] | None
    """
    counts = np.bincount(np.asarray(labels, dtype="int64"), minlength=classes)
    if above is not None and (counts.min() == 0 or counts.max() / counts.min() <= above):
        return None
    return {index: float(counts.sum() / (classes * max(1, count))) for index, count in enumerate(counts)}


class ClassificationTask(Task):
    """Single-label classification: one-hot targets, smoothed cross-entropy, class weights."""

    primary_metric = "accuracy"

    def loss(self, config, info):
        import keras

        return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)

    def metrics(self, config, info):
        import keras

        return [keras.metrics.CategoricalAccuracy(name="accuracy")]

    def class_weight(self, config, splits):
        """Balanced weights when classes are imbalanced by more than 1.5x (milder imbalance trains fine)."""
        return balanced_class_weights(splits.train.targets, len(splits.info.class_names), above=1.5)

    def load_fitted(self, config, info):
        """`load_data`, with class indices renumbered to the model's class names.

        Raises:
            ValueError: the data holds a class the model was not trained on (named), or TFDS streams whose
                class names differ from the model's.
        """
        from shared.data import examples

        splits = super().load_fitted(config, info)
        loaded, known = list(splits.info.class_names), list(info.class_names)
        if loaded == known:
            return splits
        roles = ("train", "validation", "test")
        if not all(isinstance(getattr(splits, role), examples.Examples) for role in roles):
            raise ValueError(
                f"'{config.data}' names its classes {loaded[:10]}, the model {known[:10]}; "
                "evaluate on data with the model's classes."
            )
        present = {loaded[index] for role in roles for index in np.unique(getattr(splits, role).targets)}
        unknown = sorted(present - set(known))
        if unknown:
            raise ValueError(
                f"'{config.data}' holds class(es) {unknown[:10]} that the model was not trained on "
                f"(it knows {known[:20]}); use examples of its classes only."
            )
        renumber = np.array([known.index(name) if name in known else -1 for name in loaded], dtype="int64")
        for role in roles:
            split = getattr(splits, role)
            setattr(splits, role, dataclasses.replace(split, targets=renumber[split.targets]))
        splits.info.class_names = known
        return splits

    def eval_map(self, config, info):
        import tensorflow as tf

        num_classes = len(info.class_names)
        return lambda features, labels: (features, tf.one_hot(labels, num_classes))

    def scorers(self, config, info):
        from shared import baselines

        # balanced accuracy decides: it is 1/k for any constant answer, however imbalanced the classes
        return [baselines.BALANCED_ACCURACY, baselines.ACCURACY, baselines.ROC_AUC]

    def outputs(self, model, splits, role, config):
        from shared.data import examples

        probabilities, labels = examples.predict(model, getattr(splits, role), config.batch_size)
        return labels, probabilities

    def probabilistic(self, info):
        """True: the softmax head's class probabilities."""
        return True

    def baselines(self, splits, config):
        """The majority class, answering the training class frequencies (ROC-AUC 0.5)."""
        from shared import baselines

        answer = baselines.prior(splits.train.targets, len(splits.info.class_names))
        return [baselines.Baseline("majority", answer=answer, trivial=True)]

    def folds(self, splits, count, seed):
        """Stratified folds of training + validation: classified examples are independent of each other."""
        from shared.data.splits import folds

        return [
            dataclasses.replace(splits, train=train, validation=held)
            for train, held in folds(splits.train, splits.validation, count, seed)
        ]

    def evaluate(self, model, splits, config):
        from shared import evaluation

        labels, probabilities = self.outputs(model, splits, "test", config)
        result = evaluation.classification(labels, probabilities, splits.info.class_names)
        result.outputs = labels, probabilities
        return result

    def predict_raw(self, model, info, inputs, explain=None):
        from shared import evaluation

        batch = self.prepare_inputs(info, inputs)
        probabilities = model.predict(batch, verbose=0)
        answers = evaluation.top_k(probabilities, info.class_names, k=info.top_k)
        return self.explained(answers, model, info, batch, probabilities, explain, inputs)

    def serving_signature(self, model, info):
        serving = super().serving_signature(model, info)
        serving.preprocessing["meaning"] = {"probabilities": "one per class, in the order of class_names"}
        serving.preprocessing["class_names"] = list(info.class_names)
        return serving
