"""Benchmark scripts are not run by the default suite (they take minutes on real data); this keeps
each one importable and checks it points at the team's real data and prints the agreed JSON line."""

import importlib.util
import pathlib

import pytest

FOLDER = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
BENCHMARKS = sorted(path for path in FOLDER.glob("*.py") if path.stem not in ("common", "__init__"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda path: path.stem)
def test_benchmark_script_imports_and_follows_the_convention(path):
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # runs nothing heavy: each script trains only under __main__
    assert callable(module.main)
    source = path.read_text()
    if "from benchmarks import common" in source:  # the shared body prints the JSON line
        source += (FOLDER / "common.py").read_text()
    if getattr(module, "TEAM_DATA", True):  # data_scale generates its own photos
        assert '"shared"' in source and '"data"' in source  # reads ../shared/data
    for key in ('"task"', '"data"', '"metrics"', '"train_seconds"', '"examples_per_second"'):
        assert key in source, f"{path.name} does not print {key} in its JSON line"
