"""Sliced metrics: the primary metric per value of a column, the worst slice and the gap, and the opt-in gate."""

import mlflow
import numpy as np
import pytest

from pipelines import cli, runner
from shared import baselines, slices
from tests.conftest import resolve


def test_a_slice_the_model_fails_is_the_worst_and_sets_the_gap():
    generator = np.random.default_rng(0)
    groups = np.array(["north"] * 400 + ["south"] * 400 + ["tiny"] * 10, dtype=object)
    labels = generator.integers(0, 2, len(groups))
    right = np.where(groups == "south", generator.random(len(groups)) < 0.6, generator.random(len(groups)) < 0.95)
    right[groups == "tiny"] = False  # wrong on every example, but too few to count
    answers = np.eye(2)[np.where(right, labels, 1 - labels)]
    found = slices.report(baselines.ACCURACY, labels, answers, groups)
    metrics = found.metrics
    assert metrics["slice_worst_accuracy"] == metrics["slice_accuracy_south"]
    assert metrics["slice_gap_accuracy"] == pytest.approx(
        metrics["slice_accuracy_north"] - metrics["slice_accuracy_south"]
    )
    assert metrics["slice_accuracy_tiny"] == 0 and metrics["slice_accuracy_tiny_count"] == 10
    assert (
        metrics["slice_accuracy_south_lower"] < metrics["slice_accuracy_south"] < metrics["slice_accuracy_south_upper"]
    )
    assert set(found.figures) == {"slices"} and found.texts["slices.csv"].count("\n") == 4


def test_a_run_reports_slices_and_the_opt_in_gate_refuses_a_wide_gap(tracking_store):
    result = runner.run(*resolve("fraud_detection", "slice_by=card_present", "max_slice_gap=0.0001"))
    run = mlflow.get_run(result.run_id)
    assert {"test_slice_pr_auc_0", "test_slice_pr_auc_1", "test_slice_gap_pr_auc"} <= set(run.data.metrics)
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(result.run_id)}
    assert "slices.csv" in artifacts
    assert not result.promotion.promoted
    assert "gap between card_present slices" in run.data.tags["promotion_reason"]


def test_an_unknown_slice_column_stops_before_any_run(capsys, tracking_store):
    assert cli.main(["run", "fraud_detection", "--quick", "--set", "slice_by=colour"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "slice_by column 'colour' is not in the table; columns: " in error and "card_present" in error
    mlflow.set_tracking_uri(tracking_store)  # an earlier test of this process may have pointed MLflow elsewhere
    assert not mlflow.search_runs(search_all_experiments=True).shape[0]


def test_image_folders_are_sliced_by_a_path_rule_kept_beside_each_test_image(tmp_path):
    from shared import images

    for index in range(24):
        path = tmp_path / ("cat", "dog")[index % 2] / ("site_a", "site_b")[index % 3 == 0] / f"{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        images.save_png(np.full((8, 8, 1), index / 24), path)
    task, config = resolve("vision_classification", r"slice_by=path:^[^/]+/([^/]+)/", data=str(tmp_path))
    test = task.load_data(config).test
    assert len(test) and [str(key) for key in test.groups] == [path.split("/")[-2] for path in test.features]
    with pytest.raises(ValueError, match="these files come without a table; key them by their paths"):
        task.load_data(resolve("vision_classification", "slice_by=site", data=str(tmp_path))[1])
    with pytest.raises(ValueError, match="is not a regular expression"):
        resolve("vision_classification", "slice_by=path:([", data=str(tmp_path))


def test_speech_clips_are_sliced_by_a_filename_group_a_manifest_column_or_their_paths(tmp_path):
    import soundfile

    from tasks.speech.generated import generated_words

    waveforms, labels, speakers, class_names = generated_words(1, 8000, 0, speakers=3)
    rows = []
    for index, (samples, label, speaker) in enumerate(zip(waveforms, labels, speakers)):
        name = f"{class_names[label]}_{speaker}_{index}.wav"
        soundfile.write(tmp_path / name, samples, 8000)
        rows.append(f"{name},{class_names[label]},{('loud', 'quiet')[index % 2]}")
    (tmp_path / "manifest.csv").write_text("path,label,room\n" + "\n".join(rows) + "\n")
    pattern = r"filename_pattern=(?P<label>[a-z_]+)_(?P<speaker>speaker\d)_(?P<index>\d+)\.wav"
    for setting, source, expected in (
        ("slice_by=speaker", tmp_path, lambda name: name.split("_")[-2]),
        ("slice_by=room", tmp_path / "manifest.csv", lambda name: ("loud", "quiet")[int(name[:-4].split("_")[-1]) % 2]),
        (r"slice_by=path:_(\d+)\.wav", tmp_path / "manifest.csv", lambda name: name[:-4].split("_")[-1]),
    ):
        task, config = resolve(
            "speech", "sample_rate=8000", "augment_copies=0", "duration=0.6", setting, pattern, data=str(source)
        )
        listed = task.read(config)
        clips = listed.roles["test"][0]
        names = [clip.key.split(":")[1].rsplit("/", 1)[-1] for clip in clips]
        assert len(names) and list(listed.slice_keys["test"]) == [expected(name) for name in names]
    test = task.load_data(config).test  # the keys follow the clips into the featurised test split
    assert list(test.groups) == list(listed.slice_keys["test"]) and len(test.groups) == len(test)
    with pytest.raises(ValueError, match="has no slice_by column 'accent'"):
        task.read(resolve("speech", "slice_by=accent", data=str(tmp_path / "manifest.csv"))[1])


def test_text_tables_slice_by_a_column_and_class_folders_by_their_paths(tmp_path):
    table = tmp_path / "reviews.csv"
    rows = [
        f"review number {index} {('good', 'bad')[index % 2]},{index % 2},{('web', 'app')[index % 3 == 0]}"
        for index in range(60)
    ]
    table.write_text("text,label,channel\n" + "\n".join(rows) + "\n")
    task, config = resolve("nlp_sentiment", "slice_by=channel", data=str(table))
    test = task.load_data(config).test
    texts = test.pick(np.arange(len(test)))[0]
    numbers = [int((text.decode() if isinstance(text, bytes) else text).split()[2]) for text in texts]
    assert len(test) and list(test.groups) == [("web", "app")[number % 3 == 0] for number in numbers]
    with pytest.raises(ValueError, match="has no slice_by column 'device'.*Set slice_by to one of them"):
        task.load_data(resolve("nlp_sentiment", "slice_by=device", data=str(table))[1])
    for label in ("good", "bad"):
        for index in range(12):
            path = tmp_path / "folder" / label / ("old", "new")[index % 2] / f"{index}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"a {label} text {index}")
    task, config = resolve("nlp_sentiment", r"slice_by=path:/(old|new)/", data=str(tmp_path / "folder"))
    test = task.load_data(config).test
    assert len(test) and [str(key) for key in test.groups] == [path.split("/")[-2] for path in test.features]


def test_an_image_table_slices_by_any_column_beside_the_paths_and_unreadable_files_keep_keys_aligned(tmp_path):
    from shared import images

    rows = []
    for index in range(30):
        images.save_png(np.full((8, 8, 1), index / 30), tmp_path / f"{index}.png")
        rows.append(f"{index}.png,{index % 3},{('ward_a', 'ward_b')[index % 2]}")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows.append("broken.png,0,ward_c")
    (tmp_path / "scans.csv").write_text("path,label,ward\n" + "\n".join(rows) + "\n")
    task, config = resolve("medical_imaging", "slice_by=ward", data=str(tmp_path / "scans.csv"))
    splits = task.load_data(config)
    assert splits.info.class_names == ["0", "1", "2"]
    assert sum(map(len, (splits.train, splits.validation, splits.test))) == 30  # the broken file is dropped
    assert list(splits.test.groups) == [
        ("ward_a", "ward_b")[int(path.rsplit("/", 1)[1][:-4]) % 2] for path in splits.test.features
    ]
    (tmp_path / "gone.csv").write_text("path,label\nmissing.png,0\n")
    with pytest.raises(ValueError, match="line 2: image 'missing.png' does not exist"):
        task.load_data(resolve("vision_classification", data=str(tmp_path / "gone.csv"))[1])
