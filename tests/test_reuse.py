"""Reuse in applications: champion promotion, `compare`, serving over HTTP and the examples.

Promotion and `compare` need no training: each fake run holds what a real one would for them (tags,
params, the test primary metric and a registered version), and each test gets its own toy task, so
its own experiment and registered model. Serving and the image example share one cheap
vision_classification training. Everything shares one store (a fresh SQLite store costs ~10 s).
"""

import contextlib
import csv
import io
import json
import pathlib
import py_compile
import re
import time
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pytest

import tasks
from pipelines import cli
from pipelines.serving_fuzz import raw_input, serve
from shared import images, tracking
from tasks.base import Task

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def toy(module_store, monkeypatch, request):
    """Registers a toy task named after the test; returns a factory for its higher/lower-is-better variant."""
    name = "toy_" + re.sub(r"\W+", "_", request.node.name)[5:60]

    def make(higher_is_better=True):
        task_class = type(
            "Toy",
            (Task,),
            {
                "name": name,
                "primary_metric": "accuracy" if higher_is_better else "rmse",
                "higher_is_better": higher_is_better,
            },
        )
        monkeypatch.setitem(tasks.TASKS, name, task_class)
        return tasks.get(name)

    return make


def fake_run(task, value, data_source="embedded", epochs=3, experiment=None):
    """Logs a finished run like the runner's (in the task's experiment unless named) and registers a version for it.

    Returns:
        tuple[str, str]: the run id and the registered version.
    """
    tracking._connect()
    mlflow.set_experiment(experiment or task.name)
    with mlflow.start_run() as active:
        mlflow.log_params({"epochs": epochs, "batch_size": 64, "learning_rate": 0.002, "data": data_source})
        mlflow.set_tags({"task": task.name, "data_source": data_source})
        if value is not None:
            mlflow.log_metric(f"test_{task.primary_metric}", value)
    client = mlflow.MlflowClient()
    if not client.search_registered_models(f"name='{task.name}'"):
        client.create_registered_model(task.name)
    version = client.create_model_version(task.name, f"runs:/{active.info.run_id}/model", active.info.run_id)
    return active.info.run_id, str(version.version)


def promote(task, value, data_source="embedded", policy="if-better", experiment=None):
    run_id, version = fake_run(task, value, data_source, experiment=experiment)
    return run_id, version, tracking.promote(task, run_id, version, value, data_source, policy)


def champion_version(name):
    return str(mlflow.MlflowClient().get_model_version_by_alias(name, "champion").version)


def test_first_version_becomes_champion_and_the_decision_is_logged(toy):
    task = toy()
    run_id, version, promotion = promote(task, 0.9)
    assert promotion.promoted and promotion.previous is None and promotion.reason == "no champion yet"
    assert champion_version(task.name) == version
    run = mlflow.get_run(run_id)
    assert run.data.tags["promotion_decision"] == "promoted" and run.data.tags["promotion_policy"] == "if-better"
    assert "champion_previous_version" not in run.data.tags
    assert promotion.message == f"version {version} promoted to @champion: no champion yet"


def test_if_better_promotes_only_a_strictly_better_version_on_the_same_source(toy):
    task = toy()
    _, first, _ = promote(task, 0.9)
    worse_run, _, worse = promote(task, 0.85)
    tie_run, _, tie = promote(task, 0.9)
    better_run, better, promoted = promote(task, 0.95)
    assert not worse.promoted and not tie.promoted and promoted.promoted
    assert champion_version(task.name) == better
    assert worse.reason == f"test_accuracy 0.8500 does not beat 0.9000 of version {first}"
    for run_id, decision in ((worse_run, "not_promoted"), (tie_run, "not_promoted"), (better_run, "promoted")):
        run = mlflow.get_run(run_id)
        assert run.data.tags["promotion_decision"] == decision
        assert run.data.tags["champion_previous_version"] == first
        assert run.data.metrics["champion_previous_test_accuracy"] == pytest.approx(0.9)


def test_lower_is_better_metric_promotes_the_smaller_error(toy):
    task = toy(higher_is_better=False)
    promote(task, 20.0)
    _, _, higher = promote(task, 25.0)
    _, lower, promoted = promote(task, 15.0)
    assert not higher.promoted and promoted.promoted and champion_version(task.name) == lower


def test_a_run_without_the_primary_metric_becomes_champion_only_on_purpose(toy):
    task = toy(higher_is_better=False)  # e.g. predictive_maintenance's classification mode has no test_rmse
    _, _, missing = promote(task, None)
    assert not missing.promoted and "this run has no test_rmse to compare by; use --promote always" in missing.reason
    _, forced_version, forced = promote(task, None, policy="always")
    assert forced.promoted and champion_version(task.name) == forced_version


def test_another_data_source_never_displaces_the_champion_unless_always(toy):
    task = toy()
    _, real, _ = promote(task, 0.7, data_source="/data/digits")
    other_run, _, other = promote(task, 0.99, data_source="embedded")
    assert not other.promoted and champion_version(task.name) == real
    assert "trained on data '/data/digits', not 'embedded'" in other.reason and "--promote always" in other.reason
    tags = mlflow.get_run(other_run).data.tags
    assert tags["champion_previous_data_source"] == "/data/digits" and tags["promotion_decision"] == "not_promoted"
    _, switched, forced = promote(task, 0.5, data_source="embedded", policy="always")
    assert forced.promoted and champion_version(task.name) == switched


def test_never_keeps_the_champion_even_when_better(toy):
    task = toy()
    _, first, _ = promote(task, 0.5)
    run_id, _, kept = promote(task, 0.99, policy="never")
    assert not kept.promoted and champion_version(task.name) == first
    assert mlflow.get_run(run_id).data.tags["promotion_reason"] == "--promote never"


def test_unknown_policy_is_a_one_line_error_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    started = time.perf_counter()
    assert cli.main(["run", "vision_classification", "--quick", "--promote", "sometimes"]) == 2
    error = capsys.readouterr().err
    assert error == (
        "error: unknown --promote value 'sometimes'; use one of if-better, always, never (default if-better).\n"
    )
    assert time.perf_counter() - started < 10 and not (tmp_path / "mlflow.db").exists()


@pytest.fixture
def history(toy):
    """A toy task with three runs: the champion (0.9, oldest), a worse one, the newest and best one off-source.

    Returns:
        tuple[str, list[str]]: the task name and the run ids, oldest first.
    """
    task = toy()
    return task.name, [
        promote(task, value, source)[0]
        for value, source in ((0.9, "embedded"), (0.8, "embedded"), (0.95, "tfds:mnist"))
    ]


def test_compare_text_shows_the_champion_and_runs_sorted_by_metric(history, capsys):
    name, (champion, worse, newest) = history
    assert cli.main(["compare", name]) == 0
    out = capsys.readouterr().out
    assert f"champion: version 1, run {champion[:12]}, test_accuracy=0.9000, data embedded" in out
    lines = out.splitlines()
    header = next(index for index, line in enumerate(lines) if line.startswith("run "))
    assert lines[header].split() == [
        "run",
        "experiment",
        "version",
        "champion",
        "status",
        "data",
        "test_accuracy",
        "duration",
        "started",
        "epochs",
        "batch_size",
        "learning_rate",
    ]
    rows = [line.split() for line in lines[header + 2 :]]
    assert [row[0] for row in rows] == [newest[:12], champion[:12], worse[:12]]
    assert rows[1][1:8] == [name, "1", "*", "FINISHED", "embedded", "0.9000", "0s"]
    assert rows[1][-3:] == ["3", "64", "0.002"] and rows[0][2:4] == ["3", "FINISHED"]  # no champion mark


def test_compare_limit_keeps_the_champion_row(history, capsys):
    name, (champion, _, newest) = history
    assert cli.main(["compare", name, "--limit", "1", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"### {name}\n")
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert table[0].startswith("| run | experiment | version | champion |") and table[1] == "|---" * 12 + "|"
    assert [line.split(" | ")[0].strip("| ") for line in table[2:]] == [newest[:12], champion[:12]]


def test_compare_csv_is_one_machine_readable_table(history, capsys):
    name, (champion, worse, newest) = history
    assert cli.main(["compare", "--format", "csv"]) == 0  # every task: the toy and the nine real ones
    captured = capsys.readouterr()
    rows = [row for row in csv.DictReader(io.StringIO(captured.out)) if row["task"] == name]
    assert [row["run_id"] for row in rows] == [newest, champion, worse]
    assert {row["primary_metric"] for row in rows} == {"test_accuracy"}
    by_run = {row["run_id"]: row for row in rows}
    assert by_run[champion]["champion"] == "True" and by_run[worse]["champion"] == "False"
    assert float(by_run[newest]["value"]) == pytest.approx(0.95) and by_run[newest]["data_source"] == "tfds:mnist"
    assert by_run[champion]["version"] == "1" and by_run[champion]["epochs"] == "3"
    assert {row["experiment"] for row in rows} == {name}
    assert "speech: no champion yet; no runs in every experiment" in captured.err
    assert "Cannot retrieve experiment" not in captured.err


@pytest.fixture
def two_experiments(toy):
    """A toy task with a run in its own experiment, then the champion and a worse run in experiment `NAME_sweep`.

    Returns:
        tuple[str, str, dict[str, str]]: the task name, the other experiment and run ids by role.
    """
    task = toy()
    other = f"{task.name}_sweep"
    own, _, _ = promote(task, 0.7)
    best, _, _ = promote(task, 0.9, experiment=other)
    worse, _, _ = promote(task, 0.8, experiment=other)
    mlflow.set_experiment(f"{task.name}_empty")  # an experiment holding no run of the task
    return task.name, other, {"own": own, "champion": best, "worse": worse}


def compare_csv(capsys, *arguments):
    """Runs `compare --format csv` and returns its rows by run id, and what it printed on stderr."""
    assert cli.main(["compare", *arguments, "--format", "csv"]) == 0
    captured = capsys.readouterr()
    return {row["run_id"]: row for row in csv.DictReader(io.StringIO(captured.out))}, captured.err


def test_compare_finds_the_task_runs_in_every_experiment(two_experiments, capsys):
    name, other, runs = two_experiments
    rows, _ = compare_csv(capsys, name)
    assert list(rows) == [runs["champion"], runs["worse"], runs["own"]]  # best first
    assert {run_id: row["experiment"] for run_id, row in rows.items()} == {
        runs["champion"]: other,
        runs["worse"]: other,
        runs["own"]: name,
    }
    assert rows[runs["champion"]]["champion"] == "True"
    assert cli.main(["compare", name]) == 0
    out = capsys.readouterr().out
    assert "last 20 runs of every experiment and the champion's" in out
    assert re.search(rf"{runs['worse'][:12]}\s+{other}\s+3\s+FINISHED", out)


def test_compare_experiment_narrows_the_view_and_keeps_the_champion(two_experiments, capsys):
    name, other, runs = two_experiments
    rows, _ = compare_csv(capsys, name, "--experiment", other)
    assert list(rows) == [runs["champion"], runs["worse"]]
    rows, _ = compare_csv(capsys, name, "--experiment", name)
    assert list(rows) == [runs["champion"], runs["own"]]  # the champion's run from the other experiment
    assert rows[runs["champion"]]["experiment"] == other and rows[runs["own"]]["champion"] == "False"


def test_compare_shows_the_champion_with_no_runs_in_view(two_experiments, capsys):
    name, other, runs = two_experiments
    assert cli.main(["compare", name, "--experiment", f"{name}_empty"]) == 0
    out = capsys.readouterr().out
    assert f"champion: version 2, run {runs['champion'][:12]}, test_accuracy=0.9000" in out
    assert f"last 20 runs of experiment '{name}_empty' and the champion's" in out
    table = [line for line in out.splitlines() if line.startswith(runs["champion"][:12])]
    assert len(table) == 1 and other in table[0] and runs["own"][:12] not in out


def test_compare_unknown_experiment_is_a_one_line_error(two_experiments, capsys):
    name, _, _ = two_experiments
    assert cli.main(["compare", name, "--experiment", "no_such_experiment"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: no experiment 'no_such_experiment' in store") and error.count("\n") == 1


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--format", "html"], "unknown --format 'html'; use one of text"),
        (["--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_compare_rejects_bad_options_in_one_line(arguments, message, capsys):
    assert cli.main(["compare", "vision_classification", *arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {message}") and error.count("\n") == 1


def invoke(url, column, raw):
    """Posts one raw input as `dataframe_split` JSON; returns the HTTP status and the decoded answer."""
    body = json.dumps({"dataframe_split": {"columns": [column], "data": [[raw]]}}).encode()
    request = urllib.request.Request(f"{url}/invocations", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        pytest.fail(f"/invocations answered {error.code}: {error.read().decode()[:3000]}")


def serve_and_check(name, store, folder):
    """Serves the task's latest version, posts one raw input and checks the answer carries a prediction."""
    task = tasks.get(name)
    raw = raw_input(task, folder)
    with serve(name, store, folder / "serve.log") as (url, _):
        status, body = invoke(url, task.input_column, raw)
    assert status == 200
    (answer,) = body["predictions"]
    assert answer[task.answer_key] not in (None, "", [])
    return answer


@pytest.fixture(scope="module")
def digits_run(module_store):
    """One cheap vision_classification training through the CLI (small batches, so that its few steps learn the
    digits: a model no better than the majority class would not be promoted); returns what it printed on stderr."""
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        assert (
            cli.main(
                [
                    "run",
                    "vision_classification",
                    "--quick",
                    "--set",
                    "max_examples=200",
                    "--set",
                    "epochs=3",
                    "--set",
                    "batch_size=16",
                ]
            )
            == 0
        )
    return printed.getvalue()


def test_cli_run_promotes_its_version_and_says_so(digits_run):
    assert "vision_classification: version 1 promoted to @champion: no champion yet\n" in digits_run
    version = mlflow.MlflowClient().get_model_version_by_alias("vision_classification", "champion")
    assert str(version.version) == "1"
    assert mlflow.get_run(version.run_id).data.tags["promotion_decision"] == "promoted"


@pytest.mark.slow  # starts an MLflow scoring server (20 s); the slow set serves every task's champion
def test_champion_serves_a_raw_image_over_http(digits_run, module_store, tmp_path):
    answer = serve_and_check("vision_classification", module_store, tmp_path)
    assert answer["label"] in [str(digit) for digit in range(10)] and 0 <= answer["probability"] <= 1
    assert [item["label"] for item in answer["top_k"]][0] == answer["label"]


def test_examples_compile(tmp_path):
    scripts = sorted(EXAMPLES.glob("*.py"))
    assert {path.stem for path in scripts} >= {
        "classify_image",
        "sentiment",
        "recognise_speech",
        "score_transaction",
        "recommend",
    }
    for path in scripts:
        py_compile.compile(str(path), doraise=True, cfile=str(tmp_path / f"{path.stem}.pyc"))


def test_image_example_predicts_with_the_champion(digits_run, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import classify_image

    path = tmp_path / "digit.png"
    images.save_png(np.zeros((8, 8, 1)), path)
    answers = classify_image.main([str(path)])
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {"input": str(path), **answers[0]} and answers[0]["label"] in "0123456789"


@pytest.mark.slow
@pytest.mark.parametrize("name", tasks.names())
def test_every_task_model_serves_raw_input_over_http_and_compares(name, module_store, tmp_path, capsys):
    """A quick model of every task, served over HTTP, and its row in `compare` (a quick model that learned no more
    than its trivial baseline is registered but not promoted, so the latest version is what is served)."""
    assert cli.main(["run", name, "--quick", "--promote", "always"]) == 0
    serve_and_check(name, module_store, tmp_path)
    capsys.readouterr()
    assert cli.main(["compare", name, "--format", "csv"]) == 0
    client = mlflow.MlflowClient()
    newest = max(int(found.version) for found in client.search_model_versions(f"name='{name}'"))
    version = client.get_model_version(name, str(newest))
    rows = {row["run_id"]: row for row in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    row = rows[version.run_id]
    assert row["primary_metric"] == f"test_{tasks.get(name).primary_metric}"
    assert row["champion"] == str("champion" in version.aliases)
    assert row["data_source"] == "embedded" and float(row["value"]) == pytest.approx(
        mlflow.get_run(version.run_id).data.metrics[row["primary_metric"]]
    )
