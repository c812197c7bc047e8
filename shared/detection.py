"""Binary detectors on tables (fraud detection, failure prediction): loss, class weights, the
validation-chosen threshold and its evaluation, and the check of raw rows for prediction.
"""

import json
import warnings

import numpy as np


def binary_loss(config):
    """Binary cross-entropy, or focal loss when `config.focal_gamma` > 0 ."""
    import keras

    if config.focal_gamma:
        return keras.losses.BinaryFocalCrossentropy(gamma=config.focal_gamma)
    return keras.losses.BinaryCrossentropy()


def balanced_weights(labels):
    """Balanced class weights `n / (2 * count)` for 0/1 labels."""
    counts = np.bincount(np.asarray(labels, dtype="int64"), minlength=2)
    return {index: float(counts.sum() / (2 * max(1, count))) for index, count in enumerate(counts)}


def evaluate_detector(model, splits, config, baseline_scores=None):
    """Chooses the threshold on validation, scores the test split and stores the threshold for the predictor.

    Args:
        model (keras.Model): a model with one sigmoid output.
        splits (Splits): the data; `splits.info["threshold"]` and `["threshold_rule"]` are updated.
        config: uses the cost, target precision/recall, fixed precision and batch size fields.
        baseline_scores (np.ndarray | None): a baseline's test scores, logged as `baseline_hgb_*`.

    Returns:
        Evaluation
    """
    from sklearn import metrics

    from shared import evaluation

    validation_scores = model.predict(splits.validation.features, batch_size=1024, verbose=0).reshape(-1)
    threshold, rule = evaluation.choose_threshold(
        splits.validation.targets, validation_scores, config.cost_false_negative, config.cost_false_positive,
        config.target_precision, config.target_recall)
    splits.info.update(threshold=threshold, threshold_rule=rule)
    test_scores = model.predict(splits.test.features, batch_size=1024, verbose=0).reshape(-1)
    result = evaluation.binary_detection(
        splits.test.targets, test_scores, threshold, config.cost_false_negative, config.cost_false_positive,
        config.fixed_precision, baselines=None if baseline_scores is None else {"baseline_hgb": baseline_scores})
    # validation PR-AUC lets settings be compared without looking at the test split
    result.metrics["validation_pr_auc"] = float(metrics.average_precision_score(splits.validation.targets, validation_scores))
    if baseline_scores is not None:
        result.metrics["pr_auc_minus_baseline"] = result.metrics["pr_auc"] - result.metrics["baseline_hgb_pr_auc"]
    result.texts["threshold.txt"] = f"threshold {threshold:.6f} chosen on the validation split: {rule}\n"
    return result


def check_records(inputs, spec, ignored):
    """Parses raw rows (dicts or JSON object strings) and checks their columns against the training columns.

    Raises:
        ValueError: a row that is not an object, or a row missing feature columns (named).
    """
    expected = [item["name"] for item in spec["numeric"] + spec["categorical"]]
    records, unexpected = [], set()
    for position, raw in enumerate(inputs):
        record = parse_json(raw, position) if isinstance(raw, str) and raw.lstrip().startswith("{") else raw
        if not isinstance(record, dict):
            raise ValueError(f"predict input {position + 1} must be a row (a JSON object or CSV row), "
                             f"got {type(record).__name__}: {str(record)[:80]}.")
        missing = [column for column in expected if column not in record]
        if missing:
            raise ValueError(f"predict input {position + 1} lacks column(s) {missing}; a row needs {expected}.")
        unexpected |= set(record) - set(expected) - set(ignored)
        records.append({column: record[column] for column in expected})
    if unexpected:
        warnings.warn(f"ignoring column(s) the model was not trained on: {sorted(unexpected)}", stacklevel=2)
    return records


def parse_json(raw, position):
    """Parses one predict input sent as JSON text (other values are returned as they are).

    Raises:
        ValueError: not valid JSON, or nested too deeply to parse; the message names the input.
    """
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"predict input {position + 1} is not valid JSON ({str(error)[:80]}).") from None
