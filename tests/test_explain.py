"""Explanations (`shared.explain`) follow the decisive input: for each kind of input a tiny model is trained in seconds
on data whose answer rests on one region, feature, sensor reading or tone, and its explanation must put its weight
there, and move (or change sign) when that input moves; integrated gradients add up to the output's change from the
baseline (completeness), on TensorFlow and on JAX."""

import json
import os
import pathlib

import numpy as np
import pytest

from shared import explain, images, plots
from tasks.nlp_sentiment import TextState
from tasks.recommendation.encoding import RecommendationState
from tests.conftest import on_jax, resolve

SIDE = 12  # image side: room for a 3x3 patch in distinct corners
FILLERS = ["the", "film", "was", "a", "story", "of", "two", "people", "in", "town", "and", "their", "dog", "it"]
WORDS = ["", "[UNK]", "good", "bad", *FILLERS]  # a vocabulary as the text tasks save it: padding, [UNK], words


def fitted(model, features, targets, loss, epochs):
    """Compiles and fits a tiny model on a seed, returning it."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    model.fit(features, targets, epochs=epochs, batch_size=64, verbose=0)
    return model


def patch_images(count, seed):
    """Grey noise images; label 1 when a bright 3x3 patch sits somewhere in them."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.3, 0.08, (count, SIDE, SIDE, 1)).astype("float32")
    labels = (rng.random(count) < 0.5).astype("int64")
    for index in np.flatnonzero(labels):
        row, column = rng.integers(0, SIDE - 3, 2)
        images[index, row : row + 3, column : column + 3] = 1.0
    return np.clip(images, 0, 1), labels


def with_patch(corner):
    """One noise image with the patch at (row, column) `corner`."""
    image = np.clip(np.random.default_rng(7).normal(0.3, 0.08, (SIDE, SIDE, 1)), 0, 1).astype("float32")
    image[corner[0] : corner[0] + 3, corner[1] : corner[1] + 3] = 1.0
    return image


def check_image(pooled):
    """A patch detector's heatmap peaks on the patch, wherever it is: Grad-CAM for a CNN with a global pooling layer
    of its own (`pooled`), integrated gradients for the same CNN nested as a backbone, which hides its last
    convolution. Returns the method."""
    import keras

    keras.utils.set_random_seed(0)
    images, labels = patch_images(800, 0)
    layers = [keras.layers.Conv2D(8, 3, padding="same", activation="relu"), keras.layers.GlobalMaxPooling2D()]
    if not pooled:
        layers = [keras.Sequential(layers, name="backbone")]
    model = keras.Sequential([keras.Input((SIDE, SIDE, 1)), *layers, keras.layers.Dense(2, activation="softmax")])
    fitted(model, images, labels, "sparse_categorical_crossentropy", 6)
    corners = [(1, 1), (SIDE - 4, SIDE - 4)]
    pictures = np.stack([with_patch(corner) for corner in corners])
    assert model.predict(pictures, verbose=0)[:, 1].min() > 0.8  # the detector learned the patch
    found = explain.explain("image", model, pictures, explain.explained_outputs(np.zeros((2, 2))))
    assert found.method == ("grad_cam" if pooled else "integrated_gradients")
    assert found.summaries.shape == (2, SIDE, SIDE) and 0 <= found.summaries.min() and found.summaries.max() <= 1
    for heatmap, (row, column) in zip(found.summaries, corners):
        inside = heatmap[row : row + 3, column : column + 3].mean()
        assert inside > 2 * heatmap.mean(), (found.method, inside, heatmap.mean())  # the weight follows the patch
    return found.method


def check_table():
    """A sigmoid score that rests on feature 2 alone: its weight dominates, flips sign with the feature, and the
    weights add up to the score's change from the baseline."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(1000, 6)).astype("float32")
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    fitted(model, features, (features[:, 2] > 0).astype("float32"), "binary_crossentropy", 8)
    rows = rng.normal(0, 0.3, (2, 6)).astype("float32")
    rows[:, 2] = [1.5, -1.5]
    found = explain.explain("table", model, rows, explain.explained_outputs(np.zeros((2, 1))))
    weights = found.summaries
    assert (np.abs(weights).argmax(axis=1) == 2).all(), weights
    assert weights[0, 2] > 0 > weights[1, 2], weights
    change = model.predict(rows, verbose=0)[:, 0] - model.predict(np.zeros_like(rows), verbose=0)[:, 0]
    np.testing.assert_allclose(weights.sum(axis=1), change, atol=0.03)  # completeness, within the Riemann error
    return weights.tolist()


def word_sentences(count, seed, length=10):
    """Token ids of 4-10 filler words with "good" (label 1) or "bad" (label 0) at a random position, padded with 0."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, len(WORDS), (count, length))
    lengths = rng.integers(4, length + 1, count)
    ids[np.arange(length) >= lengths[:, None]] = 0
    labels = rng.integers(0, 2, count)
    ids[np.arange(count), rng.integers(0, lengths)] = np.where(labels == 1, 2, 3)
    return ids.astype("int64"), labels


SENTENCES = np.array([[4, 5, 6, 2, 7, 8, 0, 0], [4, 5, 6, 3, 7, 8, 0, 0]], "int64")  # "the film was good/bad a story"


def check_tokens():
    """nlp_sentiment's own CNN, an ensemble of two (two embeddings the weights are summed over), trained on sentences
    whose label is one word: that word carries the largest |weight|, whose sign follows it, padding carries none, and
    the weights add up to the positive probability's change from zero embeddings."""
    import keras

    keras.utils.set_random_seed(0)
    task, config = resolve("nlp_sentiment", "architecture=cnn", "ensemble=2", "embedding_dim=8", "filters=8")
    model = task.build_model(config, TextState(vocabulary=WORDS, class_names=["bad", "good"], sequence_length=10))
    fitted(model, *word_sentences(1000, 0), "sparse_categorical_crossentropy", 2)
    assert model.predict(SENTENCES, verbose=0).argmax(axis=1).tolist() == [1, 0]  # the model learned the word
    found = explain.explain("tokens", model, SENTENCES, np.ones(2, "int64"), vocabulary=WORDS)
    weights = found.summaries
    assert (np.abs(weights).argmax(axis=1) == 3).all(), weights
    assert weights[0, 3] > 0 > weights[1, 3], weights
    assert found.tokens[0].tolist() == ["the", "film", "was", "good", "a", "story", "", ""]
    check_token_completeness(model, weights, atol=0.03)  # within the Riemann error of 32 steps


def check_token_completeness(model=None, weights=None, atol=1e-4):
    """Padding carries no weight, and the weights add up to the positive probability's change from zero embeddings
    (in every member's embedding); without a model, on an untrained CNN ensemble of the text tasks' layers (the JAX
    check: no training, no task import). Returns the weights' sums."""
    import keras

    from shared import text_layers
    from shared.heads import softmax_head

    if model is None:
        keras.utils.set_random_seed(0)
        ids = keras.Input((None,), dtype="int64")
        members = [
            text_layers.layers()["ConvMaxPooling"](8, (3,))(keras.layers.Embedding(len(WORDS), 8, mask_zero=True)(ids))
            for _ in range(2)
        ]
        model = keras.Model(ids, softmax_head(members, 0.0, 2))
        weights = explain.explain("tokens", model, SENTENCES, np.ones(2, "int64"), vocabulary=WORDS).summaries
    layers = explain.token_embeddings(model)
    assert len(layers) == 2 and (weights[:, 6:] == 0).all(), weights  # one embedding per member; padding
    with explain._embedded(layers, [np.zeros(SENTENCES.shape + (8,), "float32")] * 2):
        baseline = np.asarray(model(SENTENCES, training=False))[:, 1]
    change = np.asarray(model(SENTENCES, training=False))[:, 1] - baseline
    np.testing.assert_allclose(weights.sum(axis=1), change, atol=atol)
    return np.round(weights.sum(axis=1), 4).tolist()


def test_a_token_explanation_weighs_the_decisive_word_and_draws_and_answers_it(tmp_path):
    check_tokens()
    shown = np.array([[4, 2, 5, 4, 0]])
    found = explain.Explanation("tokens", "integrated_gradients", np.array([[0.1, 0.6, -0.3, 0.05, 0.0]]), np.ones(1))
    found.tokens = np.where(shown == 0, "", np.asarray(WORDS, dtype=object)[shown])
    field = explain.answers(found, shown, ["bad", "good"], str(tmp_path), ["the good film the"])[0]
    assert field["tokens"] == [["the", 0.1], ["good", 0.6], ["film", -0.3], ["the", 0.05]]  # in order, padding left out
    assert list(field["words"].items()) == [("good", 0.6), ("film", -0.3), ("the", 0.15)]  # occurrences summed
    assert field["output"] == "good" and not list(tmp_path.iterdir())  # a text's explanation writes no file
    plots.close([explain.figure(found, shown, ["true good\ngood: 0.90"])])


def test_token_embeddings_are_found_in_every_text_model_and_unreachable_ones_refused():
    """Each architecture's embedding (a positional embedding's token part), and a one-line error for ids that
    enter a layer whose token vectors cannot be told apart."""
    import keras

    info = TextState(vocabulary=WORDS, class_names=["bad", "good"], sequence_length=10)
    for architecture in ("bilstm", "transformer"):
        task, config = resolve("nlp_sentiment", f"architecture={architecture}", "embedding_dim=8", "heads=2")
        model = task.build_model(config, info)
        assert [type(layer).__name__ for layer in explain.token_embeddings(model)] == ["Embedding"]
    ids = keras.Input((None,), dtype="int64", name="ids")
    counted = keras.layers.CategoryEncoding(len(WORDS), output_mode="count")(ids)
    model = keras.Model(ids, keras.layers.Dense(2, activation="softmax")(counted))
    with pytest.raises(ValueError, match="enter layer 'category_encoding'.* cannot reach"):
        explain.token_embeddings(model)
    with pytest.raises(ValueError, match=r"inputs \['ids'\] hold no 'source'"):
        explain.token_embeddings(model, "source")


def test_an_image_explanation_follows_the_decisive_patch_grad_cam_and_integrated_gradients():
    assert check_image(pooled=True) == "grad_cam"
    assert check_image(pooled=False) == "integrated_gradients"


def test_a_table_explanation_weighs_the_decisive_feature_and_adds_up():
    check_table()


def test_a_sequence_explanation_finds_the_decisive_sensor_and_time_step(tmp_path):
    """A regression on one sensor's reading at one time step: that cell dominates its sensor x time map, and the
    answer names that sensor and step first."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(2000, 10, 4)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((10, 4)),
            keras.layers.Conv1D(8, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )
    fitted(model, windows, 3 * windows[:, 7, 1], "mse", 10)
    shown = rng.normal(0, 0.2, (2, 10, 4)).astype("float32")
    shown[:, 7, 1] = [2.0, -2.0]
    found = explain.explain("sequence", model, shown, explain.explained_outputs(np.zeros((2, 1))))
    assert found.summaries.shape == (2, 4, 10)  # sensors x time steps
    for map_ in found.summaries:
        assert np.unravel_index(np.abs(map_).argmax(), map_.shape) == (1, 7)
    assert found.summaries[0, 1, 7] > 0 > found.summaries[1, 1, 7]
    names = ["temperature", "pressure", "speed", "vibration"]
    field = explain.answers(found, shown, ["rul"], str(tmp_path), ["a", "b"], names)[0]
    assert next(iter(field["sensors"])) == "pressure" and next(iter(field["time_steps"])) == "t-2"
    assert field["method"] == "integrated_gradients" and field["output"] == "rul"
    json.dumps(field)
    plots.close([explain.figure(found, shown, ["up", "down"], names)])


def test_a_spectrogram_explanation_follows_the_tone_in_time_and_writes_its_map(tmp_path):
    """A tone detector over frames x bins: the frames and the bin of the tone carry the weight, and move with it."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)

    def clips(count, starts):
        spectrograms = rng.normal(0, 0.3, (count, 16, 8, 1)).astype("float32")
        for index, start in enumerate(starts):
            if start >= 0:
                spectrograms[index, start : start + 4, 5] = 2.0
        return spectrograms

    starts = np.where(rng.random(1200) < 0.5, rng.integers(0, 12, 1200), -1)
    model = keras.Sequential(
        [
            keras.Input((16, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    fitted(model, clips(1200, starts), (starts >= 0).astype("int64"), "sparse_categorical_crossentropy", 6)
    shown = clips(2, [1, 10])
    found = explain.explain("spectrogram", model, shown, np.ones(2, "int64"))
    assert found.summaries.shape == (2, 16, 8)  # frames x bins
    for summary, start in zip(found.summaries, [1, 10]):
        assert summary.sum(axis=0).argmax() == 5
        assert start <= summary.sum(axis=1).argmax() < start + 4
    fields = explain.answers(found, shown, ["silence", "tone"], str(tmp_path), [b"clip one", b"clip two"])
    assert next(iter(fields[0]["bins"])) == "bin_5" and fields[0]["output"] == "tone"
    assert fields[0]["map_path"] != fields[1]["map_path"]
    picture = images.decode(fields[0]["map_path"])
    assert picture.shape == (16, 16, 3)  # 8 bins of spectrogram above 8 of map, 16 frames across
    assert np.allclose(picture[:8], picture[:8, :, :1], atol=0.01)  # the grey spectrogram on top
    assert not np.allclose(picture[8:], picture[8:, :, :1], atol=0.01)  # the coloured map below


def square_scenes(count, seed):
    """Grey noise images and their masks: class 1 is a bright 4x4 square somewhere in each."""
    rng = np.random.default_rng(seed)
    pictures = rng.normal(0.3, 0.08, (count, SIDE, SIDE, 1)).astype("float32")
    masks = np.zeros((count, SIDE, SIDE), "int64")
    for index, (row, column) in enumerate(rng.integers(0, SIDE - 4, (count, 2))):
        pictures[index, row : row + 4, column : column + 4] = 1.0
        masks[index, row : row + 4, column : column + 4] = 1
    return np.clip(pictures, 0, 1), masks


def check_segmentation():
    """A fully convolutional segmenter of bright squares: the saliency of the square's class lies mostly inside the
    predicted square, wherever it is, and not where the square was in the other image. Returns the inside shares."""
    import keras

    keras.utils.set_random_seed(0)
    layers = [keras.layers.Conv2D(8, 3, padding="same", activation="relu"), keras.layers.Conv2D(2, 3, padding="same")]
    model = keras.Sequential([keras.Input((None, None, 1)), *layers, keras.layers.Softmax()])
    model.compile(optimizer=keras.optimizers.Adam(3e-2), loss="sparse_categorical_crossentropy")
    model.fit(*square_scenes(256, 0), epochs=8, batch_size=32, verbose=0)
    corners = [(1, 1), (7, 6)]
    background = np.clip(np.random.default_rng(7).normal(0.3, 0.08, (SIDE, SIDE, 1)), 0, 1).astype("float32")
    pictures = np.repeat(background[None], 2, axis=0)  # the same noise, the square in two places
    squares = np.zeros((2, SIDE, SIDE), bool)
    for index, (row, column) in enumerate(corners):
        pictures[index, row : row + 4, column : column + 4] = 1.0
        squares[index, row : row + 4, column : column + 4] = True
    predicted = np.asarray(model(pictures, training=False)).argmax(axis=-1)
    assert ((predicted == 1) == squares).mean() > 0.95  # the model learned the squares
    attributions = explain.class_saliency(model, pictures, predicted, 2)
    assert attributions.shape == (2, 2, SIDE, SIDE, 1)
    maps = explain.heatmaps(attributions)[:, 1]
    shares = [float(maps[index][squares[index]].sum() / maps[index].sum()) for index in range(2)]
    assert min(shares) > 0.5, shares  # more saliency mass inside the square than outside
    assert maps[0][squares[0]].sum() > 3 * maps[0][squares[1]].sum()  # it moved with the square
    assert maps[1][squares[1]].sum() > 3 * maps[1][squares[0]].sum()
    return np.round(shares, 2).tolist()


def test_segmentation_saliency_lies_on_the_predicted_object_and_moves_with_it(tmp_path):
    check_segmentation()
    pictures, masks = square_scenes(1, 3)
    found = explain.Explanation(
        "segmentation", "integrated_gradients", np.random.default_rng(0).random((1, 2, SIDE, SIDE)), masks
    )
    field = explain.answers(found, pictures, ["background", "square"], str(tmp_path), ["in/scene.png"])[0]
    assert field["method"] == "integrated_gradients" and sorted(field["heatmap_paths"]) == ["background", "square"]
    assert pathlib.Path(field["heatmap_paths"]["square"]).name.startswith("scene-")
    assert pathlib.Path(field["heatmap_paths"]["square"]).name.endswith("-1.png")
    assert images.decode(field["heatmap_paths"]["square"]).shape == (SIDE, SIDE, 3)
    plots.close([explain.figure(found, pictures, ["scene"], ["background", "square"])])


def check_fields():
    """Integrated gradients over a recommender's embeddings (`explain.embedding_fields`, the task's own models): the
    weights of a score add up to it minus the score at zero embeddings, for the rating and the retrieval head with a
    history; and the user's embedding, on which a rating stops depending once the item vectors are zero, gets none.
    Returns the fields of the retrieval score."""
    import keras

    keras.utils.set_random_seed(0)
    task, config = resolve("recommendation", "model=mf", "embedding_dim=4")
    info = RecommendationState(
        users=["a", "b", "c"],
        items=["x", "y", "z", "w"],
        history_length=3,
        model="mf",
        outputs=["rating", "items"],
        rating_scale=(0.5, 5.0),
        global_mean=3.5,
        explicit=True,
        top_k=2,
        titles=[],
        seen=[],
        recent=[],
        popular="",
    )
    model = task.build_model(config, info)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # weights well away from the initial ones, so every field moves the scores
        if isinstance(layer, keras.layers.Embedding):
            layer.embeddings.assign(rng.normal(0, 1, layer.embeddings.shape))
    inputs = {
        "user": np.array([1, 2, 3]),
        "item": np.array([1, 4, 2]),
        "history": np.array([[0, 1, 2], [3, 4, 1], [0, 0, 2]]),
    }
    scores = {name: np.asarray(value) for name, value in model(inputs, training=False).items()}
    weights, baselines = explain.embedding_fields(model, inputs, np.zeros(3, "int64"), "rating")
    assert list(weights) == ["user_embedding", "item_embedding", "user_bias", "item_bias"]
    np.testing.assert_allclose(baselines, 3.5, atol=1e-4)  # the sigmoid's offset starts at the global mean
    np.testing.assert_allclose(sum(value for value in weights.values()) + baselines, scores["rating"][:, 0], atol=2e-3)
    retrieval, baselines = explain.embedding_fields(model, inputs, inputs["item"], "items")
    assert list(retrieval) == ["history_embedding", "retrieval_user_embedding"]  # what the tower takes, no more
    assert retrieval["history_embedding"].shape == (3, 3)  # a weight per item of the history
    total = retrieval["history_embedding"].sum(axis=1) + retrieval["retrieval_user_embedding"] + baselines
    np.testing.assert_allclose(total, scores["items"][np.arange(3), inputs["item"]], atol=2e-3)
    item_vectors = model.get_layer("item_embedding").embeddings
    item_vectors.assign(np.zeros(item_vectors.shape))
    weights = explain.embedding_fields(model, inputs, np.zeros(3, "int64"), "rating")[0]
    assert np.abs(weights["user_embedding"]).max() < 1e-6 < np.abs(weights["user_bias"]).min()
    return np.round(retrieval["history_embedding"], 3).tolist()


def test_recommendation_explanations_add_up_and_leave_unused_fields_out():
    check_fields()


@pytest.mark.slow  # JAX compiles each of the small models' ops on first use: seconds a piece
def test_segmentation_and_recommendation_explanations_on_jax():
    on_jax("from tests.test_explain import check_fields, check_segmentation; check_fields(), check_segmentation()")


def test_an_image_answer_writes_a_heatmap_png_named_after_its_input(tmp_path):
    found = explain.Explanation("image", "grad_cam", np.random.default_rng(0).random((1, SIDE, SIDE)), np.array([1]))
    field = explain.answers(found, with_patch((1, 1))[None], ["clear", "patch"], str(tmp_path / "maps"), ["x/scan.png"])
    assert field[0]["output"] == "patch" and pathlib.Path(field[0]["heatmap_path"]).name.startswith("scan-")
    assert os.path.getsize(field[0]["heatmap_path"]) > 0


def test_integrated_gradients_split_an_examples_path_when_it_alone_exceeds_the_batch():
    """A large image's 32 path points may not fit one gradient call: split into calls of 5, they give the same
    attributions as in one call."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)])
    rows = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    whole = explain.integrated_gradients(model, rows, [0, 1, 1])
    np.testing.assert_allclose(explain.integrated_gradients(model, rows, [0, 1, 1], batch_rows=5), whole, atol=1e-6)


def test_bad_explanation_requests_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown explanation kind 'audio'"):
        explain.explain("audio", None, np.zeros((1, 2)), [0])
    with pytest.raises(ValueError, match="segmentation is explained by class_saliency"):
        explain.explain("segmentation", None, np.zeros((1, 2, 2, 1)), [0])
    with pytest.raises(ValueError, match="hold no 'numbers'"):
        explain.integrated_gradients(None, {"numeric": np.zeros((1, 2))}, [0], key="numbers")


def test_input_gradients_on_jax_serve_fgsm_and_integrated_gradients():
    """One JAX process for both users of `explain.gradient` (and the token embeddings' path): its start-up is most
    of the cost."""
    checks = "from tests.test_explain import check_table, check_token_completeness; from tests.test_robustness import *"
    on_jax(f"{checks}; print(check_fgsm_lowers_accuracy(), check_table(), check_token_completeness())")


@pytest.mark.slow
def test_grad_cam_and_image_integrated_gradients_on_jax():
    printed = on_jax("from tests.test_explain import check_image as c; print(c(True), c(False))", timeout=600)
    assert printed.split() == ["grad_cam", "integrated_gradients"]
