"""What binary detectors of rare positives share (fraud detection, failure prediction): the imbalance settings,
loss, class weights and the decision threshold chosen on the validation split.

A detector subclasses `BinaryDetectionTask` (its config `DetectionConfig`) and declares only what differs:
its data, model, metrics beyond PR-AUC, predictor and, optionally, a baseline's test scores. This module
registers no task of its own.
"""

import dataclasses

import numpy as np

from shared.constraints import NonNegative, Positive, Probability
from shared.fitted_state import FittedState
from tasks.base import Task, TaskConfig, balanced_class_weights


@dataclasses.dataclass
class DetectionConfig(TaskConfig):
    """Imbalance handling and the threshold rule of a binary detector; subclasses set their own costs."""

    noise: NonNegative = 0.0  # Gaussian noise on standardised numbers during training (0 = off)
    class_weight: bool = True  # balanced weights: the cheapest fix for rare positives
    focal_gamma: NonNegative = 0.0  # >0 uses focal loss, focusing on hard examples (2.0 is the paper's value)
    oversample: NonNegative = 0.0  # >0 repeats training positives up to this positive/negative ratio (e.g. 0.2)
    cost_false_negative: Positive = 10.0  # a missed positive costs this many false alarms
    cost_false_positive: Positive = 1.0  # a false alarm: the unit the other cost is counted in
    target_precision: Probability = 0.0  # >0 chooses the threshold reaching this precision instead of the cost
    target_recall: Probability = 0.0  # >0 chooses the threshold reaching this recall instead of the cost
    fixed_precision: Probability = 0.9  # reports recall at this precision, a common operating point

    def check(self):
        """Raises:
        ValueError: also when both threshold targets are set, since each chooses the threshold its own way.
        """
        super().check()
        if self.target_precision and self.target_recall:
            raise ValueError(
                f"set target_precision ({self.target_precision}) or target_recall ({self.target_recall}), not both."
            )


@dataclasses.dataclass(kw_only=True)
class DetectionState(FittedState):
    """What a detector's evaluation chose on validation; a detector's state extends it with its preprocessing.

    Attributes:
        mode (str): classification (a probability and a decision), or regression (predictive maintenance's RUL).
        threshold (float | None): the decision threshold chosen on validation; None before evaluation and in
            regression.
        threshold_rule (str): how it was chosen (expected cost, a target precision or recall).
        blend (dict | None): the baseline trees blended into the served scores and their weight
            (`BinaryDetectionTask.scores`), when validation chose a blend.
    """

    mode: str = "classification"
    threshold: float | None = None
    threshold_rule: str = ""
    blend: dict | None = None


class BinaryDetectionTask(Task):
    """A detector with one sigmoid output: binary or focal loss, balanced class weights, PR-AUC, and a decision
    threshold chosen on the validation split by expected cost or a target precision / recall.

    Class attributes a subclass may set:
        noisy_input (str | None): the feature-dict key `noise` perturbs (None: the features are one tensor).
    """

    config_class = DetectionConfig
    primary_metric = "pr_auc"
    noisy_input = None

    def loss(self, config, info):
        """Binary cross-entropy, or focal loss when `focal_gamma` > 0."""
        import keras

        if config.focal_gamma:
            return keras.losses.BinaryFocalCrossentropy(gamma=config.focal_gamma)
        return keras.losses.BinaryCrossentropy()

    def metrics(self, config, info):
        import keras

        return [keras.metrics.AUC(curve="PR", name="pr_auc")]

    def class_weight(self, config, splits):
        """Balanced weights for the two classes, whatever their imbalance, unless `class_weight` is off."""
        return balanced_class_weights(splits.train.targets, 2) if config.class_weight else None

    def eval_map(self, config, info):
        import tensorflow as tf

        return lambda features, labels: (features, tf.cast(labels, "float32")[:, None])

    def train_map(self, config, info):
        from shared import augmentation

        return augmentation.chain(
            self.eval_map(config, info),
            augmentation.gaussian_noise(config.noise, key=self.noisy_input, seed=config.seed),
        )

    def load_fitted(self, config, info):
        """`load_data(config, fitted=info)`: a detector's loader encodes rows with the model's preprocessing when
        given it; positives are not oversampled (only training repeats them)."""
        return self.load_data(dataclasses.replace(config, oversample=0.0), fitted=info)

    def load_continued(self, config, info):
        """`load_data(config, fitted=info, strict=True)`: the model's preprocessing, positives oversampled as in
        training, and a column the model does not know refused."""
        return self.load_data(config, fitted=info, strict=True)

    def baseline(self, splits, config):
        """Returns a classical baseline fitted on the training rows, as trees (`shared.trees.to_json`) that read
        `baseline_table`, or None (the default). Its test scores are logged as `baseline_hgb_*` beside ours."""
        return None

    def scorers(self, config, info):
        from shared import baselines

        return [baselines.PR_AUC, baselines.ROC_AUC]  # PR-AUC decides: a constant score's is the positive rate

    def outputs(self, model, splits, role, config):
        """The labels and served scores (the model's, blended as `splits.info` says) of a split."""
        split = getattr(splits, role)
        return np.asarray(split.targets).reshape(-1), self.scores(model, splits.info, split.features)

    def probabilistic(self, info):
        """True for a detector's sigmoid probability (the served one, blend included); False for a regression
        mode (`info.mode`, predictive maintenance's RUL)."""
        return info.mode == "classification"

    def baselines(self, splits, config):
        """The positive rate as every score (trivial), and the task's trees (`baseline`) when it has them."""
        from shared import baselines, trees

        found = [baselines.Baseline("prior", answer=baselines.constant(np.mean(splits.train.targets)), trivial=True)]
        fitted = self.baseline(splits, config)
        if fitted is not None:
            scores = {
                role: trees.predict_proba(fitted, self.baseline_table(getattr(splits, role).features))
                for role in ("validation", "test")
            }
            found.append(baselines.Baseline("hgb", **scores, fitted=fitted, serves=self.serves_baseline(config)))
        return found

    def serves_baseline(self, config):
        """Returns:
        str: how this task serves its trees when they beat the model (empty: it cannot).
        """
        return ""

    def baseline_table(self, features):
        """Returns:
        np.ndarray: encoded features as the baseline's float table (rows, columns).
        """
        raise NotImplementedError(f"{self.name} has no baseline")

    def blend_weights(self, config):
        """The baseline's weights in a blend with the model that validation chooses among; (0.0,) keeps the model
        alone (the default)."""
        return (0.0,)

    def scores(self, model, info, features):
        """The served probabilities: the model's, blended with the baseline trees `info.blend` holds, if any."""
        from shared import trees

        scores = model.predict(features, batch_size=1024, verbose=0).reshape(-1)
        blend = info.blend
        if blend:
            scores = _mix(scores, trees.predict_proba(blend["trees"], self.baseline_table(features)), blend["weight"])
        return scores

    def _blend(self, config, labels, ours, theirs):
        """Returns:
        tuple[float, dict]: the baseline weight whose blend scores best on validation PR-AUC (0.0: the model
        alone; ties go to the smaller weight) and each tried weight's figure.
        """
        from sklearn import metrics

        figures = {
            weight: metrics.average_precision_score(labels, _mix(ours, theirs, weight))
            for weight in self.blend_weights(config)
        }
        return max(figures, key=figures.get), figures

    def check_splits(self, splits, config):
        """Raises:
        ValueError: a split lacks a class (training, after `max_examples`; validation, where the threshold is
            chosen; test).
        """
        if splits.info.mode == "classification":
            require_both_classes(splits)

    def evaluate(self, model, splits, config):
        """Chooses the threshold on validation, scores the test split, and hands the threshold to the predictor
        in `serving` (`threshold`, `threshold_rule`, and `blend`: the baseline blend validation chose, or None).
        A trained model on new data (`splits.fitted`) keeps its own threshold and blend, and has no training rows
        for a baseline or validation rows to score."""
        from sklearn import metrics

        from shared import evaluation

        if splits.fitted:
            baseline = None
            threshold, rule = splits.info.threshold, splits.info.threshold_rule
            test_scores = self.scores(model, splits.info, splits.test.features)
        else:
            unblended = splits.info.updated({"blend": None})  # a continued model's old blend is chosen anew
            validation_scores, test_scores = (
                self.scores(model, unblended, split.features) for split in (splits.validation, splits.test)
            )
            trained = next((item for item in splits.baselines if item.fitted is not None), None)
            baseline, blend = None, None
            if trained is not None:  # the trees' test scores are drawn beside ours; a blend may serve both
                baseline = trained.test
                weight, figures = self._blend(config, splits.validation.targets, validation_scores, trained.validation)
                if weight:
                    blend = {"weight": weight, "trees": trained.fitted, "validation_pr_auc": figures}
                    validation_scores = _mix(validation_scores, trained.validation, weight)
                    test_scores = _mix(test_scores, baseline, weight)
            threshold, rule = evaluation.choose_threshold(
                splits.validation.targets,
                validation_scores,
                config.cost_false_negative,
                config.cost_false_positive,
                config.target_precision,
                config.target_recall,
            )
        result = evaluation.binary_detection(
            splits.test.targets,
            test_scores,
            threshold,
            config.cost_false_negative,
            config.cost_false_positive,
            config.fixed_precision,
            baselines=None if baseline is None else {"baseline_hgb": baseline},
        )
        if not splits.fitted:  # validation PR-AUC lets settings be compared without looking at the test split
            result.metrics["validation_pr_auc"] = float(
                metrics.average_precision_score(splits.validation.targets, validation_scores)
            )
        if baseline is not None:
            result.metrics["pr_auc_minus_baseline"] = result.metrics["pr_auc"] - result.metrics["baseline_hgb_pr_auc"]
        result.texts["threshold.txt"] = f"threshold {threshold:.6f} chosen on the validation split: {rule}\n"
        result.serving.update(threshold=threshold, threshold_rule=rule)
        if not splits.fitted:
            result.serving["blend"] = blend
            result.metrics["blend_weight"] = blend["weight"] if blend else 0.0
        result.outputs = np.asarray(splits.test.targets).reshape(-1), test_scores
        return result


def require_both_classes(splits):
    """Checks every split of a binary task holds both classes (see `shared.evaluation.require_both_classes`), where
    their labels are in memory (a TFDS stream's are not)."""
    from shared import evaluation

    for role in ("train", "validation", "test"):
        if hasattr(getattr(splits, role), "targets"):
            evaluation.require_both_classes(getattr(splits, role).targets, role)


def _mix(ours, theirs, weight):
    """The blend of two score arrays: `weight` of the baseline's, the rest the model's."""
    return (1 - weight) * ours + weight * theirs
