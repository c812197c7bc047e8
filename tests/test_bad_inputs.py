"""Every row of docs/bad_inputs.md: exit code 2, one named line on stderr, no traceback, no run left behind; or, in
its last table, a registered model and a one-line warning."""

import pathlib
import re
import shlex
import warnings

import mlflow
import numpy as np
import pytest
import soundfile

from pipelines import cli
from shared import images

TABLE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
ERRORS, WARNINGS = TABLE.read_text().split("## Inputs that train with a warning")


def rows(text):
    return [
        tuple(cell.strip().strip("`") for cell in line.strip("|").split("|"))
        for line in text.splitlines()
        if re.match(r"\| [a-z_ ]+ \| `", line)
    ]


ROWS, WARNING_ROWS = rows(ERRORS), rows(WARNINGS)


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """The broken files the table's BAD/ paths name."""
    root = tmp_path_factory.mktemp("bad")
    write(root / "latin1.yaml", b"\xe9poques: 3\n")
    write(root / "list.yaml", "- epochs\n- 3\n")
    images.save_png(np.zeros((8, 8, 1)), _parent(root / "no_classes" / "loose.png"))
    for name in ("a", "b"):
        write(root / "corrupt_images" / name / "broken.png", b"\x89PNG not really")
    write(root / "corrupt.png", b"\x89PNG not really")
    for label in ("3", "cat"):  # the quick digits model knows 3, not cat
        for index in range(4):
            images.save_png(np.zeros((8, 8, 1)), _parent(root / "unknown_class" / label / f"{index}.png"))
    digits = np.zeros((10, 8, 8), np.uint8)
    np.savez(
        root / "no_validation.npz",
        train_images=digits,
        train_labels=np.zeros(10),
        test_images=digits,
        test_labels=np.zeros(10),
    )
    images.save_png(np.zeros((8, 8, 1)), _parent(root / "no_masks" / "images" / "0.png"))
    for index in range(6):
        images.save_png(np.zeros((20, 24, 1)), _parent(root / "segmentation" / "images" / f"{index}.png"))
        images.save_png(np.zeros((20, 24, 1)), _parent(root / "segmentation" / "masks" / f"{index}.png"))
    write(root / "one_class.csv", "text,label\n" + "".join(f"review {index},good\n" for index in range(20)))
    write(root / "no_text.csv", "comment,label\nfine,good\nbad,poor\n")
    write(root / "extra_field.csv", "text,label\nfine,good\nbad, really,poor\n" + "more text,good\n" * 20)
    write(root / "latin1_reviews.csv", "text,label\nfine,good\ncaf\xe9 cr\xe8me,poor\n".encode("latin-1"))
    write(root / "latin1_pairs.tsv", b"hello\thola\ncaf\xe9\tcaf\xe9\n")
    for clip in ("one_clip/yes", "two_clips/yes", "two_clips/no"):
        soundfile.write(_parent(root / clip / "0.wav"), np.sin(np.arange(8000) * 0.2).astype("float32"), 8000)
    write(root / "no_target.csv", "amount,merchant\n" + "".join(f"{index},shop\n" for index in range(20)))
    write(root / "legit_only.csv", "amount,label\n" + "".join(f"{index},0\n" for index in range(20)))
    write(
        root / "text_sensor.csv",
        "unit,cycle,temperature\n1,1,20\n1,2,hot\n"
        + "".join(f"{unit},{cycle},{20 + cycle}\n" for unit in range(2, 9) for cycle in range(1, 4)),
    )
    write(root / "one_unit.csv", "unit,cycle,temperature\n" + "".join(f"1,{cycle},20\n" for cycle in range(1, 40)))
    write(root / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,1\n1,11,9.0,2\n2,10,3.0,3\n")
    images.save_png(np.zeros((8, 8, 1)), _parent(root / "one_class" / "cat" / "0.png"))
    write(root / "empty_texts.csv", "text,label\n" + "".join(f" ,{index % 2}\n" for index in range(20)))
    write(root / "rated_everything.csv", "userId,movieId,rating\n" + "".join(f"1,{item},4.0\n" for item in range(30)))
    generator = np.random.default_rng(0)
    write(
        root / "repeated_column.csv",
        "amount,amount,Class\n"
        + "".join(
            f"{amount:.2f},{generator.normal():.2f},{int(amount > 80)}\n" for amount in generator.uniform(0, 100, 300)
        ),
    )
    write(
        root / "repeated_cycles.csv",
        "unit,cycle,temperature\n"
        + "".join(
            f"{unit},{cycle},{20 + cycle + generator.normal():.2f}\n" for unit in range(1, 13) for cycle in range(1, 16)
        )
        + "2,3,99\n2,4,98\n",
    )
    return root


def _parent(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for every row, holding a quick vision_classification model for the predict rows."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}")
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as `python -m pipelines` sets it (quiet.py)
        assert cli.main(["run", "vision_classification", "--quick", "--set", "max_examples=200"]) == 0
        yield mlflow.MlflowClient()


@pytest.mark.parametrize("task, command, expected", ROWS, ids=[row[1] for row in ROWS])
def test_bad_input_gives_one_named_line_and_leaves_no_run(task, command, expected, bad_files, store, capsys):
    capsys.readouterr()
    before = {
        run.info.run_id
        for run in store.search_runs([experiment.experiment_id for experiment in store.search_experiments()])
    }
    arguments = [
        argument.replace("BAD", str(bad_files)).replace("MODEL", "models:/vision_classification/1")
        for argument in shlex.split(command)
    ]
    assert cli.main(arguments) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: "), error
    assert expected.replace("BAD", str(bad_files)) in error[0]
    assert "Traceback" not in error[0]
    runs = store.search_runs([experiment.experiment_id for experiment in store.search_experiments()])
    assert {run.info.run_id for run in runs} == before, "a bad input created an MLflow run"


@pytest.mark.parametrize("task, command, expected", WARNING_ROWS, ids=[row[1] for row in WARNING_ROWS])
def test_odd_input_trains_with_one_named_warning(task, command, expected, bad_files, store, capsys):
    arguments = [argument.replace("BAD", str(bad_files)) for argument in shlex.split(command)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(arguments) == 0
    assert any(expected.replace("BAD", str(bad_files)) in str(warning.message) for warning in caught), [
        str(warning.message) for warning in caught
    ]
    assert f"model models:/{task}/" in capsys.readouterr().err


def test_the_table_covers_every_task_and_command():
    tasks_named = {task for task, _, _ in ROWS}
    import tasks

    assert set(tasks.names()) <= tasks_named | {"every task"}
    assert {command.split()[0] for _, command, _ in ROWS} >= {"run", "sweep", "predict", "evaluate", "compare"}
    assert len(ROWS) >= 30
