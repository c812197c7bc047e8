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
