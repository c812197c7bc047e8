"""Vision segmentation end to end: training on generated scenes, MLflow artifacts, mask prediction, data paths."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipelines import cli, runner
from shared import augmentation, evaluation, images, tracking
from shared.data import tfds as tfds_source
from tasks.vision_segmentation import SegmentationState, _scenes
from tests.conftest import resolve, shared_data

TASK = "vision_segmentation"
SMALL = [
    "image_size=32",
    "depth=3",
    "base_filters=8",
    "max_examples=240",
    "epochs=10",
    "batch_size=8",
    "learning_rate=0.005",
]


@pytest.fixture(scope="module")
def trained(module_store):
    """One short training on generated scenes, shared by the tests that inspect its run and model."""
    task, resolved = resolve(TASK, *SMALL, quick=False)
    return runner.run(task, resolved)


def write_pairs(folder, count=6, size=(24, 20), mask_values=(0, 255), mask_suffix=".png", seed=0):
    """Writes `count` image/mask pairs: a bright square (foreground) on a dark background.

    `size` is one (height, width) for every pair, or a list of one per pair (then `count` is its length).
    """
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    for index, shape in enumerate(size if isinstance(size, list) else [size] * count):
        mask = np.zeros(shape, np.uint8)
        row, column = rng.integers(0, 10, 2)
        mask[row : row + 8, column : column + 8] = 1
        picture = (0.2 + 0.6 * mask + rng.normal(0, 0.03, shape)).clip(0, 1)
        images.save_png(picture[..., None], folder / "images" / f"{index}.png")
        Image.fromarray(np.array(mask_values, np.uint8)[mask]).save(folder / "masks" / f"{index}{mask_suffix}")
    return folder


def test_run_beats_chance_and_logs_everything(trained):
    background_share = float(np.mean(_scenes(600, 32, seed=0)[1] == 0))  # the training scenes (seed 0)
    # Predicting background everywhere scores pixel accuracy = background_share, mean IoU = share / 4.
    assert trained.metrics["pixel_accuracy"] > background_share + 0.02
    assert trained.metrics["mean_iou"] > background_share / 4 + 0.05
    run = mlflow.get_run(trained.run_id)
    assert run.data.tags["synthetic"] == "true" and run.data.tags["dataset"] == "generated_shapes"
    for name in (
        "test_mean_iou",
        "test_mean_dice",
        "test_pixel_accuracy",
        "test_iou_circle",
        "test_dice_triangle",
        "val_mean_iou",
        "val_pixel_accuracy",
    ):
        assert name in run.data.metrics
    client = mlflow.MlflowClient()
    assert "per_class_iou.csv" in {item.path for item in client.list_artifacts(trained.run_id)}
    table = mlflow.artifacts.load_text(f"runs:/{trained.run_id}/per_class_iou.csv").splitlines()
    assert table[0] == "class,iou,dice,true_pixels,predicted_pixels" and len(table) == 5
    plots = {item.path for item in client.list_artifacts(trained.run_id, "plots")}
    assert {"plots/overlays.png", "plots/pixel_confusion_matrix_percent.png", "plots/training_curves.png"} <= plots
    explained = [item.path for item in client.list_artifacts(trained.run_id, "plots/explain")]
    assert explained == ["plots/explain/segmentation.png"]


def test_predict_writes_a_mask_png_from_the_registry(trained, tmp_path, capsys):
    pictures, masks = _scenes(1, 40, seed=99)  # not the training size: the model is fully convolutional
    path = tmp_path / "scene.png"
    images.save_png(pictures[0], path)
    assert (
        cli.main(["predict", TASK, "--model", f"models:/{TASK}/latest", str(path), f"{path}={tmp_path / 'chosen.png'}"])
        == 0
    )
    first, second = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines())
    assert first["mask_path"] == str(tmp_path / "scene_mask.png")
    assert second["mask_path"] == str(tmp_path / "chosen.png")
    with Image.open(first["mask_path"]) as written:
        assert written.size == (40, 40)
        classes = np.asarray(written) // 85  # 4 classes are written as 0, 85, 170, 255
    assert set(first["class_fractions"]) == {"background", "circle", "square", "triangle"}
    assert abs(sum(first["class_fractions"].values()) - 1) < 1e-4
    assert np.mean((classes > 0) == (masks[0] > 0)) > 0.8  # the shapes are found


def test_predict_explain_writes_a_saliency_png_per_predicted_class(trained, tmp_path, capsys):
    pictures, _ = _scenes(1, 40, seed=99)
    path = tmp_path / "scene.png"
    images.save_png(pictures[0], path)
    maps = tmp_path / "maps"
    model = f"models:/{TASK}/latest"
    assert cli.main(["predict", TASK, "--model", model, "--explain", "--explain-dir", str(maps), str(path)]) == 0
    answer = json.loads(capsys.readouterr().out)
    found = answer.pop("explanation")
    assert found["method"] == "integrated_gradients"
    predicted = {name for name, share in answer["class_fractions"].items() if share > 0}
    assert set(found["heatmap_paths"]) == predicted and len(predicted) > 1  # background and the shapes it found
    for name, heatmap in found["heatmap_paths"].items():  # over the image as the model sees it (image_size=32)
        assert heatmap.startswith(str(maps / "scene-")) and images.decode(heatmap).shape == (32, 32, 3), name


def test_predict_converts_grayscale_input_for_an_rgb_model(trained, tmp_path):
    gray = tmp_path / "gray.png"
    images.save_png(_scenes(1, 32, seed=5)[0][0].mean(-1, keepdims=True), gray)
    (answer,) = tracking.load(f"models:/{TASK}/latest").predict(pd.DataFrame({"image": [str(gray)]}))
    assert answer["size"] == [32, 32]


def test_folder_source_reads_binary_masks_and_tiles(tmp_path):
    task, resolved = resolve(
        TASK,
        "tile_size=8",
        "depth=2",
        "split=ordered",
        "test_fraction=0.2",
        "validation_fraction=0.2",
        data=str(write_pairs(tmp_path, count=10)),
        quick=False,
    )
    splits = task.load_data(resolved)
    assert splits.info.class_names == ["background", "foreground"] and splits.info.channels == 1
    pictures, masks = splits.train.sample(len(splits.train))
    assert pictures.shape == (6 * 9, 8, 8, 1) and masks.shape == (6 * 9, 8, 8)  # 3x3 tiles
    assert splits.test.sample(2)[0].shape == (2, 24, 20, 1)  # test images stay whole
    assert set(np.unique(masks)) == {0, 1} and not splits.synthetic


def test_random_crops_train_from_whole_images_and_tiles_predict_whole_images(tmp_path):
    task, resolved = resolve(
        TASK,
        "tile_size=8",
        "crops_per_image=3",
        "depth=2",
        "split=ordered",
        "test_fraction=0.2",
        "validation_fraction=0.2",
        "elastic_sigma=1",
        "context=4",
        "tta=true",
        data=str(write_pairs(tmp_path, count=10)),
        quick=False,
    )
    splits = task.load_data(resolved)
    assert splits.train.sample(2)[0].shape == (2, 24, 20, 1)  # whole images: crops are cut per batch
    assert splits.validation.sample(9)[0].shape == (9, 8, 8, 1)  # validation keeps its fixed tiles
    assert {key: getattr(splits.info, key) for key in ("tile_size", "context", "tta")} == {
        "tile_size": 8,
        "context": 4,
        "tta": True,
    }
    import tensorflow as tf

    pictures, masks = splits.train.sample(2)
    cropped, cropped_masks = task.train_map(resolved, splits.info)(tf.constant(pictures), tf.constant(masks))
    assert cropped.shape == (6, 8, 8, 1) and cropped_masks.shape == (6, 8, 8)


def test_odd_sized_images_train_evaluate_and_predict_with_the_default_sizes(tracking_store, tmp_path, caplog):
    from pipelines import evaluate

    # 45x58 images, which no U-Net stride divides: training picks tiles, evaluation and prediction whole images.
    task, resolved = resolve(
        TASK,
        "epochs=1",
        "base_filters=4",
        "batch_size=4",
        data=str(write_pairs(tmp_path / "train", count=8, size=(58, 45))),
        quick=False,
    )
    result = runner.run(task, resolved)
    assert "training on 40x40 tiles (tile_size=40) of the 45x58 images" in caplog.text
    assert tracking.logged_model(result.model_uri, task).info.tile_size == 40
    more = write_pairs(tmp_path / "more", count=4, size=(58, 45), seed=1)
    scored = evaluate.evaluate(task, result.model_uri, str(more))
    assert scored["examples"] == 4 and 0 <= scored["metrics"]["pixel_accuracy"] <= 1
    arguments = ["predict", TASK, "--model", result.model_uri, "--explain", str(more / "images" / "0.png")]
    assert cli.main([*arguments, "--explain-dir", str(tmp_path / "maps")]) == 0
    with Image.open(more / "images" / "0_mask.png") as written:
        assert written.size == (45, 58) and set(np.unique(np.asarray(written))) <= {0, 255}
    for heatmap in (tmp_path / "maps").iterdir():  # explained tile by tile, as predicted
        assert images.decode(str(heatmap)).shape == (58, 45, 3)


@pytest.mark.parametrize(
    "size, settings, expected",
    [
        ((32, 32), {}, 0),  # the embedded scenes train whole
        ((512, 512), {}, 0),  # ISBI's slices too
        ((58, 45), {}, 40),  # the largest multiple of the stride (8) that fits
        ((584, 565), {}, 256),  # ... at most AUTO_TILE_SIDE
        ((2000, 2000), {}, 256),  # a stride multiple, but too large to train whole
        ((512, 512), {"tile_size": 128}, 128),  # the benchmark's tiles
        ((2000, 2000), {"image_size": 2000, "batch_size": 1}, 0),  # an explicit size is kept (where it fits in memory)
        ((58, 45), {"image_size": 45}, "needs multiples of 8"),
        ((58, 45), {"tile_size": 48}, "tile_size 48 is larger than the images"),
        ((6, 7), {}, "needs multiples of 8"),  # smaller than the stride: no tile fits
    ],
)
def test_training_examples_are_whole_images_or_tiles_that_fit_the_stride(size, settings, expected):
    from tasks.vision_segmentation import _training_tile

    _, resolved = resolve(TASK, *[f"{key}={value}" for key, value in settings.items()], quick=False)
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            _training_tile(size, resolved, 8)
    else:
        assert _training_tile(size, resolved, 8) == expected


def test_mixed_sizes_resize_to_the_median_and_say_so(tmp_path, caplog):
    sizes = [(24, 20), (40, 30), (32, 36), (48, 44), (30, 26)]  # (height, width): medians 32 and 30
    task, resolved = resolve(TASK, data=str(write_pairs(tmp_path, size=sizes)), quick=False)
    splits = task.load_data(resolved)
    assert "differ in size (20x24 to 44x48); resizing to 30x32 (image_size=0 picks the median" in caplog.text
    pictures, masks = splits.test.sample(1)
    assert pictures.shape == (1, 32, 30, 1) and set(np.unique(masks)) <= {0, 1}  # masks resize by nearest neighbour
    assert splits.info.tile_size == 24 and splits.train.sample(1)[0].shape == (1, 24, 24, 1)


def test_class_index_masks_with_names(tmp_path):
    task, resolved = resolve(
        TASK,
        "depth=2",
        "image_size=16",
        "class_names=sky,square",
        data=str(write_pairs(tmp_path, count=8, mask_values=(0, 1))),
        quick=False,
    )
    splits = task.load_data(resolved)
    assert splits.info.class_names == ["sky", "square"] and splits.train.sample(1)[0].shape[1:] == (16, 16, 1)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / "masks" / "3.png").unlink(), "3.png' has no mask"),
        (
            lambda root: Image.fromarray(np.full((24, 20), 128, np.uint8)).save(root / "masks" / "2.png"),
            "has value 128",
        ),
        (
            lambda root: Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "1.png"),
            "must match its image's size",
        ),
        (lambda root: (root / "masks").rename(root / "other"), "must hold an images/ and a masks/"),
    ],
)
def test_bad_folders_name_the_file(tmp_path, damage, message):
    root = write_pairs(tmp_path)
    damage(root)
    task, resolved = resolve(TASK, data=str(root), quick=False)
    with pytest.raises(ValueError, match=message):
        task.load_data(resolved)


def test_masks_predict_wrote_beside_the_images_are_skipped_by_name(tmp_path, caplog):
    root = write_pairs(tmp_path, count=6)
    (root / "images" / "5_mask.png").write_bytes((root / "masks" / "5.png").read_bytes())
    task, resolved = resolve(TASK, "depth=2", data=str(root), quick=False)
    splits = task.load_data(resolved)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 6
    assert "5_mask.png': a mask written by predict" in caplog.text


def test_too_few_pairs_is_an_empty_split_error(tmp_path):
    task, resolved = resolve(TASK, "depth=2", data=str(write_pairs(tmp_path, count=2)), quick=False)
    with pytest.raises(ValueError, match="would be empty"):
        task.load_data(resolved)


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    root = write_pairs(tmp_path)
    (root / "masks" / "0.png").unlink()
    assert cli.main(["run", TASK, "--data", str(root)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: image") and "0.png' has no mask" in error and "\n" not in error


def test_tfds_oxford_pets_under_mock_data(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda timeout=3.0: True)
    task, resolved = resolve(TASK, "image_size=32", "depth=2", data="tfds:oxford_iiit_pet", quick=False)
    with tfds.testing.mock_data(num_examples=12):
        splits = task.load_data(resolved)
        pictures, masks = splits.train.sample(4)  # streams read the (mocked) files when iterated
    assert splits.info.class_names == ["pet", "background", "border"] and splits.info.image_size == 32
    assert pictures.shape[1:] == (32, 32, 3) and masks.max() <= 2
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 24  # train + test mocked


def test_mobilenetv2_encoder_variant_predicts_whole_images():
    from tasks.vision_segmentation import predict_masks

    task, resolved = resolve(TASK, "encoder=mobilenetv2", "base_filters=8", quick=False)
    info = SegmentationState(
        class_names=["background", "cell"], channels=1, image_size=0, encoder="mobilenetv2", depth=3
    )
    model = task.build_model(resolved, info)
    probabilities = predict_masks(model, np.random.default_rng(0).random((1, 40, 50, 1), dtype="float32"), info)
    assert probabilities.shape == (1, 40, 50, 2) and np.allclose(probabilities.sum(-1), 1, atol=1e-4)


def test_paired_geometric_keeps_image_and_mask_aligned():
    import tensorflow as tf

    masks = np.random.default_rng(0).integers(0, 3, (16, 12, 12)).astype("int32")
    augment = augmentation.paired_geometric(flip=True, rotate90=True, crop_padding=2, seed=1)
    moved_images, moved_masks = augment(tf.constant(masks[..., None].astype("float32")), tf.constant(masks))
    assert np.array_equal(moved_images.numpy()[..., 0].astype("int32"), moved_masks.numpy())
    assert not np.array_equal(moved_masks.numpy(), masks)  # something moved


def test_random_crops_and_elastic_warps_keep_image_and_mask_aligned():
    import tensorflow as tf

    blocks = np.kron(np.random.default_rng(0).integers(0, 3, (4, 6, 6)), np.ones((6, 6))).astype("int32")  # 36 px
    pictures = tf.constant(blocks[..., None].astype("float32"))
    crops, crop_masks = augmentation.paired_random_crop(20, crops=3, seed=1)(pictures, tf.constant(blocks))
    assert crops.shape == (12, 20, 20, 1) and np.array_equal(crops.numpy()[..., 0], crop_masks.numpy())
    first = crop_masks.numpy()[0]
    assert any(
        np.array_equal(blocks[0, row : row + 20, column : column + 20], first)
        for row in range(17)
        for column in range(17)
    )  # a window of the first image
    warped, warped_masks = augmentation.paired_elastic(3.0, grid=3, seed=2)(pictures, tf.constant(blocks))
    warped, warped_masks = warped.numpy()[..., 0], warped_masks.numpy()
    inside = np.abs(warped - np.round(warped)) < 1e-4  # away from class edges, bilinear = nearest
    assert inside.mean() > 0.5 and np.array_equal(np.round(warped[inside]), warped_masks[inside])
    assert (warped_masks != blocks).mean() > 0.01  # the warp moved pixels
    assert augmentation.paired_elastic(0.0) is None


def test_overlap_tile_prediction_matches_whole_image_prediction_of_a_pointwise_model():
    import keras

    from tasks.vision_segmentation import predict_masks

    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(inputs))
    pictures = np.random.default_rng(0).random((3, 37, 50, 1), dtype="float32")
    expected = model.predict(pictures, verbose=0)
    for settings in (
        {},
        {"tile_size": 16, "context": 5},
        {"tile_size": 16, "tta": True},
        {"context": 7, "tta": True},
        {"tile_size": 8, "context": 40},
    ):
        info = SegmentationState(class_names=["a", "b"], channels=1, image_size=0, encoder="unet", depth=2, **settings)
        assert np.allclose(predict_masks(model, pictures, info), expected, atol=1e-6), settings


def test_tiled_explanations_fold_mirrored_context_back_and_add_up():
    """For a linear 3x3 convolution, integrated gradients are exact: each pixel's attribution is its value times the
    change its increase makes to the class's output summed over the class's pixels, as `predict_masks` stitches
    overlapping tiles with mirrored context, and each class's attributions add up to that output."""
    import keras

    from tasks.vision_segmentation import mask_attributions, predict_masks

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(3, 3, padding="same", use_bias=False)])
    info = SegmentationState(
        class_names=["a", "b", "c"], channels=1, image_size=0, encoder="unet", depth=1, tile_size=8, context=2
    )
    pictures = np.random.default_rng(0).random((2, 13, 11, 1), dtype="float32")  # 2 x 2 overlapping tiles
    cells = [(0, 0), (6, 5), (12, 10), (1, 9)]  # corners and edges are mirrored into the context
    bumped = np.repeat(pictures[None], len(cells) + 1, axis=0)
    for index, (row, column) in enumerate(cells, start=1):
        bumped[index, :, row, column] += 1.0
    outputs = predict_masks(model, bumped.reshape(-1, 13, 11, 1), info).reshape(len(cells) + 1, 2, 13, 11, 3)
    predicted = outputs[0].argmax(-1)
    totals = (outputs * (predicted[..., None] == np.arange(3))).sum(axis=(2, 3))  # (bumps, images, classes)
    attributions = mask_attributions(model, pictures, info, predicted)
    assert attributions.shape == (2, 3, 13, 11, 1)
    np.testing.assert_allclose(attributions.sum(axis=(2, 3, 4)), totals[0], rtol=1e-4)
    for index, (row, column) in enumerate(cells, start=1):
        expected = (totals[index] - totals[0]) * pictures[:, row, column]
        np.testing.assert_allclose(attributions[:, :, row, column, 0], expected, rtol=1e-3, atol=1e-5)


def test_segmentation_metrics_on_a_known_case():
    truth = np.array([[0, 0, 1, 1]])
    predicted = np.array([[0, 1, 1, 1]])
    result = evaluation.segmentation(evaluation.pixel_confusion(truth, predicted, 2), ["background", "object"])
    assert result.metrics["pixel_accuracy"] == 0.75
    assert result.metrics["iou_background"] == 0.5 and abs(result.metrics["iou_object"] - 2 / 3) < 1e-9
    assert abs(result.metrics["dice_object"] - 0.8) < 1e-9
    assert abs(result.metrics["mean_iou"] - (0.5 + 2 / 3) / 2) < 1e-9


@pytest.mark.slow
def test_real_isbi_membranes_load_with_the_benchmark_split():
    root = shared_data("isbi2012_membrane/train")
    task, resolved = resolve(
        TASK,
        "split=ordered",
        "test_fraction=0.2",
        "validation_fraction=0.1",
        "tile_size=128",
        "depth=4",
        data=str(root),
        quick=False,
    )
    splits = task.load_data(resolved)
    pictures, masks = splits.train.sample(len(splits.train))
    assert splits.test.sample(6)[0].shape == (6, 512, 512, 1) and pictures.shape == (21 * 16, 128, 128, 1)
    assert 0.15 < 1 - masks.mean() < 0.3  # about a fifth of the pixels are membrane (class 0)
