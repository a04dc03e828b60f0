#!/usr/bin/env python
"""Distillation hyper-parameters chosen on validation only, as JSON lines plus a final choice.

usage: python scripts/sweep_student.py --data DIR --soft-labels DIR --out DIR
           [--arch tcresnet --size 14 --epochs 40] [--alpha 0.1 0.3 ...] [--temperature 2 4 ...]
           [--twin] [--weight-bits 8]

Every (alpha, temperature) pair is one `fit_student` run in OUT/a<alpha>_t<T>;
a finished run (metrics.json present) is read back, so an interrupted sweep
resumes. --twin adds the no-teacher student of the same schedule as the
baseline. Test accuracy is printed for every run, but the choice is made on
validation accuracy alone: the test split stays a held-out estimate.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--soft-labels", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", default="tcresnet")
    parser.add_argument("--size", default="14")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--temperature", type=float, nargs="+", default=[2.0, 4.0])
    parser.add_argument("--twin", action="store_true", help="also fit the no-teacher student (the baseline)")
    parser.add_argument("--weight-bits", type=int, default=32, help="8: budget 1 MB at 8 bits per weight (export with --quantize-weights)")
    args = parser.parse_args()

    from distill.student import fit_student
    from distill.train import ScheduleConfig

    schedule = ScheduleConfig(epochs=args.epochs, label_smoothing=0.0)
    runs: dict[str, dict] = {
        f"a{alpha:g}_t{temperature:g}": dict(soft_labels=args.soft_labels, alpha=alpha, temperature=temperature)
        for alpha, temperature in itertools.product(args.alpha, args.temperature)
    }
    if args.twin:
        runs["twin"] = dict(soft_labels=None)
    results = []
    for name, kwargs in runs.items():
        run = args.out / name
        started = time.time()
        if (run / "metrics.json").exists():
            metrics = json.loads((run / "metrics.json").read_text())
        else:
            metrics = fit_student(arch=args.arch, size=args.size, data=args.data, out=run, schedule=schedule, max_mb=1.0, max_ms=30.0,
                                  weight_bits=args.weight_bits, resume=(run / "config.json").exists(), progress=False, **kwargs).metrics
        row = {"run": name, **{k: v for k, v in kwargs.items() if k != "soft_labels"}, "teachers": kwargs["soft_labels"] is not None,
               "best_epoch": metrics["best_epoch"], "validation": metrics["validation"]["accuracy"], "test": metrics["test"]["accuracy"],
               "seconds": round(time.time() - started, 1)}
        results.append(row)
        print(json.dumps(row), flush=True)
    distilled = [r for r in results if r["teachers"]]
    chosen = max(distilled, key=lambda r: r["validation"])
    summary = {"chosen_on_validation": chosen["run"], "validation": chosen["validation"], "test": chosen["test"]}
    twin = next((r for r in results if not r["teachers"]), None)
    if twin:
        summary["test_gain_over_twin"] = chosen["test"] - twin["test"]
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
