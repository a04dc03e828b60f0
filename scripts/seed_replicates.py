#!/usr/bin/env python
"""Distilled students against their no-teacher twin over several seeds, as JSON lines plus a summary.

usage: python scripts/seed_replicates.py --data DIR --out DIR --variant NAME=SOFT_LABELS_DIR [...]
           [--seeds 0 1 2] [--jobs 2] [--arch tcresnet --size 14-w2 --epochs 160 --feature-masks --view-masks --mixup A --weight-bits 8 --keep last]

One run of seed 0 is one draw: on a 10k-clip subset two seeds of the same student differ by
about half a point, as much as the effect being measured. This driver fits every variant
(a named soft-label folder: for example 8 stored views against 32) and the twin at each seed,
each run being `distill student fit` in OUT/<variant>_s<seed> (the twin: OUT/twin_s<seed>).
A finished run (metrics.json) is read back and an interrupted one resumes from its checkpoint;
a folder holding another configuration is refused. An existing run can be adopted by linking
it in under its run name. The summary gives, per variant, mean and spread of validation and
test accuracy and the test margin over the twin paired by seed; the variant to ship is chosen
on mean validation accuracy alone; it is printed last and written to
OUT/summary-<variant>[+<variant>...]-<keep>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_name(variant: str | None, seed: int) -> str:
    return f"{variant or 'twin'}_s{seed}"


def spec_for(args: argparse.Namespace, soft_labels: Path | None, seed: int):
    from distill.training.student_fit import StudentRunSpec

    return StudentRunSpec(data=args.data, arch=args.arch, size=args.size, epochs=args.epochs, seed=seed, soft_labels=soft_labels,
                          feature_masks=args.feature_masks, view_masks=args.view_masks, mixup=args.mixup, keep=args.keep, weight_bits=args.weight_bits,
                          words=tuple(args.words.split(",")), precision=args.precision)


def fit_or_read(args: argparse.Namespace, variant: str | None, soft_labels: Path | None, seed: int) -> dict:
    from distill.training.student_fit import fit_or_read_student

    name = run_name(variant, seed)
    scores = fit_or_read_student(args.out / name, spec=spec_for(args, soft_labels, seed), log=args.out / f"{name}.log")
    return {"run": name, "variant": variant or "twin", "seed": seed, **scores}


def summarize(rows: list[dict], variants: list[str]) -> dict:
    def spread(values: list[float]) -> dict:
        return {"mean": statistics.fmean(values), "stdev": statistics.stdev(values) if len(values) > 1 else None, "n": len(values)}

    twin = {r["seed"]: r for r in rows if r["variant"] == "twin"}
    summary: dict = {"twin": {"validation": spread([r["validation"] for r in twin.values()]), "test": spread([r["test"] for r in twin.values()])}}
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        summary[variant] = {
            "validation": spread([r["validation"] for r in mine]),
            "test": spread([r["test"] for r in mine]),
            "test_margin_over_twin": spread([r["test"] - twin[r["seed"]]["test"] for r in mine]),
            "validation_margin_over_twin": spread([r["validation"] - twin[r["seed"]]["validation"] for r in mine]),
        }
    summary["chosen_on_validation"] = max(variants, key=lambda v: summary[v]["validation"]["mean"])
    return summary


def main() -> None:
    from distill.core.labels import TARGET_WORDS
    from distill.training.fit import KEEP_CHOICES, PRECISIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=SOFT_LABELS",
                        help="a distilled variant: its name and the soft-label folder it learns from (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="fits at once (each uses the threads TensorFlow gives it)")
    parser.add_argument("--arch", default="tcresnet")
    parser.add_argument("--size", default="14-w2")
    parser.add_argument("--epochs", type=int, default=160)
    parser.add_argument("--feature-masks", action="store_true", help="SpecAugment masks while training (the cpu-long preset's setting)")
    parser.add_argument("--view-masks", action="store_true",
                        help="masks inside the views for every run: twins get them, variants need soft labels from `teachers predict --view-masks`")
    parser.add_argument("--mixup", type=float, default=0.0, help="mixup Beta(a, a) for every run, twins included (0: off)")
    parser.add_argument("--weight-bits", type=int, default=8)
    parser.add_argument("--words", default=",".join(TARGET_WORDS), help="target words, comma-separated (default: the Kaggle ten); the soft labels' list must match")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="training precision of every fit (mixed: bfloat16 on CPU)")
    parser.add_argument("--keep", choices=KEEP_CHOICES, default="last",
                        help="checkpoint each run is scored by (the cpu-hybrid preset keeps the last; runs keeping the other are re-scored)")
    args = parser.parse_args()
    variants: dict[str, Path] = {}
    for spec in args.variant:
        name, sep, folder = spec.partition("=")
        if not sep or not name or name == "twin":
            parser.error(f"--variant {spec!r}: expected NAME=SOFT_LABELS_DIR with a name other than 'twin'")
        variants[name] = Path(folder)
    args.out.mkdir(parents=True, exist_ok=True)
    from distill.core.errors import DistillError
    from distill.core.io import write_json

    jobs = [(None, None, seed) for seed in args.seeds] + [(name, folder, seed) for seed in args.seeds for name, folder in variants.items()]
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            rows = list(pool.map(lambda job: fit_or_read(args, *job), jobs))
    except DistillError as error:
        raise SystemExit(f"error: {error}") from None
    for row in rows:
        print(json.dumps(row), flush=True)
    summary = summarize(rows, list(variants))
    # one summary per set of variants and checkpoint, so a later call with other variants keeps this one
    write_json(args.out / f"summary-{'+'.join(variants)}-{args.keep}.json", summary)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
