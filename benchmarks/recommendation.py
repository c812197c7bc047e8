"""Benchmark recommendation on MovieLens latest-small (../shared/data/movielens_latest_small).

Two runs, one per target protocol of the issue:
    rating   matrix factorisation with biases on a random 80/20 split (5% of all ratings, carved from the
             80%, for early stopping; the 20% test is never used for choices): RMSE, target <= 0.83.
    ranking  two-tower retrieval under leave-last-out (each user's latest rating is held out and ranked
             among every item the user has not rated): HitRate@10, target >= 2x the popularity baseline
             scored the same way (the task logs it beside the model).
Reference: the keras-io collaborative-filtering recipe reaches RMSE 0.851 but HitRate@10 0.034 (popularity 0.041).

Usage: `python -m benchmarks.recommendation [--set k=v ...]` (applies to both runs).
Progress goes to stderr; the last stdout line is one JSON object (benchmarks/common.py).
"""

from benchmarks import common

DATA = common.DATA / "movielens_latest_small"
# Chosen on the validation split only (best validation RMSE 0.835 among l2 1e-5..2e-4, learning rates
# 1e-3/1e-2, batch 64/256, dimensions 32/50/64, output linear or sigmoid-bounded). Tried on 2026-12-02, best
# validation RMSE (these settings 0.837): dimension 32 with l2 3e-4 0.858, dimension 100 with l2 2e-4 0.848,
# the neural model 0.850, learning rate 3e-3 with batch 256 0.837 (3x faster, no better).
RATING = [
    "split=random",
    "test_fraction=0.2",
    "validation_fraction=0.05",
    "model=mf",
    "retrieval=false",
    "l2=1e-4",
    "learning_rate=0.001",
    "batch_size=64",
    "embedding_dim=50",
    "monitor=val_rmse",
    "seed=0",
]
# Early stopping on the validation hit rate rather than the loss: the softmax loss bottoms out epochs
# before the ranking does.
RANKING = [
    "split=leave_last_out",
    "model=two_tower",
    "batch_size=512",
    "top_k=10",
    "monitor=val_hit_rate_at_k",
    "seed=0",
]

RANKING_KEYS = (
    "hit_rate_at_k",
    "ndcg_at_k",
    "map_at_k",
    "coverage_at_k",
    "baseline_popularity_hit_rate_at_k",
    "baseline_popularity_ndcg_at_k",
    "baseline_popularity_map_at_k",
    "baseline_popularity_coverage_at_k",
)


def targets(metrics):
    """The issue's two targets, checked on the reported figures (K = 10)."""
    hit_rate = metrics["leave_last_out_hit_rate_at_k"]
    popularity = metrics["leave_last_out_baseline_popularity_hit_rate_at_k"]
    return {
        "hit_rate_ratio_to_popularity": round(hit_rate / max(popularity, 1e-9), 3),
        "target_rmse_met": metrics["random_80_20_rmse"] <= 0.83,
        "target_hit_rate_met": hit_rate >= 2 * popularity,
    }


def main():
    common.run_protocols(
        "recommendation",
        [
            common.Protocol(
                "random_80_20", DATA, RATING, ("rmse", "mae", "baseline_item_means_rmse", "baseline_item_means_mae")
            ),
            common.Protocol("leave_last_out", DATA, RANKING, RANKING_KEYS),
        ],
        description=__doc__.splitlines()[0],
        backend="jax",
        derive=targets,
    )


if __name__ == "__main__":
    main()
