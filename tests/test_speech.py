"""Speech end to end: training on generated words, MLflow contents, prediction from a wav file,
the user-file and TFDS data paths, group splits, audio augmentation and every bad input of the issue."""

import json
import logging
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
import soundfile

import tasks
from pipelines import cli, runner
from shared import augmentation, images, tracking
from shared.data import tfds as tfds_source
from tasks import speech
from tasks.speech import cache, features as speech_features, generated
from tasks.speech.features import AudioState
from tests.conftest import resolve, shared_data

TASK = "speech"
# Tiny, fast feature and training settings for data-path tests (no copies, short clips).
SMALL = ["augment_copies=0", "sample_rate=8000", "duration=0.6"]


def words(repeats=2, rate=16000, seed=0, speakers=3):
    """Generated clips with labels and speakers, to write as audio files."""
    waveforms, labels, groups, class_names = generated.generated_words(repeats, rate, seed, speakers=speakers)
    return waveforms, [class_names[label] for label in labels], groups


@pytest.fixture(scope="module")
def trained(module_store):
    """One short training on the generated words, shared by the tests that inspect its run and model."""
    result = runner.run(
        *resolve(
            TASK,
            "epochs=12",
            "max_examples=0",
            "embedded_repeats=5",
            "learning_rate=0.005",
            "sample_rate=8000",
            "duration=0.8",
        ),
    )
    return result


def test_run_beats_chance_and_logs_everything(trained):
    assert trained.metrics["accuracy"] > 0.4  # 8 classes: chance is 0.125
    run = mlflow.get_run(trained.run_id)
    assert run.data.tags["synthetic"] == "true" and run.data.tags["dataset"] == "generated_words"
    for name in ("test_accuracy", "test_macro_f1", "test_recall_ah", "test_recall_ah_ee", "test_recall_sa"):
        assert name in run.data.metrics
    client = mlflow.MlflowClient()
    artifacts = {item.path for item in client.list_artifacts(trained.run_id)}
    assert {"classification_report.txt", "config.yaml", "model_summary.txt"} <= artifacts
    plots = {item.path for item in client.list_artifacts(trained.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/sample_spectrograms.png", "plots/training_curves.png"} <= plots
    info = mlflow.models.get_model_info(f"models:/{TASK}/latest")
    assert info.signature.inputs.input_names() == ["audio"] and info.saved_input_example_info is not None


def test_predict_wav_at_any_rate_mono_or_stereo(trained, tmp_path, capsys):
    waveforms, names, _ = words(repeats=1, rate=44100, seed=7, speakers=1)
    stereo = tmp_path / "stereo_44k.wav"
    soundfile.write(stereo, np.stack([waveforms[0], 0.5 * waveforms[0]], axis=1), 44100)
    mono = tmp_path / "mono_22k.flac"
    import librosa

    soundfile.write(mono, librosa.resample(waveforms[1].astype("float32"), orig_sr=44100, target_sr=22050), 22050)
    code = cli.main(["predict", TASK, "--model", f"models:/{TASK}/latest", str(stereo), str(mono)])
    answers = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert code == 0 and [answer["input"] for answer in answers] == [str(stereo), str(mono)]
    for answer in answers:
        assert answer["label"] in generated.WORDS and len(answer["top_k"]) == 3
        assert 0 <= answer["probability"] <= 1
    model = tracking.load(f"runs:/{trained.run_id}/model")  # bytes and sample lists work too
    (from_bytes,) = model.predict(pd.DataFrame({"audio": [stereo.read_bytes()]}))
    assert from_bytes["label"] == answers[0]["label"]


def test_runs_log_and_predict_explain_maps_frames_and_bins(trained, tmp_path):
    logged = mlflow.MlflowClient().list_artifacts(trained.run_id, "plots/explain")
    assert [item.path for item in logged] == ["plots/explain/spectrogram.png"]
    waveforms, _, _ = words(repeats=1, rate=8000, seed=7, speakers=1)
    served = tracking.load(f"models:/{TASK}/latest").unwrap_python_model()
    clips = [np.round(waveform, 4).tolist() for waveform in waveforms[:2]]
    plain = served.predict(None, pd.DataFrame({"audio": clips}))
    explained = served.predict(None, pd.DataFrame({"audio": clips}), {"explain": str(tmp_path)})
    frames, bins = served.info.input_shape[:2]
    for before, answer in zip(plain, explained):
        explanation = answer.pop("explanation")
        assert answer == before and explanation["output"] == answer["label"]
        assert {int(name.split("_")[1]) for name in explanation["frames"]} <= set(range(frames))
        assert {int(name.split("_")[1]) for name in explanation["bins"]} <= set(range(bins))
        assert images.decode(explanation["map_path"]).shape == (2 * bins, frames, 3)  # spectrogram above its map


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"just some text, not audio", "is not a readable audio file"),
    ],
)
def test_predict_rejects_empty_and_non_audio_files(trained, tmp_path, capsys, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    code = cli.main(["predict", TASK, "--model", f"models:/{TASK}/latest", str(path)])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.startswith(f"error: '{path}'") and message in error and "\n" not in error


def wav_with_rate_zero(path):
    soundfile.write(path, np.full(800, 0.3, "float32"), 8000)
    content = bytearray(path.read_bytes())
    content[24:32] = bytes(8)  # sample rate and byte rate fields of the fmt chunk
    path.write_bytes(bytes(content))


@pytest.mark.parametrize(
    "case, message",
    [
        ("silent", "is silent"),
        ("short", "shorter than one 25 ms analysis window"),
        ("rate0", "sample rate of 0"),
        ("missing", "no such audio file"),
    ],
)
def test_bad_audio_gets_one_line_errors(tmp_path, case, message):
    path = tmp_path / f"{case}.wav"
    if case == "silent":
        soundfile.write(path, np.zeros(8000, "float32"), 8000)
    elif case == "short":
        soundfile.write(path, np.full(80, 0.5, "float32"), 8000)  # 10 ms
    elif case == "rate0":
        wav_with_rate_zero(path)
    task, resolved = resolve(TASK, *SMALL)
    settings = speech_features.feature_settings(resolved)
    info = AudioState(class_names=["a"], features=settings, mean=0.0, std=1.0, input_shape=[1, 1])
    with pytest.raises(ValueError, match=message) as error:
        task.prepare_inputs(info, [str(path)])
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_hostile_audio_rows_get_their_own_errors_and_long_audio_is_read_in_a_window(trained):
    from pipelines import serving_fuzz

    waveforms, _, _ = words(repeats=1, rate=8000, seed=3, speakers=1)
    good = serving_fuzz.wav(waveforms[0], 8000)
    hour = np.tile(np.asarray(waveforms[0], "float32"), 10)  # a long recording: only its centre window is read
    rows = [
        serving_fuzz.b64(good),
        serving_fuzz.b64(serving_fuzz.lying_wav(good, rate=2_000_000_000)),
        list(waveforms[0]) + [float("nan")],
        [list(waveforms[0])],
        12,
        serving_fuzz.b64(good[:40]),
        serving_fuzz.b64(serving_fuzz.wav(hour, 8000)),
        [0.0] * 8000,
    ]
    answers = tracking.load(f"models:/{TASK}/latest").predict(pd.DataFrame({"audio": rows}))
    assert [index for index, answer in enumerate(answers) if "label" in answer] == [0, 6]
    for index, message in (
        (1, "declares 2000000000 Hz"),
        (2, "NaN or infinite"),
        (3, "expected a list of samples"),
        (4, "expected a file path"),
        (5, "not a readable audio file"),
        (7, "is silent"),
    ):
        assert message in answers[index]["error"] and "\n" not in answers[index]["error"]


def write_class_folders(root, repeats=2):
    waveforms, names, _ = words(repeats=repeats, rate=16000)
    for index, (samples, name) in enumerate(zip(waveforms, names)):
        (root / name).mkdir(exist_ok=True)
        if index % 2:  # mixed rates and channel counts, as user folders have
            soundfile.write(root / name / f"{index}.wav", np.stack([samples, samples], 1), 16000)
        else:
            soundfile.write(root / name / f"{index}.flac", samples[::2], 8000)
    return len(waveforms)


def test_class_folders_skip_bad_files_with_a_warning(tmp_path, caplog):
    count = write_class_folders(tmp_path)
    (tmp_path / "ah" / "notes.wav").write_text("not audio")
    soundfile.write(tmp_path / "ee" / "quiet.wav", np.zeros(4000, "float32"), 8000)
    with caplog.at_level(logging.WARNING):
        task, resolved = resolve(TASK, *SMALL, data=str(tmp_path))
        splits = task.load_data(resolved)
    assert "notes.wav" in caplog.text and "quiet.wav" in caplog.text
    assert splits.info.class_names == sorted(generated.WORDS)
    features = splits.train.sample(len(splits.train))[0]
    assert features.shape[1:] == (61, 40, 1)  # 0.6 s at 100 frames per second, 40 mel bands
    assert sum(len(split) for split in (splits.train, splits.validation, splits.test)) == count
    assert abs(float(features.mean())) < 0.1  # standardised with training statistics


def test_class_folder_without_audio_is_an_error(tmp_path):
    write_class_folders(tmp_path, repeats=1)
    (tmp_path / "empty_class").mkdir()
    (tmp_path / "empty_class" / "readme.txt").write_text("no audio here")
    with pytest.raises(ValueError, match="empty_class' has no files with extensions .wav"):
        task, resolved = resolve(TASK, *SMALL, data=str(tmp_path))
        task.load_data(resolved)


def write_flat(root, repeats=2, speakers=3):
    """FSDD-style flat files: LABEL_SPEAKER_INDEX.wav."""
    waveforms, names, groups = words(repeats=repeats, rate=8000, speakers=speakers)
    for index, (samples, name, group) in enumerate(zip(waveforms, names, groups)):
        soundfile.write(root / f"{name}_{group}_{index}.wav", samples, 8000)
    return names, groups


def test_filename_pattern_with_named_test_and_validation_speakers(tmp_path):
    names, groups = write_flat(tmp_path)
    pattern = r"(?P<label>[a-z_]+)_(?P<speaker>speaker\d)_\d+\.wav"
    task, resolved = resolve(
        TASK,
        *SMALL,
        f"filename_pattern={pattern}",
        "test_groups=speaker2",
        "validation_groups=speaker1",
        data=str(tmp_path),
    )
    splits = task.load_data(resolved)
    speakers = np.array(groups)
    assert len(splits.test.targets) == (speakers == "speaker2").sum()
    assert len(splits.validation.targets) == (speakers == "speaker1").sum()
    assert len(splits.train.targets) == (speakers == "speaker0").sum()


def test_filename_pattern_needs_a_label_group(tmp_path):
    write_flat(tmp_path, repeats=1, speakers=1)
    with pytest.raises(ValueError, match="has no named group `label`"):
        task, resolved = resolve(TASK, *SMALL, r"filename_pattern=(?P<word>\w+)\.wav", data=str(tmp_path))
        task.load_data(resolved)
    with pytest.raises(ValueError, match="no class subfolders; for flat files set filename_pattern"):
        task, resolved = resolve(TASK, *SMALL, data=str(tmp_path))
        task.load_data(resolved)


def test_csv_manifest_and_group_split_keep_speakers_apart(tmp_path):
    names, groups = write_flat(tmp_path, repeats=1, speakers=6)
    rows = [f"{name}_{group}_{index}.wav,{name},{group}" for index, (name, group) in enumerate(zip(names, groups))]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,group\n" + "\n".join(rows) + "\n")
    task, resolved = resolve(TASK, *SMALL, "split=group", data=str(manifest))
    splits = task.load_data(resolved)
    assert sum(len(split) for split in (splits.train, splits.validation, splits.test)) == len(rows)
    _, task_config = resolve(TASK, "split=group", "validation_fraction=0.2", "test_fraction=0.2")
    labels = np.array([sorted(set(names)).index(name) for name in names])
    train, validation, test = speech.Speech._split(task_config, labels, np.array(groups), None)
    speakers = [set(np.array(groups)[split.features]) for split in (train, validation, test)]
    assert speakers[0] and speakers[1] and speakers[2]
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])
    broken = tmp_path / "broken.csv"
    broken.write_text("path,label\nmissing.wav,ah\n")
    with pytest.raises(ValueError, match="line 2: audio file 'missing.wav' does not exist"):
        task, resolved = resolve(TASK, *SMALL, data=str(broken))
        task.load_data(resolved)
    ungrouped = tmp_path / "ungrouped.csv"
    ungrouped.write_text("path,label\n" + "\n".join(row.rsplit(",", 1)[0] for row in rows) + "\n")
    with pytest.raises(ValueError, match="test_groups needs speaker/group ids"):
        task, resolved = resolve(TASK, *SMALL, "test_groups=x", data=str(ungrouped))
        task.load_data(resolved)


def test_tfds_speech_commands_under_mock_data(monkeypatch):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    waveforms, _, _, _ = generated.generated_words(2, 16000, seed=1, speakers=2)

    def as_dataset(self, split, **kwargs):
        def examples():  # int16 clips of varying length, as in the real dataset
            for index, samples in enumerate(waveforms):
                clip = samples[: 8000 + 250 * (index % 32)]
                yield {"audio": (clip * 20000).astype("int16"), "label": index % 12}

        return tf.data.Dataset.from_generator(
            examples, output_signature={"audio": tf.TensorSpec([None], tf.int16), "label": tf.TensorSpec([], tf.int64)}
        )

    monkeypatch.setattr(tfds_source, "network_available", lambda timeout=3.0: True)
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        task, resolved = resolve(TASK, "augment_copies=0", data="tfds:speech_commands")
        splits = task.load_data(resolved)
    assert splits.info.class_names[:3] == ["down", "go", "left"] and len(splits.info.class_names) == 12
    assert splits.train.sample(1)[0].shape[1:] == (101, 40, 1)
    assert len(splits.test.targets) == len(waveforms)  # the dataset's own test split is kept as test


def test_features_are_cached_by_settings_so_a_second_run_skips_extraction(tracking_store, tmp_path, monkeypatch):
    (tmp_path / "clips").mkdir()
    write_class_folders(tmp_path / "clips")
    _, settings = resolve(TASK, *SMALL, "augment_copies=1", data=str(tmp_path / "clips"))
    first = tasks.get(TASK).load_data(settings)
    monkeypatch.setattr(cache, "clip_features", lambda *args: pytest.fail("features were computed again"))
    second = tasks.get(TASK).load_data(settings)
    assert np.array_equal(first.train.sample(4)[0], second.train.sample(4)[0])
    assert len(second.train) == 2 * (len(second.train) // 2)  # each training clip and its perturbed copy
    monkeypatch.undo()
    task, resolved = resolve(TASK, *SMALL, "n_mels=32", data=str(tmp_path / "clips"))
    other = task.load_data(resolved)
    assert other.info.input_shape[1] == 32  # other settings, other cache entries


def test_augmentation_copies_and_spectrogram_masks():
    perturb = augmentation.audio_waveform(speed=0.2, snr_db=(10.0, 10.0), seed=0)
    tone = np.sin(np.arange(8000) * 0.3).astype("float32")
    lengths = {len(perturb(tone, 8000, key)) for key in range(5)}
    assert np.array_equal(perturb(tone, 8000, "a"), perturb(tone, 8000, "a"))  # reproducible per clip
    assert len(lengths) > 1 and all(6000 < length < 10500 for length in lengths)
    noisy = augmentation.add_noise(tone, 10.0, np.random.default_rng(0))
    assert abs(10 * np.log10(np.mean(tone**2) / np.mean((noisy - tone) ** 2)) - 10) < 0.5
    augment = augmentation.audio_spectrogram(
        time_shift=3, time_masks=1, time_mask_width=5, frequency_masks=1, frequency_mask_width=4
    )
    features = np.random.default_rng(0).normal(size=(8, 30, 12, 1)).astype("float32") + 5
    augmented, targets = augment(features, np.arange(8))
    augmented = np.asarray(augmented)
    assert augmented.shape == features.shape and (np.asarray(targets) == np.arange(8)).all()
    assert (augmented == 0).any() and (augmented != 0).mean() > 0.5
    assert augmentation.audio_spectrogram() is None


@pytest.mark.slow
def test_jax_backend_quick_run(tmp_path):
    environment = dict(os.environ, KERAS_BACKEND="jax", MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    completed = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", TASK, "--quick"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "test_accuracy=" in completed.stderr


@pytest.mark.slow
def test_default_run_learns_the_generated_words(tracking_store):
    result = runner.run(*resolve(TASK, quick=False))
    assert result.metrics["accuracy"] >= 0.9


@pytest.mark.slow
def test_fsdd_speaker_split_loads(tracking_store):
    folder = shared_data("fsdd/recordings")
    task, resolved = resolve(
        TASK,
        *SMALL,
        r"filename_pattern=(?P<label>\d)_(?P<speaker>[a-z]+)_\d+\.wav",
        "test_groups=theo",
        "validation_groups=lucas",
        data=str(folder),
        quick=False,
    )
    splits = task.load_data(resolved)
    assert (len(splits.train.targets), len(splits.validation.targets), len(splits.test.targets)) == (2000, 500, 500)
