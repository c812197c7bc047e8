"""`python -m pipelines monitor`: do the inputs a model is served still look like the data it learned from?

Every run saves drift statistics of its validation split beside the model (`drift_reference.json`, see
`reference`): examples of the training distribution that nothing was fitted on, since a vocabulary's unknown-token
rate and a network's embeddings of its own training examples are biased low. `monitor` reads a batch of recent
inputs in any INPUT form `predict` takes (`Task.cli_inputs`: folders, CSV/JSONL tables of served requests, files),
prepares them as the model does (`Task.drift_inputs`), describes them by the task's `drift_view` and tests them
against those statistics (`shared.drift.compare`); `--reference SOURCE` recomputes the statistics from up to
`REFERENCE_EXAMPLES` examples of another data source instead, read in the model's terms (`Task.load_fitted`).

It prints one JSON line (task, model, drift, each statistic with its value and threshold, the drifted and the worst
features), writes `report.md` with its figures (`--output`), and logs the figures as metrics (`drift_<feature>`)
and the report as artifacts of a new MLflow run tagged `monitor_of=MODEL_URI`. Everything is read before the run
starts, so a bad input leaves no run behind; an error while logging ends it FAILED with the message in its
`error` tag.

Exit codes: 0 no drift; 1 drift (some statistic above its threshold), for a scheduler to act on; 2 nothing could be
compared (a bad option, model or INPUT, or a model saved without statistics and no `--reference`).
"""

import json
import os
import pathlib
import re
import sys
import tempfile

import numpy as np

import tasks
from pipelines import config as config_module

EXIT_DRIFT = 1
REFERENCE_EXAMPLES = 1000  # deciles of 1,000 examples are within about 1% of the population's; well under a second
CHUNK = 256  # inputs prepared and described at a time when the task sets no `predict_chunk`: bounded memory
PARAM_LENGTH = 500  # characters of the INPUT list kept as the run's param: MLflow refuses very long values
QUANTILE_PLOTS = 3  # numeric features whose quantiles the report plots: the worst ones


def reference(task, model, config, info, split):
    """Drift statistics of a split, as `monitor` compares recent inputs with (`shared.drift.reference`).

    Args:
        task (tasks.base.Task): the model's task.
        model (keras.Model | BatchPredictor): the trained model.
        config (tasks.base.TaskConfig): the config the split was read with.
        info (FittedState): the model's `Splits.info` as served.
        split (shared.data.examples.Split): the examples, capped at `REFERENCE_EXAMPLES` (seeded).

    Returns:
        dict | None: the statistics; None for a task whose inputs are not monitored (`Task.drift_view`).
    """
    from shared import drift
    from shared.data import examples

    views = [
        task.drift_view(model, info, batch[0])
        for batch in examples.batches(split.cap(REFERENCE_EXAMPLES, config.seed), CHUNK, task.drift_map(config, info))
    ]
    if not views or views[0] is None:
        return None
    return drift.reference(drift.join(views), config.seed)


def command(arguments):
    """Runs `monitor` for parsed command-line arguments; returns the exit code (see the module docstring)."""
    from shared import tracking

    task = tasks.get(arguments.task)
    result = monitor(
        task,
        arguments.model,
        arguments.data,
        source=arguments.reference,
        output=arguments.output,
        experiment=arguments.experiment,
        trust_model_code=arguments.trust_model_code,
    )
    print(json.dumps(result))
    verdict = f"drift in {', '.join(result['drifted'])}" if result["drift"] else "no drift"
    print(
        f"{task.name}: {verdict} over {result['examples']} inputs | run {result['run_id']} in "
        f"{tracking.tracking_uri()}" + (f" | report {result['report']}" if result["report"] else ""),
        file=sys.stderr,
    )
    return EXIT_DRIFT if result["drift"] else 0


def monitor(task, model_uri, inputs, source="training", output=None, experiment=None, trust_model_code=False):
    """Compares recent inputs with a model's reference statistics, writes the report and logs the monitoring run.

    Args:
        task (tasks.base.Task): the model's task.
        model_uri (str): any URI `predict` takes.
        inputs (list[str]): INPUT arguments as `predict` takes them.
        source (str): `training` (the statistics saved with the model) or a data source as `run --data` takes it.
        output (str | None): a folder for `report.md` and its figures (created if missing); None: logged only.
        experiment (str | None): MLflow experiment; default the task's name.
        trust_model_code (bool): load a Keras file that carries Python code.

    Returns:
        dict: `task`, `model`, `data`, `reference`, `drift`, `examples`, `reference_examples`, `rows`, `drifted`,
        `worst`, `report` (the report's path, or None) and `run_id`.

    Raises:
        ValueError: a bad model URI or INPUT, a task that does not monitor its inputs, or a model saved without
            statistics when `source` is `training`; raised before the run starts.
    """
    from pipelines import serving_model
    from shared import drift, tracking

    if output and os.path.exists(output) and not os.path.isdir(output):
        raise ValueError(f"--output '{output}' is a file; name a folder for the report.")
    if trust_model_code:
        os.environ[tracking.TRUST_CODE_ENV] = "1"
    logged = tracking.logged_model(model_uri, task)
    predictor = serving_model.BatchPredictor(logged.model)
    raws = [raw for _, raw in task.cli_inputs(inputs)]
    if not raws:
        raise ValueError(f"the --data arguments hold no {task.name} inputs (empty files or tables).")
    saved = _reference(task, predictor, logged, model_uri, source)
    size = task.predict_chunk or CHUNK
    views = [
        task.drift_view(predictor, logged.info, task.drift_inputs(logged.info, raws[start : start + size]))
        for start in range(0, len(raws), size)
    ]
    if views[0] is None:
        raise _unmonitored(task)
    recent = drift.join(views)
    found = drift.compare(saved, recent)
    registered = tracking.registered_version(model_uri)
    tags = {"monitor_of": model_uri, "monitored_run_id": logged.run_id, "drift": str(found["drift"]).lower()}
    run_name = "-".join(["monitor", task.name, f"v{registered[1]}" if registered else logged.run_id[:8]])
    params = {"data": " ".join(inputs)[:PARAM_LENGTH], "reference": source[:PARAM_LENGTH]}
    with tracking.run(task, params, experiment, run_name=run_name, tags=tags) as active:
        try:
            with tempfile.TemporaryDirectory() as staging:
                folder = pathlib.Path(output or staging)
                _write_report(folder, task, model_uri, params, found, saved, recent)
                tracking.log_results(metrics=_metrics(found))
                tracking.log_folder(folder, "monitor")
        except Exception as error:  # the run ends FAILED either way: say why in it
            tracking.set_tags({"error": f"{type(error).__name__}: {error}"[:5000]})
            raise
    return {
        "task": task.name,
        "model": model_uri,
        "data": params["data"],
        "reference": source,
        "reference_examples": saved["examples"],
        **found,
        "report": str(pathlib.Path(output) / "report.md") if output else None,
        "run_id": active.info.run_id,
    }


def _reference(task, model, logged, model_uri, source):
    """The statistics recent inputs are compared with: saved with the model, or computed from `source` (up to
    `REFERENCE_EXAMPLES` of all its splits) read in the model's terms."""
    from shared import tracking
    from shared.data import examples

    if source == "training":
        if logged.drift_reference is None:
            raise ValueError(
                f"the model at '{model_uri}' was saved without drift statistics (trained before `monitor` existed); "
                "compute them from its training data with --reference SOURCE, e.g. --reference embedded."
            )
        return logged.drift_reference
    config = config_module.resolve(task, base=tracking.run_config(logged.run_id), data=source, max_examples=0)
    loaded = task.load_fitted(config, logged.info)
    found = reference(task, model, config, logged.info, examples.join([loaded.train, loaded.validation, loaded.test]))
    if found is None:
        raise _unmonitored(task)
    return found


def _unmonitored(task):
    return ValueError(f"{task.name} does not monitor these inputs yet; see docs/monitoring.md for what it monitors.")


def _metrics(found):
    """MLflow metrics of a comparison: `drift` (0 or 1) and `drift_<feature>_<statistic>` per row."""
    metrics = {"drift": float(found["drift"]), "drift_examples": float(found["examples"])}
    for row in found["rows"]:
        metrics[f"drift_{_plain(row['feature'])}_{row['statistic']}"] = row["value"]
    return metrics


def _plain(name):
    """A feature name as MLflow metric names and file names take it (`Type=L` -> `Type_L`)."""
    return re.sub(r"[^\w.-]", "_", name)


def _write_report(folder, task, model_uri, params, found, saved, recent):
    """Writes `report.md` and its figures (`plots/`) to `folder`: the verdict, a table of every statistic, each
    statistic against its threshold, and the quantiles of the worst numeric features, reference against recent."""
    from shared import plots

    (folder / "plots").mkdir(parents=True, exist_ok=True)
    ranked = found["rows"]
    figures = {
        "drift_scores": plots.intervals(
            [(f"{row['feature']} {row['statistic']}", row["score"], np.nan, np.nan, row["drift"]) for row in ranked],
            "value / threshold (above 1: drift)",
            "drift statistics (blue: drift)",
        )
    }
    levels = np.linspace(0, 1, len(next(iter(saved["numeric"].values()), {}).get("percentiles", [])))
    for row in [row for row in ranked if row["feature"] in saved["numeric"] and row["feature"] in recent.numeric][
        :QUANTILE_PLOTS
    ]:
        name = row["feature"]
        values = recent.numeric[name][np.isfinite(recent.numeric[name])]
        figures["quantiles_" + _plain(name)] = plots.curves(
            [
                ("reference", levels, saved["numeric"][name]["percentiles"]),
                ("recent", levels, np.quantile(values, levels)),
            ],
            "quantile",
            name,
            f"{name}: PSI {row['value']:.3f}",
        )
    for name, figure in figures.items():
        figure.savefig(folder / "plots" / f"{name}.png", dpi=100)
    plots.close(figures.values())
    verdict = f"**drift** in {', '.join(found['drifted'])}" if found["drift"] else "**no drift**"
    lines = [
        f"# Drift report: {task.name}",
        "",
        f"Model `{model_uri}`: {found['examples']} recent inputs from `{params['data']}` against "
        f"{saved['examples']} reference examples (`--reference {params['reference']}`): {verdict}.",
        "",
        "| feature | statistic | value | threshold | drift | KS statistic | KS p-value |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in ranked:
        ks = [f"{row[key]:.4g}" if key in row else "" for key in ("ks_statistic", "ks_p_value")]
        lines.append(
            f"| {row['feature']} | {row['statistic']} | {row['value']:.4g} | {row['threshold']:.4g} | "
            f"{'yes' if row['drift'] else 'no'} | {' | '.join(ks)} |"
        )
    lines += ["", "See docs/monitoring.md for what each statistic measures and why its threshold.", ""]
    lines += [f"![{name}](plots/{name}.png)" for name in figures]
    (folder / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
