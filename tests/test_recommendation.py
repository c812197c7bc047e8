"""Recommendation end to end: training, MLflow artifacts, raw-id prediction, every data path and bad input."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines import cli, runner
from shared import evaluation, tracking
from shared.data import tfds as tfds_source
from tasks.recommendation import interactions
from tests.conftest import resolve, shared_data

TASK = "recommendation"


@pytest.fixture(scope="module")
def trained(module_store):
    """One short training on the embedded ratings, shared by the tests that inspect its run and model."""
    result = runner.run(*resolve(TASK))
    return result


def write_ratings(path, rows, header="userId,movieId,rating,timestamp"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, row)) for row in rows) + "\n")
    return path


def dense_rows(users=12, items=15, seed=0):
    """Every user rates 8 random items (1-5 stars) at increasing times."""
    rng = np.random.default_rng(seed)
    return [
        (f"{user}", f"{item}", int(rng.integers(1, 6)), 1000 * user + step)
        for user in range(users)
        for step, item in enumerate(rng.choice(items, 8, replace=False))
    ]


def test_embedded_run_beats_popularity_and_logs_everything(trained):
    metrics = trained.metrics
    assert metrics["hit_rate_at_k"] > metrics["baseline_popularity_hit_rate_at_k"]
    assert metrics["ndcg_at_k"] > metrics["baseline_popularity_ndcg_at_k"]
    assert metrics["rmse"] < metrics["baseline_item_means_rmse"]
    assert 0 < metrics["coverage_at_k"] <= 1 and 0 < metrics["map_at_k"] <= 1
    run = mlflow.get_run(trained.run_id)
    assert run.data.tags["synthetic"] == "true"
    for name in (
        "rmse",
        "mae",
        "hit_rate_at_k",
        "ndcg_at_k",
        "map_at_k",
        "coverage_at_k",
        "baseline_item_means_rmse",
        "baseline_popularity_hit_rate_at_k",
        "baseline_popularity_ndcg_at_k",
        "baseline_popularity_map_at_k",
        "baseline_popularity_coverage_at_k",
    ):
        assert f"test_{name}" in run.data.metrics
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(trained.run_id)}
    assert {"sample_recommendations.md", "config.yaml", "plots"} <= artifacts
    table = mlflow.artifacts.load_text(f"runs:/{trained.run_id}/sample_recommendations.md")
    assert "popularity baseline" in table and "item " in table  # titles of the generated items


def test_predict_from_registry_for_raw_ids(trained):
    model = tracking.load("models:/recommendation/latest")
    info = model.unwrap_python_model().info
    known_user = info.users[0]
    seen = {info.items[int(index) - 1] for index in info.seen[1].split()}
    answers = model.predict(
        pd.DataFrame({"query": [known_user, "nobody", f"{known_user},{info.items[0]}", f"{known_user},no-such-item"]})
    )
    mine, stranger, pair, unknown_item = answers
    assert mine["known_user"] and mine["fallback"] is None and len(mine["recommendations"]) == 10
    recommended = [entry["item"] for entry in mine["recommendations"]]
    assert not seen & set(recommended) and len(set(recommended)) == 10  # unseen, distinct
    assert all(entry["title"].startswith("item ") for entry in mine["recommendations"])
    scores = [entry["score"] for entry in mine["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    assert stranger == {**stranger, "known_user": False, "fallback": "popularity"}
    popular = [info.items[int(index) - 1] for index in info.popular.split()[:10]]
    assert [entry["item"] for entry in stranger["recommendations"]] == popular
    assert pair["known_item"] and 1.0 <= pair["rating"] <= 5.0
    assert unknown_item["known_user"] and not unknown_item["known_item"] and 0.5 <= unknown_item["rating"] <= 5.0
    json.dumps(answers)  # JSON-friendly
    with pytest.raises(ValueError, match="user id"):
        model.predict(pd.DataFrame({"query": ["1,2,3"]}))


def test_cli_predict_prints_json_lines(trained, capsys):
    user = tracking.load("models:/recommendation/latest").unwrap_python_model().info.users[3]
    assert cli.main(["predict", TASK, "--model", "models:/recommendation/latest", user, f"{user},i0"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["input"] == user and len(lines[0]["recommendations"]) == 10
    assert lines[1]["item"] == "i0" and lines[1]["rating"] is not None


def test_runs_and_predict_explain_split_each_score_into_its_fields(trained, tmp_path):
    """The run draws explained test ratings; each served score is its baseline plus its fields' weights: a pair's
    rating (user, item and their biases) and each recommended item's retrieval score (the tower's user)."""
    logged = mlflow.MlflowClient().list_artifacts(trained.run_id, "plots/explain")
    assert [item.path for item in logged] == ["plots/explain/table.png"]
    served = tracking.load("models:/recommendation/latest").unwrap_python_model()
    user = served.info.users[2]
    frame = pd.DataFrame({"query": [user, f"{user},i3", "nobody"]})
    mine, pair, stranger = served.predict(None, frame, {"explain": str(tmp_path)})
    assert pair["explanation"]["method"] == "integrated_gradients" and pair["explanation"]["output"] == "rating"
    assert set(pair["explanation"]["weights"]) == {"user", "item", "user_bias", "item_bias"}
    assert sum(pair["explanation"]["weights"].values()) + pair["explanation"]["baseline"] == pytest.approx(
        pair["rating"], abs=5e-3
    )
    explained = mine["explanation"]
    assert explained["output"] == "items" and list(explained["items"]) == [
        row["item"] for row in mine["recommendations"]
    ]
    for row in mine["recommendations"]:
        found = explained["items"][row["item"]]
        assert list(found["weights"]) == ["user"]  # a random split feeds the tower no history
        assert found["baseline"] + found["weights"]["user"] == pytest.approx(row["score"], abs=5e-3)
    assert stranger["explanation"] == {"method": "popularity"}
    assert {key: value for key, value in pair.items() if key != "explanation"} == served.predict(None, frame)[1]
    assert not list(tmp_path.iterdir())  # scores write no files


def test_ratings_csv_with_configured_columns_and_items_file(tmp_path):
    rows = [(f"u{user}", f"m{item}", rating, time) for user, item, rating, time in dense_rows()]
    ratings = write_ratings(tmp_path / "log.csv", rows, header="who,what,stars,when")
    items = tmp_path / "catalogue.csv"
    items.write_text("what,name\n" + "\n".join(f"m{item},Film {item}" for item in range(15)) + "\n")
    task, resolved = resolve(
        TASK,
        "user_column=who",
        "item_column=what",
        "rating_column=stars",
        "timestamp_column=when",
        f"items_file={items}",
        "title_column=name",
        "top_k=3",
        data=str(ratings),
    )
    splits = task.load_data(resolved)
    assert len(splits.train.targets) + len(splits.validation.targets) + len(splits.test.targets) == len(rows)
    assert splits.info.items[0].startswith("m") and splits.info.titles[0].startswith("Film ")
    assert splits.info.model == "mf" and splits.info.outputs == ["rating", "items"]
    assert splits.train.features["user"].dtype == np.int32 and splits.train.features["user"].min() >= 1
    json.dumps(splits.info.to_json())


def test_movielens_u_data_with_u_item_titles(tmp_path):
    lines = [f"{user}\t{item}\t{rating}\t{time}" for user, item, rating, time in dense_rows()]
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    (tmp_path / "u.item").write_bytes(
        b"\n".join(f"{item}|Caf\xe9 {item} (1995)|01-Jan-1995".encode("latin-1") for item in range(15)) + b"\n"
    )
    task, resolved = resolve(TASK, "top_k=3", "split=leave_last_out", data=str(tmp_path))
    splits = task.load_data(resolved)  # a folder holding u.data
    assert splits.info.titles[0].startswith("Café") and splits.name == f"ratings_{tmp_path.name}"
    assert len(splits.test.targets) == 12 and len(splits.validation.targets) == 12  # one each per user


def test_implicit_feedback_trains_a_two_tower_model(tmp_path):
    rows = [(user, item, time) for user, item, _, time in dense_rows()]
    ratings = write_ratings(tmp_path / "clicks.csv", rows, header="userId,movieId,timestamp")
    task, resolved = resolve(TASK, "rating_column=", "top_k=3", data=str(ratings))
    splits = task.load_data(resolved)
    assert splits.info.model == "two_tower" and not splits.info.explicit
    assert (splits.train.targets == 1).all()
    with pytest.raises(ValueError, match="implicit"):
        task, resolved = resolve(TASK, "rating_column=", "model=mf", "top_k=3", data=str(ratings))
        task.load_data(resolved)


def test_tfds_movielens_under_mock_data(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda: True)
    with tfds.testing.mock_data(num_examples=80):
        # mock ratings are uniform in [0, 1): the configured scale must say so
        task, resolved = resolve(TASK, "rating_min=0", "rating_max=1", "top_k=3", data="tfds:movielens/100k-ratings")
        splits = task.load_data(resolved)
        assert splits.name == "tfds_movielens_100k-ratings" and len(splits.info.titles) == len(splits.info.items)
        assert len(splits.train.targets) + len(splits.validation.targets) + len(splits.test.targets) == 80


def test_splits_leave_last_out_and_time(tmp_path):
    rows = dense_rows() + [("lonely", "3", 4, 5)]
    ratings = write_ratings(tmp_path / "ratings.csv", rows)
    task, resolved = resolve(TASK, "split=leave_last_out", "top_k=3", data=str(ratings))
    splits = task.load_data(resolved)
    assert splits.info.train_only_users == 1  # documented: a single interaction stays in training
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "time"])
    last = frame.sort_values("time").groupby("user").tail(1)
    last = last[last.user != "lonely"]
    users, items = splits.info.users, splits.info.items
    held = {
        (users[user - 1], items[item - 1])
        for user, item in zip(splits.test.features["user"], splits.test.features["item"])
    }
    assert held == set(zip(last.user, last.item))
    # each test row sees the user's 7 earlier items
    assert ((splits.test.features["history"] > 0).sum(axis=1) == 7).all()
    task, resolved = resolve(TASK, "split=time", "top_k=3", data=str(ratings))
    timed = task.load_data(resolved)
    assert len(timed.test) == round(0.15 * len(rows))
    task, resolved = resolve(TASK, "split=leave_last_out", "top_k=3", "history_length=0", data=str(ratings))
    alone = task.load_data(resolved)
    assert "history" not in alone.test.features and len(alone.test) == len(last)  # the user id alone (was a KeyError)


@pytest.mark.parametrize(
    "assignments, header, match",
    [
        ((), "user,movieId,rating,timestamp", r"missing column\(s\) \['userId'\]; found columns: user, movieId"),
        (("rating_max=4",), "userId,movieId,rating,timestamp", r"outside the configured scale \[0.5, 4.0\]"),
        (("split=leave_last_out", "timestamp_column=ts"), "userId,movieId,rating,timestamp", "needs a timestamp"),
        (("top_k=0",), "userId,movieId,rating,timestamp", "top_k"),
        (("top_k=20",), "userId,movieId,rating,timestamp", "training items"),
        (("model=svd",), "userId,movieId,rating,timestamp", "model='svd' is not allowed; it must be one of auto, mf"),
    ],
)
def test_bad_input_is_one_line_value_error(tmp_path, assignments, header, match):
    ratings = write_ratings(tmp_path / "ratings.csv", dense_rows(), header=header)
    with pytest.raises(ValueError, match=match) as error:
        task, resolved = resolve(TASK, *assignments, data=str(ratings))
        task.load_data(resolved)
    assert "\n" not in str(error.value)


def test_every_user_with_one_interaction_cannot_leave_last_out(tmp_path):
    ratings = write_ratings(tmp_path / "ratings.csv", [(user, user % 5, 3, user) for user in range(30)])
    with pytest.raises(ValueError, match="at least two interactions"):
        task, resolved = resolve(TASK, "split=leave_last_out", "top_k=2", data=str(ratings))
        task.load_data(resolved)


def test_duplicate_pairs_policy(tmp_path):
    rows = dense_rows() + [("0", "99", 1, 10), ("0", "99", 5, 20), ("0", "99", 3, 15)]
    ratings = write_ratings(tmp_path / "ratings.csv", rows)
    with pytest.raises(ValueError, match="repeat a \\(user, item\\) pair, e.g. user '0' and item '99'"):
        task, resolved = resolve(TASK, "duplicates=error", "top_k=3", data=str(ratings))
        task.load_data(resolved)
    frame = pd.DataFrame(
        {"user": ["0"] * 3, "item": ["99"] * 3, "rating": [1.0, 5.0, 3.0], "timestamp": [10.0, 20.0, 15.0]}
    )
    _, latest = resolve(TASK, "duplicates=last")
    kept = interactions.clean_interactions(frame, latest, "x")
    assert kept["rating"].tolist() == [5.0]  # the latest rating supersedes
    _, mean = resolve(TASK, "duplicates=mean")
    averaged = interactions.clean_interactions(frame, mean, "x")
    assert averaged["rating"].tolist() == [3.0]
    task, resolved = resolve(TASK, "top_k=3", data=ratings)
    splits = task.load_data(resolved)
    assert sum(len(part) for part in (splits.train, splits.validation, splits.test)) == len(rows) - 2


def test_ranking_metrics_by_hand():
    recommended = np.array([[5, 1, 2], [7, 8, 9]])
    result = evaluation.ranking(recommended, [{1}, {3}], k=3, catalogue_size=10)
    assert result["hit_rate"] == 0.5
    assert result["ndcg"] == pytest.approx((1 / np.log2(3)) / 2)
    assert result["map"] == pytest.approx((1 / 2) / 2)
    assert result["coverage"] == 0.6
    with pytest.raises(ValueError, match="K must be"):
        evaluation.ranking(recommended, [{1}, {3}], k=0, catalogue_size=10)


@pytest.mark.slow
def test_two_tower_and_tfds_runs_end_to_end(tracking_store, tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    rows = [(user, item, time) for user, item, _, time in dense_rows(users=40, items=30)]
    ratings = write_ratings(tmp_path / "clicks.csv", rows, header="userId,movieId,timestamp")
    result = runner.run(*resolve(TASK, "rating_column=", "top_k=5", "split=leave_last_out", data=str(ratings)))
    assert "rmse" not in result.metrics and result.metrics["evaluated_users"] == 40
    served = tracking.load(result.model_uri).unwrap_python_model()
    answer = served.predict(None, pd.DataFrame({"query": ["3", "3,4"]}), {"explain": str(tmp_path)})
    assert len(answer[0]["recommendations"]) == 5 and answer[1]["rating"] is None and answer[1]["score"] is not None
    found = answer[1]["explanation"]  # the retrieval score of a pair, from the user and their latest items
    assert found["output"] == "items" and set(found["weights"]) == {"user", "history"}
    assert sum(found["history"].values()) == pytest.approx(found["weights"]["history"], abs=1e-5)
    assert found["baseline"] + sum(found["weights"].values()) == pytest.approx(answer[1]["score"], abs=5e-3)
    monkeypatch.setattr(tfds_source, "network_available", lambda: True)
    with tfds.testing.mock_data(num_examples=200):
        result = runner.run(
            *resolve(TASK, "rating_min=0", "rating_max=1", "top_k=3", data="tfds:movielens/latest-small-ratings"),
        )
    assert np.isfinite(result.metrics["rmse"])


@pytest.mark.slow
def test_real_movielens_small_loads_with_titles():
    folder = shared_data("movielens_latest_small")
    task, resolved = resolve(TASK, "split=leave_last_out", data=str(folder))
    splits = task.load_data(resolved)
    assert len(splits.test.targets) == 610 and "Toy Story (1995)" in splits.info.titles[0]
