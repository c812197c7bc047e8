"""Hostile inputs at predict and serve time, without training: bounded work per input (images, audio,
text, table rows), the path rule of served models, and per-input errors in a batch."""

import base64
import io
import json
import math
import os

import numpy as np
import pandas as pd
import pytest

import tasks
from pipelines import serving_fuzz, serving_model
from shared import images, inputs
from shared.data import text
from shared.data.tabular import apply_tabular
from tasks.base import Task
from tasks.fraud_detection import TableState


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A 20,000 x 20,000 PNG of a few hundred KB (400 M pixels declared)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(serving_fuzz.png_bomb())
    return path


def test_a_png_bomb_is_a_one_line_error_from_a_path_and_from_bytes(bomb):
    assert bomb.stat().st_size < 600_000
    for raw, name in ((str(bomb), str(bomb)), (bomb.read_bytes(), "input")):
        with pytest.raises(ValueError) as error:
            images.decode(raw)
        message = str(error.value)
        assert message.startswith(f"{name}: the image declares more pixels than the limit of 40,000,000")
        assert "PIPELINES_MAX_IMAGE_PIXELS" in message and "\n" not in message


def test_an_image_above_the_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    path.write_bytes(serving_fuzz.png_bomb(3000, 2000))
    assert images.decode(str(path)).shape == (2000, 3000, 1)
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "1000000")
    with pytest.raises(ValueError, match=r"3000x2000 pixels is above the limit of 1,000,000"):
        images.decode(str(path))


@pytest.mark.parametrize(
    "name, image_size", [("vision_classification", [8, 8]), ("medical_imaging", [8, 8]), ("vision_segmentation", 8)]
)
def test_every_image_predictor_refuses_the_bomb_before_any_model_work(name, image_size, bomb):
    class Unused:
        def predict(self, *args, **kwargs):
            raise AssertionError("the model ran on a refused image")

    info = tasks.get(name).state_class(
        image_size=image_size,
        channels=1,
        class_names=["a", "b"],
        **({"encoder": "unet", "depth": 2} if name == "vision_segmentation" else {}),
    )
    with pytest.raises(ValueError, match="the image declares more pixels than the limit"):
        tasks.get(name).predict_raw(Unused(), info, [bomb.read_bytes()])


def test_decoded_pixel_lists_are_bounded_before_they_are_converted(monkeypatch):
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "100")
    row = [0.5] * 20
    with pytest.raises(ValueError, match=r"a 20x20 pixel array is above the limit of 100 pixels"):
        images.decode([row] * 20)
    for raw, message in (
        ([[0.5, 0.5], [0.5]], "not an array of numbers"),
        ([["a", "b"]], "not an array of numbers"),
        ([[math.nan]], "NaN or infinite"),
        ([[[0.5] * 7]], r"shape \(1, 1, 7\)"),
        ([0.5, 0.5], r"shape \(2,\)"),
        ([[[[[0.5]]]]], r"shape \(1, 1, 1, 1\)"),
    ):
        with pytest.raises(ValueError, match=message):
            images.decode(raw, "input 2")
    assert images.decode([[0, 255], [255, 0]]).shape == (2, 2, 1)


def test_encoded_bytes_come_as_b64_objects_and_other_types_are_named():
    assert inputs.file_input({"b64": base64.b64encode(b"\x89PNG").decode()}, "input 1") == b"\x89PNG"
    assert inputs.file_input(bytearray(b"ab"), "input 1") == b"ab"
    assert inputs.file_input([[1.0]], "input 1") == [[1.0]]
    for raw, message in (
        ({"b64": "!!"}, "input 3: the 'b64' value is not valid base64"),
        ({"b64": 12}, "input 3: expected a file path"),
        (12, "got int 12"),
        (None, "got NoneType"),
        (math.nan, "got float nan"),
        ({"path": "x"}, "got dict"),
    ):
        with pytest.raises(ValueError, match=message):
            inputs.file_input(raw, "input 3")


def test_local_callers_read_any_path_and_a_served_model_none(tmp_path, monkeypatch):
    monkeypatch.delenv(inputs.INPUT_ROOT_ENV, raising=False)
    assert not inputs.serving()
    assert inputs.readable_path("/anything/at/all.png", "input 1") == "/anything/at/all.png"
    monkeypatch.setenv(inputs.SERVING_ENV, "1")
    with pytest.raises(
        ValueError,
        match=r"input 1: a served model reads no file paths; send the file's bytes as "
        r"\{\"b64\": \"BASE64\"\}",
    ):
        inputs.readable_path(str(tmp_path), "input 1")


def test_mlflow_scoring_servers_count_as_served(monkeypatch):
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT
    from mlflow.pyfunc import scoring_server
    from mlflow.pyfunc.utils.environment import _simulate_serving_environment

    # The names `serving` looks for are MLflow's own: a renamed one fails here, not silently in production.
    assert scoring_server._SERVER_MODEL_PATH == inputs._MLFLOW_SERVER_MODEL_PATH
    assert _MLFLOW_IS_IN_SERVING_ENVIRONMENT.name == inputs._MLFLOW_SERVING_FLAG
    assert inputs._MLFLOW_SERVER_APP == f"{scoring_server.__name__}.app"
    for name in (inputs.SERVING_ENV, inputs._MLFLOW_SERVING_FLAG, inputs._MLFLOW_SERVER_MODEL_PATH):
        monkeypatch.delenv(name, raising=False)
    assert not inputs.serving()
    with _simulate_serving_environment():  # what `mlflow models predict` does
        assert inputs.serving()
    monkeypatch.setenv(inputs._MLFLOW_SERVER_MODEL_PATH, "/models/m")  # what `mlflow models serve` does
    assert inputs.serving()


def test_the_input_folder_admits_its_files_only_and_refuses_alike(tmp_path, monkeypatch):
    root, outside = tmp_path / "incoming", tmp_path / "secret.png"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(b"x")
    outside.write_bytes(b"x")
    (root / "link.png").symlink_to(outside)
    (root / "inner_link.png").symlink_to(root / "sub" / "a.png")
    os.mkfifo(root / "fifo.png")
    monkeypatch.setenv(inputs.INPUT_ROOT_ENV, str(root))
    monkeypatch.setenv(inputs.SERVING_ENV, "1")
    target = str(root / "sub" / "a.png")
    for allowed in ("sub/a.png", target, "inner_link.png", "sub/../sub/a.png"):
        assert inputs.readable_path(allowed, "input 1") == target
    messages = set()
    for refused in (
        "../secret.png",
        str(outside),
        "link.png",
        "sub/../../secret.png",
        "missing.png",
        "sub",
        "fifo.png",
        "/etc/passwd",
        "a\x00b",
        "x" * 100_000,
        "",
    ):
        with pytest.raises(ValueError) as error:
            inputs.readable_path(refused, "input 1")
        messages.add(str(error.value).replace(inputs.shown(refused), "PATH"))
    # Missing and forbidden look the same, so an error tells nothing about the server's files.
    assert messages == {
        "input 1: no file PATH in the input folder (PIPELINES_INPUT_ROOT); give a path inside it, "
        'or send the file\'s bytes as {"b64": "BASE64"}.'
    }


def test_a_long_text_is_cut_before_tokenising_and_flagged_as_truncated(monkeypatch):
    vocabulary, seen = ["", "[UNK]", "good", "film"], []
    standardize = text.standardize_text
    monkeypatch.setattr(
        text, "standardize_text", lambda texts, punctuation: seen.append(texts) or standardize(texts, punctuation)
    )
    ids, truncated = text.tokenize_text(["good film", "good " * 200_000], vocabulary, 8, "strip", check=True)
    assert max(len(cut) for cut in seen[0].numpy()) == 8 * text.TEXT_CHARACTERS_PER_TOKEN
    assert truncated.tolist() == [False, True] and ids[1].tolist() == [2] * 8
    spaced = "good" + " " * (8 * text.TEXT_CHARACTERS_PER_TOKEN) + "film"  # cut inside the spaces: one token kept
    ids, truncated = text.tokenize_text([spaced], vocabulary, 8, "strip", check=True)
    assert truncated.tolist() == [True] and ids[0].tolist() == [2] + [0] * 7


@pytest.fixture
def speech_settings():
    from tasks.speech import features

    return features.feature_settings(tasks.get("speech").config_class())


def test_audio_reads_at_most_the_clip_and_its_margins_around_the_centre(tmp_path, speech_settings):
    import soundfile

    from tasks.speech import audio

    rate = 8000
    samples = np.zeros(60 * rate, "float32")
    samples[30 * rate : 30 * rate + 100] = 0.5  # a click at the centre of a minute
    path = tmp_path / "minute.wav"
    soundfile.write(path, samples, rate)
    seconds = audio.read_seconds(speech_settings)
    assert seconds == pytest.approx(1.0 + 2 * audio.TRIM_MARGIN_SECONDS)
    read, found_rate = audio.read_audio(str(path), seconds)
    assert found_rate == rate and len(read) == int(seconds * rate) and read.max() == pytest.approx(0.5, abs=1e-3)
    assert len(audio.read_audio(path.read_bytes(), seconds)[0]) == int(seconds * rate)
    assert len(audio.read_audio(str(path))[0]) == len(samples)  # training reads of its own data may ask for all


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(rate=2_000_000_000), r"declares 2000000000 Hz and 1 channel\(s\); readable audio has 1 to 384,000 Hz"),
        (dict(channels=60_000), r"not a readable audio file|60000 channel"),
        (dict(frames=3600 * 8000), None),  # a header claiming an hour over a second of data: the second is read
    ],
)
def test_lying_audio_headers_are_bounded(change, message):
    from tasks.speech import audio

    good = serving_fuzz.wav(np.sin(np.arange(8000) / 5.0) * 0.5, 8000)
    lying = serving_fuzz.lying_wav(good, **change)
    if message is None:
        assert len(audio.read_audio(lying, 5.0)[0]) == 8000
    else:
        with pytest.raises(ValueError, match=message):
            audio.read_audio(lying, 5.0)


def test_sample_lists_are_windowed_and_checked_before_conversion(speech_settings):
    from tasks.speech import audio

    size = int(audio.read_seconds(speech_settings) * speech_settings["sample_rate"])
    long = [0.0] * (10 * size)
    assert audio.sample_window(long, "input 1", speech_settings).shape == (size,)
    for raw, message in (
        ([[0.1, 0.2]], "expected a list of samples at 16000 Hz"),
        ([0.1, "x"], "not an array of"),
        ([0.1, math.inf], "NaN or infinite"),
    ):
        with pytest.raises(ValueError, match=message):
            audio.sample_window(raw, "input 1", speech_settings)


def test_hostile_table_values_are_one_line_errors_naming_the_column():
    spec = {"numeric": [{"name": "amount", "median": 0.0, "mean": 0.0, "std": 1.0}], "categorical": []}
    for value, message in (
        (math.inf, "infinite value"),
        (10**400, "infinite value"),
        (1e300, r"holds 1e\+300"),
        ([1, 2], "must be numeric"),
        ({"a": 1}, "must be numeric"),
        ("abc", "must be numeric"),
    ):
        with pytest.raises(ValueError, match=f"predict input: column 'amount' .*{message}"):
            apply_tabular(pd.DataFrame({"amount": [1.0, value]}), spec, "predict input")
    missing = apply_tabular(pd.DataFrame({"amount": [1.0, None, math.nan, "2.5"]}), spec, "x")["numeric"]
    assert missing.tolist() == [[1.0], [0.0], [0.0], [2.5]]  # missing values are imputed (median 0)


class Counting(Task):
    """A task answering the length of each input, that counts its predictor calls and refuses negatives."""

    name = "toy_counting"
    input_column = "value"
    predict_chunk = 4
    calls = []

    def predict_raw(self, model, info, inputs):
        self.calls.append(len(inputs))
        for value in inputs:
            if value < 0:
                raise ValueError(f"{value} is negative")
        return [{"double": 2 * value} for value in inputs]


def logged(task):
    model = serving_model.ServingModel()
    model.task, model.model, model.info = task, None, {}
    return model


def test_many_inputs_go_in_chunks_and_a_bad_one_gets_its_own_error():
    task = Counting()
    task.calls.clear()
    answers = logged(task).predict(None, pd.DataFrame({"value": [1, 2, -3, 4, 5, 6]}))
    assert answers == [
        {"double": 2},
        {"double": 4},
        {"error": "-3 is negative"},
        {"double": 8},
        {"double": 10},
        {"double": 12},
    ]
    assert task.calls == [4, 2, 2, 1, 1, 2]  # the failing chunk is retried by halves
    with pytest.raises(ValueError, match="-3 is negative"):
        logged(task).predict(None, pd.DataFrame({"value": [-3]}))


def test_file_inputs_are_admitted_one_by_one_in_a_batch(monkeypatch, tmp_path):
    class Files(Counting):
        input_kind = "file"

        def predict_raw(self, model, info, inputs):
            return [{"size": len(raw)} for raw in inputs]

    monkeypatch.setenv(inputs.SERVING_ENV, "1")
    monkeypatch.delenv(inputs.INPUT_ROOT_ENV, raising=False)
    rows = [{"b64": base64.b64encode(b"abc").decode()}, str(tmp_path), 7, [1, 2]]
    answers = logged(Files()).predict(None, pd.DataFrame({"value": rows}))
    assert answers[0] == {"size": 3} and answers[3] == {"size": 2}
    assert answers[1]["error"].startswith("input 2: a served model reads no file paths")
    assert answers[2]["error"].startswith("input 3: expected a file path")


def test_fraud_rows_with_hostile_values_get_their_own_errors():
    fraud = tasks.get("fraud_detection")
    spec = {
        "numeric": [{"name": "amount", "median": 10.0, "mean": 10.0, "std": 5.0}],
        "categorical": [{"name": "merchant", "vocabulary": ["shop"]}],
    }

    class Scores:
        def predict(self, features, batch_size=None, verbose=0):
            return np.full((len(features["numeric"]), 1), 0.25)

    model = logged(fraud)
    model.model = Scores()
    model.info = TableState(
        preprocessing=spec, ignored_columns=[], threshold=0.5, target="fraud", train_prevalence=0.1, example_rows=[]
    )
    rows = [
        {"amount": 1.0, "merchant": "shop"},
        {"amount": math.inf, "merchant": "shop"},
        {"amount": 10**400, "merchant": "x"},
        {"amount": [1], "merchant": "shop"},
        {"merchant": "shop"},
        json.dumps({"amount": math.nan, "merchant": ["odd"]}),
        '{"amount": ',
        "{" * 50_000,
        12,
        None,
        {"amount": None, "merchant": {"a": None}},
        {"amount": 1e300, "merchant": "shop"},
    ]
    answers = model.predict(None, pd.DataFrame({"row": rows}))
    answered = [index for index, answer in enumerate(answers) if "fraud_probability" in answer]
    assert answered == [0, 5, 10]
    assert all(
        "error" in answers[index] and "\n" not in answers[index]["error"]
        for index in set(range(len(rows))) - set(answered)
    )
    assert "not valid JSON" in answers[6]["error"] and "not valid JSON" in answers[7]["error"]


def test_the_fuzz_requests_are_well_formed(tmp_path):
    """The fuzz's own request maker and judge: one quick look, since the fuzz itself is slow."""
    case = serving_fuzz.Case(
        "good", serving_fuzz.request("text", ["a", math.nan]), [serving_fuzz.GOOD, serving_fuzz.BAD]
    )
    assert json.loads(case.body)["dataframe_split"]["data"][1] == [None] or b"NaN" in case.body
    assert serving_fuzz.judge(case, 200, {"predictions": [{"label": "x"}, {"error": "e"}]}) is None
    assert "row 2 should be an error" in serving_fuzz.judge(case, 200, {"predictions": [{"label": "x"}] * 2})
    assert serving_fuzz.judge(case, None, None).startswith("no answer")
    assert serving_fuzz.judge(case, 400, None).startswith("HTTP 400 for 2 row(s)")
    image = io.BytesIO(serving_fuzz.png(np.zeros((3, 4), "uint8")))
    assert images.decode(image.getvalue()).shape == (3, 4, 1)
