"""Baselines in every run and the gate that keeps a model that learned nothing out of @champion.

The gate's arithmetic is checked on arrays; then every task trains once on its embedded data with its
training labels shuffled (so that nothing ties inputs to targets), and the run must log its baselines,
register the model, refuse to promote it and say why on the terminal.
"""

import contextlib
import dataclasses
import io

import mlflow
import numpy as np
import pytest

import tasks
from pipelines import cli
from shared import baselines

# Small budgets per task: enough steps that a model with real labels would learn, little enough for the suite.
SHUFFLED = {
    "vision_classification": ["max_examples=300", "epochs=2", "batch_size=16"],
    "medical_imaging": ["max_examples=300", "epochs=2", "batch_size=16"],
    "vision_segmentation": ["max_examples=120", "epochs=2", "base_filters=8"],
    "nlp_sentiment": ["embedded_examples=1200", "epochs=2", "architecture=cnn"],
    "nlp_translation": ["embedded_examples=1200", "epochs=2", "embedding_dim=32", "dense_dim=64"],
    "speech": ["embedded_repeats=4", "epochs=2", "augment_copies=0"],
    "fraud_detection": ["max_examples=6000", "epochs=2"],
    "predictive_maintenance": ["max_examples=3000", "epochs=2"],
    "recommendation": ["epochs=2"],
}


def shuffled(task_class):
    """The task's loader with its training targets permuted among training examples (for the recommender, the
    items of its interactions: what it learns to rank), so that nothing ties inputs to targets."""
    load = task_class.load_data

    def load_shuffled(self, config, *args, **kwargs):
        splits = load(self, config, *args, **kwargs)
        generator = np.random.default_rng(config.seed)
        train = splits.train
        if self.name == "recommendation":
            features = dict(train.features, item=generator.permutation(train.features["item"]))
            splits.train = dataclasses.replace(train, features=features)
        else:
            splits.train = dataclasses.replace(train, targets=generator.permutation(train.targets))
        return splits

    return load_shuffled


def test_the_test_figures_interval_holds_it_and_narrows_with_more_examples():
    generator = np.random.default_rng(0)
    widths = []
    for count in (200, 5000):
        labels = generator.integers(0, 2, count)
        answers = np.where(generator.random(count) < 0.8, labels, 1 - labels)  # 80% right
        lower, upper = baselines.interval(baselines.ACCURACY, labels, np.eye(2)[answers], seed=1)
        assert lower < baselines.ACCURACY(labels, np.eye(2)[answers]) < upper
        widths.append(upper - lower)
    assert widths[1] < widths[0] / 3  # about 1/sqrt(25) as wide


def test_a_constant_answer_never_clears_the_gate_and_a_real_one_does():
    labels = np.repeat([0, 1, 2], 60)
    trivial = baselines.Baseline("majority", answer=baselines.prior(labels[:100], 3), trivial=True)
    scorers = [baselines.BALANCED_ACCURACY, baselines.ACCURACY]
    noise = np.random.default_rng(0).dirichlet(np.ones(3), len(labels))
    useless = baselines.judge(scorers, [trivial], (labels, noise), (labels, noise))
    assert useless.refusal.startswith("validation balanced_accuracy") and "majority" in useless.refusal
    assert useless.tags["baseline_gate"] == "failed" and "not promoted" in useless.warnings[0]
    assert useless.metrics["baseline_majority_balanced_accuracy"] == pytest.approx(1 / 3)
    good = np.eye(3)[labels] * 0.8 + 0.1
    verdict = baselines.judge(scorers, [trivial], (labels, good), (labels, good))
    assert not verdict.refusal and not verdict.warnings and verdict.tags["baseline_gate"] == "passed"
    assert verdict.summary == "test balanced_accuracy 1.0000 against baselines majority 0.3333 (+0.6667)"


def test_a_classical_baseline_that_wins_is_reported_but_does_not_block():
    labels = np.repeat([0, 1], 100)
    fair = np.where(np.arange(200) % 4 == 0, 1 - labels, labels)  # 75% right
    ours = np.eye(2)[fair] * 0.8 + 0.1
    found = [
        baselines.Baseline("majority", answer=baselines.prior(labels, 2), trivial=True),
        baselines.Baseline("trees", validation=np.eye(2)[labels], test=np.eye(2)[labels], serves="Blend it."),
    ]
    verdict = baselines.judge([baselines.BALANCED_ACCURACY], found, (labels, ours), (labels, ours))
    assert not verdict.refusal
    assert verdict.warnings == [
        "the trees baseline beats the model on validation (balanced_accuracy 1.0000 vs 0.7500). Blend it."
    ]
    assert verdict.tags["baselines_better_than_model"] == "trees"


def test_error_metrics_need_a_relative_gain_and_small_validation_sets_are_not_enough():
    targets = np.linspace(0, 100, 400)
    mean = baselines.Baseline("mean", answer=baselines.constant(50.0), trivial=True)
    slightly = 50 + (targets - 50) * 0.1  # 10% of the way to the truth: RMSE only ~10% lower than the mean's
    verdict = baselines.judge([baselines.RMSE], [mean], (targets, slightly), (targets, slightly))
    assert not verdict.refusal  # a 10% lower error clears a 5% margin on 400 examples
    few, guesses = np.array([0.0, 33, 66, 100]), np.array([10.0, 70, 66, 60])  # 26% lower RMSE, but one guess is worse
    verdict = baselines.judge([baselines.RMSE], [mean], (few, guesses), (targets, slightly))
    assert "does not clearly beat the mean baseline" in verdict.refusal
    assert "over 4 validation examples" in verdict.refusal


@pytest.mark.parametrize("name", sorted(SHUFFLED))
def test_a_model_trained_on_shuffled_labels_is_registered_but_not_promoted(name, tracking_store, monkeypatch):
    task_class = type(tasks.get(name))
    monkeypatch.setattr(task_class, "load_data", shuffled(task_class))
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        assert cli.main(["run", name, *[item for setting in SHUFFLED[name] for item in ("--set", setting)]]) == 0
    stderr = printed.getvalue()
    client = mlflow.MlflowClient()
    version = client.get_latest_versions(name)[0]
    run = client.get_run(version.run_id)
    assert run.data.tags["promotion_decision"] == "not_promoted", stderr[-2000:]
    assert run.data.tags["promotion_reason"].startswith("no better than a trivial baseline: validation ")
    assert run.data.tags["baseline_gate"] == "failed"
    assert any(key.startswith("test_baseline_") for key in run.data.metrics)
    assert f"{name}: version 1 not promoted to @champion: no better than a trivial baseline" in stderr
    warnings = [line for line in stderr.splitlines() if line.startswith(f"{name}: warning: the model learned no more")]
    assert len(warnings) == 1 and "--preset balanced" in warnings[0]
    assert client.get_registered_model(name).aliases == {}


def test_the_numpy_aucs_equal_scikit_learns_with_ties_and_several_classes():
    from sklearn import metrics

    generator = np.random.default_rng(0)
    labels = generator.integers(0, 2, 500)
    scores = generator.random(500).round(1)  # many ties
    assert baselines.ROC_AUC(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert baselines.PR_AUC(labels, scores) == pytest.approx(metrics.average_precision_score(labels, scores), abs=1e-12)
    classes = generator.integers(0, 4, 300)
    probabilities = generator.dirichlet(np.ones(4), 300).round(2)
    expected = np.mean([metrics.roc_auc_score(classes == k, probabilities[:, k]) for k in range(4)])
    assert baselines.ROC_AUC(classes, probabilities) == pytest.approx(expected, abs=1e-12)
