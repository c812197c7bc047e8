"""A fuzzed endpoint: `mlflow models serve` on quick image, text, tabular and audio models answers every
hostile or random request, still answers a good one correctly afterwards, and stays within a memory bound.

The requests and their judging live in pipelines/serving_fuzz.py; benchmarks/serving_fuzz.py reports the same
figures."""

import sys

import pytest

from pipelines import cli, serving_fuzz

REQUESTS = 500  # per model: every kind of request some 20 times (the heavy kinds 3 times)
# The server's processes together (the `mlflow models serve` parent, the uvicorn worker holding
# TensorFlow and the model, and what the requests cost): measured 1.4-1.8 GB, see docs/serving.md.
PEAK_RSS_MB = 2500
trained = set()


@pytest.fixture
def quick_model(module_store):
    """Trains a quick model of a task into the module's store once (its latest version, which is served);
    returns the store."""

    def train(name):
        if name not in trained:
            assert cli.main(["run", name, "--quick", "--promote", "always"]) == 0
            trained.add(name)
        return module_store

    return train


@pytest.mark.slow
@pytest.mark.parametrize("name", serving_fuzz.TASKS)
def test_the_served_model_answers_every_hostile_request(name, quick_model, tmp_path):
    store = quick_model(name)
    result = serving_fuzz.fuzz_one(
        name, store, tmp_path, REQUESTS, seed=0, log=lambda message: print(message, file=sys.stderr)
    )
    assert result["requests"] == REQUESTS
    assert result["answered"] == REQUESTS, result["examples"]
    assert result["good_still_correct"]
    assert result["peak_rss_mb"] < PEAK_RSS_MB
    assert set(result["statuses"]) <= {"200", "400", "415", "500"}  # 415: a content type MLflow does not take
    assert result["statuses"].get("500", 0) <= result["kinds"]["deep_json"]  # from MLflow's JSON parser only
