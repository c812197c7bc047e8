"""Shared utilities: augmentation, regularization, evaluation, data helpers. No training here."""

import types

import numpy as np
import pytest

from shared import augmentation, evaluation, images, regularization
from shared.data import examples, sources
from shared.data.sources import parse_source, read_idx, read_npz, split_source
from shared.data.splits import split_indices
from shared.data.text import adapt_vocabulary
from tasks.base import TaskConfig


def batch(count=8, size=16, channels=1, classes=4):
    rng = np.random.default_rng(0)
    pixels = rng.random((count, size, size, channels)).astype("float32")
    targets = np.eye(classes, dtype="float32")[rng.integers(0, classes, count)]
    return pixels, targets


def test_image_augmentation_keeps_shapes_and_range():
    augment = augmentation.image(flip="horizontal", rotation=0.1, zoom=0.1, contrast=0.2, crop_padding=2, seed=1)
    pixels, targets = batch()
    out_pixels, out_targets = augment(pixels, targets)
    assert tuple(out_pixels.shape) == pixels.shape
    assert not np.allclose(np.asarray(out_pixels), pixels)
    np.testing.assert_array_equal(np.asarray(out_targets), targets)


def test_mixup_and_cutmix_mix_labels_into_distributions():
    pixels, targets = batch(count=16)
    for options in ({"mixup": 0.4}, {"cutmix": 1.0}):
        _, mixed = augmentation.image(seed=2, **options)(pixels, targets)
        mixed = np.asarray(mixed)
        np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-5)
        assert ((mixed > 0) & (mixed < 1)).any()  # some labels are now soft


def test_no_augmentation_is_none():
    assert augmentation.image() is None


def test_chain_composes_left_to_right_and_skips_none():
    add_one = lambda features, targets: (features + 1, targets)  # noqa: E731
    double = lambda features, targets: (features * 2, targets)  # noqa: E731
    assert augmentation.chain(None) is None
    assert augmentation.chain(add_one, None, double)(1, 0) == (4, 0)


def test_optimizer_schedules_and_callbacks():
    import keras

    config = TaskConfig(schedule="cosine", learning_rate=0.01, weight_decay=0.001, epochs=10)
    optimizer = regularization.optimizer(config, steps_per_epoch=5)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert float(optimizer.learning_rate) == pytest.approx(0.01)  # the cosine schedule at step 0
    assert optimizer.weight_decay == pytest.approx(0.001)
    callbacks = regularization.callbacks(TaskConfig(schedule="plateau", early_stopping_patience=6))
    check, early, plateau = callbacks
    with pytest.raises(ValueError, match="monitor 'val_loss' is not among"):
        check.on_epoch_end(0, {"loss": 1.0})
    assert early.restore_best_weights and early.patience == 6
    assert isinstance(plateau, keras.callbacks.ReduceLROnPlateau)
    assert len(regularization.callbacks(TaskConfig(schedule="cosine"))) == 2
    assert regularization.l2(0) is None and regularization.l2(1e-4) is not None


def test_small_data_waits_longer_before_stopping_early():
    import keras

    config = TaskConfig(early_stopping_patience=3, epochs=30)
    assert regularization.patience(config, steps_per_epoch=200) == (3, 1)  # large data: the config's patience
    assert regularization.patience(config, steps_per_epoch=9) == (12, 23)  # 546 images in batches of 64
    assert regularization.patience(TaskConfig(epochs=10), steps_per_epoch=9) == (12, 10)  # at most the epochs
    features = np.zeros((8, 1), "float32")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")  # zero inputs and targets: val_loss never improves after epoch 1
    early = regularization.callbacks(
        TaskConfig(early_stopping_patience=1, epochs=30, schedule="constant"), steps_per_epoch=40
    )[1]
    history = model.fit(
        features, features, epochs=30, validation_data=(features, features), callbacks=[early], verbose=0
    )
    assert len(history.epoch) == 5  # patience 3 epochs (100 steps of 40 per epoch), yet no stop before 200 steps


def test_weight_averaging_validates_and_keeps_the_averaged_weights():
    import keras

    config = TaskConfig(weight_averaging=2, schedule="constant", learning_rate=0.05, epochs=4)
    features = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    targets = features @ np.array([1.0, -2.0, 0.5], dtype="float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=regularization.optimizer(config, steps_per_epoch=4), loss="mse")
    callbacks = regularization.callbacks(config)
    assert model.optimizer.use_ema and isinstance(callbacks[0], keras.callbacks.SwapEMAWeights)
    assert model.optimizer.ema_momentum == pytest.approx(1 - 1 / 8)  # 2 epochs of 4 steps
    history = model.fit(
        features, targets, batch_size=16, epochs=4, validation_data=(features, targets), callbacks=callbacks, verbose=0
    )
    # the kept weights are the best epoch's averaged ones, the very weights its validation loss was read on
    assert model.evaluate(features, targets, verbose=0) == pytest.approx(min(history.history["val_loss"]), rel=1e-5)
    assert not regularization.optimizer(TaskConfig(), steps_per_epoch=4).use_ema


def test_classification_evaluation_matches_sklearn_and_draws_figures():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array(
        [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6]]
    )
    result = evaluation.classification(labels, probabilities, ["a", "b", "c"])
    assert result.metrics["accuracy"] == pytest.approx(5 / 6)
    assert 0.5 < result.metrics["roc_auc"] <= 1 and 0.5 < result.metrics["pr_auc"] <= 1
    assert {"confusion_matrix", "roc_curve", "pr_curve"} <= set(result.figures)
    assert "precision" in result.texts["classification_report.txt"]


def test_top_k_answers():
    (answer,) = evaluation.top_k(np.array([[0.1, 0.7, 0.2]]), ["a", "b", "c"], k=2)
    assert answer["label"] == "b" and answer["probability"] == pytest.approx(0.7)
    assert [item["label"] for item in answer["top_k"]] == ["b", "c"]


def test_split_indices_stratified_and_grouped():
    labels = np.array([0] * 80 + [1] * 20)
    train, validation, test = split_indices(100, 0, 0.2, 0.2, stratify=labels)
    assert sorted(np.concatenate([train, validation, test])) == list(range(100))
    assert labels[test].mean() == pytest.approx(0.2)
    groups = np.repeat(np.arange(10), 10)
    train, validation, test = split_indices(100, 0, 0.2, 0.2, groups=groups)
    assert not set(groups[train]) & set(groups[test]) and not set(groups[train]) & set(groups[validation])
    with pytest.raises(ValueError, match="10 example\\(s\\) are too few to carve"):
        split_indices(10, 0, 0.5, 0.5)


def test_make_dataset_batches_and_maps():
    features, targets = np.arange(10, dtype="float32"), np.arange(10)
    dataset = examples.make_dataset(
        examples.Examples(features, targets), 4, shuffle=True, seed=0, batch_map=lambda x, y: (x * 2, y)
    )
    batches = list(dataset.as_numpy_iterator())
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert sorted(np.concatenate([x for x, _ in batches])) == list(range(0, 20, 2))


def test_parse_source(tmp_path):
    assert parse_source("embedded") == ("embedded", "")
    assert parse_source("tfds:mnist:train") == ("tfds", "mnist:train")
    (tmp_path / "a").mkdir()
    assert parse_source(str(tmp_path)) == ("folder", str(tmp_path))
    npz = tmp_path / "x.npz"
    np.savez(npz, a=np.zeros(2))
    assert parse_source(str(npz)) == ("npz", str(npz))
    with pytest.raises(ValueError, match="does not exist"):
        parse_source(str(tmp_path / "missing"))
    assert parse_source(f"csv:{npz}") == ("csv", str(npz))  # a named kind skips detection


def test_split_source_reads_the_written_kind_without_the_disk_and_tracking_names_sources_by_it():
    from shared import tracking

    assert split_source("embedded") == ("embedded", "")
    assert split_source("tfds:movielens/100k-ratings:train") == ("tfds", "movielens/100k-ratings:train")
    assert split_source("csv:/data/ratings.csv") == ("csv", "/data/ratings.csv")
    assert split_source("C:/data/digits") == ("", "C:/data/digits")  # a drive letter is no kind
    assert tracking.short_source("csv:/data/ratings.csv") == "ratings.csv"
    assert tracking.short_source("tfds:movielens/100k-ratings:train") == "movielens_100k-ratings"
    assert tracking.short_source("/data/ml-100k/") == "ml-100k" and tracking.short_source("") == "embedded"


@pytest.fixture
def readers(monkeypatch):
    """The reader table, restored after the test; returns a task-like owner and a config-like object."""
    monkeypatch.setattr(sources, "READERS", dict(sources.READERS))
    return types.SimpleNamespace(name="toy"), types.SimpleNamespace(data="embedded", wanted=True)


def test_the_first_named_reader_that_takes_the_kind_reads_it(tmp_path, readers):
    task, config = readers

    @sources.reader("toy_fussy", ("folder",), "a folder the config wants", accepts=lambda path, config: config.wanted)
    def fussy(task, argument, config):
        return "fussy", argument

    @sources.reader("toy_folder", ("folder",), "any folder")
    def folder(task, argument, config):
        return "folder", argument

    config.data = str(tmp_path)
    assert sources.read_source(task, config, ("toy_fussy", "toy_folder")) == ("fussy", str(tmp_path))
    config.wanted = False
    assert sources.read_source(task, config, ("toy_fussy", "toy_folder")) == ("folder", str(tmp_path))
    config.data = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="does not exist"):
        sources.read_source(task, config, ("toy_folder",))


def test_a_source_no_named_reader_takes_lists_what_they_read(tmp_path, readers):
    task, config = readers
    sources.reader("toy_folder", ("folder",), "a folder of toys")(lambda task, argument, config: None)
    (tmp_path / "notes.txt").write_text("hello")
    config.data = str(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match=r"^toy cannot read '.*notes.txt' \(a file\); give a folder of toys\.$"):
        sources.read_source(task, config, ("toy_folder",))
    config.data = "tfds:mnist"
    with pytest.raises(ValueError, match="^toy has no TFDS dataset; give a folder of toys"):
        sources.read_source(task, config, ("toy_folder",))
    with pytest.raises(ValueError, match=r"toy names unregistered reader\(s\) \['toy_missing'\]; register them"):
        sources.read_source(task, config, ("toy_folder", "toy_missing"))


def test_a_reader_name_is_taken_once(readers):
    def first(task, argument, config):
        return 1

    def second(task, argument, config):
        return 2

    sources.reader("toy_once", ("file",), "a file")(first)
    sources.reader("toy_once", ("file",), "a file")(first)  # the same function again: a module imported twice
    with pytest.raises(ValueError, match="reader 'toy_once' is already .*first; rename one"):
        sources.reader("toy_once", ("file",), "a file")(second)


def test_bad_idx_and_npz_files_are_named(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"hello world")
    with pytest.raises(ValueError, match="bad-idx3-ubyte' is not an unsigned-byte IDX file"):
        read_idx(bad)
    npz = tmp_path / "other.npz"
    np.savez(npz, pixels=np.zeros(3))
    with pytest.raises(ValueError, match="expected x_train, y_train"):
        read_npz(npz)
    with pytest.raises(ValueError, match="cannot read"):
        read_npz(bad)


def test_decode_and_fit_images(tmp_path):
    path = tmp_path / "rgb.png"
    images.save_png(np.full((5, 7, 3), 0.5), path)
    decoded = images.decode(str(path))
    assert decoded.shape == (5, 7, 3) and decoded.max() <= 1
    fitted = images.fit(decoded, (8, 8), 1)
    assert fitted.shape == (8, 8, 1)
    assert images.decode(np.full((4, 4), 255, dtype=np.uint8)).max() == pytest.approx(1.0)


def test_a_vocabulary_is_counted_on_a_capped_seeded_sample():
    texts = np.array([f"common word{index}" for index in range(50)], dtype=object)
    whole = adapt_vocabulary(texts, 100, "strip", sample=50)
    capped = adapt_vocabulary(texts, 100, "strip", sample=10, seed=1)
    assert len(whole) == 2 + 51 and whole[2] == "common"
    assert len(capped) == 2 + 11 and capped[2] == "common"  # padding, [UNK], the common word and 10 of the rest
    assert capped == adapt_vocabulary(texts, 100, "strip", sample=10, seed=1)  # the seed fixes the sample
