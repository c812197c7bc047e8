"""Baselines every run is measured against, and the rule that keeps a model that learned nothing out of @champion.

A task scores its model and its baselines with the same `Scorer`s on the same examples: a trivial baseline
(the majority class, the mean target, popularity, all background, copying the source) that any model must
clearly beat, and where one exists a classical one (TF-IDF + logistic regression, gradient-boosted trees)
that tells whether deep learning earns its place. `judge` compares them on the validation split (the test
split is reported, never chosen on) and says, in one `Verdict`, what to log, whether the model may become
champion and what to tell the user.
"""

import dataclasses
import functools
from collections.abc import Callable

import numpy as np

# classical baselines fit on at most this many training rows: their figures settle long before, and fits stay seconds
MAX_TRAINING_ROWS = 100_000
RESAMPLES = 500  # bootstrap resamples of the validation split: the 5th percentile of the gain settles by ~300
CONFIDENCE = 0.95  # one-sided: a gain is clear when 95% of resamples still show one


@dataclasses.dataclass(frozen=True)
class Scorer:
    """One figure a task reports, computable on any subset of a split's examples.

    Attributes:
        name (str): the metric's name, as the task's evaluation logs it (`accuracy`, `rmse`, `bleu`...).
        function (Callable): `(targets, outputs) -> float` on arrays indexed by example.
        higher_is_better (bool): the figure's direction.
        margin (float): the least gain that counts as clear: absolute, or with `relative` a share of the
            baseline's figure (error metrics, whose scale is the data's).
        relative (bool): `margin` is a share of the baseline's figure.
        statistics (Callable | None): for corpus figures (BLEU, chrF), `(targets, outputs) -> (n, s)` additive
            statistics per example, from whose column sums `function` computes the figure; the bootstrap then
            sums rows instead of rescoring every resample (500 corpus BLEUs took 30 s).
    """

    name: str
    function: Callable
    higher_is_better: bool = True
    margin: float = 0.02
    relative: bool = False
    statistics: Callable | None = None

    def __call__(self, targets, outputs):
        if self.statistics is not None:
            return float(self.function(np.asarray(self.statistics(targets, outputs)).sum(axis=0)))
        return float(self.function(targets, outputs))

    def gain(self, ours, theirs):
        """Returns:
        float: how much better `ours` is than `theirs` (negative when worse), in the metric's units.
        """
        return ours - theirs if self.higher_is_better else theirs - ours

    def needed(self, theirs):
        """Returns:
        float: the least gain over a baseline scoring `theirs` that counts as clear.
        """
        return self.margin * abs(theirs) if self.relative else self.margin


@dataclasses.dataclass
class Baseline:
    """A baseline's outputs on the validation and test examples, in the form the model's outputs take.

    Attributes:
        name (str): short and lower-case, used in metric names (`test_baseline_<name>_<metric>`).
        validation (object): outputs on the validation split, one row per example (None with `answer`).
        test (object): outputs on the test split (None with `answer`).
        answer (Callable | None): `targets -> outputs` for a baseline that answers without reading the inputs
            (the training class frequencies, the mean target): it then answers exactly the examples the model
            was scored on, even when some failed to decode.
        trivial (bool): a baseline that learns nothing about the inputs (the majority class, the mean,
            popularity...): a model that does not clearly beat it learned nothing and is never promoted.
        serves (str): how the task can serve this baseline when it wins (empty: it cannot).
        fitted (object): what the baseline fitted, for a task that serves it (fraud's trees).
    """

    name: str
    validation: object = None
    test: object = None
    answer: Callable | None = None
    trivial: bool = False
    serves: str = ""
    fitted: object = None

    def outputs(self, role, targets):
        """Returns:
            object: the baseline's outputs on the `role` split ("validation" or "test") whose targets are given.

        Raises:
            ValueError: the baseline answered another number of examples than the split has.
        """
        found = self.answer(targets) if self.answer is not None else getattr(self, role)
        if len(found) != len(targets):
            raise ValueError(
                f"the {self.name} baseline answered {len(found)} {role} examples, the model {len(targets)}"
            )
        return found


@dataclasses.dataclass
class Comparison:
    """The model against one baseline on one split.

    Attributes:
        baseline (str): the baseline's name.
        metric (str): the scorer's name.
        ours (float): the model's figure.
        theirs (float): the baseline's figure.
        gain (float): `ours` better than `theirs` by this much (negative: worse).
        lower (float): the gain's one-sided bootstrap lower bound (NaN when not resampled).
        upper (float): the gain's one-sided bootstrap upper bound (NaN when not resampled).
        needed (float): the least gain that counts as clear.
        examples (int): examples compared.
    """

    baseline: str
    metric: str
    ours: float
    theirs: float
    gain: float
    lower: float
    upper: float
    needed: float
    examples: int

    @property
    def clear(self):
        """bool: the model beats the baseline by at least `needed`, and the bootstrap agrees it is better."""
        return self.gain >= self.needed and self.lower > 0

    @property
    def worse(self):
        """bool: the baseline beats the model, and the bootstrap agrees (the mirror of `clear`, without a margin)."""
        return self.gain < 0 and self.upper < 0


def take(values, indices):
    """Rows `indices` of an array, or of a list (kept as an object array so strings and sets index too)."""
    if isinstance(values, np.ndarray):
        return values[indices]
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array[indices]


def compare(scorer, targets, ours, theirs, name="baseline", resamples=RESAMPLES, seed=0):
    """Scores the model and a baseline on the same examples, with a paired bootstrap of the gain.

    Both are scored on the same resampled examples each time (Koehn 2004's paired bootstrap), so their
    shared difficulty cancels and the interval measures only the gain.

    Args:
        scorer (Scorer): the figure.
        targets (object): the examples' targets (array or list, one row per example).
        ours (object): the model's outputs.
        theirs (object): the baseline's outputs.
        name (str): the baseline's name.
        resamples (int): bootstrap resamples (0: none; the bound is then NaN and no gain counts as clear).
        seed (int): the resampling seed.

    Returns:
        Comparison
    """
    mine, other = scorer(targets, ours), scorer(targets, theirs)
    gains = np.array([scorer.gain(*pair) for pair in resampled(scorer, targets, [ours, theirs], resamples, seed)])
    gains = gains[np.isfinite(gains)]
    lower = float(np.quantile(gains, 1 - CONFIDENCE)) if gains.size else float("nan")
    upper = float(np.quantile(gains, CONFIDENCE)) if gains.size else float("nan")
    return Comparison(
        name, scorer.name, mine, other, scorer.gain(mine, other), lower, upper, scorer.needed(other), len(targets)
    )


def resampled(scorer, targets, outputs, resamples=RESAMPLES, seed=0):
    """The figure of each of `outputs` on the same bootstrap resamples of the examples (a paired bootstrap).

    Args:
        scorer (Scorer): the figure.
        targets (object): the examples' targets (array or list, one row per example).
        outputs (list): one set of outputs per model or baseline, each one row per example.
        resamples (int): bootstrap resamples (none for fewer than two examples).
        seed (int): the resampling seed.

    Returns:
        list[list[float]]: per informative resample, one figure per entry of `outputs` (resamples missing a class
        the metric needs, such as AUC's, are skipped).
    """
    count = len(targets)
    if scorer.statistics is not None:  # resample additive statistics, each example's computed once
        rows = [np.asarray(scorer.statistics(targets, output)) for output in outputs]

        def figures(chosen):
            return [float(scorer.function(row[chosen].sum(axis=0))) for row in rows]
    else:

        def figures(chosen):
            picked = take(targets, chosen)
            return [scorer(picked, take(output, chosen)) for output in outputs]

    found = []
    generator = np.random.default_rng(seed)
    for _ in range(resamples if count > 1 else 0):
        try:
            found.append(figures(generator.integers(0, count, count)))
        except ValueError:  # a resample missing a class the metric needs (AUC of one class): not informative
            continue
    return found


def interval(scorer, targets, outputs, resamples=RESAMPLES, seed=0):
    """A two-sided 95% percentile-bootstrap interval of `scorer`'s figure of `outputs`.

    Returns:
        tuple[float, float]: the lower and upper bounds; NaN where nothing could be resampled.
    """
    figures = np.array([row[0] for row in resampled(scorer, targets, [outputs], resamples, seed)])
    figures = figures[np.isfinite(figures)]
    if not figures.size:
        return float("nan"), float("nan")
    return float(np.quantile(figures, 0.025)), float(np.quantile(figures, 0.975))


@dataclasses.dataclass
class Verdict:
    """What the baselines say about a trained model.

    Attributes:
        metrics (dict[str, float]): test figures of each baseline, `baseline_<name>_<metric>` (logged with the
            `test_` prefix beside the model's).
        validation (dict[str, float]): the validation figures the decision used, logged as they are: the model's
            `validation_<metric>`, each baseline's `baseline_<name>_validation_<metric>` and the model's gain over
            it, `..._gain`, with its bootstrap bounds `..._gain_lower` and `..._gain_upper` (5th and 95th
            percentiles).
        refusal (str): why the model must not become champion (empty when it may).
        warnings (list[str]): lines for the user: a useless model, a classical baseline that beats it.
        summary (str): one line: the model's test figure against each baseline's.
        comparisons (list[Comparison]): the validation comparisons, trivial baselines first.
        scorers (list[Scorer]): the task's figures; the first decided.
    """

    metrics: dict
    validation: dict
    scorers: list = dataclasses.field(default_factory=list)
    refusal: str = ""
    warnings: list = dataclasses.field(default_factory=list)
    summary: str = ""
    comparisons: list = dataclasses.field(default_factory=list)

    @property
    def tags(self):
        """dict[str, str]: the run's tags: whether the model passed the gate, and which baselines beat it (none
        when nothing was compared)."""
        if not (self.comparisons or self.refusal):
            return {}
        beaten_by = [item.baseline for item in self.comparisons if item.worse]
        return {
            "baseline_gate": "failed" if self.refusal else "passed",
            "baseline_gate_reason": self.refusal or "beats every trivial baseline clearly on validation",
            **({"baselines_better_than_model": ",".join(beaten_by)} if beaten_by else {}),
        }


def judge(scorers, baselines, validation, test, remedies="", seed=0, resamples=RESAMPLES, primary=""):
    """Compares a trained model with its baselines: test figures to report, the validation gate, warnings.

    Args:
        scorers (list[Scorer]): the task's figures; the first decides (the gate metric).
        baselines (list[Baseline]): outputs of each baseline on validation and test.
        validation (tuple): `(targets, outputs)` of the model on the validation split.
        test (tuple): `(targets, outputs)` of the model on the test split.
        remedies (str): what to try when the model learned nothing, for the warning.
        seed (int): the bootstrap seed.
        resamples (int): bootstrap resamples.
        primary (str): the task's primary metric, whose test figure gets an interval beside the gate's.

    Returns:
        Verdict
    """
    gate = scorers[0]
    metrics, figures, comparisons, summary = {}, {}, [], []
    test_targets, test_ours = test
    validation_targets, validation_ours = validation
    ours = gate(test_targets, test_ours)
    # the uncertainty of the figures people read first, which the model card shows beside them; only these two,
    # since a multi-class ROC-AUC takes ~25 ms per resample of 6,000 examples
    for scorer in [gate, *(item for item in scorers[1:] if item.name == primary)]:
        try:
            bounds = dict(zip(("_lower", "_upper"), interval(scorer, test_targets, test_ours, resamples, seed)))
        except ValueError:  # undefined on this split (AUC of one class)
            continue
        metrics.update({f"{scorer.name}{suffix}": value for suffix, value in bounds.items() if np.isfinite(value)})
    if len(validation_targets):
        for scorer in scorers:
            try:
                figures[f"validation_{scorer.name}"] = scorer(validation_targets, validation_ours)
            except ValueError:  # undefined on this split (AUC of one class)
                continue
    for baseline in sorted(baselines, key=lambda item: not item.trivial):
        theirs = baseline.outputs("test", test_targets)
        for scorer in scorers:
            try:
                metrics[f"baseline_{baseline.name}_{scorer.name}"] = scorer(test_targets, theirs)
            except ValueError:  # a figure undefined on this split (AUC of one class)
                continue
        figure = metrics.get(f"baseline_{baseline.name}_{gate.name}", float("nan"))
        summary.append(f"{baseline.name} {figure:.4f} ({gate.gain(ours, figure):+.4f})")
        if len(validation_targets):
            found = compare(
                gate,
                validation_targets,
                validation_ours,
                baseline.outputs("validation", validation_targets),
                baseline.name,
                resamples,
                seed,
            )
            comparisons.append(found)
            figures[f"baseline_{baseline.name}_validation_{gate.name}"] = found.theirs
            bounds = {"": found.gain, "_lower": found.lower, "_upper": found.upper}
            # the gate's evidence as figures, for the model card; bounds are NaN when nothing was resampled
            figures.update(
                {
                    f"baseline_{baseline.name}_validation_{gate.name}_gain{suffix}": value
                    for suffix, value in bounds.items()
                    if np.isfinite(value)
                }
            )
    verdict = Verdict(metrics=metrics, validation=figures, scorers=list(scorers), comparisons=comparisons)
    if summary:
        verdict.summary = f"test {gate.name} {ours:.4f} against baselines {', '.join(summary)}"
    trivial = {baseline.name for baseline in baselines if baseline.trivial}
    failed = [item for item in comparisons if item.baseline in trivial and not item.clear]
    if trivial and not len(validation_targets):
        verdict.refusal = "no validation examples to tell the model from its trivial baselines"
        verdict.warnings.append(f"{verdict.refusal}; it is registered but not promoted.")
    elif failed:
        item = failed[0]
        verdict.refusal = (
            f"validation {gate.name} {item.ours:.4f} does not clearly beat the {item.baseline} "
            f"baseline's {item.theirs:.4f} (gain {item.gain:+.4f}, 95% lower bound {item.lower:+.4f} "
            f"over {item.examples} validation examples; needs >= {item.needed:.4f} and a lower bound "
            "above 0)"
        )
        verdict.warnings.append(
            f"the model learned no more than the {item.baseline} baseline (validation {gate.name} {item.ours:.4f} "
            f"vs {item.theirs:.4f}); it is registered but not promoted. {remedies}".strip()
        )
    for item in comparisons:
        if item.baseline not in trivial and item.worse:
            serves = next(baseline.serves for baseline in baselines if baseline.name == item.baseline)
            verdict.warnings.append(
                f"the {item.baseline} baseline beats the model on validation ({gate.name} {item.theirs:.4f} vs "
                f"{item.ours:.4f}). {serves or 'Try --preset balanced, more epochs or more data.'}"
            )
    return verdict


def chooser(scorers, primary):
    """Returns:
    Scorer | None: the figure that chooses between configurations on validation: the task's primary metric
    when a scorer computes it (what `compare` ranks runs by), else the gate's (None without scorers).
    """
    return next((scorer for scorer in scorers if scorer.name == primary), scorers[0] if scorers else None)


def prior(train_labels, classes):
    """The majority baseline's `answer`: every example gets the training class frequencies as probabilities,
    so its argmax is the majority class and its ranking carries no information (ROC-AUC 0.5).

    Args:
        train_labels (np.ndarray): integer class labels of the training split.
        classes (int): how many classes (a 2-column answer for binary detectors is sliced by the caller).

    Returns:
        Callable: targets -> (len(targets), classes) probabilities.
    """
    frequencies = np.bincount(np.asarray(train_labels, "int64"), minlength=classes).astype("float64")
    frequencies /= max(1.0, frequencies.sum())
    return lambda targets: np.tile(frequencies, (len(targets), 1))


def constant(value):
    """Returns:
    Callable: targets -> `value` for every example (the mean target, the positive rate).
    """
    return lambda targets: np.full(len(targets), float(value))


def tfidf_logistic(train_texts, train_labels, texts, validation_labels, classes):
    """TF-IDF word and bigram features with a logistic regression: the classical text classifier.

    Args:
        train_texts (list[str]): training texts.
        train_labels (np.ndarray): their integer labels.
        texts (dict[str, list[str]]): texts to answer by role ("validation", "test").
        validation_labels (np.ndarray): labels of `texts["validation"]`, to choose the regularisation on.
        classes (int): how many classes the task has.

    Returns:
        dict[str, np.ndarray]: (n, classes) probabilities by role.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    # sublinear counts and bigrams: the strong linear text baseline of Wang & Manning (2012)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=500_000)
    try:
        features = vectorizer.fit_transform(train_texts)
    except ValueError:  # no word occurs twice: fall back to every word
        vectorizer = TfidfVectorizer(sublinear_tf=True)
        features = vectorizer.fit_transform(train_texts)
    return logistic(
        features,
        train_labels,
        {role: vectorizer.transform(values) for role, values in texts.items()},
        validation_labels,
        classes,
    )


def logistic(train_features, train_labels, features, validation_labels, classes):
    """A logistic regression whose regularisation is chosen on the validation log-loss among a few strengths.

    Args:
        train_features (np.ndarray | scipy.sparse matrix): training rows (standardise dense ones first).
        train_labels (np.ndarray): their integer labels.
        features (dict[str, matrix]): rows to answer by role; "validation" chooses the strength.
        validation_labels (np.ndarray): labels of `features["validation"]`.
        classes (int): how many classes the task has (absent ones get probability 0).

    Returns:
        dict[str, np.ndarray]: (n, classes) probabilities by role.
    """
    from sklearn import linear_model, metrics

    train_labels = np.asarray(train_labels, "int64")
    best = None
    for strength in (0.25, 1.0, 4.0, 16.0):  # C: from strong to weak regularisation
        model = linear_model.LogisticRegression(C=strength, max_iter=500)
        model.fit(train_features, train_labels)
        answers = {
            role: _columns(model.predict_proba(rows), model.classes_, classes) for role, rows in features.items()
        }
        loss = metrics.log_loss(validation_labels, np.clip(answers["validation"], 1e-7, 1), labels=range(classes))
        if best is None or loss < best[0]:
            best = loss, answers
    return best[1]


def gradient_boosting(train_features, train_targets, features, regression=False, seed=0):
    """scikit-learn's HistGradientBoosting on a table: the classical baseline of tabular and summary features.

    Args:
        train_features (np.ndarray): training rows.
        train_targets (np.ndarray): their targets (values, or 0/1 labels).
        features (dict[str, np.ndarray]): rows to answer by role.
        regression (bool): predict values; otherwise the positive class's probability.
        seed (int): the trees' seed.

    Returns:
        dict[str, np.ndarray]: (n,) predictions by role.
    """
    from sklearn import ensemble

    # early stopping on an internal 10% holds the trees back from memorising small tables
    kind = ensemble.HistGradientBoostingRegressor if regression else ensemble.HistGradientBoostingClassifier
    model = kind(early_stopping=True, random_state=seed).fit(train_features, train_targets)
    if regression:
        return {role: model.predict(rows) for role, rows in features.items()}
    return {role: model.predict_proba(rows)[:, -1] for role, rows in features.items()}


def _columns(probabilities, present, classes):
    """Spreads a classifier's columns (for the classes it saw) over all of the task's classes."""
    full = np.zeros((len(probabilities), classes))
    full[:, np.asarray(present, "int64")] = probabilities
    return full


def _labels_and_scores(labels, outputs):
    """Integer labels and an (n, k) score matrix (a 1-d score is the positive class's probability)."""
    labels = np.asarray(labels).astype("int64")
    scores = np.asarray(outputs, dtype="float64")
    return labels, (np.stack([1 - scores, scores], axis=1) if scores.ndim == 1 else scores)


def _accuracy(labels, outputs):
    labels, scores = _labels_and_scores(labels, outputs)
    return np.mean(scores.argmax(axis=1) == labels)


def _balanced_accuracy(labels, outputs):
    """The mean recall over the classes present (scikit-learn's definition): 1/k for any constant answer."""
    labels, scores = _labels_and_scores(labels, outputs)
    predicted = scores.argmax(axis=1)
    return np.mean([np.mean(predicted[labels == label] == label) for label in np.unique(labels)])


# The AUCs are written out in numpy, not called from scikit-learn: the bootstrap scores them hundreds of times
# per run (the gate, intervals, slices), and scikit-learn's checks cost ~3 ms a call on 6,000 examples, ten
# times the arithmetic. Each equals scikit-learn's figure, ties included (tests/test_baselines.py).


def _binary_roc_auc(positive, scores):
    """The Mann-Whitney form of ROC-AUC: the chance that a positive outscores a negative, ties counting half."""
    from scipy import stats

    ranks = stats.rankdata(scores)
    count = positive.sum()
    return (ranks[positive].sum() - count * (count + 1) / 2) / (count * (len(scores) - count))


def _roc_auc(labels, outputs):
    """ROC-AUC of the positive class, or the macro mean over the classes present (one against the rest)."""
    labels, scores = _labels_and_scores(labels, outputs)
    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError("ROC-AUC needs two classes among the examples")
    if scores.shape[1] == 2:
        return _binary_roc_auc(labels == 1, scores[:, 1])
    return np.mean([_binary_roc_auc(labels == label, scores[:, label]) for label in present])


def _pr_auc(labels, outputs):
    """Average precision of the positive class (binary scores): the precision at each distinct score, weighted
    by the recall it adds (scikit-learn's `average_precision_score`)."""
    labels, scores = _labels_and_scores(labels, outputs)
    if len(np.unique(labels)) < 2:
        raise ValueError("PR-AUC needs positives and negatives among the examples")
    order = np.argsort(-scores[:, 1], kind="stable")
    ordered, hits = scores[order, 1], labels[order] == 1
    last = np.r_[np.flatnonzero(np.diff(ordered)), len(ordered) - 1]  # each distinct score's last example
    true_positives = np.cumsum(hits)[last]
    precision, recall = true_positives / (last + 1), true_positives / true_positives[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _rmse(targets, predicted):
    return np.sqrt(np.mean((np.asarray(predicted, "float64").reshape(-1) - np.asarray(targets, "float64")) ** 2))


def _mae(targets, predicted):
    return np.mean(np.abs(np.asarray(predicted, "float64").reshape(-1) - np.asarray(targets, "float64")))


def _hit_rate(relevant, lists):
    """The share of users whose list holds one of their held-out items (`relevant`: a set per user)."""
    return np.mean([bool(set(np.asarray(row).tolist()) & wanted) for row, wanted in zip(lists, relevant)])


def _mean_iou(_, confusions):
    """Mean IoU over the classes present in truth or prediction, from per-example pixel confusion matrices."""
    matrix = np.sum(np.stack(list(confusions)), axis=0).astype("float64")
    overlap = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - overlap
    return np.mean(overlap[union > 0] / union[union > 0])


@functools.cache
def _sacrebleu(kind):
    from sacrebleu import metrics

    return {"bleu": metrics.BLEU, "chrf": metrics.CHRF}[kind]()


def _corpus(kind):
    """sacreBLEU's BLEU or chrF as per-sentence statistics and the figure of their sums: a corpus score is computed
    from summed statistics, so the two give exactly `corpus_bleu` / `corpus_chrf`."""

    def statistics(references, hypotheses):
        return np.array(_sacrebleu(kind)._extract_corpus_statistics(list(hypotheses), [list(references)]), "float64")

    def figure(summed):
        return _sacrebleu(kind)._compute_score_from_stats(list(summed)).score

    return Scorer(kind, figure, margin=1.0, statistics=statistics)


# The clear margins: 0.02 of a [0, 1] figure is about one example in fifty; error figures take a share of the
# baseline's error, since their scale is the data's; a BLEU point is the smallest gain papers report.
ACCURACY = Scorer("accuracy", _accuracy)
BALANCED_ACCURACY = Scorer("balanced_accuracy", _balanced_accuracy)
ROC_AUC = Scorer("roc_auc", _roc_auc)
PR_AUC = Scorer("pr_auc", _pr_auc)
RMSE = Scorer("rmse", _rmse, higher_is_better=False, margin=0.05, relative=True)
MAE = Scorer("mae", _mae, higher_is_better=False, margin=0.05, relative=True)
HIT_RATE = Scorer("hit_rate_at_k", _hit_rate, margin=0.05, relative=True)
MEAN_IOU = Scorer("mean_iou", _mean_iou)
BLEU = _corpus("bleu")
CHRF = _corpus("chrf")
