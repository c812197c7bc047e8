"""Batch prediction: how INPUT arguments expand, batches, error rows, CSV/JSONL output and exit codes.

A toy task whose Keras model doubles numbers stands in for a trained one: it is saved as a pyfunc
model folder (no store, no training), so every test here takes well under a second after the first.
The real tasks' batch paths are tested beside their training (vision, fraud, sentiment, maintenance).
"""

import csv
import json

import keras
import mlflow
import numpy as np
import pytest

import tasks
from pipelines import cli, predict, serving_model
from shared import tracking
from tasks.base import Task

TOY = "toy_predict"


class Doubler(Task):
    """Inputs are numbers (text); answers are their double, with the parts and a flag for big ones."""

    name = TOY
    input_column = "number"
    calls = []  # the size of every predict_raw call

    def predict_raw(self, model, info, inputs):
        Doubler.calls.append(len(inputs))
        values = []
        for position, raw in enumerate(inputs):
            try:
                values.append([float(raw)])
            except (TypeError, ValueError):
                raise ValueError(f"input {position + 1} '{raw}' is not a number; give digits like 12.5.") from None
        answers = []
        for value in model.predict(np.array(values, "float32"), verbose=0)[:, 0].tolist():
            answers.append({"double": value, "parts": [value / 2, value / 2], **({"big": True} if value > 100 else {})})
        return answers


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A pyfunc model folder of the toy task (its Keras model multiplies by two)."""
    folder = tmp_path_factory.mktemp("doubler")
    inputs = keras.Input((1,))
    keras.Model(inputs, keras.layers.Rescaling(2.0)(inputs)).save(folder / "doubler.keras")
    (folder / "info.json").write_text(json.dumps({"task": TOY}))
    mlflow.pyfunc.save_model(
        str(folder / "model"),
        python_model=serving_model.ServingModel(),
        pip_requirements=[],
        artifacts={"keras_model": str(folder / "doubler.keras"), "info": str(folder / "info.json")},
    )
    return str(folder / "model")


@pytest.fixture
def doubler(model_folder, monkeypatch, tmp_path):
    """Registers the toy task; returns `predict(*arguments) -> exit code` on its model."""
    monkeypatch.setitem(tasks.TASKS, TOY, Doubler)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "store").as_uri())  # never opened: a local model
    Doubler.calls.clear()
    return lambda *arguments: cli.main(["predict", TOY, "--model", model_folder, *arguments])


def numbers_csv(path, values, column="number"):
    path.write_text(f"{column},note\n" + "".join(f"{value},n\n" for value in values))
    return path


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_without_output_one_json_line_per_input_and_a_summary(doubler, tmp_path, capsys):
    assert doubler("1", "2.5", "--batch-size", "1") == 0
    captured = capsys.readouterr()
    assert [json.loads(line) for line in captured.out.splitlines()] == [
        {"input": "1", "double": 2.0, "parts": [1.0, 1.0]},
        {"input": "2.5", "double": 5.0, "parts": [2.5, 2.5]},
    ]
    assert captured.err.startswith(f"predict {TOY}: 2 rows, 0 errors, ") and captured.err.endswith(" rows/s\n")


def test_one_model_call_per_batch(doubler, tmp_path, capsys):
    table = numbers_csv(tmp_path / "numbers.csv", range(10))
    assert doubler("--output", str(tmp_path / "out.csv"), "--batch-size", "4", str(table), "99") == 0
    assert Doubler.calls == [4, 4, 3]
    rows = read_csv(tmp_path / "out.csv")
    assert [row["input"] for row in rows] == [str(value) for value in range(10)] + ["99"]
    assert [row["double"] for row in rows] == [f"{2.0 * value}" for value in range(10)] + ["198.0"]
    assert rows[0]["parts"] == "[0.0, 0.0]" and rows[0]["error"] == "" and rows[-1]["big"] == "true"
    assert list(rows[0]) == ["input", "error", "double", "parts", "big"]  # a key first seen in the last row
    assert "11 rows, 0 errors" in capsys.readouterr().err


def test_failed_inputs_get_error_rows_and_exit_code_1(doubler, tmp_path, capsys):
    table = numbers_csv(tmp_path / "numbers.csv", ["1", "x", "3", "4", "", "6", "7"])
    # batches of 3: [1 x 3] [4 '' 6] [7], then a lone bad input in a batch of its own
    assert doubler("--output", str(tmp_path / "out.csv"), "--batch-size", "3", str(table), "oops") == 1
    rows = read_csv(tmp_path / "out.csv")
    assert [row["input"] for row in rows] == ["1", "x", "3", "4", "", "6", "7", "oops"]
    errors = {row["input"]: row["error"] for row in rows if row["error"]}
    assert errors == {
        "x": "input 1 'x' is not a number; give digits like 12.5.",
        "": "input 1 '' is not a number; give digits like 12.5.",
        "oops": "input 1 'oops' is not a number; give digits like 12.5.",
    }
    assert all(row["double"] == "" for row in rows if row["error"]) and rows[2]["double"] == "6.0"
    assert "8 rows, 3 errors" in capsys.readouterr().err


def test_jsonl_output_holds_the_printed_objects(doubler, tmp_path, capsys):
    assert doubler("1", "x", "3") == 1
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed[1] == {"input": "x", "error": "input 1 'x' is not a number; give digits like 12.5."}
    assert doubler("--output", str(tmp_path / "out.jsonl"), "1", "x", "3") == 1
    assert [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()] == printed


def test_a_single_bad_input_is_the_command_error(doubler, tmp_path, capsys):
    assert doubler("--output", str(tmp_path / "out.csv"), "x") == 2
    error = capsys.readouterr().err
    assert error == "error: input 1 'x' is not a number; give digits like 12.5.\n"
    assert not list(tmp_path.glob("*.csv")) and not list(tmp_path.glob(".predict-*"))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--output", "out.txt", "1"], "--output 'out.txt' must end in .csv or .jsonl"),
        (["--output", "missing/out.csv", "1"], "--output 'missing/out.csv': folder"),
        (["--batch-size", "0", "1"], "--batch-size must be at least 1, got 0."),
        (["--explain", "1"], "toy_predict gives no explanations yet; drop --explain."),
        (["--explain-dir", "maps", "1"], "--explain-dir says where --explain writes its maps; add --explain."),
    ],
)
def test_bad_options_fail_before_predicting(doubler, arguments, message, capsys):
    assert doubler(*arguments) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {message}") and error.count("\n") == 1 and Doubler.calls == []


def test_explain_reaches_the_predictor_of_every_batch_and_half_with_its_folder(doubler, tmp_path, monkeypatch):
    folders, answer = [], Doubler.predict_raw

    def explaining(self, model, info, inputs, explain=None):
        folders.append(explain)
        return [dict(found, explanation={"folder": explain}) for found in answer(self, model, info, inputs)]

    monkeypatch.setattr(Doubler, "explain_kind", "table", raising=False)
    monkeypatch.setattr(Doubler, "predict_raw", explaining)
    output = tmp_path / "out.jsonl"
    assert doubler("--explain", "--output", str(output), "1", "x", "2") == 1
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    expected = str(tmp_path / "out-explanations")
    folder = {"folder": expected}
    assert [row.get("explanation") for row in rows] == [folder, None, folder]  # the bad row holds its error
    assert folders == [expected] * 5  # the batch, its halves [1] and [x, 2], then [x] and [2]
    assert not (tmp_path / "out-explanations").exists()  # made only when a map is written


def test_dependent_inputs_share_a_batch_and_answers_keep_input_order(doubler, model_folder, monkeypatch):
    monkeypatch.setattr(
        Doubler, "input_groups", lambda self, info, inputs: [int(raw) % 2 for raw in inputs], raising=False
    )
    pairs = [(str(value), str(value)) for value in range(7)]
    rows = list(predict.answers(tracking.load(model_folder), tasks.get(TOY), pairs, batch_size=2))
    assert Doubler.calls == [4, 3]  # the even inputs together, then the odd ones
    assert [row["input"] for row in rows] == [str(value) for value in range(7)]
    assert [row["double"] for row in rows] == [2.0 * value for value in range(7)]


def test_a_failing_call_is_retried_on_halves_that_keep_input_groups_together(doubler, model_folder, monkeypatch):
    import pandas as pd

    # Groups by the first character: "1" and "1b" belong together (a machine's rows), and "1b" is bad.
    monkeypatch.setattr(Doubler, "input_groups", lambda self, info, inputs: [raw[0] for raw in inputs], raising=False)
    model = tracking.load(model_folder)
    Doubler.calls.clear()
    answers = model.predict(pd.DataFrame({"number": ["2", "1", "3", "1b"]}))
    assert [answer.get("double") for answer in answers] == [4.0, 2.0, 6.0, None]
    assert answers[3] == {"error": "input 1 '1b' is not a number; give digits like 12.5."}
    # all four fail; halves by group: {"2"} answers, {"1", "3"} fails, then group "1" fails, its members are
    # tried alone ("1b" fails), "1" is answered on its own group's good rows, and {"3"} answers
    assert Doubler.calls == [4, 1, 3, 2, 1, 1, 1, 1]


# How each input kind expands its INPUT arguments (no model needed).


def toy(kind, **attributes):
    return type(
        "Toy",
        (Task,),
        {"name": "toy", "input_column": "image" if kind == "file" else "text", "input_kind": kind, **attributes},
    )()


def test_a_model_pickled_before_the_serving_model_moved_still_unpickles():
    import pickle

    # Protocol 0 names classes as text lines, so the old module and class name can be written in.
    now = pickle.dumps(serving_model.ServingModel(), protocol=0)
    before = now.replace(b"pipelines.serving_model\nServingModel", b"shared.tracking\nTaskModel")
    assert before != now and isinstance(pickle.loads(before), serving_model.ServingModel)


def test_a_folder_stands_for_its_input_files_recursively(tmp_path):
    for relative in ("b.png", "a/c.PNG", "a/notes.txt", ".hidden/d.png", "a/.e.png"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    pairs = toy("file", input_extensions=(".png",)).cli_inputs([str(tmp_path)])
    assert pairs == [(str(tmp_path / "a/c.PNG"),) * 2, (str(tmp_path / "b.png"),) * 2]
    with pytest.raises(ValueError, match=rf"folder '{tmp_path / 'a' / 'empty'}' holds no toy input files \(.jpg\)"):
        (tmp_path / "a" / "empty").mkdir()
        toy("file", input_extensions=(".jpg",)).cli_inputs([str(tmp_path / "a" / "empty")])


def test_a_table_column_of_paths_is_read_from_the_table_folder(tmp_path):
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "one.png").write_bytes(b"x")
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\npictures/one.png,cat\n/elsewhere/two.png,dog\n")
    assert toy("file").cli_inputs([str(manifest)]) == [
        (str(tmp_path / "pictures/one.png"),) * 2,
        ("/elsewhere/two.png",) * 2,
    ]
    assert toy("file").cli_inputs([f"{manifest}:label"]) == [("cat", "cat"), ("dog", "dog")]


def test_text_from_csv_jsonl_and_text_files(tmp_path):
    (tmp_path / "texts.jsonl").write_text('{"text": "first"}\n\n{"text": 2, "other": "x"}\n{"other": "y"}\n')
    (tmp_path / "texts.csv").write_text("id,sentence\n1,hello there\n2,NA\n")
    (tmp_path / "lines.txt").write_text("one\n\ntwo\n")
    task = toy("text", table_columns="text,sentence")
    arguments = [str(tmp_path / "texts.jsonl"), str(tmp_path / "texts.csv"), str(tmp_path / "lines.txt"), "as is"]
    assert [raw for _, raw in task.cli_inputs(arguments)] == [
        "first",
        "2",
        "",
        "hello there",
        "NA",
        "one",
        "two",
        "as is",
    ]
    with pytest.raises(
        ValueError,
        match=r"has no input column 'id2'; its columns are \['id', 'sentence'\]\. "
        r"Name the column as .*texts.csv:COLUMN",
    ):
        task.cli_inputs([f"{tmp_path / 'texts.csv'}:id2"])
    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text('{"other": 1}\n')
    with pytest.raises(ValueError, match=r"missing column\(s\) \['text'\].*Name the column as"):
        toy("text").cli_inputs([str(no_text)])


def test_records_from_csv_jsonl_json_files_and_inline_objects(tmp_path):
    (tmp_path / "rows.csv").write_text("amount,shop\n12.5,a\n,b\n")
    (tmp_path / "rows.jsonl").write_text('{"amount": 1}\n{"amount": 2}\n')
    (tmp_path / "many.json").write_text('[{"amount": 3}, {"amount": 4}]')
    task = toy("record")
    pairs = task.cli_inputs(
        [str(tmp_path / "rows.csv"), str(tmp_path / "rows.jsonl"), str(tmp_path / "many.json"), '{"amount": 5}']
    )
    assert pairs == [
        (f"{tmp_path / 'rows.csv'}:1", {"amount": 12.5, "shop": "a"}),
        (f"{tmp_path / 'rows.csv'}:2", {"amount": None, "shop": "b"}),
        (f"{tmp_path / 'rows.jsonl'}:1", {"amount": 1}),
        (f"{tmp_path / 'rows.jsonl'}:2", {"amount": 2}),
        (f"{tmp_path / 'many.json'}:1", {"amount": 3}),
        (f"{tmp_path / 'many.json'}:2", {"amount": 4}),
        ('{"amount": 5}', {"amount": 5}),
    ]
    assert len(task.cli_inputs([str(tmp_path)])) == 4  # a folder: its tables (the .json file is no table)
    with pytest.raises(ValueError, match="toy reads whole rows from .*rows.csv'; drop ':amount' from the INPUT"):
        task.cli_inputs([f"{tmp_path / 'rows.csv'}:amount"])
    with pytest.raises(ValueError, match="INPUT '.*missing.csv' does not exist"):
        task.cli_inputs([str(tmp_path / "missing.csv")])
    (tmp_path / "bad.jsonl").write_text('{"amount": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match="bad.jsonl' line 2 holds a list, not a JSON object"):
        task.cli_inputs([str(tmp_path / "bad.jsonl")])
