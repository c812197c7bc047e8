"""shared/drift.py on generated numbers: each statistic stays below its threshold on a fresh sample of the reference's
distribution and passes it on the feature that was shifted, after a round trip through the reference's JSON."""

import json

import numpy as np
from scipy import stats

from shared import drift


def _round_trip(view):
    return json.loads(json.dumps(drift.reference(view)))


def _table(rng, count, shift=0.0, card_present=0.7, unseen=False):
    amount = rng.lognormal(3.6 + shift, 1.0, count)
    present = (rng.random(count) < card_present).astype("float32")  # a discrete column: two values
    categories = rng.integers(0, 9 if unseen else 5, count)
    return drift.table_view(np.c_[amount, present], ["amount", "card_present"], {"merchant": categories})


def test_psi_and_ks_stay_quiet_on_a_fresh_sample_and_name_the_shifted_column():
    rng = np.random.default_rng(0)
    saved = _round_trip(_table(rng, 1000))
    unchanged = drift.compare(saved, _table(rng, 2000))
    assert not unchanged["drift"] and all(row["value"] < 0.05 for row in unchanged["rows"])
    assert {row["feature"] for row in unchanged["rows"]} == {"amount", "card_present", "merchant"}
    shifted = drift.compare(saved, _table(rng, 2000, shift=1.0))
    assert shifted["drifted"] == ["amount"] and shifted["worst"][0] == "amount"
    amount = shifted["rows"][0]
    assert amount["statistic"] == "psi" and amount["threshold"] == drift.PSI_THRESHOLD and amount["ks_p_value"] < 1e-6
    # a discrete column keeps its values on their own side of the decile edges after the JSON round trip
    assert drift.compare(saved, _table(rng, 2000, card_present=0.3))["drifted"] == ["card_present"]
    assert drift.compare(saved, _table(rng, 2000, unseen=True))["drifted"] == ["merchant"]


def test_ks_from_saved_percentiles_matches_scipy_on_the_rows():
    rng = np.random.default_rng(1)
    reference, recent = rng.normal(size=1000), rng.normal(0.2, 1.0, 500)
    percentiles = np.quantile(reference, np.linspace(0, 1, drift.KS_POINTS))
    assert abs(drift._ks(percentiles, recent) - stats.ks_2samp(reference, recent).statistic) < 0.02


def test_unknown_token_rate_and_length_shift_with_another_vocabulary():
    rng = np.random.default_rng(2)

    def texts(count, unknown, longest):
        lengths = rng.integers(3, longest, count)
        ids = np.zeros((count, longest), "int64")
        for row, length in enumerate(lengths):
            ids[row, :length] = np.where(rng.random(length) < unknown, 1, rng.integers(2, 500, length))
        return drift.token_view(ids)

    saved = _round_trip(texts(1000, 0.02, 20))
    assert saved["rates"]["unknown_tokens"] < 0.03
    assert not drift.compare(saved, texts(500, 0.02, 20))["drift"]
    found = drift.compare(saved, texts(500, 0.5, 40))
    assert set(found["drifted"]) == {"unknown_tokens", "tokens"}
    rate = next(row for row in found["rows"] if row["statistic"] == "rate_increase")
    assert rate["recent"] > 0.45 and rate["threshold"] == drift.RATE_INCREASE


def test_mmd_passes_an_unchanged_sample_and_flags_shifted_embeddings():
    rng = np.random.default_rng(3)
    view = drift.View(embeddings=rng.normal(size=(600, 16)))
    saved = _round_trip(view)
    assert len(saved["embeddings"]["sample"]) == drift.EMBEDDING_SAMPLE
    unchanged = drift.compare(saved, drift.View(embeddings=rng.normal(size=(300, 16))))["rows"][0]
    assert unchanged["statistic"] == "mmd" and not unchanged["drift"] and unchanged["p_value"] > 0.01
    shifted = drift.compare(saved, drift.View(embeddings=rng.normal(0.5, 1.0, size=(300, 16))))["rows"][0]
    assert shifted["drift"] and shifted["p_value"] < 0.01
