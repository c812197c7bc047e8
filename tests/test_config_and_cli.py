"""CLI and config resolution: fast commands, overrides, and one-line errors for bad input."""

import os
import subprocess
import sys
import time

import pytest

import tasks
from pipelines import cli, config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Runs the CLI, then reports on stderr's last line which heavy libraries the command imported.
_REPORT_IMPORTS = """import runpy, sys
sys.argv = ["pipelines", *sys.argv[1:]]
try:
    runpy.run_module("pipelines", run_name="__main__")
except SystemExit as done:
    code = done.code
else:
    code = 0
print("imported:", *sorted({"jax", "keras", "mlflow", "tensorflow"} & set(sys.modules)), file=sys.stderr)
sys.exit(code)
"""


def run_cli(*arguments):
    """Runs `python -m pipelines ARGUMENTS`; returns the process and the heavy libraries it imported."""
    completed = subprocess.run(
        [sys.executable, "-c", _REPORT_IMPORTS, *arguments], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    return completed, completed.stderr.strip().splitlines()[-1].split()[1:]


def test_list_is_fast_and_names_every_task_with_its_metric():
    completed, imported = run_cli("list")
    assert completed.returncode == 0, completed.stderr
    assert imported == []  # nothing that takes seconds to import
    assert "vision_classification" in completed.stdout
    assert "tfds:mnist" in completed.stdout and "accuracy (higher)" in completed.stdout
    for name in tasks.names():
        assert name in completed.stdout


@pytest.mark.parametrize("command", [[], ["run"], ["sweep"], ["predict"], ["evaluate"], ["compare"], ["list"]])
def test_help_everywhere_is_fast(command):
    completed, imported = run_cli(*command, "--help")
    assert completed.returncode == 0
    assert "usage:" in completed.stdout
    assert imported == []


def test_unknown_task_is_one_line_error(capsys):
    assert cli.main(["run", "vision_clasification"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "unknown task 'vision_clasification'" in error and "Did you mean 'vision_classification'" in error


def test_unknown_set_key_lists_valid_keys(capsys):
    assert cli.main(["run", "vision_classification", "--set", "epochz=3"]) == 2
    error = capsys.readouterr().err
    assert "unknown config key(s) epochz" in error and "valid keys:" in error and "epochs" in error


@pytest.mark.parametrize(
    "assignment, expected",
    [
        ("epochs=abc", "expects int"),
        ("dropout=high", "expects float"),
        ("precision=float8", "precision='float8' is not allowed; it must be one of auto, float32"),
        ("epochs", "key=value"),
    ],
)
def test_bad_set_values_are_rejected(assignment, expected, capsys):
    assert cli.main(["run", "vision_classification", "--set", assignment]) == 2
    assert expected in capsys.readouterr().err


def test_resolution_order_defaults_quick_yaml_set(tmp_path):
    task = tasks.get("vision_classification")
    path = tmp_path / "override.yaml"
    path.write_text("epochs: 7\nlearning_rate: 1\nflip: horizontal\n")
    resolved = config.resolve(task, quick=True, config_file=str(path), assignments=["epochs=9"], seed=4, data=None)
    assert resolved.epochs == 9  # --set beats YAML
    assert resolved.learning_rate == 1.0 and isinstance(resolved.learning_rate, float)
    assert resolved.flip == "horizontal"
    assert config.resolve(task, assignments=["weight_decay=1e-5"]).weight_decay == 1e-5  # YAML 1.1 reads it as text
    assert resolved.max_examples == task.quick_overrides["max_examples"]  # --quick applied
    assert resolved.seed == 4 and resolved.data == "embedded"


def test_unreadable_and_non_mapping_yaml(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: [1, 2\n")
    assert cli.main(["run", "vision_classification", "--config", str(broken)]) == 2
    assert f"config file '{broken}' is not valid YAML" in capsys.readouterr().err
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    assert cli.main(["run", "vision_classification", "--config", str(listing)]) == 2
    assert "must be a mapping" in capsys.readouterr().err
    assert cli.main(["run", "vision_classification", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_yaml_with_unknown_key_names_the_file(tmp_path, capsys):
    path = tmp_path / "typo.yaml"
    path.write_text("epoch: 3\n")
    assert cli.main(["run", "vision_classification", "--config", str(path)]) == 2
    assert f"unknown config key(s) epoch in '{path}'" in capsys.readouterr().err


def test_missing_data_folder(tracking_store, capsys):
    assert cli.main(["run", "vision_classification", "--data", "/no/such/folder", "--quick"]) == 2
    assert "data source '/no/such/folder' does not exist" in capsys.readouterr().err


def test_empty_data_folder(tracking_store, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["run", "vision_classification", "--data", str(empty), "--quick"]) == 2
    assert f"data folder '{empty}' has no class subfolders" in capsys.readouterr().err
    (empty / "cats").mkdir()
    assert cli.main(["run", "vision_classification", "--data", str(empty), "--quick"]) == 2
    error = capsys.readouterr().err
    assert f"class folder '{empty / 'cats'}' has no files" in error


def test_unknown_tfds_name(tracking_store, capsys):
    assert cli.main(["run", "vision_classification", "--data", "tfds:not_a_dataset", "--quick"]) == 2
    assert "TFDS has no dataset 'not_a_dataset'" in capsys.readouterr().err


def test_tfds_offline_fails_fast_naming_alternatives(tracking_store, tmp_path, monkeypatch, capsys):
    from shared.data import tfds

    monkeypatch.setattr(tfds, "network_available", lambda timeout=3.0: False)
    started = time.perf_counter()
    code = cli.main(
        ["run", "vision_classification", "--data", "tfds:mnist", "--quick", "--set", f"tfds_data_dir={tmp_path}"]
    )
    error = capsys.readouterr().err
    assert code == 2 and time.perf_counter() - started < 60
    assert "tfds:mnist is not downloaded" in error and "--data embedded" in error
    assert error.strip().count("\n") == 0


def test_predict_with_unknown_model_uri(tracking_store, tmp_path, capsys):
    assert cli.main(["predict", "vision_classification", "--model", "models:/nothing_here/1", "x.png"]) == 2
    assert "no model at 'models:/nothing_here/1'" in capsys.readouterr().err


def test_run_all_checks_every_config_before_training(capsys):
    assert cli.main(["run", "all", "--set", "epochz=1"]) == 2
    assert "unknown config key(s) epochz" in capsys.readouterr().err
