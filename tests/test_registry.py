"""What the registry says about each version, the like-for-like champion gate, and a clean terminal.

One vision_classification run goes through `python -m pipelines` in a subprocess, as a user starts it
(its stderr is what a terminal shows); two more runs differ from it only in `test_fraction` (a different
test set: declined) or only in a model setting (the same test set: compared).
"""

import os
import re
import subprocess
import sys
import types

import mlflow
import pytest

import tasks
from pipelines import runner
from shared import tracking
from tests.conftest import resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["max_examples=200", "epochs=3", "batch_size=16"]  # enough steps to learn: a useless model is not promoted
NOISE = [
    r"E0000 .*cuInit",
    "NodeDef mentions attribute use_unbounded_threadpool",
    "Add type hints",
    "CloudPickle",
    r"absl::InitializeLog",
    r"^I0000 ",
    "Downloading artifacts",
]


@pytest.fixture(scope="module")
def first_run(module_store):
    """`python -m pipelines run vision_classification --quick` in a subprocess; returns its stderr."""
    command = [
        sys.executable,
        "-m",
        "pipelines",
        "run",
        "vision_classification",
        "--quick",
        *[item for assignment in QUICK for item in ("--set", assignment)],
    ]
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    finished = subprocess.run(
        command,
        cwd=ROOT,
        env=dict(environment, MLFLOW_TRACKING_URI=module_store),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    tracking._connect()  # this process's MLflow client may still point at an earlier module's store
    return finished.stderr


def run_also(*assignments):
    """Trains vision_classification in this process with the first run's settings plus `assignments`."""
    return runner.run(*resolve("vision_classification", *QUICK, *assignments))


def test_a_run_prints_progress_and_result_without_library_noise(first_run):
    for pattern in NOISE:
        assert not re.search(pattern, first_run, re.MULTILINE), f"{pattern!r} on stderr:\n{first_run}"
    assert re.search(r"accuracy: [\d.]+ - loss: [\d.]+ - val_accuracy", first_run)  # the epoch's progress
    assert "vision_classification: version 1 promoted to @champion: no champion yet" in first_run


def test_real_warnings_and_unknown_native_errors_still_show(tmp_path):
    script = (
        "from pipelines import quiet; quiet.install()\n"
        "import os, warnings\n"
        "import tensorflow\n"
        "warnings.warn('a real problem')\n"
        "os.write(2, b'E0000 00:00:1.2 7 somewhere.cc:1] a real native error\\n')\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    finished = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr
    assert "UserWarning: a real problem" in finished.stderr and "a real native error" in finished.stderr
    assert "absl::InitializeLog" not in finished.stderr and "I0000" not in finished.stderr


def test_each_version_says_what_it_is(first_run):
    client = mlflow.MlflowClient()
    version = client.get_model_version("vision_classification", "1")
    run = client.get_run(version.run_id)
    assert run.info.run_name == "vision_classification-resnet-embedded"
    tags = version.tags
    assert tags["data_source"] == "embedded" and tags["synthetic"] == "false" and tags["dataset"] == "sklearn_digits"
    assert tags["test_set_digest"] == run.data.tags["test_set_digest"] and len(tags["test_set_digest"]) == 16
    assert float(tags["test_accuracy"]) == pytest.approx(run.data.metrics["test_accuracy"], rel=1e-5)
    assert tags["key_setting"] == "backbone=resnet" and tags["run_name"] == run.info.run_name
    description = version.description
    for part in (
        "vision_classification on embedded",
        "sklearn_digits",
        "200 training",
        "testing examples",
        f"test_accuracy {run.data.metrics['test_accuracy']:.4f}",
        "backbone=resnet",
        "epochs=3",
        version.run_id,
    ):
        assert part in description, (part, description)


def test_another_test_set_is_not_compared_and_a_model_setting_is(first_run):
    champion = tracking.champion(tasks.get("vision_classification"))
    other_test = run_also("test_fraction=0.2")
    assert not other_test.promotion.promoted
    assert other_test.promotion.reason.startswith(
        "not comparable: the champion was evaluated on a different test set (version 1: test_set_digest "
        f"{champion['test_set_digest']}, this run: "
    )
    assert "use --promote always" in other_test.promotion.reason
    run = mlflow.get_run(other_test.run_id)
    assert run.data.tags["champion_previous_test_set_digest"] == champion["test_set_digest"]
    assert run.data.tags["test_set_digest"] != champion["test_set_digest"]

    other_model = run_also("dropout=0.3")
    assert mlflow.get_run(other_model.run_id).data.tags["test_set_digest"] == champion["test_set_digest"]
    ours, theirs = other_model.metrics["accuracy"], champion["value"]
    verdict = "beats" if ours > theirs else "does not beat"
    assert other_model.promotion.reason == f"test_accuracy {ours:.4f} {verdict} {theirs:.4f} of version 1"
    assert other_model.promotion.promoted == (ours > theirs)


@pytest.mark.parametrize(
    "name, params, info, expected",
    [
        (
            "recommendation",
            {"model": "auto", "data": "/data/ml-100k/u.data"},
            types.SimpleNamespace(model="two_tower"),  # the state's resolved model, once the data is read
            "recommendation-two_tower-u.data",
        ),
        (
            "vision_classification",
            {"backbone": "resnet", "data": "/data/digits/"},
            None,
            "vision_classification-resnet-digits",
        ),
        (
            "nlp_sentiment",
            {"architecture": "transformer", "data": "tfds:glue/sst2"},
            None,
            "nlp_sentiment-transformer-glue_sst2",
        ),
        ("fraud_detection", {"data": "embedded"}, None, "fraud_detection-embedded"),
        (
            "predictive_maintenance",
            {"model": "cnn", "mode": "classification", "data": "ai4i.csv"},
            None,
            "predictive_maintenance-classification-cnn-ai4i.csv",
        ),
    ],
)
def test_run_names_are_short_and_tell_runs_apart(name, params, info, expected):
    assert tracking.default_run_name(tasks.get(name), params, info) == expected
