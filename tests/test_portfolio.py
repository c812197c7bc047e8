"""Budgeted portfolios: each task's declared candidates, presets, and a portfolio run end to end (nested runs,
a leaderboard, one registered model), with k-fold cross-validation on small data and an averaged ensemble."""

import contextlib
import io

import mlflow
import pandas as pd
import pytest

import tasks
from pipelines import cli, config, portfolio, runner
from shared import constraints, tracking


@pytest.mark.parametrize("name", tasks.names())
def test_every_task_declares_three_to_six_valid_candidates_defaults_first(name):
    task = tasks.get(name)
    resolved = config.resolve(task, preset="balanced")
    assert resolved.budget_minutes == portfolio.PRESETS["balanced"]["budget_minutes"]
    found = portfolio.candidates(task, resolved)
    assert 3 <= len(found) <= 6 and found[0] == ("default", config.resolve(task, assignments=["budget_minutes=0"]))
    for candidate_name, candidate in found:
        constraints.check(candidate, task.name)  # every declared setting is one the config accepts
        assert candidate.budget_minutes == 0 and candidate_name


def test_the_users_own_settings_win_over_a_candidates():
    task = tasks.get("vision_classification")
    found = dict(portfolio.candidates(task, config.resolve(task, preset="balanced", assignments=["base_filters=8"])))
    assert {candidate.base_filters for candidate in found.values()} == {8}  # "wide" gives way to the user's width
    assert found["deep"].blocks_per_stage == 2


def test_presets_are_named_budgets_and_unknown_ones_are_named():
    task = tasks.get("speech")
    assert config.resolve(task, preset="fast").budget_minutes == 0
    assert config.resolve(task, preset="best", assignments=["budget_minutes=3"]).budget_minutes == 3
    with pytest.raises(ValueError, match="unknown --preset 'huge'; use one of fast, balanced, best"):
        config.resolve(task, preset="huge")


def _run(*arguments):
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        assert cli.main(["run", *arguments]) == 0, printed.getvalue()[-3000:]
    return printed.getvalue()


def _children(parent):
    return mlflow.search_runs(
        experiment_ids=[mlflow.get_run(parent).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent}'",
    )


def test_a_two_candidate_portfolio_logs_nested_runs_a_leaderboard_and_registers_one_model(tracking_store, monkeypatch):
    task_class = type(tasks.get("vision_classification"))
    monkeypatch.setattr(task_class, "candidates", (("default", {}), ("narrow", {"base_filters": 8})))
    printed = _run("vision_classification", "--preset", "balanced", "--set", "epochs=2", "--set", "batch_size=16")
    parent = mlflow.search_runs(
        experiment_names=["vision_classification"], filter_string="tags.portfolio = 'true'"
    ).iloc[0]
    children = _children(parent["run_id"])
    assert sorted(children["tags.portfolio_candidate"]) == ["0", "1"] and set(children["status"]) == {"FINISHED"}
    board = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{parent['run_id']}/leaderboard.csv")))
    assert list(board["candidate"]) == ["default", "narrow"] and set(board["state"]) == {"complete"}
    chosen = board.loc[board["validation"].idxmax()]
    assert parent["tags.portfolio_chosen"] == chosen["candidate"] and parent["tags.best_run_id"] == chosen["run_id"]
    assert parent["metrics.validation_accuracy"] == pytest.approx(chosen["validation"])
    versions = mlflow.MlflowClient().search_model_versions("name='vision_classification'")
    assert [version.run_id for version in versions] == [chosen["run_id"]]
    card = mlflow.artifacts.load_text(f"runs:/{parent['run_id']}/model_card.md")
    assert f"Chosen by the portfolio: `{chosen['candidate']}` (run `{chosen['run_id']}`)." in card
    assert versions[0].description.endswith(f"Model card: runs:/{parent['run_id']}/model_card.md")
    assert "vision_classification: version 1 promoted to @champion: no champion yet" in printed
    assert f"chose {chosen['candidate']} (validation_accuracy=" in printed and "candidate narrow: " in printed


def test_the_defaults_train_in_full_whatever_the_budget_and_later_candidates_share_what_is_left(
    tracking_store, monkeypatch
):
    task_class = type(tasks.get("vision_classification"))
    monkeypatch.setattr(task_class, "candidates", (("default", {}), ("narrow", {"base_filters": 8})))
    # all 1,797 embedded digits: enough to choose on one validation split, so no folds train here
    _run("vision_classification", "--set", "budget_minutes=0.001", "--set", "epochs=2")
    parent = mlflow.search_runs(
        experiment_names=["vision_classification"], filter_string="tags.portfolio = 'true'"
    ).iloc[0]
    board = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{parent['run_id']}/leaderboard.csv")))
    assert list(board["state"]) == ["complete", "skipped: budget spent"]
    epochs = mlflow.MlflowClient().get_metric_history(board["run_id"][0], "loss")
    assert len(epochs) == 2  # not stopped by a budget of 0.06 s


def test_cross_validation_scores_a_config_on_each_fold_of_small_data(tracking_store):
    task = tasks.get("vision_classification")
    small = config.resolve(task, assignments=["max_examples=150", "epochs=2", "batch_size=16"])
    tracking._connect()
    mlflow.set_experiment("cross_validation")
    with mlflow.start_run():  # folds tag the candidate's run they train for
        scores = runner.cross_validate(task, small, 2, portfolio.CROSS_VALIDATE_BELOW, 60)
        assert len(scores) == 2 and all(0.3 < score <= 1 for score in scores)  # digits are learned on every fold
        assert runner.cross_validate(task, small, 2, 100, 60) == []  # 150 + 270 examples are not below 100


@pytest.mark.slow  # 12 trainings of 2 candidates over 5 folds and an ensemble (75 s)
def test_small_data_is_cross_validated_and_the_best_two_are_averaged(tracking_store, monkeypatch):
    task_class = type(tasks.get("vision_classification"))
    monkeypatch.setattr(task_class, "candidates", (("default", {}), ("narrow", {"base_filters": 8})))
    printed = _run(
        "vision_classification",
        "--preset",
        "best",
        "--set",
        "max_examples=150",
        "--set",
        "epochs=2",
        "--set",
        "batch_size=16",
    )
    parent = mlflow.search_runs(
        experiment_names=["vision_classification"], filter_string="tags.portfolio = 'true'"
    ).iloc[0]
    board = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{parent['run_id']}/leaderboard.csv")))
    assert list(board["candidate"]) == ["default", "narrow", "average"]
    assert board["validation_sd"].iloc[:2].notna().all()  # 150 training examples: scored over folds
    assert f"over {portfolio.FOLDS} folds" in printed
    average = mlflow.get_run(board["run_id"].iloc[2])
    assert average.data.tags["ensemble_members"] == "2"
    assert len(mlflow.MlflowClient().search_model_versions("name='vision_classification'")) == 1


@pytest.mark.slow  # every task's whole portfolio on quick settings: 3-4 short trainings per task (8 min in all)
@pytest.mark.parametrize("name", tasks.names())
def test_every_tasks_portfolio_runs_with_quick_settings(name, tracking_store):
    _run(name, "--quick", "--preset", "balanced", "--set", "budget_minutes=1", "--promote", "never")
    parent = mlflow.search_runs(experiment_names=[name], filter_string="tags.portfolio = 'true'").iloc[0]
    board = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{parent['run_id']}/leaderboard.csv")))
    assert board["candidate"].iloc[0] == "default" and (board["state"] == "complete").any()
    assert (_children(parent["run_id"])["status"] == "FINISHED").sum() == (board["state"] == "complete").sum()
    assert len(mlflow.MlflowClient().search_model_versions(f"name='{name}'")) == 1
