#!/usr/bin/env python
"""Distillation hyper-parameters chosen on validation only, as JSON lines plus a final choice.

usage: python scripts/sweep_student.py --data DIR --soft-labels DIR --out DIR
           [--arch tcresnet --size 14-w2 --epochs 40 --seed 0] [--alpha 0.1 0.3 ...] [--temperature 2 4 ...]
           [--twin] [--feature-masks] [--keep best|last] [--weight-bits 8] [--jobs 2]

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
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def fit_command(args: argparse.Namespace, run: Path, settings: dict) -> list[str]:
    command = [sys.executable, "-m", "distill", "student", "fit", "--arch", args.arch, "--size", args.size, "--data", str(args.data),
               "--epochs", str(args.epochs), "--seed", str(args.seed), "--weight-bits", str(args.weight_bits), "--max-mb", "1",
               "--max-ms", "30", "--label-smoothing", "0", "--keep", args.keep, "--quiet", "--out", str(run)]
    if settings["teachers"]:
        command += ["--soft-labels", str(args.soft_labels), "--alpha", f"{settings['alpha']:g}", "--temperature", f"{settings['temperature']:g}"]
    else:
        command.append("--no-teachers")
    if args.feature_masks:
        command.append("--feature-masks")
    if (run / "config.json").exists():
        command.append("--resume")
    return command


def check_run(run: Path, args: argparse.Namespace, settings: dict) -> None:
    """Refuse a folder trained with other settings, so a stale run is never read back as this one."""
    from distill.config import load_config, refuse_other_config
    from distill.train import RunConfig

    saved = load_config(RunConfig, run / "config.json")
    expected = {"arch": args.arch, "size": args.size, "epochs": args.epochs, "seed": args.seed, "feature_masks": args.feature_masks,
                "keep": args.keep, "alpha": settings.get("alpha"), "temperature": settings.get("temperature")}
    found = {"arch": saved.arch, "size": saved.size, "epochs": saved.schedule.epochs, "seed": saved.seed,
             "feature_masks": bool(saved.feature_masks), "keep": saved.schedule.keep,
             "alpha": saved.distill.alpha if saved.distill else None, "temperature": saved.distill.temperature if saved.distill else None}
    refuse_other_config(run, expected=expected, found=found)


def fit_or_read(args: argparse.Namespace, name: str, settings: dict) -> dict:
    run = args.out / name
    started = time.time()
    if (run / "config.json").exists():
        check_run(run, args, settings)
    if not (run / "metrics.json").exists():
        log = args.out / f"{name}.log"
        with log.open("a") as sink:
            done = subprocess.run(fit_command(args, run, settings), stdout=sink, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise SystemExit(f"{run}: distill student fit failed (exit {done.returncode}); see {log}")
    metrics = json.loads((run / "metrics.json").read_text())  # scored at the checkpoint the run keeps (--keep)
    return {"run": name, **settings, "best_epoch": metrics["best_epoch"], "validation": metrics["validation"]["accuracy"],
            "test": metrics["test"]["accuracy"], "seconds": round(time.time() - started, 1)}


def main() -> None:
    from distill.train import KEEP_CHOICES

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
    parser.add_argument("--keep", choices=KEEP_CHOICES, default="last", help="checkpoint each run is scored by (cpu-hybrid keeps the last)")
    parser.add_argument("--weight-bits", type=int, default=8, help="8: budget 1 MB at 8 bits per weight (export with --quantize-weights)")
    parser.add_argument("--jobs", type=int, default=1, help="fits at once (each uses the threads TensorFlow gives it)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    runs: dict[str, dict] = {
        f"a{alpha:g}_t{temperature:g}": {"alpha": alpha, "temperature": temperature, "teachers": True}
        for alpha, temperature in itertools.product(args.alpha, args.temperature)
    }
    if args.twin:
        runs["twin"] = {"teachers": False}
    from distill.errors import DistillError

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
