"""`predict` and `monitor` arguments as raw model inputs: folders, tables of requests, text files, JSON rows.

One function (`expand`) serves every task by what the task declares (`input_kind`, `input_extensions`,
`table_columns`, `input_column`), so that a task adds a form of input (predictive maintenance's C-MAPSS files) by
calling it for the rest, not by copying it.
"""

import json
import math
import os
import pathlib

TABLE_EXTENSIONS = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".parquet", ".pq")


def expand(task, inputs):
    """Turns `predict` command-line arguments into raw model inputs, by the task's `input_kind`.

    Each argument is, in this order:
        a folder: every file inside it (recursively, in sorted order, hidden files skipped) with one
            of the task's `input_extensions`, each expanded in turn;
        `FILE[:COLUMN]` with FILE a table (`TABLE_EXTENSIONS`: CSV, TSV, JSONL, Parquet): one input
            per row, the whole row for "record" tasks, else the row's COLUMN (default: the first of
            `table_columns` the file has); a relative path in a "file" task's column is taken from
            the table's folder when it exists there;
        another existing file: its path ("file"), its non-empty lines ("text"), or the JSON object or
            list of objects it holds ("record");
        anything else: itself ("record": parsed as a JSON object or list of objects).

    Args:
        task (tasks.base.Task): what the inputs are for.
        inputs (list[str]): the INPUT arguments (file paths, sentences, ids...).

    Returns:
        list[tuple[str, object]]: (what to echo as "input", the raw input) pairs: paths and texts echo
        themselves, rows `FILE:ROW` (1-based).

    Raises:
        ValueError: a folder without input files, an unreadable table or one lacking the column, or a
            "record" argument that is no JSON object.
    """
    pairs = []
    for argument in inputs:
        path, separator, column = argument.rpartition(":")
        if not (separator and _is_table(path)):
            path, column = argument, ""
        if os.path.isdir(argument):
            pairs += task.cli_inputs(_folder_files(argument, task.input_extensions, task.name))
        elif _is_table(path):
            pairs += _table_inputs(task, path, column)
        elif task.input_kind == "record":
            pairs += _json_records(argument)
        elif task.input_kind == "text" and os.path.isfile(argument):
            from shared.data.sources import read_text

            pairs += [(line, line) for line in read_text(argument).splitlines() if line.strip()]
        else:
            pairs.append((argument, argument))
    return pairs


def _table_inputs(task, path, column):
    """One (echo, raw input) pair per row of the table at `path` (see `expand`)."""
    from shared.data.sources import read_text_columns, require_columns

    if task.input_kind == "record":
        if column:
            raise ValueError(f"{task.name} reads whole rows from '{path}'; drop ':{column}' from the INPUT.")
        return [(f"{path}:{row + 1}", record) for row, record in enumerate(_table_records(path))]
    accepted = (
        column
        or task.table_columns
        or (f"{task.input_column},path,file,filename" if task.input_kind == "file" else task.input_column)
    )
    hint = f"Name the column as {path}:COLUMN."
    if path.lower().endswith((".csv", ".tsv", ".tab")):
        values = read_text_columns(path, {"input": accepted}, hint=hint)["input"]
    else:
        import pandas as pd

        frame = pd.DataFrame(_table_records(path))
        names = [name.strip() for name in accepted.split(",") if name.strip()]
        found = next((name for name in names if name in frame.columns), None)
        if found is None:
            require_columns(frame, names[:1], path, hint)
        values = [
            "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
            for value in frame[found]
        ]
    if task.input_kind == "file":
        folder = os.path.dirname(path)
        values = [
            os.path.join(folder, value) if value and os.path.exists(os.path.join(folder, value)) else value
            for value in values
        ]
    return [(value, value) for value in values]


def _is_table(path):
    return os.path.isfile(path) and path.lower().endswith(TABLE_EXTENSIONS)


def _folder_files(folder, extensions, task_name):
    """The files in `folder` (recursively, sorted, hidden ones skipped) whose suffix is in `extensions`."""
    files = sorted(
        str(path)
        for path in pathlib.Path(folder).rglob("*")
        if path.suffix.lower() in extensions
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    if not files:
        raise ValueError(f"folder '{folder}' holds no {task_name} input files ({', '.join(extensions)}).")
    return files


def _table_records(path):
    """The rows of a CSV/TSV/Parquet table or JSONL file as dicts (missing values as None)."""
    from shared.data.sources import read_jsonl, read_table

    if path.lower().endswith((".jsonl", ".ndjson")):
        return read_jsonl(path)
    return json.loads(read_table(path).to_json(orient="records"))


def _json_records(argument):
    """(echo, row) pairs of a JSON object or list of objects, inline or in a file (any but a table)."""
    text = argument
    if argument.lower().endswith((*TABLE_EXTENSIONS, ".json")) and not os.path.exists(argument):
        # a path, named whole: cutting it would cut off the file name
        raise ValueError(f"INPUT '{argument}' does not exist; give an existing table or JSON file.")
    if os.path.isfile(argument):
        with open(argument, encoding="utf-8") as handle:
            text = handle.read()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(
            f"INPUT '{argument[:80]}' is not a CSV/JSONL/Parquet file, a .json file or a JSON object "
            "like '{\"amount\": 12.5, ...}'."
        ) from None
    parsed = parsed if isinstance(parsed, list) else [parsed]
    if not all(isinstance(record, dict) for record in parsed):
        raise ValueError(f"INPUT '{argument[:80]}' must hold a JSON object or a list of objects (one per row).")
    return [(argument if len(parsed) == 1 else f"{argument}:{row + 1}", record) for row, record in enumerate(parsed)]
