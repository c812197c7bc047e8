"""Every row of docs/bad_inputs.md: exit code 2, one named line on stderr, no traceback, no run left behind."""

import pathlib
import re
import shlex

import mlflow
import numpy as np
import pytest
import soundfile

from pipelines import cli
from shared import images

TABLE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
ROWS = [tuple(cell.strip().strip("`") for cell in line.strip("|").split("|"))
        for line in TABLE.read_text().splitlines() if re.match(r"\| [a-z_ ]+ \| `", line)]


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
    np.savez(root / "no_validation.npz", train_images=digits, train_labels=np.zeros(10), test_images=digits,
             test_labels=np.zeros(10))
    images.save_png(np.zeros((8, 8, 1)), _parent(root / "no_masks" / "images" / "0.png"))
    for index in range(6):
        images.save_png(np.zeros((20, 24, 1)), _parent(root / "segmentation" / "images" / f"{index}.png"))
        images.save_png(np.zeros((20, 24, 1)), _parent(root / "segmentation" / "masks" / f"{index}.png"))
    write(root / "one_class.csv", "text,label\n" + "".join(f"review {index},good\n" for index in range(20)))
    write(root / "no_text.csv", "comment,label\nfine,good\nbad,poor\n")
    write(root / "extra_field.csv", "text,label\nfine,good\nbad, really,poor\n" + "more text,good\n" * 20)
    write(root / "latin1_reviews.csv", "text,label\nfine,good\ncaf\xe9 cr\xe8me,poor\n".encode("latin-1"))
    write(root / "latin1_pairs.tsv", b"hello\thola\ncaf\xe9\tcaf\xe9\n")
    soundfile.write(_parent(root / "one_clip" / "yes" / "0.wav"), np.sin(np.arange(8000) * 0.2).astype("float32"),
                    8000)
    write(root / "no_target.csv", "amount,merchant\n" + "".join(f"{index},shop\n" for index in range(20)))
    write(root / "legit_only.csv", "amount,label\n" + "".join(f"{index},0\n" for index in range(20)))
    write(root / "text_sensor.csv", "unit,cycle,temperature\n1,1,20\n1,2,hot\n" + "".join(
        f"{unit},{cycle},{20 + cycle}\n" for unit in range(2, 9) for cycle in range(1, 4)))
    write(root / "one_unit.csv", "unit,cycle,temperature\n" + "".join(f"1,{cycle},20\n" for cycle in range(1, 40)))
    write(root / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,1\n1,11,9.0,2\n2,10,3.0,3\n")
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
    before = {run.info.run_id for run in store.search_runs(
        [experiment.experiment_id for experiment in store.search_experiments()])}
    arguments = [argument.replace("BAD", str(bad_files)).replace("MODEL", "models:/vision_classification/1")
                 for argument in shlex.split(command)]
    assert cli.main(arguments) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: "), error
    assert expected.replace("BAD", str(bad_files)) in error[0]
    assert "Traceback" not in error[0]
    runs = store.search_runs([experiment.experiment_id for experiment in store.search_experiments()])
    assert {run.info.run_id for run in runs} == before, "a bad input created an MLflow run"


def test_the_table_covers_every_task_and_command():
    tasks_named = {task for task, _, _ in ROWS}
    import tasks

    assert set(tasks.names()) <= tasks_named | {"every task"}
    assert {command.split()[0] for _, command, _ in ROWS} >= {"run", "sweep", "predict", "evaluate", "compare"}
    assert len(ROWS) >= 30
