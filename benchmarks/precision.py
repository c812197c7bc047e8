"""Does bfloat16 pay on this CPU? Each task's defaults in float32 and in mixed bfloat16, back to back.

`precision=auto` trains in mixed bfloat16 on CPUs with native bfloat16 (AVX512_BF16, AMX, Arm BF16) for the
tasks whose `cpu_bfloat16` is True. This script measures what that choice rests on: for each task, on one
small variant of its benchmark set (`benchmarks.transfer.VARIANTS`), the same run with `precision=float32`
and with `precision=mixed_bfloat16`, seed by seed, in one process: the training throughput of each (examples
per second of `model.fit`, so early stopping at another epoch does not count) and the test metric. A task
keeps bfloat16 on CPUs only where the ratio pays and the mean metric over seeds holds.

Usage:
    python -m benchmarks.precision [--tasks T,T] [--variants V,V] [--seeds 0,1,2] [--output rows.jsonl]
    python -m benchmarks.precision --table rows.jsonl

Progress goes to stderr, one JSON row per run to `--output` (appended; rows already there are skipped, so an
interrupted measurement resumes), and the last stdout line is one JSON object per task: the throughput ratio
bfloat16 / float32 and the metric both ways (mean over seeds).
"""

import argparse
import json
import pathlib
import statistics
import sys

from benchmarks import common, transfer

POLICIES = ("float32", "mixed_bfloat16")
# One variant per task, the smallest of its benchmark set's that still trains for several epochs.
VARIANTS = (
    "mnist_500",
    "pneumonia_546",
    "isbi_128",
    "sst2_2000",
    "anki_8000",
    "fsdd_500",
    "creditcard",
    "fd001",
    "movielens_random",
)


def run_one(variant, policy, seed):
    """One default run of `variant` under `policy`: its test metric and training throughput."""
    row = transfer.run_one(variant, "default", seed, [f"precision={policy}"])
    return {
        "task": row["task"],
        "variant": row["variant"],
        "policy": policy,
        "seed": seed,
        "metric": row["metric"],
        "value": row["value"],
        "train_seconds": row["train_seconds"],
        "examples_per_second": round(row["train_examples"] / max(row["train_seconds"], 1e-9), 1),
    }


def summary(rows):
    """Per task: the mean throughput ratio bfloat16 / float32 over seeds and the mean metric each way."""
    found = {}
    for task in sorted({row["task"] for row in rows}):
        mine = [row for row in rows if row["task"] == task]
        by = {(row["policy"], row["seed"]): row for row in mine}
        seeds = sorted({seed for policy, seed in by if all((other, seed) in by for other in POLICIES)})
        if not seeds:
            continue
        ratios = [
            by["mixed_bfloat16", seed]["examples_per_second"] / by["float32", seed]["examples_per_second"]
            for seed in seeds
        ]
        found[task] = {
            "variant": mine[0]["variant"],
            "metric": mine[0]["metric"],
            "seeds": seeds,
            "throughput_ratio": round(statistics.fmean(ratios), 2),
            **{policy: round(statistics.fmean(by[policy, seed]["value"] for seed in seeds), 4) for policy in POLICIES},
        }
    return found


def table(rows):
    """The Markdown table of docs/benchmarks.md."""
    lines = [
        "| task | variant | metric | float32 | mixed bfloat16 | throughput bf16 / fp32 | seeds |",
        "|---" * 7 + "|",
    ]
    for task, entry in summary(rows).items():
        lines.append(
            f"| {task} | {entry['variant']} | {entry['metric']} | {entry['float32']:.3f} | "
            f"{entry['mixed_bfloat16']:.3f} | {entry['throughput_ratio']:.2f}x | "
            f"{','.join(map(str, entry['seeds']))} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", help="comma-separated tasks (default: all)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated transfer variants")
    parser.add_argument("--seeds", type=common.parse_seeds, default=[0, 1, 2], metavar="S,S,...")
    parser.add_argument("--output", type=pathlib.Path, help="append each run's JSON row here (and skip runs in it)")
    parser.add_argument("--table", type=pathlib.Path, metavar="ROWS.jsonl", help="print the Markdown table and stop")
    arguments = parser.parse_args()
    if arguments.table:
        print(table([json.loads(line) for line in arguments.table.read_text().splitlines() if line.strip()]))
        return
    names = arguments.variants.split(",")
    wanted = [
        variant
        for variant in transfer.VARIANTS
        if variant.name in names and (not arguments.tasks or variant.task in arguments.tasks.split(","))
    ]
    missing = sorted({str(variant.data) for variant in wanted if not variant.data.exists()})
    if missing:
        sys.exit(
            f"benchmark data {', '.join(missing)} is absent (the team's ../shared/data folder must sit beside the repo)"
        )
    rows = (
        [json.loads(line) for line in arguments.output.read_text().splitlines() if line.strip()]
        if arguments.output and arguments.output.exists()
        else []
    )
    done = {(row["variant"], row["policy"], row["seed"]) for row in rows}
    for variant in wanted:
        for seed in arguments.seeds:
            for policy in POLICIES:  # interleaved, so a change in the machine's load touches both alike
                if (variant.name, policy, seed) in done:
                    continue
                print(f"precision {variant.task} {variant.name} {policy} seed {seed}", file=sys.stderr)
                row = run_one(variant, policy, seed)
                print(f"precision result {json.dumps(row)}", file=sys.stderr)
                rows.append(row)
                if arguments.output:
                    with arguments.output.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")
    found = summary([row for row in rows if row["variant"] in {variant.name for variant in wanted}])
    print(
        json.dumps(
            {
                "task": "precision",
                "data": ",".join(str(variant.data.relative_to(common.DATA.parent)) for variant in wanted),
                "metrics": found,
                "train_seconds": round(sum(row["train_seconds"] for row in rows), 1),
                "examples_per_second": None,
            }
        )
    )


if __name__ == "__main__":
    main()
