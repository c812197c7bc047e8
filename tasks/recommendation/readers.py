"""Reading interactions: ratings files (MovieLens CSV, u.data, ratings.dat, any CSV), item titles, TFDS MovieLens."""

import dataclasses
import os

import numpy as np

from shared.data.sources import reader


@dataclasses.dataclass
class Ratings:
    """What every reader of recommendation returns.

    Attributes:
        frame (pandas.DataFrame): interactions in columns user, item, rating (NaN when implicit), timestamp.
        titles (dict): item titles by item id (empty when the source has none).
        name (str): the dataset's short name for MLflow.
        synthetic (bool): True for generated ratings.
    """

    frame: object
    titles: dict
    name: str
    synthetic: bool = False


def id_text(value):
    """The vocabulary key of a raw id: 7, 7.0, b"7" and "7" are one id."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value).strip()


def ratings_file(path):
    """The ratings file inside a MovieLens-style folder, or `path` itself."""
    if not os.path.isdir(path):
        return path
    for name in ("ratings.csv", "u.data", "ratings.dat"):
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    raise ValueError(f"folder '{path}' holds no ratings.csv, u.data or ratings.dat; give the ratings file itself.")


def read_ratings(path, config):
    """Reads a ratings file into columns user, item, rating (NaN when implicit) and timestamp (if any).

    `u.data` (tab-separated, no header) and `ratings.dat` (`::`) have MovieLens' fixed columns;
    any other file is a CSV (TSV for `.tsv`) with a header and the configured column names.

    Raises:
        ValueError: unreadable file, a missing configured column (naming the columns found), or no rows.
    """
    import pandas as pd

    from shared.data.sources import read_csv, require_columns
    from shared.data.tabular import numeric_values

    name = os.path.basename(path)
    fixed = name.endswith((".data", ".dat"))
    try:
        if fixed:
            frame = pd.read_csv(
                path,
                sep="\t" if name.endswith(".data") else "::",
                engine="python",
                header=None,
                names=["user", "item", "rating", "timestamp"],
                dtype=str,
            )
        else:
            frame = read_csv(path, path, sep="\t" if name.endswith(".tsv") else ",", dtype=str)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"cannot read ratings file '{path}': {first_line[:200]}.") from None
    if not fixed:
        require_columns(
            frame,
            [config.user_column, config.item_column, config.rating_column],
            f"ratings file '{path}'",
            "Set them with --set user_column=NAME item_column=NAME rating_column=NAME "
            "(rating_column= for implicit feedback).",
        )
        chosen = {
            "user": config.user_column,
            "item": config.item_column,
            "rating": config.rating_column,
            "timestamp": config.timestamp_column if config.timestamp_column in frame else "",
        }
        frame = pd.DataFrame({role: frame[column] for role, column in chosen.items() if column})
    elif not config.rating_column:
        frame = frame.drop(columns="rating")
    if frame.empty:
        raise ValueError(f"ratings file '{path}' has no data rows.")
    result = pd.DataFrame({"user": frame["user"].map(id_text), "item": frame["item"].map(id_text)})
    if config.rating_column:
        result["rating"] = numeric_values(frame["rating"], config.rating_column, f"ratings file '{path}'")
    if "timestamp" in frame:
        result["timestamp"] = numeric_values(frame["timestamp"], config.timestamp_column, f"ratings file '{path}'")
    return result


def read_titles(path, config):
    """Item id -> display title (with genres when the file has them), or {} without an item file.

    Without `items_file`, MovieLens' companion file beside `path` is used when present: `movies.csv`
    for a CSV, `u.item` for `u.data`, `movies.dat` for `ratings.dat`.
    """
    import pandas as pd

    from shared.data.sources import require_columns

    companion = "u.item" if path.endswith(".data") else "movies.dat" if path.endswith(".dat") else "movies.csv"
    candidate = config.items_file or os.path.join(os.path.dirname(path), companion)
    if os.path.isfile(candidate):
        if candidate.endswith((".item", ".dat")):  # MovieLens fixed formats: id, title, then other fields
            frame = pd.read_csv(
                candidate,
                sep="|" if candidate.endswith(".item") else "::",
                engine="python",
                header=None,
                encoding="latin-1",
                dtype=str,
            )
            return dict(zip(frame[0].map(id_text), frame[1]))
        frame = pd.read_csv(candidate, dtype=str)
        require_columns(
            frame,
            [config.item_column, config.title_column],
            f"items file '{candidate}'",
            "Set item_column / title_column, or items_file to the right file.",
        )
        titles = frame[config.title_column].fillna("")
        if "genres" in frame:
            titles = titles + " [" + frame["genres"].fillna("").str.replace("|", ", ") + "]"
        return dict(zip(frame[config.item_column].map(id_text), titles))
    if config.items_file:
        raise ValueError(f"items_file '{config.items_file}' does not exist.")
    return {}


def tfds_ratings(argument, config):
    """Reads tfds:movielens/*-ratings into the interaction columns and titles."""
    import pandas as pd

    from shared.data import tfds

    keys = ("user_id", "movie_id", "user_rating", "timestamp", "movie_title")
    # load_arrays keeps only `keys` before batching: MovieLens' variable-length genres cannot batch
    loaded, _ = tfds.load_arrays(
        argument, config.tfds_data_dir, keys, alternatives="--data embedded or a ratings.csv / u.data file"
    )
    columns = {key: np.concatenate([split[key] for split in loaded.values()]) for key in keys}
    frame = pd.DataFrame(
        {
            "user": [id_text(value) for value in columns["user_id"]],
            "item": [id_text(value) for value in columns["movie_id"]],
            "timestamp": columns["timestamp"].astype("float64"),
        }
    )
    if config.rating_column:
        frame["rating"] = columns["user_rating"].astype("float64")
    titles = dict(zip(frame["item"], (title.decode("utf-8", "replace") for title in columns["movie_title"])))
    return frame, titles


@reader("tfds_ratings", ("tfds",), "tfds:movielens/*-ratings")
def _read_tfds_ratings(task, argument, config):
    return Ratings(*tfds_ratings(argument, config), f"tfds_{argument.split(':')[0].replace('/', '_')}")


@reader("ratings", ("file", "csv", "folder"), "a ratings CSV, u.data, ratings.dat or a folder holding one")
def _read_ratings_file(task, argument, config):
    path = ratings_file(argument)
    return Ratings(
        read_ratings(path, config), read_titles(path, config), f"ratings_{os.path.basename(os.path.abspath(argument))}"
    )
