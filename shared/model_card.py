"""A run's model card: Markdown built only from what the run logged, so no sentence can go stale.

`render` reads plain values: the task's declared attributes (`TaskFacts`) and what `shared.tracking.logged_run`
returns for a run (params, metrics, tags, dataset inputs, artifact paths, epochs logged). Every sentence states a
logged figure or tag; a figure the run did not log leaves its sentence (or its whole section) out.

Sections that later work fills appear only when a run logged their figures, by name:

- Slices: metrics `test_slice_<slice>_<metric>`, with `test_slice_<slice>_examples` counting each slice's examples
  (a slice under `SMALL_SLICE` examples is named under Limitations) and `test_slice_gap_<metric>` the gap between
  the best and worst slice.
- Calibration: metrics `test_ece`, `test_brier` or `test_calibration_*`, plot `plots/reliability.png`.
- Robustness: metrics `test_robust_*`.
- Explanations: artifacts under `plots/explain/`.

A figure `X` with `X_lower` and `X_upper` logged beside it is shown with that interval.
"""

import dataclasses
import math
import re

FILE = "model_card.md"  # the card's artifact name in its run
SMALL_SLICE = 30  # a slice with fewer test examples gives a figure whose standard error exceeds ~0.09
IMBALANCE = 0.1  # a class with at most this share of the test examples is named under Limitations
# (title, metric prefixes, artifact prefixes) of the sections that appear only when a run logged their figures
OPTIONAL_SECTIONS = (
    ("Slices", ("test_slice_",), ()),
    ("Calibration", ("test_ece", "test_brier", "test_calibration_"), ("plots/reliability",)),
    ("Robustness", ("test_robust_",), ()),
    ("Explanations", (), ("plots/explain/",)),
)
INTERVAL = ("_lower", "_upper")
ROLES = (("training", "training"), ("validation", "validation"), ("testing", "test"))  # examples.<tag> -> wording


@dataclasses.dataclass(frozen=True)
class TaskFacts:
    """What a task declares about itself, as plain values (`shared` cannot import `tasks`).

    Attributes:
        name (str): the task's name (also its registered model's).
        description (str): its one-line description.
        primary_metric (str): the metric runs are compared by, without the `test_` prefix.
        higher_is_better (bool): the primary metric's direction.
        input_kind (str): what one raw input is: "text", "file" or "record".
        input_column (str): the column holding raw inputs for the logged model.
    """

    name: str
    description: str
    primary_metric: str
    higher_is_better: bool
    input_kind: str
    input_column: str


def merge(chosen, parent):
    """What a portfolio's or sweep's run logged over what the run it chose logged: the chosen run's data,
    training and artifacts, under the parent's own run id, name, params, metrics and tags.

    Args:
        chosen (dict): the chosen run's `shared.tracking.logged_run`.
        parent (dict): the parent run's.

    Returns:
        dict: in `logged_run`'s form.
    """
    merged = dict(chosen, run_id=parent["run_id"], run_name=parent["run_name"])
    for key in ("params", "metrics", "tags", "artifacts"):
        merged[key] = {**chosen[key], **parent[key]}
    return merged


def number(value):
    """A logged figure as the card prints it: whole numbers (counts) without decimals, others to 4 decimals."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.4f}"


def signed(value):
    """A gain as the card prints it, with its sign."""
    return f"{float(value):+.4f}"


def render(task, logged, small_validation):
    """The model card of one run, in Markdown.

    Args:
        task (TaskFacts): the run's task.
        logged (dict): what the run logged, as `shared.tracking.logged_run` returns it: `run_id`, `run_name`,
            `params`, `metrics`, `tags` (dicts of strings and floats), `datasets` (list of dicts with `context`,
            `name`, `digest`, `examples`), `artifacts` (path in the run -> artifact URI) and `epochs` (epochs
            whose training loss was logged).
        small_validation (int): fewer validation examples than this are named under Limitations (the runner's
            `SMALL_VALIDATION`).

    Returns:
        str: the card.
    """
    metrics, tags = logged.get("metrics", {}), logged.get("tags", {})
    sections = [
        f"# Model card: {task.name}, run {logged.get('run_name') or logged['run_id']}\n\n"
        f"Built from what run `{logged['run_id']}` logged.",
        _task(task, tags),
        _data(logged, tags),
        _test_metrics(task, metrics),
        _baselines(metrics, tags),
        _training(logged, metrics, tags),
        *(_optional(title, prefixes, paths, logged) for title, prefixes, paths in OPTIONAL_SECTIONS),
        _limitations(task, logged, small_validation),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _section(title, lines, table=""):
    """A `## title` section: a Markdown table then bullet lines; empty when neither has content."""
    bullets = "\n".join(f"- {line}" for line in lines if line)
    parts = [part for part in (table, bullets) if part]
    return f"## {title}\n\n" + "\n\n".join(parts) if parts else ""


def _task(task, tags):
    direction = "higher" if task.higher_is_better else "lower"
    chosen = tags.get("portfolio_chosen") or tags.get("best_trial")
    return _section(
        "Task and intended use",
        [
            f"Task `{task.name}`: {task.description}",
            f"Inputs: one {task.input_kind} per example (column `{task.input_column}`).",
            f"Primary metric: `test_{task.primary_metric}`, {direction} is better.",
            tags.get("key_setting") and f"Key setting: `{tags['key_setting']}`.",
            chosen is not None
            and f"Chosen by {'the portfolio' if 'portfolio_chosen' in tags else 'the sweep'}: `{chosen}` "
            f"(run `{tags.get('best_run_id', '?')}`).",
        ],
    )


def _data(logged, tags):
    sizes = [f"{tags[f'examples.{tag}']} {word}" for tag, word in ROLES if f"examples.{tag}" in tags]
    synthetic = tags.get("synthetic")
    digests = [
        f"{dataset['context']} `{dataset['digest']}` ({dataset['examples']} examples)"
        for dataset in logged.get("datasets", [])
    ]
    return _section(
        "Data",
        [
            "data_source" in tags and f"Source: `{tags['data_source']}`, dataset `{tags.get('dataset', '?')}`.",
            synthetic == "true" and "Synthetic: yes, generated demo data.",
            synthetic == "false" and "Synthetic: no.",
            sizes and f"Split sizes: {', '.join(sizes)} examples.",
            "test_set_digest" in tags and f"Test set digest: `{tags['test_set_digest']}`.",
            digests and f"Dataset inputs: {'; '.join(digests)}.",
        ],
    )


def _with_interval(metrics, name, show=number):
    """`name`'s figure, with its logged interval when `name_lower` and `name_upper` are logged too."""
    bounds = [metrics.get(f"{name}{suffix}") for suffix in INTERVAL]
    text = show(metrics[name])
    if all(bound is not None for bound in bounds):
        text += f" ({show(bounds[0])} to {show(bounds[1])})"
    return text


def _table(metrics, names, primary=""):
    """A Markdown table of the figures `names` (with their intervals); empty without names."""
    rows = [f"| `{name}`{' (primary)' * (name == primary)} | {_with_interval(metrics, name)} |" for name in names]
    return "\n".join(["| metric | value |", "|---|---|", *rows]) if rows else ""


def _claimed(name):
    """Whether a metric belongs to a section other than Test metrics (baselines, an optional section, a bound)."""
    prefixes = ("test_baseline_", *(prefix for _, found, _ in OPTIONAL_SECTIONS for prefix in found))
    return name.startswith(prefixes) or name.endswith(INTERVAL)


def _test_metrics(task, metrics):
    primary = f"test_{task.primary_metric}"
    names = sorted(name for name in metrics if name.startswith("test_") and not _claimed(name))
    ordered = [*([primary] if primary in names else []), *(name for name in names if name != primary)]
    bounded = any(f"{name}_lower" in metrics for name in ordered)
    notes = ["In parentheses: a 95% percentile-bootstrap interval over the test examples."] if bounded else []
    return _section("Test metrics", notes, _table(metrics, ordered, primary))


def _baseline_rows(metrics):
    """(baseline, metric) pairs of the logged `test_baseline_<baseline>_<metric>` figures, the metric being the
    longest name the model's own `test_<metric>` figures use (baseline and metric names both hold underscores)."""
    ours = [name.removeprefix("test_") for name in metrics if name.startswith("test_") and not _claimed(name)]
    pairs = []
    for name in sorted(metrics):
        if not name.startswith("test_baseline_") or name.endswith(INTERVAL):
            continue
        rest = name.removeprefix("test_baseline_")
        metric = max((found for found in ours if rest.endswith(f"_{found}")), key=len, default=None)
        if metric:
            pairs.append((rest.removesuffix(f"_{metric}"), metric))
    return pairs


def _baselines(metrics, tags):
    rows = []
    for baseline, metric in _baseline_rows(metrics):
        gain = f"baseline_{baseline}_validation_{metric}_gain"  # logged for the gate's metric only
        rows.append(
            f"| {baseline} | `{metric}` | {number(metrics[f'test_baseline_{baseline}_{metric}'])} | "
            f"{number(metrics[f'test_{metric}'])} | {_with_interval(metrics, gain, signed) if gain in metrics else ''}"
            " |"
        )
    decision = tags.get("promotion_decision", "").replace("_", " ")
    verdict = [
        "baseline_gate" in tags and f"Baseline gate: {tags['baseline_gate']}: {tags.get('baseline_gate_reason', '')}.",
        decision
        and f"Promotion: {decision} (policy `{tags.get('promotion_policy', '?')}`): "
        f"{tags.get('promotion_reason', '')}.",
    ]
    header = "| baseline | metric | baseline (test) | model (test) | model's validation gain (90% bootstrap interval) |"
    return _section("Baselines and verdict", verdict, rows and "\n".join([header, "|---|---|---|---|---|", *rows]))


def _training(logged, metrics, tags):
    params = logged.get("params", {})
    epochs = logged.get("epochs", 0)
    seconds = metrics.get("train_seconds")
    members = tags.get("ensemble_members")
    cpus, gpus = tags.get("hardware.cpus"), tags.get("hardware.gpus")
    backend = tags.get("version.keras_backend", "?")
    settings = f"precision {tags.get('effective.precision_policy', '?')}, XLA {tags.get('effective.jit_compile', '?')}"
    return _section(
        "Training",
        [
            members and f"An average of {members} trained models: it trained no epoch itself.",
            not members and epochs and f"Epochs trained: {epochs} of {params.get('epochs', '?')} allowed.",
            not members and seconds is not None and f"Training time: {seconds:.1f} s.",
            "batch_size" in params
            and f"Batch size {params['batch_size']}, learning rate {params.get('learning_rate', '?')}.",
            "version.keras" in tags
            and f"Backend: Keras {tags['version.keras']} on {backend} {tags.get(f'version.{backend}', '?')}, "
            f"{settings}.",
            cpus
            and f"Hardware: {cpus} CPUs, {gpus or 0} GPUs, {tags.get('hardware.machine', '?')}; distribution strategy "
            f"`{tags.get('strategy', '?')}`, replicas {tags.get('replicas', '?')}.",
            "weights_sha256" in tags and f"Weights SHA-256: `{tags['weights_sha256']}`.",
            "git_commit" in tags and f"Code: git commit `{tags['git_commit']}`.",
        ],
    )


def _optional(title, prefixes, paths, logged):
    metrics = logged.get("metrics", {})
    names = sorted(name for name in metrics if prefixes and name.startswith(prefixes) and not name.endswith(INTERVAL))
    found = sorted(path for path in logged.get("artifacts", {}) if paths and path.startswith(paths))
    if not (names or found):
        return ""
    return _section(title, [f"[{path}]({logged['artifacts'][path]})" for path in found], _table(metrics, names))


def _limitations(task, logged, small_validation):
    metrics, tags = logged.get("metrics", {}), logged.get("tags", {})
    primary = f"test_{task.primary_metric}"
    validation = tags.get("examples.validation")
    testing = tags.get("examples.testing")
    lines = [
        validation is not None
        and int(validation) < small_validation
        and f"Small validation split: {validation} examples, fewer than {small_validation}; the best epoch and the "
        "baseline gate rest on few examples.",
        tags.get("synthetic") == "true"
        and f"Trained and tested on synthetic data (`{tags.get('dataset', '?')}`): its figures say nothing about "
        "real data.",
        _imbalance(metrics, testing),
        tags.get("baseline_gate") == "failed"
        and "The model did not clearly beat its trivial baseline on validation (baseline gate failed): it is never "
        "promoted.",
        "baselines_better_than_model" in tags
        and f"Baselines that beat it on validation: {tags['baselines_better_than_model']}.",
        primary not in metrics and f"The run logged no `{primary}`, so it is not compared with other runs by it.",
        *(
            f"Slice `{name.removeprefix('test_slice_').removesuffix('_examples')}` holds {number(value)} test "
            f"examples, fewer than {SMALL_SLICE}."
            for name, value in sorted(metrics.items())
            if re.fullmatch(r"test_slice_.+_examples", name) and value < SMALL_SLICE
        ),
    ]
    return _section("Limitations detected", lines) or "## Limitations detected\n\nNone from the logged figures."


def _imbalance(metrics, testing):
    """The imbalance line: the positive class's share (`test_positives` of the test examples) or the majority
    class's (the majority baseline's test accuracy), when one class holds at most `IMBALANCE` or the rest do."""
    if "test_positives" in metrics and testing:
        share = metrics["test_positives"] / int(testing)
        if share <= IMBALANCE:
            return (
                f"Class imbalance: positives are {share:.1%} of the test examples ({number(metrics['test_positives'])} "
                f"of {testing})."
            )
    share = metrics.get("test_baseline_majority_accuracy")
    if share is not None and not math.isnan(share) and share >= 1 - IMBALANCE:
        return f"Class imbalance: the majority class is {share:.1%} of the test examples."
    return ""
