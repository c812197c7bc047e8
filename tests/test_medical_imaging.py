"""Medical imaging end to end: imbalance handling, validation-chosen threshold, calibration, Grad-CAM explanations
(logged and on predict --explain), data paths."""

import json
import pathlib

import mlflow
import numpy as np
import pytest

from pipelines import cli, runner
from shared import images, tracking
from shared.data import tfds as tfds_source
from tasks.medical_imaging import _radiographs
from tests.conftest import resolve, shared_data

TASK = "medical_imaging"
SMALL = ["base_filters=8", "stages=2", "epochs=6", "max_examples=700", "batch_size=32", "explain_count=4"]


@pytest.fixture(scope="module")
def trained(module_store):
    """One short training on generated radiographs, shared by the tests that inspect its run and model."""
    task, resolved = resolve(TASK, *SMALL, quick=False)
    return runner.run(task, resolved)


def write_npz(path, **changes):
    """A tiny MedMNIST-style npz (28x28 grayscale, labels (n, 1)); `changes` replace or drop (None) keys."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", 40), ("val", 10), ("test", 10)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (count, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % 2).reshape(-1, 1).astype(np.uint8)
    arrays.update(changes)
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return path


def test_run_beats_chance_and_logs_everything(trained):
    assert trained.metrics["roc_auc"] > 0.75  # chance is 0.5
    for name in (
        "pr_auc",
        "sensitivity",
        "specificity",
        "balanced_accuracy",
        "f1",
        "accuracy",
        "threshold",
        "ece",
        "brier",
    ):
        assert name in trained.metrics
    assert 0 < trained.metrics["threshold"] < 1
    run = mlflow.get_run(trained.run_id)
    assert run.data.tags["synthetic"] == "true" and run.data.params["imbalance"] == "class_weight"
    assert "test_threshold" in run.data.metrics and "val_auc" in run.data.metrics
    assert float(run.data.params["decision_threshold"]) == pytest.approx(trained.metrics["threshold"], abs=1e-5)
    client = mlflow.MlflowClient()
    assert "threshold.txt" in {item.path for item in client.list_artifacts(trained.run_id)}
    plots = {item.path for item in client.list_artifacts(trained.run_id, "plots")}
    assert {
        "plots/reliability.png",
        "plots/roc_curve.png",
        "plots/pr_curve.png",
        "plots/confusion_matrix.png",
    } <= plots
    assert [item.path for item in client.list_artifacts(trained.run_id, "plots/explain")] == ["plots/explain/image.png"]


def test_predict_uses_the_logged_threshold_and_explains_with_grad_cam(trained, tmp_path, capsys):
    pictures, labels = _radiographs(4, 32, 0.5, seed=7)
    paths = []
    for index, picture in enumerate(pictures):
        paths.append(tmp_path / f"xray_{index}.png")
        images.save_png(picture, paths[-1])
    model = f"models:/{TASK}/latest"
    assert cli.main(["predict", TASK, "--model", model, str(paths[0])]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["threshold"] == round(trained.metrics["threshold"], 6) and "explanation" not in plain
    assert plain["label"] == ("lesion" if plain["positive_probability"] >= plain["threshold"] else "normal")
    maps = tmp_path / "maps"
    assert cli.main(["predict", TASK, "--model", model, "--explain", "--explain-dir", str(maps), *map(str, paths)]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert {key: answers[0][key] for key in plain} == plain  # explaining changes no answer
    for path, answer in zip(paths, answers):
        explanation = answer["explanation"]
        assert explanation["method"] == "grad_cam" and explanation["output"] == "lesion"  # the positive class
        heatmap = pathlib.Path(explanation["heatmap_path"])
        assert heatmap.parent == maps and heatmap.name.startswith(f"{path.stem}-") and heatmap.stat().st_size > 0


def test_predict_converts_rgb_input_and_accepts_arrays(trained, tmp_path):
    picture = _radiographs(1, 32, 1.0, seed=3)[0][0]
    rgb = tmp_path / "rgb.png"
    images.save_png(np.repeat(picture, 3, axis=-1), rgb)
    model = tracking.load(f"models:/{TASK}/latest")
    from_file, from_array = model.predict({"image": [str(rgb), picture.tolist()]})
    assert abs(from_file["positive_probability"] - from_array["positive_probability"]) < 0.02


def test_medmnist_npz_source_uses_its_official_splits(tmp_path):
    task, resolved = resolve(
        TASK, "class_names=normal,pneumonia", data=str(write_npz(tmp_path / "set.npz")), quick=False
    )
    splits = task.load_data(resolved)
    assert [len(part) for part in (splits.train, splits.validation, splits.test)] == [40, 10, 10]
    assert splits.train.sample(2)[0].shape[1:] == (28, 28, 1) and splits.info.class_names == ["normal", "pneumonia"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"val_labels": None}, "missing key.*val_labels"),
        ({"train_labels": np.zeros((40, 14), np.uint8)}, "train_labels has shape \\(40, 14\\)"),
        ({"test_labels": np.zeros(7, np.uint8)}, "test_labels has shape \\(7,\\)"),
        (
            {"test_images": np.zeros((0, 28, 28), np.uint8), "test_labels": np.zeros((0, 1), np.uint8)},
            "test_images is empty",
        ),
    ],
)
def test_bad_npz_names_the_key(tmp_path, changes, message):
    task, resolved = resolve(TASK, data=str(write_npz(tmp_path / "bad.npz", **changes)), quick=False)
    with pytest.raises(ValueError, match=message):
        task.load_data(resolved)


def test_class_folders_and_bad_options(tmp_path):
    pictures, labels = _radiographs(30, 24, 0.4, seed=1)
    for index, (picture, label) in enumerate(zip(pictures, labels)):
        folder = tmp_path / ("pneumonia" if label else "normal")
        folder.mkdir(exist_ok=True)
        images.save_png(picture, folder / f"{index}.png")
    task, resolved = resolve(TASK, "validation_fraction=0.2", "test_fraction=0.2", data=str(tmp_path), quick=False)
    splits = task.load_data(resolved)
    assert splits.info.class_names == ["normal", "pneumonia"] and splits.train.sample(2)[0].shape[1:] == (24, 24, 1)
    with pytest.raises(ValueError, match="threshold_method='f1' is not allowed; it must be one of youden, sensitivity"):
        resolve(TASK, "threshold_method=f1", data=str(tmp_path), quick=False)


def test_tfds_patch_camelyon_under_mock_data(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda timeout=3.0: True)
    task, resolved = resolve(TASK, data="tfds:patch_camelyon", quick=False)
    with tfds.testing.mock_data(num_examples=20):  # streams read the (mocked) files when iterated
        splits = task.load_data(resolved)
        assert splits.train.sample(2)[0].shape[1:] == (96, 96, 3) and len(splits.info.class_names) == 2
    assert splits.name == "tfds_patch_camelyon"


@pytest.mark.slow
def test_focal_loss_and_target_sensitivity(tracking_store):
    task, resolved = resolve(
        TASK, *SMALL, "imbalance=focal", "threshold_method=sensitivity", "target_sensitivity=0.95", quick=False
    )
    result = runner.run(task, resolved)
    assert result.metrics["roc_auc"] > 0.7
    assert "sensitivity >= 0.95" in mlflow.artifacts.load_text(f"runs:/{result.run_id}/threshold.txt")


@pytest.mark.slow
def test_real_pneumoniamnist_loads_with_official_splits():
    path = shared_data("pneumoniamnist/pneumoniamnist.npz")
    task, resolved = resolve(TASK, data=str(path), quick=False)
    splits = task.load_data(resolved)
    assert [len(part) for part in (splits.train, splits.validation, splits.test)] == [4708, 524, 624]
