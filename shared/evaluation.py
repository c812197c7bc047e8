"""Evaluation helpers: metrics computed with scikit-learn, each also drawn as a figure."""

import dataclasses

import numpy as np

from shared import plots


@dataclasses.dataclass
class Evaluation:
    """What `Task.evaluate` returns: numbers, figures and text artifacts.

    Attributes:
        metrics (dict[str, float]): logged as `test_<name>`.
        figures (dict[str, matplotlib.figure.Figure]): logged as `<name>.png`.
        texts (dict[str, str]): logged as files named by their key (e.g. `classification_report.txt`).
        params (dict): values chosen during evaluation, such as a validation-chosen decision
            threshold, logged as params beside the config.
        serving (dict): what the predictor needs besides the data description (`Splits.info`), e.g.
            that threshold; saved with the model.
        outputs (tuple | None): `(targets, outputs)` of the model on the test examples as the task's scorers
            read them (`Task.outputs`), when the evaluation computed them; the baselines are scored beside them.
    """

    metrics: dict
    figures: dict = dataclasses.field(default_factory=dict)
    texts: dict = dataclasses.field(default_factory=dict)
    params: dict = dataclasses.field(default_factory=dict)
    serving: dict = dataclasses.field(default_factory=dict)
    outputs: tuple | None = None


def classification(labels, probabilities, class_names):
    """Accuracy, macro F1, ROC-AUC and PR-AUC, a report, a confusion matrix and ROC / PR curves.

    Args:
        labels (np.ndarray): true class indices, shape (n,).
        probabilities (np.ndarray): predicted class probabilities, shape (n, k).
        class_names (list[str]): the k class names.

    Returns:
        Evaluation
    """
    from sklearn import metrics

    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype="float64")
    predictions = probabilities.argmax(axis=1)
    indices = list(range(len(class_names)))
    present = np.unique(labels)
    one_hot = np.eye(len(class_names))[labels]
    results = {
        "accuracy": metrics.accuracy_score(labels, predictions),
        "macro_f1": metrics.f1_score(labels, predictions, average="macro", labels=indices, zero_division=0),
        "balanced_accuracy": metrics.balanced_accuracy_score(labels, predictions),
    }
    roc_lines, pr_lines = [], []
    if len(present) > 1:
        scored = [index for index in indices if index in present]
        results["roc_auc"] = metrics.roc_auc_score(one_hot[:, scored], probabilities[:, scored], average="macro")
        results["pr_auc"] = metrics.average_precision_score(
            one_hot[:, scored], probabilities[:, scored], average="macro"
        )
        for index in scored[:20]:  # more curves than this are unreadable on one axis
            false_positive, true_positive, _ = metrics.roc_curve(one_hot[:, index], probabilities[:, index])
            precision, recall, _ = metrics.precision_recall_curve(one_hot[:, index], probabilities[:, index])
            roc_lines.append((class_names[index], false_positive, true_positive))
            pr_lines.append((class_names[index], recall, precision))
    matrix = metrics.confusion_matrix(labels, predictions, labels=indices)
    figures = {"confusion_matrix": plots.confusion_matrix(matrix, class_names)}
    if roc_lines:
        figures["roc_curve"] = plots.curves(
            roc_lines, "false positive rate", "true positive rate", "ROC", diagonal=True
        )
        figures["pr_curve"] = plots.curves(pr_lines, "recall", "precision", "precision-recall")
    report = metrics.classification_report(
        labels, predictions, labels=indices, target_names=class_names, digits=4, zero_division=0
    )
    return Evaluation(
        metrics={name: float(value) for name, value in results.items()},
        figures=figures,
        texts={"classification_report.txt": report},
    )


def top_k(probabilities, class_names, k=3):
    """Turns probability rows into JSON-friendly answers with the top-k classes.

    Returns:
        list[dict]: per row, `label`, `probability` and `top_k` (a list of label / probability).
    """
    answers = []
    for row in np.asarray(probabilities, dtype="float64"):
        order = np.argsort(row)[::-1][: max(1, k)]
        ranked = [{"label": class_names[index], "probability": round(float(row[index]), 6)} for index in order]
        answers.append({"label": ranked[0]["label"], "probability": ranked[0]["probability"], "top_k": ranked})
    return answers


def confident_mistakes(items, labels, probabilities, class_names, limit=20):
    """A Markdown table of the wrong predictions the model was surest about.

    Args:
        items (Sequence[str] | dict[int, str]): what to show per example (a sentence, an id, a file name),
            or only the examples at `mistake_positions`, by position.
        labels (np.ndarray): true class indices, shape (n,).
        probabilities (np.ndarray): predicted class probabilities, shape (n, k).
        class_names (list[str]): the k class names.
        limit (int): rows in the table.

    Returns:
        str: the table (a header and a note when there is no mistake).
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype="float64")
    predictions = probabilities.argmax(axis=1)
    wrong = mistake_positions(labels, probabilities, limit)
    lines = ["| confidence | predicted | true | example |", "|---|---|---|---|"]
    for index in wrong:
        shown = str(items[index]).replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {probabilities[index, predictions[index]]:.3f} | {class_names[predictions[index]]} | "
            f"{class_names[labels[index]]} | {shown[:300]} |"
        )
    if not len(wrong):
        lines.append("| | | | no mistakes on this split |")
    return "\n".join(lines) + "\n"


def mistake_positions(labels, probabilities, limit=20):
    """Returns:
    np.ndarray: the positions of the `limit` wrong predictions the model was surest about, surest first
    (the rows of `confident_mistakes`, so that a streamed split decodes only those examples).
    """
    probabilities = np.asarray(probabilities, dtype="float64")
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != np.asarray(labels))
    return wrong[np.argsort(-probabilities[wrong, predictions[wrong]])][:limit]


def normalize_for_bleu(text):
    """Lower-cases and removes punctuation (Unicode category P*), collapsing spaces.

    The normalisation of the keras-io translation recipe's references, so scores are comparable.
    """
    import unicodedata

    kept = "".join(" " if unicodedata.category(character).startswith("P") else character for character in text.lower())
    return " ".join(kept.split())


def translation(hypotheses, references):
    """sacreBLEU and chrF (the sacrebleu library) on raw and on normalised text.

    Args:
        hypotheses (list[str]): system outputs, detokenised.
        references (list[str]): one reference per hypothesis.

    Returns:
        dict[str, float]: bleu, chrf, and bleu_normalized, chrf_normalized (both sides lower-cased,
        punctuation removed: see `normalize_for_bleu`).
    """
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references; give one each.")
    normalized_hypotheses = [normalize_for_bleu(text) for text in hypotheses]
    normalized_references = [normalize_for_bleu(text) for text in references]
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
        "bleu_normalized": sacrebleu.corpus_bleu(normalized_hypotheses, [normalized_references]).score,
        "chrf_normalized": sacrebleu.corpus_chrf(normalized_hypotheses, [normalized_references]).score,
    }


def require_both_classes(labels, split="validation"):
    """Checks that a split of a binary task holds both classes: the classical baseline learns from training, a
    decision threshold is chosen on validation, and test's ROC and precision-recall curves are undefined without
    positives and negatives.

    Args:
        labels (array-like): the split's 0/1 labels.
        split (str): "train", "validation" or "test", named in the message.

    Raises:
        ValueError: a single class (or none).
    """
    found = np.unique(np.asarray(labels).reshape(-1))
    if len(found) < 2:
        raise ValueError(
            f"the {split} split needs both classes, but its {np.size(labels)} example(s) hold "
            f"{'only class ' + str(found[0]) if len(found) else 'none'}; add data or raise "
            f"{'max_examples (0 keeps all)' if split == 'train' else split + '_fraction'}."
        )


def choose_threshold(
    labels, scores, cost_false_negative=1.0, cost_false_positive=1.0, target_precision=0.0, target_recall=0.0
):
    """Chooses a decision threshold on validation data (never on test).

    With a target precision, the lowest threshold reaching it (the most recall at that precision);
    with a target recall, the highest threshold reaching it (the most precision at that recall);
    otherwise the threshold with the lowest expected cost `cost_fn * misses + cost_fp * false alarms`.

    Args:
        labels (np.ndarray): true 0/1 labels, shape (n,).
        scores (np.ndarray): predicted probabilities of class 1, shape (n,).
        cost_false_negative (float): cost of one missed positive (a fraud let through).
        cost_false_positive (float): cost of one false alarm.
        target_precision (float): 0 = unused; else in (0, 1].
        target_recall (float): 0 = unused; else in (0, 1].

    Returns:
        tuple[float, str]: the threshold (flag when score >= threshold) and how it was chosen.

    Raises:
        ValueError: labels with a single class, or both targets set.
    """
    from sklearn import metrics

    labels, scores = np.asarray(labels).reshape(-1), np.asarray(scores, dtype="float64").reshape(-1)
    require_both_classes(labels)
    if target_precision and target_recall:
        raise ValueError("set target_precision or target_recall, not both.")
    if target_precision or target_recall:
        precision, recall, thresholds = metrics.precision_recall_curve(labels, scores)
        precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
        if target_precision:
            reached = np.flatnonzero(precision >= target_precision)
            if reached.size:
                return float(thresholds[reached[0]]), f"lowest threshold with precision >= {target_precision}"
            return float(thresholds[np.argmax(precision)]), f"precision {target_precision} unreachable: max precision"
        reached = np.flatnonzero(recall >= target_recall)
        return float(thresholds[reached[-1]]), f"highest threshold with recall >= {target_recall}"
    false_positive_rate, true_positive_rate, thresholds = metrics.roc_curve(labels, scores, drop_intermediate=False)
    positives, negatives = labels.sum(), len(labels) - labels.sum()
    cost = (
        cost_false_negative * (1 - true_positive_rate) * positives
        + cost_false_positive * false_positive_rate * negatives
    )
    best = int(np.argmin(cost))
    threshold = min(float(thresholds[best]), 1.0)  # roc_curve's first threshold is inf: flag nothing
    return threshold, f"minimum expected cost (miss {cost_false_negative}, false alarm {cost_false_positive})"


def binary_detection(
    labels, scores, threshold, cost_false_negative=1.0, cost_false_positive=1.0, fixed_precision=0.9, baselines=None
):
    """Rare-event detection metrics at a chosen threshold, with curves and a threshold table.

    Args:
        labels (np.ndarray): true 0/1 labels, shape (n,).
        scores (np.ndarray): predicted probabilities of class 1, shape (n,).
        threshold (float): flag when score >= threshold (chosen on validation data).
        cost_false_negative (float): cost of one miss, for `expected_cost` (mean cost per example).
        cost_false_positive (float): cost of one false alarm.
        fixed_precision (float): reports `recall_at_precision` (the best recall with at least this precision).
        baselines (dict[str, np.ndarray] | None): other models' scores on the same examples; their
            PR-AUC / ROC-AUC are logged as `<name>_pr_auc`, `<name>_roc_auc` and drawn beside ours.

    Returns:
        Evaluation: metrics pr_auc (primary), roc_auc, precision, recall, f1, recall_at_precision,
        expected_cost, threshold, positives; figures pr_curve, roc_curve, confusion_matrix;
        text threshold_table.csv.

    Raises:
        ValueError: the labels hold a single class (no curve can be drawn).
    """
    from sklearn import metrics

    labels, scores = np.asarray(labels).reshape(-1), np.asarray(scores, dtype="float64").reshape(-1)
    if len(np.unique(labels)) < 2:
        raise ValueError(
            "the test split holds a single class, so PR-AUC is undefined; use more data or a larger test_fraction."
        )
    flagged = scores >= threshold
    precision, recall, _ = metrics.precision_recall_curve(labels, scores)
    results = {
        "pr_auc": metrics.average_precision_score(labels, scores),
        "roc_auc": metrics.roc_auc_score(labels, scores),
        "precision": metrics.precision_score(labels, flagged, zero_division=0),
        "recall": metrics.recall_score(labels, flagged, zero_division=0),
        "f1": metrics.f1_score(labels, flagged, zero_division=0),
        "recall_at_precision": float(recall[precision >= fixed_precision].max(initial=0.0)),
        "expected_cost": _cost(labels, flagged, cost_false_negative, cost_false_positive),
        "threshold": threshold,
        "positives": labels.sum(),
    }
    pr_lines, roc_lines = [("model", recall, precision)], []
    false_positive_rate, true_positive_rate, _ = metrics.roc_curve(labels, scores)
    roc_lines.append(("model", false_positive_rate, true_positive_rate))
    for name, other in (baselines or {}).items():
        other = np.asarray(other, dtype="float64").reshape(-1)
        results[f"{name}_pr_auc"] = metrics.average_precision_score(labels, other)
        results[f"{name}_roc_auc"] = metrics.roc_auc_score(labels, other)
        other_precision, other_recall, _ = metrics.precision_recall_curve(labels, other)
        other_false, other_true, _ = metrics.roc_curve(labels, other)
        pr_lines.append((name, other_recall, other_precision))
        roc_lines.append((name, other_false, other_true))
    rows = ["threshold,precision,recall,f1,false_positives,false_negatives,expected_cost"]
    for value in sorted({0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, round(threshold, 6)}):
        chosen = scores >= value
        rows.append(
            ",".join(
                str(round(float(number), 6))
                for number in (
                    value,
                    metrics.precision_score(labels, chosen, zero_division=0),
                    metrics.recall_score(labels, chosen, zero_division=0),
                    metrics.f1_score(labels, chosen, zero_division=0),
                    (chosen & (labels == 0)).sum(),
                    (~chosen & (labels == 1)).sum(),
                    _cost(labels, chosen, cost_false_negative, cost_false_positive),
                )
            )
        )
    matrix = metrics.confusion_matrix(labels, flagged, labels=[0, 1])
    figures = {
        "pr_curve": plots.curves(pr_lines, "recall", "precision", "precision-recall (test)"),
        "roc_curve": plots.curves(roc_lines, "false positive rate", "true positive rate", "ROC (test)", diagonal=True),
        "confusion_matrix": plots.confusion_matrix(matrix, ["negative", "positive"]),
    }
    return Evaluation(
        metrics={name: float(value) for name, value in results.items()},
        figures=figures,
        texts={"threshold_table.csv": "\n".join(rows) + "\n"},
        params={"decision_threshold": round(float(threshold), 6)},
    )


def _cost(labels, flagged, cost_false_negative, cost_false_positive):
    """Mean cost per example of the misses and false alarms of a flag vector."""
    misses = (~flagged & (labels == 1)).sum()
    false_alarms = (flagged & (labels == 0)).sum()
    return float(cost_false_negative * misses + cost_false_positive * false_alarms) / max(1, len(labels))


def regression(true, predicted):
    """RMSE, MAE and R^2 of a scalar regression.

    Args:
        true (np.ndarray): targets, shape (n,).
        predicted (np.ndarray): predictions, shape (n,) or (n, 1).

    Returns:
        Evaluation: metrics rmse, mae, r2 (r2 is omitted for fewer than two examples).
    """
    from sklearn import metrics

    true = np.asarray(true, dtype="float64").reshape(-1)
    predicted = np.asarray(predicted, dtype="float64").reshape(-1)
    results = {
        "rmse": float(np.sqrt(np.mean((predicted - true) ** 2))),
        "mae": float(np.mean(np.abs(predicted - true))),
    }
    if len(true) > 1:
        results["r2"] = float(metrics.r2_score(true, predicted))
    return Evaluation(metrics=results)


def pixel_confusion(masks, predicted, count):
    """Counts pixels per (true class, predicted class); sums over batches give the whole split's matrix.

    Args:
        masks (np.ndarray): true class indices, any shape (e.g. (n, h, w)).
        predicted (np.ndarray): predicted class indices, same shape.
        count (int): the number of classes.

    Returns:
        np.ndarray: (count, count) int64 matrix, rows true classes, columns predicted ones.
    """
    pairs = np.ravel(masks).astype("int64") * count + np.ravel(predicted).astype("int64")
    return np.bincount(pairs, minlength=count * count).reshape(count, count)


def segmentation(matrix, class_names):
    """Pixel accuracy, mean and per-class IoU and Dice, from a pixel confusion matrix.

    A class absent from both the truth and the prediction has no defined IoU; it is left out of the
    means (as keras MeanIoU does) and reported as "n/a" in the table.

    Args:
        matrix (np.ndarray): the pixel confusion matrix of `pixel_confusion`, summed over the split.
        class_names (list[str]): the k class names.

    Returns:
        Evaluation: metrics `pixel_accuracy`, `mean_iou`, `mean_dice`, `iou_<class>`, `dice_<class>`;
        a `per_class_iou.csv` table; a row-normalised pixel confusion-matrix figure.
    """
    true_positive = np.diag(matrix).astype("float64")
    truth, guessed = matrix.sum(axis=1), matrix.sum(axis=0)
    union = truth + guessed - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positive / union, np.nan)
        dice = np.where(truth + guessed > 0, 2 * true_positive / (truth + guessed), np.nan)
    results = {
        "pixel_accuracy": true_positive.sum() / max(1, matrix.sum()),
        "mean_iou": np.nanmean(iou),
        "mean_dice": np.nanmean(dice),
    }
    rows = ["class,iou,dice,true_pixels,predicted_pixels"]
    for index, name in enumerate(class_names):
        key = "".join(character if character.isalnum() else "_" for character in str(name).lower())
        if union[index] > 0:
            results[f"iou_{key}"], results[f"dice_{key}"] = iou[index], dice[index]
        shown = [f"{value:.4f}" if union[index] > 0 else "n/a" for value in (iou[index], dice[index])]
        rows.append(f"{name},{shown[0]},{shown[1]},{truth[index]},{guessed[index]}")
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.round(100 * matrix / np.maximum(1, truth[:, None]))  # percent of each true class
    return Evaluation(
        metrics={name: float(value) for name, value in results.items()},
        figures={"pixel_confusion_matrix_percent": plots.confusion_matrix(share, class_names)},
        texts={"per_class_iou.csv": "\n".join(rows) + "\n"},
    )


CALIBRATION_BINS = 15  # equal-width confidence bins: the usual choice since Guo et al. (2017), so ECEs compare


def calibration(labels, probabilities, bins=CALIBRATION_BINS):
    """Expected calibration error, Brier score and a reliability diagram of predicted class probabilities.

    Conventions: with two classes (one positive-class score per example, or two probability columns) the positive
    class's (label 1) probability is binned against the observed positive fraction, as a detection threshold reads
    it; with more classes the top-class confidence is binned against the accuracy of those predictions (Guo et al.
    2017). ECE is the example-weighted mean of |observed - mean probability| over `bins` equal-width bins of
    [0, 1], so 0 is perfect and 1 the worst. The Brier score is the mean squared error of the positive-class
    probability (binary, in [0, 1]) or of the whole probability vector against the one-hot label (multi-class,
    summed over classes: in [0, 2]).

    Args:
        labels (np.ndarray): true class indices (0/1 when binary), shape (n,).
        probabilities (np.ndarray): positive-class probabilities, shape (n,) or (n, 1), or class probabilities,
            shape (n, k).
        bins (int): equal-width probability bins.

    Returns:
        Evaluation: metrics `ece` and `brier`; a `reliability` figure (observed against predicted per non-empty
        bin, the diagonal being perfect calibration).
    """
    labels = np.asarray(labels).reshape(-1).astype("int64")
    probabilities = np.asarray(probabilities, dtype="float64")
    if probabilities.ndim == 1 or probabilities.shape[1] <= 2:
        confidence = probabilities.reshape(len(labels), -1)[:, -1]  # the last column is the positive class's
        observed = labels.astype("float64")
        brier = np.mean((confidence - observed) ** 2)
        axes = ("mean positive-class probability", "observed positive fraction")
    else:
        confidence = probabilities.max(axis=1)
        observed = (probabilities.argmax(axis=1) == labels).astype("float64")
        brier = np.mean(np.sum((probabilities - np.eye(probabilities.shape[1])[labels]) ** 2, axis=1))
        axes = ("mean top-class confidence", "accuracy")
    which = np.minimum((confidence * bins).astype("int64"), bins - 1)
    counts = np.bincount(which, minlength=bins)
    filled = counts > 0
    mean_confidence = np.bincount(which, confidence, bins)[filled] / counts[filled]
    mean_observed = np.bincount(which, observed, bins)[filled] / counts[filled]
    error = np.sum(counts[filled] * np.abs(mean_observed - mean_confidence)) / len(labels)
    figure = plots.curves(
        [(f"model (ECE {error:.3f})", mean_confidence, mean_observed)],
        *axes,
        f"reliability diagram ({bins} bins)",
        diagonal=True,
    )
    return Evaluation(metrics={"ece": float(error), "brier": float(brier)}, figures={"reliability": figure})


def ranking(recommended, relevant, k, catalogue_size):
    """Top-K ranking quality: HitRate@K, NDCG@K, MAP@K (binary relevance) and catalogue coverage.

    Args:
        recommended (np.ndarray): ranked item indices per user, best first, shape (users, >= k).
        relevant (list[set]): the held-out items of each user (an item never recommendable counts as a miss).
        k (int): list length scored.
        catalogue_size (int): number of recommendable items, for coverage.

    Returns:
        dict[str, float]: `hit_rate` (share of users with a relevant item in the top k), `ndcg`,
        `map` (average precision truncated at k, normalised by min(k, relevant items)) and `coverage`
        (share of the catalogue appearing in at least one top-k list).
    """
    if k <= 0:
        raise ValueError(f"K must be a positive list length, got {k}; set top_k to 10, say.")
    if not len(relevant):
        raise ValueError("ranking metrics need at least one user with held-out items; use more data.")
    top = np.asarray(recommended)[:, :k]
    hits = np.array([[item in wanted for item in row] for row, wanted in zip(top, relevant)], dtype="float64")
    counts = np.array([max(1, min(k, len(wanted))) for wanted in relevant], dtype="float64")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.array([discounts[: int(count)].sum() for count in counts])
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    return {
        "hit_rate": float(hits.any(axis=1).mean()),
        "ndcg": float(((hits * discounts).sum(axis=1) / ideal).mean()),
        "map": float(((precision_at * hits).sum(axis=1) / counts).mean()),
        "coverage": float(len(np.unique(top)) / max(1, catalogue_size)),
    }
