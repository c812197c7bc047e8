"""A tenth domain is one file: a toy task module in a temporary package trains, predicts, compares, evaluates
and passes the contract tests with no edit anywhere else."""

import json
import sys
import textwrap

import pytest

import tasks
from pipelines import cli
from tests import test_tasks_contract

TOY = '''
"""Toy domain: the sum of a row of numbers, learned by a small dense network."""

import dataclasses

import numpy as np

from shared.constraints import Count
from shared.fitted_state import FittedState
from tasks import register
from tasks.base import Splits, Task, TaskConfig


@dataclasses.dataclass
class ToySumConfig(TaskConfig):
    epochs: Count = 5  # a sum is learned in a few epochs
    width: Count = 16  # hidden units: a sum needs few


@register
class ToySum(Task):
    name = "toy_sum"
    config_class = ToySumConfig
    primary_metric = "rmse"
    higher_is_better = False
    input_column = "row"
    answer_key = "sum"
    quick_overrides = {"epochs": 2}

    def load_data(self, config):
        rows = np.random.default_rng(config.seed).random((400, 3), dtype="float32")
        pool = (rows, rows.sum(axis=1, keepdims=True))
        from shared.data.splits import carve

        train, validation, test = carve(pool, config, stratify=False)
        return Splits(train, validation, test, FittedState(), config.data, "random_rows", True)

    def build_model(self, config, info):
        import keras

        inputs = keras.Input((3,), name="row")
        hidden = keras.layers.Dense(config.width, activation="relu")(inputs)
        return keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(hidden))

    def loss(self, config, info):
        return "mse"

    def evaluate(self, model, splits, config):
        from shared import evaluation
        from shared.data import examples

        predicted, true = examples.predict(model, splits.test, config.batch_size)
        return evaluation.regression(true.reshape(-1), predicted.reshape(-1))

    def input_example(self, splits):
        return [splits.test.features[0].tolist()]

    def predict_raw(self, model, info, inputs):
        rows = np.array([json.loads(raw) if isinstance(raw, str) else raw for raw in inputs], "float32")
        return [{"sum": round(float(value), 4)} for value in model.predict(rows, verbose=0).reshape(-1)]
'''


@pytest.fixture
def toy_task(tmp_path, monkeypatch):
    package = tmp_path / "toy_domains"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "toy_sum.py").write_text("import json\n" + textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(tasks, "TASKS", dict(tasks.TASKS))  # the toy leaves the registry with the test
    __import__("toy_domains.toy_sum")
    yield "toy_sum"
    sys.modules.pop("toy_domains.toy_sum", None)
    sys.modules.pop("toy_domains", None)


def test_a_toy_task_in_one_file_trains_predicts_compares_evaluates_and_keeps_the_contract(
    toy_task, tracking_store, capsys
):
    test_tasks_contract.test_task_declares_name_metric_and_valid_quick_budget(toy_task)
    test_tasks_contract.test_every_config_default_says_why(toy_task)
    test_tasks_contract.test_task_declares_how_predict_reads_inputs_and_compare_shows_runs(toy_task)
    assert cli.main(["list"]) == 0 and "toy_sum" in capsys.readouterr().out
    assert cli.main(["run", toy_task, "--quick"]) == 0
    capsys.readouterr()
    assert cli.main(["predict", toy_task, "--model", f"models:/{toy_task}@champion", "[1, 2, 3]"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["input"] == "[1, 2, 3]" and isinstance(answer[tasks.get(toy_task).answer_key], float)
    assert cli.main(["compare", toy_task, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("task,") and lines[1].startswith(f"{toy_task},test_rmse")
    assert cli.main(["evaluate", toy_task, "--model", f"models:/{toy_task}@champion", "--data", "embedded"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["rmse"] >= 0
    with pytest.raises(ValueError, match="toy_sum: width=0 is not allowed"):
        from pipelines import config

        config.resolve(tasks.get(toy_task), assignments=["width=0"])
