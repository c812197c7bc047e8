"""Vision classification end to end: training, everything MLflow holds, raw-input prediction, data paths."""

import csv
import dataclasses
import gzip
import json

import mlflow
import numpy as np
import pandas as pd
import pytest

import tasks
from pipelines import cli, config, runner
from shared import images, model_card, tracking
from shared.data import tfds as tfds_source
from shared.data.sources import read_idx_pair
from tasks.image_classification import ImageState
from tests.conftest import resolve, shared_data

TASK = "vision_classification"


@pytest.fixture(scope="module")
def trained(module_store):
    """One short training on the embedded digits, shared by the tests that inspect its run and model."""
    result = runner.run(*resolve(TASK, "epochs=8", "max_examples=0"))
    return result


def digit_pngs(folder, count=6):
    from sklearn import datasets

    digits = datasets.load_digits()
    paths = []
    for index in range(1, count + 1):  # the last digits of the set, written as 8x8 PNG files
        path = folder / f"digit_{index}_true_{digits.target[-index]}.png"
        images.save_png(digits.images[-index][..., None] / 16.0, path)
        paths.append((path, str(digits.target[-index])))
    return paths


def test_run_beats_chance_and_logs_everything(trained):
    result = trained
    assert result.metrics["accuracy"] > 0.8  # chance is 0.1
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    task = tasks.get(TASK)
    assert set(run.data.params) == set(config.flatten(task.config_class()))
    assert run.data.params["epochs"] == "8"
    tags = run.data.tags
    assert tags["task"] == TASK and tags["data_source"] == "embedded" and tags["synthetic"] == "false"
    assert tags["git_commit"] and tags["version.keras"] and tags["version.tensorflow"]
    for name in ("test_accuracy", "test_macro_f1", "test_roc_auc", "test_pr_auc"):
        assert name in run.data.metrics
    history = mlflow.MlflowClient().get_metric_history(result.run_id, "val_accuracy")
    assert 1 <= len(history) <= 8 and [point.step for point in history] == list(range(len(history)))
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(result.run_id)}
    assert {"config.yaml", "model_summary.txt", "classification_report.txt", "plots"} <= artifacts
    plots = {item.path for item in mlflow.MlflowClient().list_artifacts(result.run_id, "plots")}
    assert {
        "plots/training_curves.png",
        "plots/confusion_matrix.png",
        "plots/roc_curve.png",
        "plots/pr_curve.png",
        "plots/sample_predictions.png",
    } <= plots
    assert [item.dataset.name for item in run.inputs.dataset_inputs] == [
        "sklearn_digits-training",
        "sklearn_digits-testing",
    ]
    version = mlflow.MlflowClient().get_registered_model(TASK).latest_versions[0]
    assert result.model_uri == f"models:/{TASK}/{version.version}"
    info = mlflow.models.get_model_info(f"models:/{TASK}/latest")
    assert info.signature.inputs.input_names() == ["image"]
    assert info.saved_input_example_info is not None


def test_predict_png_from_registry_and_run_uri(trained, tmp_path):
    result = trained
    samples = digit_pngs(tmp_path)
    for uri in (f"models:/{TASK}/latest", f"runs:/{result.run_id}/model"):
        model = tracking.load(uri)
        answers = model.predict(pd.DataFrame({"image": [str(path) for path, _ in samples]}))
        correct = sum(answer["label"] == truth for answer, (_, truth) in zip(answers, samples))
        assert correct >= len(samples) - 1
        assert all(0 <= answer["probability"] <= 1 and len(answer["top_k"]) == 3 for answer in answers)


def test_predict_accepts_decoded_arrays_and_bytes(trained, tmp_path):
    ((path, truth),) = digit_pngs(tmp_path, count=1)
    model = tracking.load(f"models:/{TASK}/latest")
    pixels = images.decode(str(path))
    answers = model.predict(pd.DataFrame({"image": [pixels, path.read_bytes(), (pixels * 255).astype("uint8")]}))
    assert len({answer["label"] for answer in answers}) == 1


def test_monitor_finds_no_drift_on_the_test_split_and_a_shift_on_inverted_images(trained, tmp_path, capsys):
    task, resolved = resolve(TASK, "epochs=8", "max_examples=0")
    test = task.load_data(resolved).test.features
    for name, pixels in (("unchanged", test), ("inverted", 1 - test)):
        (tmp_path / name).mkdir()
        for index, image in enumerate(pixels):
            images.save_png(image, tmp_path / name / f"{index}.png")
    model = ["--model", f"runs:/{trained.run_id}/model"]
    assert cli.main(["monitor", TASK, *model, "--data", str(tmp_path / "unchanged")]) == 0
    unchanged = json.loads(capsys.readouterr().out)
    assert unchanged["examples"] == len(test) and not unchanged["drifted"]
    assert next(row for row in unchanged["rows"] if row["statistic"] == "mmd")["p_value"] > 0.01
    assert cli.main(["monitor", TASK, *model, "--data", str(tmp_path / "inverted")]) == 1
    inverted = json.loads(capsys.readouterr().out)
    assert {"embedding", "brightness"} <= set(inverted["drifted"])
    assert next(row for row in inverted["rows"] if row["statistic"] == "mmd")["p_value"] < 0.01


def test_predict_cli_prints_one_json_object_per_input(trained, tmp_path, capsys):
    samples = digit_pngs(tmp_path, count=2)
    code = cli.main(["predict", TASK, "--model", f"models:/{TASK}/latest", *[str(path) for path, _ in samples]])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    answers = [json.loads(line) for line in lines]
    assert [answer["input"] for answer in answers] == [str(path) for path, _ in samples]


def test_runs_log_and_predict_explain_writes_grad_cam_heatmaps_beside_the_output(trained, tmp_path):
    logged = mlflow.MlflowClient().list_artifacts(trained.run_id, "plots/explain")
    assert [item.path for item in logged] == ["plots/explain/image.png"]
    card = mlflow.artifacts.load_text(f"runs:/{trained.run_id}/{model_card.FILE}")
    assert "plots/explain/image.png" in card.split("## Explanations")[1]  # the card links the figure
    samples = digit_pngs(tmp_path, count=2)
    output = tmp_path / "answers.jsonl"
    arguments = ["predict", TASK, "--model", f"models:/{TASK}/latest", "--output", str(output), "--explain"]
    assert cli.main([*arguments, *[str(path) for path, _ in samples]]) == 0
    answers = [json.loads(line) for line in output.read_text().splitlines()]
    for answer, (path, _) in zip(answers, samples):
        explanation = answer["explanation"]
        assert explanation["method"] == "grad_cam" and explanation["output"] == answer["label"]  # the predicted class
        heatmap = explanation["heatmap_path"]
        assert heatmap.startswith(str(tmp_path / "answers-explanations" / f"{path.stem}-")) and heatmap.endswith(".png")
        assert images.decode(heatmap).shape == (8, 8, 3)


def test_predict_rejects_a_file_that_is_not_an_image(trained, tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    code = cli.main(["predict", TASK, "--model", f"models:/{TASK}/latest", str(text)])
    assert code == 2
    assert f"{text}: not a readable image" in capsys.readouterr().err


def test_predict_folder_writes_one_row_per_image_with_errors_in_their_rows(trained, tmp_path, capsys):
    folder = tmp_path / "scans"
    (folder / "more").mkdir(parents=True)
    samples = digit_pngs(folder, count=4) + digit_pngs(folder / "more", count=2)
    corrupt = folder / "more" / "zz_corrupt.png"
    corrupt.write_bytes(b"not a png")
    (folder / "readme.txt").write_text("not an input")
    output = tmp_path / "preds.csv"
    arguments = ["predict", TASK, "--model", f"models:/{TASK}@champion", "--batch-size", "4", str(folder)]
    assert cli.main([*arguments, "--output", str(output)]) == 1  # some rows hold an error
    assert "predict vision_classification: 7 rows, 1 errors, " in capsys.readouterr().err
    with open(output, newline="") as handle:
        rows = {row["input"]: row for row in csv.DictReader(handle)}
    assert list(rows) == sorted([str(path) for path, _ in samples] + [str(corrupt)])
    assert f"{corrupt}: not a readable image" in rows[str(corrupt)]["error"] and rows[str(corrupt)]["label"] == ""
    assert all(rows[str(path)]["error"] == "" and len(json.loads(rows[str(path)]["top_k"])) == 3 for path, _ in samples)
    assert sum(rows[str(path)]["label"] == truth for path, truth in samples) >= len(samples) - 1
    assert cli.main([*arguments, "--output", str(tmp_path / "preds.jsonl")]) == 1
    lines = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert [line["input"] for line in lines] == list(rows) and set(lines[-1]) == {"input", "error"}
    assert [line["label"] for line in lines[:-1]] == [rows[line["input"]]["label"] for line in lines[:-1]]


def test_a_png_bomb_is_a_one_line_error_in_the_cli_and_an_error_row_in_a_batch(trained, tmp_path, capsys):
    from pipelines import serving_fuzz

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(serving_fuzz.png_bomb())
    assert cli.main(["predict", TASK, "--model", f"models:/{TASK}/latest", str(bomb)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {bomb}: the image declares more pixels than the limit of 40,000,000")
    assert error.count("\n") == 1
    ((path, truth),) = digit_pngs(tmp_path, count=1)
    answers = tracking.load(f"models:/{TASK}/latest").predict(pd.DataFrame({"image": [str(bomb), str(path)]}))
    assert "more pixels than the limit" in answers[0]["error"] and answers[1]["label"] == truth


def test_a_served_model_reads_paths_only_inside_its_input_folder(trained, tmp_path, monkeypatch):
    from pipelines import serving_fuzz

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    ((path, truth),) = digit_pngs(incoming, count=1)
    outside = tmp_path / "outside.png"
    outside.write_bytes(path.read_bytes())
    model = tracking.load(f"models:/{TASK}/latest")
    monkeypatch.setenv("PIPELINES_SERVING", "1")
    rows = [path.name, str(outside), "../outside.png", serving_fuzz.b64(path.read_bytes())]
    monkeypatch.delenv("PIPELINES_INPUT_ROOT", raising=False)
    answers = model.predict(pd.DataFrame({"image": rows}))
    assert [answer.get("label") for answer in answers] == [None, None, None, truth]
    assert "a served model reads no file paths" in answers[0]["error"]
    monkeypatch.setenv("PIPELINES_INPUT_ROOT", str(incoming))
    answers = model.predict(pd.DataFrame({"image": rows}))
    assert [answer.get("label") for answer in answers] == [truth, None, None, truth]
    assert all("no file" in answer["error"] and "in the input folder" in answer["error"] for answer in answers[1:3])
    with pytest.raises(ValueError, match=r"input: no file '\.\./outside\.png' in the input folder"):
        model.predict(pd.DataFrame({"image": ["../outside.png"]}))


def test_compare_sorts_runs_by_primary_metric(trained, capsys):
    assert cli.main(["compare", TASK]) == 0
    out = capsys.readouterr().out
    assert "sorted by test_accuracy" in out and trained.run_id[:12] in out


def test_exception_marks_run_failed(tracking_store, monkeypatch):
    task = tasks.get(TASK)

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation exploded")

    monkeypatch.setattr(type(task), "evaluate", broken)
    with pytest.raises(RuntimeError):
        runner.run(*resolve(TASK, "max_examples=200"))
    runs = mlflow.search_runs(experiment_names=[TASK], output_format="list")
    assert [run.info.status for run in runs] == ["FAILED"]


@pytest.mark.slow  # two trainings: 40 s of the default suite's 10-minute budget
def test_same_seed_gives_same_test_metric(tracking_store):
    first = runner.run(*resolve(TASK, "max_examples=300", "seed=3"))
    second = runner.run(*resolve(TASK, "max_examples=300", "seed=3"))
    assert first.metrics == second.metrics


@pytest.mark.slow  # a full run (15 s); fixed-size TFDS loading is tested without training below, mixed-size sets train
def test_tfds_source_under_mock_data(tracking_store, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda timeout=3.0: True)
    with tfds.testing.mock_data(num_examples=40):
        result = runner.run(*resolve(TASK, data="tfds:fashion_mnist"))
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["data_source"] == "tfds:fashion_mnist" and run.data.tags["dataset"] == "tfds_fashion_mnist"
    assert 0 <= result.metrics["accuracy"] <= 1


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_standard_tfds_datasets_load_under_mock_data(name, shape, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda timeout=3.0: True)
    task, resolved = resolve(TASK, data=f"tfds:{name}", quick=False)
    with tfds.testing.mock_data(num_examples=30):
        splits = task.load_data(resolved)
        pictures = splits.train.sample(4)[0]  # streams read the (mocked) files when iterated
    assert pictures.shape[1:] == shape and pictures.max() <= 1
    assert len(splits.test) == 30 and len(splits.info.class_names) == 10  # the TFDS test split is kept


# One mixed-size set in the default suite (fixed-size sets are the test above); the second is slow.
@pytest.mark.parametrize("name", ["tf_flowers", pytest.param("cats_vs_dogs", marks=pytest.mark.slow)])
def test_mixed_size_tfds_photo_sets_train_when_resized(name, tracking_store, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda timeout=3.0: True)
    with tfds.testing.mock_data(num_examples=40):  # mocked photos of random sizes, as the real sets have
        result = runner.run(*resolve(TASK, "image_size=64", data=f"tfds:{name}"))
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["dataset"] == f"tfds_{name}" and 0 <= result.metrics["accuracy"] <= 1
    assert int(run.data.tags["examples.training"]) > 0 and run.data.tags["effective.cache"] == "memory,memory"


def test_mixed_size_tfds_set_needs_image_size(tracking_store, monkeypatch, capsys):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda timeout=3.0: True)
    with tfds.testing.mock_data(num_examples=10):
        assert cli.main(["run", TASK, "--data", "tfds:tf_flowers", "--quick"]) == 2
    error = capsys.readouterr().err.strip()
    assert "tf_flowers has images of different sizes" in error and "image_size" in error and "\n" not in error
    assert not mlflow.search_runs(experiment_names=[TASK], output_format="list")[0].info.status == "RUNNING"


def test_odd_image_files_decode_to_the_configured_channels(tmp_path):
    from PIL import Image

    gray16 = tmp_path / "gray16.png"
    Image.fromarray(np.full((6, 4), 65535 // 2, np.uint16)).save(gray16)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([np.full((6, 4, 3), 200, np.uint8), np.zeros((6, 4), np.uint8)]), "RGBA").save(rgba)
    rotated = tmp_path / "rotated.jpg"  # stored 4 wide and 6 high, shown turned by 90 degrees
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.full((6, 4, 3), 90, np.uint8)).save(rotated, exif=exif)
    assert abs(float(images.decode(str(gray16)).mean()) - 0.5) < 0.01  # 16 bits scaled, not clipped at 255
    assert images.decode(str(rgba)).shape == (6, 4, 3)  # transparency dropped
    assert images.decode(str(rotated)).shape == (4, 6, 3) and images.header(str(rotated)).height == 4
    split, size, channels = images.file_examples(
        [str(gray16), str(rgba), str(rotated)], np.zeros(3, "int64"), image_size=8, channels=1
    )
    pictures, _ = split.sample(3)
    assert pictures.shape == (3, 8, 8, 1) and size == (8, 8) and channels == 1


@pytest.mark.parametrize(
    "sizes, expected, message",
    [
        (
            [(150, 200), (300, 180), (140, 160), (400, 300)],
            (128, 128),  # (height, width); median shorter side 165
            "differ in size (160x140 to 300x400); resizing to 128x128 (image_size=0 picks the median shorter side, "
            "capped at 128; set image_size to choose)",
        ),
        ([(20, 30), (40, 24), (30, 30), (50, 36)], (27, 27), "differ in size (30x20 to 36x50); resizing to 27x27"),
        ([(150, 200)] * 4, (128, 128), "are 200x150; resizing to 128x128"),  # one size, but above the cap
        ([(12, 10)] * 4, (12, 10), None),  # one small size (MNIST-style scans) is kept
    ],
    ids=["mixed", "mixed_small", "uniform_large", "uniform_small"],
)
def test_a_folder_of_mixed_or_large_images_gets_one_size_and_says_which(tmp_path, caplog, sizes, expected, message):
    rng = np.random.default_rng(0)
    for index, size in enumerate(sizes):
        (tmp_path / f"class_{index % 2}").mkdir(exist_ok=True)
        images.save_png(rng.random((*size, 3)), tmp_path / f"class_{index % 2}" / f"{index}.png")
    task, resolved = resolve(TASK, "test_fraction=0.25", "validation_fraction=0.25", data=tmp_path, quick=False)
    splits = task.load_data(resolved)
    assert splits.info.image_size == list(expected) and splits.train.sample(1)[0].shape[1:3] == expected
    assert task.prepare_inputs(splits.info, [str(tmp_path / "class_0" / "0.png")]).shape == (1, *expected, 3)
    if message:
        assert f"images in {tmp_path} {message}" in caplog.text
    else:
        assert "resizing" not in caplog.text


def test_a_file_that_breaks_while_streaming_is_skipped_by_name(tmp_path, caplog):
    paths = []
    for index in range(4):
        paths.append(str(tmp_path / f"{index}.png"))
        images.save_png(np.full((8, 8, 1), index / 4), paths[-1])
    split, _, _ = images.file_examples(paths, np.arange(4))
    with open(paths[2], "r+b") as handle:  # its header was read; its pixels are gone by training time
        handle.truncate(40)
    pictures, labels = split.sample(4)
    assert list(labels) == [0, 1, 3] and "2.png" in caplog.text


def test_cache_plan_keeps_in_memory_only_what_fits():
    from shared.data import examples

    decoded = images.array_step(1, (8, 8))
    small = examples.Examples(np.zeros((10, 8, 8), np.uint8), np.zeros(10), decode=decoded)  # 2.5 KB decoded
    large = examples.Examples(np.zeros((10, 8, 8), np.uint8), np.zeros(10), decode=decoded, element_bytes=2**20)
    assert examples.cache_plan("auto", [small, large], budget_mb=5) == ["memory", "none"]
    assert examples.cache_plan("disk", [small], budget_mb=5) == ["disk"]
    plain = examples.Examples(np.zeros((10, 3)), np.zeros(10))
    assert examples.cache_plan("memory", [plain], budget_mb=5) == ["none"]  # arrays already are the data


# a full run for one cache mode: 35 s of the 10-minute default budget; cache_plan's choices are tested above
@pytest.mark.slow
def test_disk_cache_trains_and_leaves_no_files(tracking_store, tmp_path):
    folder = tmp_path / "images"
    for name, value in (("dark", 0.2), ("bright", 0.8)):
        (folder / name).mkdir(parents=True)
        for index in range(10):
            images.save_png(np.full((8, 8, 1), value), folder / name / f"{index}.png")
    result = runner.run(*resolve(TASK, "epochs=2", "cache=disk", data=str(folder)))
    assert mlflow.get_run(result.run_id).data.tags["effective.cache"] == "disk,disk"
    assert not any((tmp_path / "cache").glob("*/*")), "the run's disk cache is deleted when it ends"


@pytest.mark.slow  # a full run; the skip itself is tested without training (test_a_file_that_breaks_while_streaming...)
def test_image_folder_skips_corrupt_files_with_a_warning(tracking_store, tmp_path, caplog):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"  # beside the store, not around it
    for name, value in (("dark", 0.2), ("bright", 0.8)):
        (folder / name).mkdir(parents=True)
        for index in range(12):
            pixels = np.clip(value + rng.normal(0, 0.05, (12, 10, 3)), 0, 1)
            images.save_png(pixels, folder / name / f"{index}.png")
    (folder / "dark" / "broken.png").write_bytes(b"\x89PNG broken")
    result = runner.run(*resolve(TASK, "epochs=3", "validation_fraction=0.25", "test_fraction=0.25", data=str(folder)))
    assert "broken.png" in caplog.text
    model = tracking.load(result.model_uri)
    (answer,) = model.predict(pd.DataFrame({"image": [str(folder / "bright" / "0.png")]}))
    assert {item["label"] for item in answer["top_k"]} == {"dark", "bright"}


@pytest.mark.slow  # two loaders and a run: 13 s of the default budget
def test_idx_pair_and_npz_sources(tracking_store, tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (60, 9, 9), dtype=np.uint8)
    labels = np.arange(60, dtype=np.uint8) % 3
    idx_folder = tmp_path / "idx"
    idx_folder.mkdir()
    with gzip.open(idx_folder / "t10k-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(bytes([0, 0, 8, 3]) + b"".join(int(n).to_bytes(4, "big") for n in pixels.shape) + pixels.tobytes())
    with gzip.open(idx_folder / "t10k-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(bytes([0, 0, 8, 1]) + (60).to_bytes(4, "big") + labels.tobytes())
    features, targets = read_idx_pair(idx_folder)
    assert features.shape == (60, 9, 9) and (targets == labels).all()
    task, resolved = resolve(TASK, data=idx_folder, quick=False)
    splits = task.load_data(resolved)
    assert splits.train.sample(2)[0].shape[1:] == (9, 9, 1) and splits.info.class_names == ["0", "1", "2"]
    assert len(splits.train.targets) + len(splits.validation.targets) + len(splits.test.targets) == 60
    npz = tmp_path / "digits.npz"
    np.savez(npz, x_train=pixels[:40], y_train=labels[:40], x_test=pixels[40:], y_test=labels[40:])
    result = runner.run(*resolve(TASK, "epochs=1", data=str(npz)))
    assert mlflow.get_run(result.run_id).data.tags["data_source"] == str(npz)
    assert 0 <= result.metrics["accuracy"] <= 1


@pytest.mark.slow
def test_default_run_reaches_target_on_embedded_digits(tracking_store):
    result = runner.run(*resolve(TASK, quick=False))
    assert result.metrics["accuracy"] >= 0.97


@pytest.mark.slow
def test_real_mnist_idx_files_load(tracking_store):
    folder = shared_data("mnist_test")
    features, labels = read_idx_pair(folder)
    assert features.shape == (10000, 28, 28) and set(labels) == set(range(10))


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["efficientnetv2b0", "mobilenetv3small"])
def test_applications_backbones_take_small_grayscale_images_and_local_weights(backbone, tmp_path):
    task, resolved = resolve(TASK, f"backbone={backbone}", quick=False)
    info = ImageState(class_names=["a", "b", "c"], image_size=[8, 8], channels=1)
    model = task.build_model(resolved, info)
    assert model.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0).shape == (2, 3)
    inner = next(layer for layer in model.layers if layer.name.lower().startswith(backbone[:8]))
    weights = tmp_path / "backbone.weights.h5"
    inner.save_weights(weights)
    _, with_weights = resolve(TASK, f"backbone={backbone}", f"backbone_weights={weights}", quick=False)
    reloaded = task.build_model(with_weights, info)
    reloaded_inner = next(layer for layer in reloaded.layers if layer.name.lower().startswith(backbone[:8]))
    np.testing.assert_allclose(reloaded_inner.get_weights()[0], inner.get_weights()[0])
    with pytest.raises(ValueError, match="could not be loaded"):
        _, missing = resolve(TASK, f"backbone={backbone}", f"backbone_weights={tmp_path / 'nope.h5'}", quick=False)
        task.build_model(missing, info)


ONEDNN_CRASH = """
import keras, numpy as np
from types import SimpleNamespace
from tasks.image_classification import _resnet
inputs = keras.Input((64, 64, 3))
features = _resnet(inputs, SimpleNamespace(base_filters=8, stages=3, blocks_per_stage=1), None, 1)
model = keras.Model(inputs, keras.layers.Dense(4)(features))
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(np.random.rand(8, 64, 64, 3).astype("float32"), np.arange(8) % 4, batch_size=8, verbose=0)
print("trained")
"""


def test_the_resnet_trains_at_widths_where_onednn_crashed():
    """base_filters=8 on 64 px images: a strided 1x1 shortcut convolution's weight gradient (8 channels in, 16 out)
    made oneDNN write past its buffer (SIGSEGV or `free(): invalid size`, every time; the bare op reproduces it:
    `tf.raw_ops.Conv2DBackpropFilter` of a (1, 64, 64, 8) input, 1x1x8x16 filter, strides 2, SAME). A native crash
    kills the process, so the model trains in a subprocess."""
    import pathlib
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-c", ONEDNN_CRASH],
        cwd=pathlib.Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0 and "trained" in completed.stdout, (completed.returncode, completed.stderr[-2000:])


@pytest.mark.parametrize(
    "side, examples, stride, expected",
    [(16, 9000, 0, 1), (28, 3999, 0, 1), (28, 4000, 0, 2), (128, 9000, 0, 2), (28, 100, 4, 4), (128, 9000, 1, 1)],
)
def test_the_stem_strides_by_the_data_and_the_model_keeps_the_stride_in_its_info(side, examples, stride, expected):
    import keras

    from tasks import image_classification

    _, settings = resolve("vision_classification", f"stem_stride={stride}", quick=False)
    chosen = image_classification.stem_stride(settings, side, examples)
    assert chosen == expected
    info = image_classification.ImageState(
        image_size=[side, side], channels=1, class_names=["a", "b"], stem_stride=chosen
    )
    # the info's stride builds the model, whatever the config says now (a continued run on other data)
    model = tasks.get("vision_classification").build_model(dataclasses.replace(settings, stem_stride=1), info)
    pooled = next(layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    final = -(-side // (expected * 2 ** (settings.stages - 1)))  # each later stage halves the map, rounding up
    assert tuple(pooled.input.shape[1:3]) == (final, final)
