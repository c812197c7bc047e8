"""`python -m pipelines predict`: raw inputs in, one answer per input out, predicted in batches.

The task's `cli_inputs` expands the INPUT arguments (folders, CSV/JSONL tables, files, literals); the
logged model answers them `--batch-size` at a time, so 10,000 images cost about 160 model calls, not
10,000. An input that fails gets a row with an `error` instead of its answer, and the others go on.
Answers go to stdout as one JSON object per line, or to `--output FILE.csv|FILE.jsonl`. With `--explain`
each answer also holds an `explanation` (`Task.explained`); heatmap PNGs of images and spectrograms go to
`--explain-dir`, by default a folder beside `--output` (`answers.jsonl` -> `answers-explanations/`) or
`explanations/` in the working directory.

Exit codes: 0 every input was answered; 1 every input has its row but some rows hold an `error`;
2 nothing was predicted (a bad option, model or INPUT argument, or the only input failed, which
prints its one-line error).
"""

import contextlib
import csv
import json
import os
import sys
import tempfile
import time

import tasks

OUTPUT_FORMATS = (".csv", ".jsonl")
EXIT_ROW_ERRORS = 1


def answers(model, task, pairs, batch_size, explain=None):
    """Answers every input with one model call per batch, in input order.

    Inputs the task says depend on each other (`Task.input_groups`: the rows of one machine, say) share
    a batch, which may then exceed `batch_size`.

    Args:
        model (mlflow.pyfunc.PyFuncModel): a logged task model (`tracking.load`).
        task (tasks.base.Task): its task.
        pairs (list[tuple[str, object]]): (echo, raw input) pairs from `task.cli_inputs`.
        batch_size (int): inputs per model call.
        explain (str | None): explain each answer, writing maps to this folder (see `explanation_folder`); None:
            answers alone.

    Yields:
        dict: `{"input": echo, **answer}`, or `{"input": echo, "error": message}` for an input that failed.

    Raises:
        ValueError: the only input failed (its one-line message).
    """
    import pandas as pd

    raws = [raw for _, raw in pairs]
    served = model.unwrap_python_model()
    groups = task.input_groups(served.info, raws)
    # the logged signature declares no params, which the pyfunc wrapper would drop: ask the serving model itself
    predict = model.predict if explain is None else lambda frame: served.predict(None, frame, {"explain": explain})
    ready, next_index = {}, 0
    for batch in _batches(len(raws), batch_size, groups):
        try:
            results = predict(pd.DataFrame({task.input_column: [raws[index] for index in batch]}))
        except ValueError as error:
            # the model answers the bad inputs of a larger call itself; a one-input batch raises
            if len(batch) > 1 or len(raws) == 1:
                raise
            results = [{"error": str(error)}]
        ready.update(zip(batch, results))
        while next_index in ready:
            yield {"input": pairs[next_index][0], **ready.pop(next_index)}
            next_index += 1


def _batches(count, size, groups):
    """Index lists of at most `size` consecutive inputs, or, with `groups`, of whole groups filled up to `size`."""
    if groups is None:
        yield from (list(range(start, min(start + size, count))) for start in range(0, count, size))
        return
    members = {}
    for index, key in enumerate(groups):
        members.setdefault(key, []).append(index)
    batch = []
    for indices in members.values():
        batch += indices
        if len(batch) >= size:
            yield sorted(batch)
            batch = []
    if batch:
        yield sorted(batch)


def command(arguments):
    """Runs `predict` for parsed command-line arguments; returns the exit code (see the module docstring)."""
    from pipelines import serving_model  # noqa: F401 (sets the name models logged before its move load by)
    from shared import tracking
    from shared.data.sources import progress

    task = tasks.get(arguments.task)
    if arguments.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {arguments.batch_size}.")
    if arguments.output:
        _check_output(arguments.output)
    if arguments.explain_dir and not arguments.explain:
        raise ValueError("--explain-dir says where --explain writes its maps; add --explain.")
    if arguments.explain and task.explain_kind is None:
        raise ValueError(f"{task.name} gives no explanations yet; drop --explain.")
    explain = explanation_folder(arguments.output, arguments.explain_dir) if arguments.explain else None
    pairs = task.cli_inputs(arguments.inputs)
    if not pairs:
        raise ValueError(f"the INPUT arguments hold no {task.name} inputs (empty files or tables).")
    if arguments.trust_model_code:
        os.environ[tracking.TRUST_CODE_ENV] = "1"
    model = tracking.load(arguments.model, task)
    started = time.perf_counter()
    rows = answers(model, task, pairs, arguments.batch_size, explain)
    if arguments.output or not sys.stdout.isatty():  # a bar between answers printed on a terminal garbles both
        rows = progress(rows, f"predict {task.name}", total=len(pairs))
    counted = _Count(rows)
    if arguments.output:
        write(counted, arguments.output)
    else:
        for row in counted:
            print(json.dumps(row))
    seconds = time.perf_counter() - started
    destination = f"; written to {arguments.output}" if arguments.output else ""
    print(
        f"predict {task.name}: {counted.rows} rows, {counted.errors} errors, "
        f"{counted.rows / max(seconds, 1e-9):.1f} rows/s{destination}",
        file=sys.stderr,
    )
    return EXIT_ROW_ERRORS if counted.errors else 0


class _Count:
    """Passes rows through, counting them and those with an `error`."""

    def __init__(self, rows):
        self._rows, self.rows, self.errors = rows, 0, 0

    def __iter__(self):
        for row in self._rows:
            self.rows += 1
            self.errors += "error" in row
            yield row


def explanation_folder(output, chosen):
    """Where `--explain` writes image and spectrogram maps: `chosen` (`--explain-dir`), else a folder beside
    `output` named after it (`answers.jsonl` -> `answers-explanations`), else `explanations` here. It is created
    when the first map is written.
    """
    if chosen:
        return chosen
    if output:
        return f"{os.path.splitext(output)[0]}-explanations"
    return "explanations"


def _check_output(path):
    if not path.lower().endswith(OUTPUT_FORMATS):
        raise ValueError(f"--output '{path}' must end in {' or '.join(OUTPUT_FORMATS)} (the format it is written in).")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"--output '{path}': folder '{folder}' does not exist; create it first.")


def write(rows, path):
    """Writes answer rows to a CSV or JSONL file that appears, complete, only once every row is written.

    JSONL gets the rows as `predict` prints them. CSV gets one column per answer key (in order of first
    appearance, after `input` and `error`); a list or mapping value is a JSON cell, a missing one empty.

    Args:
        rows (Iterable[dict]): the rows, e.g. from `answers`.
        path (str): a `.csv` or `.jsonl` file; replaced if it exists.
    """
    if path.lower().endswith(".jsonl"):
        with _replaced_on_success(path) as staging, open(staging, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
        return
    columns = {"input": None, "error": None}  # an ordered set: CSV needs every key before the first row
    with tempfile.TemporaryFile("w+", encoding="utf-8", dir=os.path.dirname(os.path.abspath(path))) as lines:
        for row in rows:
            lines.write(json.dumps(row) + "\n")
            columns.update(dict.fromkeys(row))
        lines.seek(0)
        with _replaced_on_success(path) as staging, open(staging, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, list(columns))
            writer.writeheader()
            writer.writerows({key: _cell(value) for key, value in json.loads(line).items()} for line in lines)


def _cell(value):
    return value if isinstance(value, str) else "" if value is None else json.dumps(value)


@contextlib.contextmanager
def _replaced_on_success(path):
    """Yields a temporary path beside `path` that replaces it when the block succeeds (deleted otherwise)."""
    handle, temporary = tempfile.mkstemp(
        dir=os.path.dirname(os.path.abspath(path)), prefix=".predict-", suffix=os.path.splitext(path)[1]
    )
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
