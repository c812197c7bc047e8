"""Tables for models: numeric and categorical columns, preprocessing fitted on training rows, binary targets."""

import numpy as np

from shared.data.sources import require_columns


def numeric_values(values, column, source):
    """Converts a column to float64, keeping missing values as NaN.

    Args:
        values (pandas.Series): the raw column.
        column (str): its name, for the message.
        source (str): the file or input, for the message.

    Returns:
        np.ndarray: float64 values (NaN where missing).

    Raises:
        ValueError: a non-numeric or infinite value; the message names the column and the first bad row
            (1-based data row, header excluded).
    """
    import pandas as pd

    try:
        converted = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    except OverflowError:  # an integer beyond float64, which JSON allows: it counts as infinite

        def bounded(value):
            return value if not isinstance(value, int) or abs(value) < 2**1024 else np.inf if value > 0 else -np.inf

        converted = pd.to_numeric(values.map(bounded), errors="coerce").to_numpy(dtype="float64")
    text = values.astype(str).str.strip().to_numpy()
    bad = np.isnan(converted) & values.notna().to_numpy() & (text != "") & (np.char.lower(text.astype(str)) != "nan")
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{source}: column '{column}' must be numeric, but data row {row + 1} holds "
            f"{values.iloc[row]!r}; fix the value or list the column as categorical."
        )
    if np.isinf(converted).any():
        row = int(np.flatnonzero(np.isinf(converted))[0])
        raise ValueError(
            f"{source}: column '{column}' holds an infinite value at data row {row + 1}; "
            "replace it with a finite number or leave it empty (missing values are imputed)."
        )
    return converted


def looks_numeric(values, share=0.95):
    """True when at least `share` of a column's non-missing values parse as numbers.

    A column that is mostly numbers with a few typos is treated as numeric (so `numeric_values`
    reports the typo) rather than silently becoming a huge categorical vocabulary.
    """
    import pandas as pd

    present = values.dropna()
    if present.empty:
        return True
    return float(pd.to_numeric(present, errors="coerce").notna().mean()) >= share


def category_text(value):
    """The vocabulary key of one categorical value: missing values share the token `<missing>`."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        return "<missing>"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 3.0 from a JSON or float column and "3" from a CSV are one category
    return str(value).strip()


def fit_tabular(frame, numeric, categorical, source, max_categories=1000):
    """Fits tabular preprocessing on training rows only; the result is JSON-serialisable.

    Numeric columns: missing values are imputed with the training median, then standardised with
    the training mean and standard deviation. Categorical columns: the training vocabulary, most
    frequent first (index 0 is kept for values never seen in training).

    Args:
        frame (pandas.DataFrame): training rows.
        numeric (list[str]): numeric column names.
        categorical (list[str]): categorical column names.
        source (str): the file or input, for error messages.
        max_categories (int): vocabulary size cap per column; rarer values map to the unseen index.

    Returns:
        dict: `{"numeric": [{name, median, mean, std}], "categorical": [{name, vocabulary}]}`.
    """
    spec = {"numeric": [], "categorical": []}
    for column in numeric:
        values = numeric_values(frame[column], column, source)
        finite = values[~np.isnan(values)]
        median = float(np.median(finite)) if finite.size else 0.0
        filled = np.where(np.isnan(values), median, values)
        spec["numeric"].append(
            {"name": column, "median": median, "mean": float(filled.mean()), "std": float(filled.std()) or 1.0}
        )
    for column in categorical:
        counts = frame[column].map(category_text).value_counts()
        spec["categorical"].append({"name": column, "vocabulary": counts.index[:max_categories].tolist()})
    return spec


def apply_tabular(frame, spec, source):
    """Applies `fit_tabular` preprocessing to any rows (training, test or prediction).

    Returns:
        dict[str, np.ndarray]: `numeric` float32 (n, numeric columns) and, when there are categorical
        columns, `categorical` int32 (n, categorical columns) with 0 for values unseen in training.

    Raises:
        ValueError: a column is missing (named with the columns found) or a numeric value is bad.
    """
    names = [item["name"] for item in spec["numeric"] + spec["categorical"]]
    require_columns(frame, names, source)
    numeric = np.zeros((len(frame), len(spec["numeric"])), dtype="float32")
    for index, item in enumerate(spec["numeric"]):
        values = numeric_values(frame[item["name"]], item["name"], source)
        with np.errstate(over="ignore"):
            numeric[:, index] = (np.where(np.isnan(values), item["median"], values) - item["mean"]) / item["std"]
        if not np.isfinite(numeric[:, index]).all():  # finite in float64, beyond float32 once standardised
            row = int(np.flatnonzero(~np.isfinite(numeric[:, index]))[0])
            raise ValueError(
                f"{source}: column '{item['name']}' holds {values[row]:g} at data row {row + 1}, beyond "
                "what the model computes with; give a value within the training data's scale."
            )
    result = {"numeric": numeric}
    if spec["categorical"]:
        categorical = np.zeros((len(frame), len(spec["categorical"])), dtype="int32")
        for index, item in enumerate(spec["categorical"]):
            lookup = {value: position + 1 for position, value in enumerate(item["vocabulary"])}
            categorical[:, index] = [lookup.get(category_text(value), 0) for value in frame[item["name"]]]
        result["categorical"] = categorical
    return result


def binary_target(values, column, source):
    """Checks and converts a binary target column (0/1, true/false or two numbers) to int64 0/1.

    Raises:
        ValueError: missing values, more or fewer than two classes; the message says what was found.
    """
    import pandas as pd

    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise ValueError(f"{source}: target column '{column}' is empty at data row {row + 1}; every row needs a label.")
    mapped = values.map(lambda value: {"true": 1, "false": 0}.get(str(value).strip().lower(), value))
    numbers = pd.to_numeric(mapped, errors="coerce")
    classes = sorted(set(numbers.dropna().tolist()))
    if numbers.isna().any() or not set(classes) <= {0, 1}:
        found = sorted(set(values.astype(str).tolist()))[:10]
        raise ValueError(f"{source}: target column '{column}' must be binary 0/1 (or true/false); found {found}.")
    if len(classes) < 2:
        raise ValueError(
            f"{source}: target column '{column}' has only class {int(classes[0])}; "
            "a detector needs examples of both classes (0 and 1)."
        )
    return numbers.to_numpy(dtype="int64")
