"""The model every run logs (`ServingModel`): what `mlflow.pyfunc.load_model`, `predict` and `serve` answer with.

It lives here, not in `shared/`, because it looks the task up in the registry (`tasks.get`), and
`shared/` never imports `tasks/`. Logged models carry `tasks/`, `shared/` and `pipelines/` as their
code, so a fresh process (`mlflow models serve`) finds this class where it was pickled from.
"""

import functools
import json

import numpy as np

import tasks
from shared import inputs, tracking


class ServingModel(tracking.PythonModel):
    """The logged model: raw inputs in, JSON-friendly answers out, preprocessing included.

    It loads the Keras model and the data description saved at training time and hands raw
    inputs to the task's `predict_raw`, the same code path as `python -m pipelines predict`.
    It subclasses MLflow's `PythonModel` (which `mlflow.pyfunc` requires of a logged Python model),
    taken from `shared.tracking`, so that module stays the only one importing mlflow.
    """

    def load_context(self, context):
        with open(context.artifacts["info"], encoding="utf-8") as handle:
            saved = json.load(handle)
        self.task = tasks.get(saved["task"])
        self.info = self.task.state_class.from_json(saved)
        self.model = BatchPredictor(
            tracking.load_keras(context.artifacts["keras_model"], self.task.custom_objects(), self.task.name)
        )

    def predict(self, context, model_input, params=None):
        """Answers every input; with several inputs, one that is bad gets `{"error": ...}` and the rest are answered.

        Inputs go to the task's predictor `predict_chunk` at a time; image and audio inputs are first
        checked by `shared.inputs.file_input` (encoded bytes, arrays, and the paths this process may read).
        `params={"explain": FOLDER}` adds an `explanation` to each answer (`Task.explained`, maps written to
        FOLDER); the logged signature declares no params, so only a caller holding this object (`predict
        --explain`) passes it, and a served model never writes them.

        Raises:
            ValueError: the only input is bad (a one-line message naming it), or an explanation asked of a task
                that gives none.
        """
        explain = (params or {}).get("explain")
        if explain is not None and self.task.explain_kind is None:
            raise ValueError(f"{self.task.name} gives no explanations yet; drop --explain.")
        predict = functools.partial(
            self.task.predict_raw, self.model, self.info, **({} if explain is None else {"explain": explain})
        )
        rows = tracking.raw_inputs(model_input, self.task.input_column)
        if len(rows) == 1:
            return predict([self._admit(rows[0], "input")])
        admitted = []
        for position, raw in enumerate(rows):
            try:
                admitted.append(self._admit(raw, f"input {position + 1}"))
            except ValueError as error:
                admitted.append(error)
        size = self.task.predict_chunk or max(1, len(admitted))
        return [
            answer
            for start in range(0, len(admitted), size)
            for answer in self._chunk(predict, admitted[start : start + size])
        ]

    def _admit(self, raw, name):
        return inputs.file_input(raw, name) if self.task.input_kind == "file" else raw

    def _chunk(self, predict, admitted):
        """Answers admitted inputs (refused ones are their ValueError), one `predict` call (the task's predictor on
        a list of raw inputs) when all are good."""
        answers = [{"error": str(item)} if isinstance(item, ValueError) else None for item in admitted]
        good = [index for index, item in enumerate(admitted) if not isinstance(item, ValueError)]
        for index, answer in zip(good, self._answers(predict, [admitted[index] for index in good])):
            answers[index] = answer
        return answers

    def _answers(self, predict, raws):
        """The predictor's answers, or each bad input's error: a failing call is retried on each half, so
        that a few bad inputs among many cost a few calls each, not one call per input. Halves split
        between the task's input groups (`Task.input_groups`: the rows of one machine stay together)."""
        if not raws:
            return []
        try:
            return predict(raws)
        except ValueError as error:
            keys = self.task.input_groups(self.info, raws) or list(range(len(raws)))
            groups = list(dict.fromkeys(keys))
            if len(groups) == 1:
                return self._group_answers(predict, raws, error)
        first = set(groups[: len(groups) // 2])
        halves = (
            [index for index, key in enumerate(keys) if key in first],
            [index for index, key in enumerate(keys) if key not in first],
        )
        answers = [None] * len(raws)
        for half in halves:
            for index, answer in zip(half, self._answers(predict, [raws[index] for index in half])):
                answers[index] = answer
        return answers

    def _group_answers(self, predict, raws, error):
        """Answers one failing group of dependent inputs: each member is tried alone to find the bad ones,
        which get their own error; the others are answered together, as the group they form."""
        if len(raws) == 1:
            return [{"error": str(error)}]
        answers = [None] * len(raws)
        for index, raw in enumerate(raws):
            try:
                predict([raw])
            except ValueError as alone:
                answers[index] = {"error": str(alone)}
        good = [index for index, answer in enumerate(answers) if answer is None]
        if len(good) == len(raws):  # no member fails alone: the group itself is the problem
            return [{"error": str(error)}] * len(raws)
        for index, answer in zip(good, self._answers(predict, [raws[index] for index in good])):
            answers[index] = answer
        return answers


# Models logged before this class moved here from `shared/` were pickled as `shared.tracking.TaskModel`. A fresh
# process (`mlflow models serve`) imports the model's own logged copy of `shared/`, which still defines it; a
# process that imported today's `shared.tracking` first (`python -m pipelines predict`) looks the old name up
# there, so it is set from here, where the class lives, as `shared/` imports nothing of `pipelines/`.
tracking.TaskModel = ServingModel


class BatchPredictor:
    """A Keras model whose `predict` runs `predict_on_batch` batch by batch; everything else is the model's.

    Keras' `predict` builds a tf.data pipeline on every call: a few tenths of a second on a busy CPU,
    which made a served request of one row 100 times slower than the model itself, and a request whose
    bad rows are found by retrying halves (see `ServingModel`) slower still.
    """

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        if name == "model":  # not set yet (a copy being built): no recursion through ourselves
            raise AttributeError(name)
        return getattr(self.model, name)

    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def predict(self, x, batch_size=None, verbose=0, **options):
        """Same answers as `keras.Model.predict` on arrays (or dicts / lists of arrays)."""
        import keras

        leaves = keras.tree.flatten(x)
        if options or not leaves or not all(isinstance(leaf, np.ndarray) for leaf in leaves) or not len(leaves[0]):
            return self.model.predict(x, batch_size=batch_size, verbose=verbose, **options)
        size = batch_size or 32  # Keras' default
        parts = [
            self.model.predict_on_batch(
                keras.tree.map_structure(lambda leaf, start=start: leaf[start : start + size], x)
            )
            for start in range(0, len(leaves[0]), size)
        ]
        return keras.tree.map_structure(lambda *pieces: np.concatenate([np.asarray(piece) for piece in pieces]), *parts)
