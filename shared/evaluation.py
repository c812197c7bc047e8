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
    """

    metrics: dict
    figures: dict = dataclasses.field(default_factory=dict)
    texts: dict = dataclasses.field(default_factory=dict)


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
        results["pr_auc"] = metrics.average_precision_score(one_hot[:, scored], probabilities[:, scored],
                                                            average="macro")
        for index in scored[:20]:  # more curves than this are unreadable on one axis
            false_positive, true_positive, _ = metrics.roc_curve(one_hot[:, index], probabilities[:, index])
            precision, recall, _ = metrics.precision_recall_curve(one_hot[:, index], probabilities[:, index])
            roc_lines.append((class_names[index], false_positive, true_positive))
            pr_lines.append((class_names[index], recall, precision))
    matrix = metrics.confusion_matrix(labels, predictions, labels=indices)
    figures = {"confusion_matrix": plots.confusion_matrix(matrix, class_names)}
    if roc_lines:
        figures["roc_curve"] = plots.curves(roc_lines, "false positive rate", "true positive rate", "ROC",
                                            diagonal=True)
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
