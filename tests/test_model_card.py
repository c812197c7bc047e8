"""Model cards: `shared.model_card.render` on hand-made logged values (every section from a figure, optional sections
only with their figures), then quick runs of three tasks whose `model_card.md` must state what the run logged."""

import mlflow
import pytest

from pipelines import runner
from shared import model_card
from tests.conftest import resolve

FACTS = model_card.TaskFacts("sentiment", "Sentiment: a classifier.", "accuracy", True, "text", "text")


def logged(**changes):
    """What a small classification run might log; `changes` replace whole entries."""
    values = {
        "run_id": "abc123",
        "run_name": "sentiment-cnn-embedded",
        "params": {"epochs": "5", "batch_size": "32", "learning_rate": "0.001"},
        "metrics": {
            "test_accuracy": 0.91234,
            "test_roc_auc": 0.95,
            "test_baseline_majority_accuracy": 0.95,
            "test_baseline_tfidf_logreg_accuracy": 0.88,
            "baseline_majority_validation_accuracy_gain": -0.01,
            "baseline_majority_validation_accuracy_gain_lower": -0.05,
            "baseline_majority_validation_accuracy_gain_upper": 0.02,
            "train_seconds": 12.345,
        },
        "tags": {
            "data_source": "embedded",
            "dataset": "generated_reviews",
            "synthetic": "true",
            "examples.training": "1400",
            "examples.validation": "100",
            "examples.testing": "300",
            "test_set_digest": "cd5b",
            "baseline_gate": "failed",
            "baseline_gate_reason": "validation accuracy 0.90 does not clearly beat the majority baseline's 0.91",
            "promotion_decision": "not_promoted",
            "promotion_policy": "if-better",
            "promotion_reason": "no better than a trivial baseline: validation accuracy 0.90 ...",
            "version.keras": "3.1",
            "version.keras_backend": "tensorflow",
            "version.tensorflow": "2.2",
            "hardware.cpus": "2",
            "hardware.gpus": "0",
            "hardware.machine": "x86_64",
            "strategy": "none",
            "replicas": "1",
        },
        "datasets": [{"context": "training", "name": "reviews-training", "digest": "4c15", "examples": "1400"}],
        "artifacts": {"config.yaml": "runs:/abc123/config.yaml"},
        "epochs": 3,
    }
    return dict(values, **changes)


def test_the_card_states_each_logged_figure_and_the_limitations_it_shows():
    card = model_card.render(FACTS, logged(), small_validation=150)
    assert card.startswith("# Model card: sentiment, run sentiment-cnn-embedded\n")
    assert "Task `sentiment`: Sentiment: a classifier." in card
    assert "Primary metric: `test_accuracy`, higher is better." in card
    assert "Source: `embedded`, dataset `generated_reviews`." in card and "Synthetic: yes" in card
    assert "Split sizes: 1400 training, 100 validation, 300 test examples." in card
    assert "Test set digest: `cd5b`." in card and "training `4c15` (1400 examples)" in card
    assert "| `test_accuracy` (primary) | 0.9123 |" in card and "| `test_roc_auc` | 0.9500 |" in card
    assert "| majority | `accuracy` | 0.9500 | 0.9123 | -0.0100 (-0.0500 to +0.0200) |" in card
    assert "| tfidf_logreg | `accuracy` | 0.8800 | 0.9123 |  |" in card
    assert "Baseline gate: failed: validation accuracy 0.90 does not clearly beat" in card
    assert "Promotion: not promoted (policy `if-better`): no better than a trivial baseline" in card
    assert "Epochs trained: 3 of 5 allowed." in card and "Training time: 12.3 s." in card
    assert "Keras 3.1 on tensorflow 2.2" in card and "Hardware: 2 CPUs, 0 GPUs, x86_64" in card
    limitations = card.split("## Limitations detected")[1]
    assert "Small validation split: 100 examples, fewer than 150" in limitations
    assert "synthetic data (`generated_reviews`)" in limitations
    assert "the majority class is 95.0% of the test examples" in limitations
    assert "baseline gate failed" in limitations
    for title, _, _ in model_card.OPTIONAL_SECTIONS:  # nothing logged for them: no section
        assert f"## {title}" not in card


def test_a_clean_run_on_real_data_detects_no_limitation_and_figures_left_out_leave_their_sentences_out():
    tags = {"data_source": "data/reviews.csv", "synthetic": "false", "examples.validation": "400"}
    card = model_card.render(FACTS, logged(tags=tags, metrics={"test_accuracy": 0.9}), small_validation=150)
    assert "Synthetic: no." in card
    assert card.endswith("## Limitations detected\n\nNone from the logged figures.\n")
    assert "## Baselines and verdict" not in card and "Training time" not in card and "Hardware" not in card


def test_slices_and_calibration_appear_only_with_their_figures():
    metrics = {
        "test_accuracy": 0.9,
        "test_slice_short_accuracy": 0.8,
        "test_slice_short_examples": 12.0,
        "test_slice_gap_accuracy": 0.15,
        "test_ece": 0.04,
        "test_ece_lower": 0.03,
        "test_ece_upper": 0.06,
    }
    artifacts = {"plots/explain/saliency.png": "runs:/abc123/plots/explain/saliency.png"}
    card = model_card.render(FACTS, logged(metrics=metrics, artifacts=artifacts), small_validation=150)
    slices = card.split("## Slices")[1].split("## ")[0]
    assert "| `test_slice_short_accuracy` | 0.8000 |" in slices and "| `test_slice_gap_accuracy` | 0.1500 |" in slices
    assert "| `test_ece` | 0.0400 (0.0300 to 0.0600) |" in card.split("## Calibration")[1]
    assert "[plots/explain/saliency.png](runs:/abc123/plots/explain/saliency.png)" in card.split("## Explanations")[1]
    assert "## Robustness" not in card
    test_metrics = card.split("## Test metrics")[1].split("## ")[0]
    assert "test_slice" not in test_metrics and "test_ece" not in test_metrics  # each figure in one section
    assert "Slice `short` holds 12 test examples, fewer than 30." in card.split("## Limitations detected")[1]


def test_a_chosen_run_lends_its_data_and_training_to_its_parents_card():
    chosen = logged()
    parent = logged(
        run_id="parent1",
        run_name="sentiment-portfolio",
        metrics={"test_accuracy": 0.91234},
        tags={"portfolio_chosen": "bigru", "best_run_id": "abc123"},
        datasets=[],
        artifacts={"leaderboard.csv": "runs:/parent1/leaderboard.csv"},
    )
    card = model_card.render(FACTS, model_card.merge(chosen, parent), small_validation=150)
    assert "Built from what run `parent1` logged." in card
    assert "Chosen by the portfolio: `bigru` (run `abc123`)." in card
    assert "Split sizes: 1400 training, 100 validation, 300 test examples." in card


# Quick runs on embedded data; nlp_sentiment's validation split is made small (about 100 examples) on purpose.
RUNS = {
    "fraud_detection": (),
    "nlp_sentiment": ("validation_fraction=0.05",),
    "recommendation": (),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_quick_run_logs_a_card_stating_its_task_data_figures_and_baselines(name, tracking_store):
    task, config = resolve(name, *RUNS[name])
    result = runner.run(task, config)
    client = mlflow.MlflowClient()
    card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/{model_card.FILE}")
    run = client.get_run(result.run_id)
    metrics, tags = run.data.metrics, run.data.tags
    assert f"Task `{name}`: {task.description}" in card
    assert f"Source: `{tags['data_source']}`, dataset `{tags['dataset']}`." in card
    sizes = f"{tags['examples.training']} training, {tags['examples.validation']} validation"
    assert f"Split sizes: {sizes}, {tags['examples.testing']} test examples." in card
    primary = f"test_{task.primary_metric}"
    assert f"| `{primary}` (primary) | {model_card._with_interval(metrics, primary)} |" in card
    assert f"{primary}_lower" in metrics  # a 95% bootstrap interval beside the test figure
    baselines = [key for key in metrics if key.startswith("test_baseline_")]
    assert baselines
    for key in baselines:
        assert f"| {model_card.number(metrics[key])} | " in card, key
    small = int(tags["examples.validation"]) < runner.SMALL_VALIDATION
    assert (f"Small validation split: {tags['examples.validation']} examples" in card) == small
    assert small == (name == "nlp_sentiment")
    version = client.get_model_version(name, result.model_uri.rsplit("/", 1)[1])
    assert version.description.endswith(f"Model card: runs:/{result.run_id}/{model_card.FILE}")


def test_a_card_that_cannot_be_built_is_a_warning_not_a_failed_run(tracking_store):
    task, _ = resolve("fraud_detection")
    with pytest.warns(UserWarning, match="no model card for run missing"):
        runner.log_card(task, "missing")
