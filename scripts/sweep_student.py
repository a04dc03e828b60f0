#!/usr/bin/env python
"""Distillation hyper-parameters chosen on validation only, as JSON lines plus a final choice.

usage: python scripts/sweep_student.py --data DIR --soft-labels DIR --out DIR
           [--arch tcresnet --size 14-w2 --epochs 40 --seed 0] [--alpha 0.1 0.3 ...] [--temperature 2 4 ...]
           [--twin] [--feature-masks] [--mixup A] [--keep best|last] [--weight-bits 8] [--jobs 2]

Every (alpha, temperature) pair is one `distill student fit` in OUT/a<alpha>_t<T>
(--jobs of them at once, each logging to OUT/<run>.log); a finished run
(metrics.json present) is read back and an interrupted one resumes from its
checkpoint, so an interrupted sweep resumes; a folder holding another
configuration is refused. --twin adds the no-teacher student of the same
schedule as the baseline. Test accuracy is printed for every run, but the
choice is made on validation accuracy alone: the test split stays a held-out
estimate.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def fit_or_read(args: argparse.Namespace, name: str, settings: dict) -> dict:
    from distill.training.student_fit import StudentRunSpec, fit_or_read_student

    started = time.time()
    spec = StudentRunSpec(data=args.data, arch=args.arch, size=args.size, epochs=args.epochs, seed=args.seed,
                          soft_labels=args.soft_labels if settings["teachers"] else None, feature_masks=args.feature_masks, mixup=args.mixup,
                          keep=args.keep, weight_bits=args.weight_bits, words=tuple(args.words.split(",")),
                          precision=args.precision, **{key: settings[key] for key in ("alpha", "temperature") if key in settings})
    scores = fit_or_read_student(args.out / name, spec=spec, log=args.out / f"{name}.log")
    return {"run": name, **settings, "best_epoch": scores["best_epoch"], "validation": scores["validation"], "test": scores["test"],
            "seconds": round(time.time() - started, 1)}


def main() -> None:
    from distill.core.labels import TARGET_WORDS
    from distill.training.fit import KEEP_CHOICES, PRECISIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--soft-labels", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", default="tcresnet")
    parser.add_argument("--size", default="14-w2")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--temperature", type=float, nargs="+", default=[2.0, 4.0])
    parser.add_argument("--twin", action="store_true", help="also fit the no-teacher student (the baseline)")
    parser.add_argument("--feature-masks", action="store_true", help="SpecAugment masks while training (the cpu-hybrid preset's setting)")
    parser.add_argument("--mixup", type=float, default=0.0, help="mixup Beta(a, a) for every run, the twin included (0: off)")
    parser.add_argument("--keep", choices=KEEP_CHOICES, default="last", help="checkpoint each run is scored by (cpu-hybrid keeps the last)")
    parser.add_argument("--weight-bits", type=int, default=8, help="8: budget 1 MB at 8 bits per weight (export with --quantize-weights)")
    parser.add_argument("--jobs", type=int, default=1, help="fits at once (each uses the threads TensorFlow gives it)")
    parser.add_argument("--words", default=",".join(TARGET_WORDS), help="target words, comma-separated (default: the Kaggle ten); the soft labels' list must match")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="training precision of every fit (mixed: bfloat16 on CPU)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    runs: dict[str, dict] = {
        f"a{alpha:g}_t{temperature:g}": {"alpha": alpha, "temperature": temperature, "teachers": True}
        for alpha, temperature in itertools.product(args.alpha, args.temperature)
    }
    if args.twin:
        runs["twin"] = {"teachers": False}
    from distill.core.errors import DistillError

    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(lambda item: fit_or_read(args, *item), runs.items()))
    except DistillError as error:
        raise SystemExit(f"error: {error}") from None
    for row in results:
        print(json.dumps(row), flush=True)
    chosen = max((r for r in results if r["teachers"]), key=lambda r: r["validation"])
    summary = {"chosen_on_validation": chosen["run"], "validation": chosen["validation"], "test": chosen["test"]}
    twin = next((r for r in results if not r["teachers"]), None)
    if twin:
        summary["test_gain_over_twin"] = chosen["test"] - twin["test"]
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
