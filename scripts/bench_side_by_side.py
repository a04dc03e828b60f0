#!/usr/bin/env python
"""Students fitted one at a time against several at once (``distill run --student-jobs``), as JSON.

usage: python scripts/bench_side_by_side.py --data DIR [--soft-labels DIR] [--recipe ladder] [--student 1 ...]
                                            [--epochs 3] [--jobs 2] [--rounds 2] [--work DIR] [KEY=VALUE ...]

For each recipe student (``--student``, its index in the recipe's ``[[students]]``, repeatable) the
fit ``distill run`` would make (``student_settings``: its size, front-end, schedule and distillation
settings, with ``--epochs`` in place of the recipe's) is run through ``fit_students_side_by_side``:
once alone (all cores to one process), then ``--jobs`` copies at once (the cores shared out), in turns
for ``--rounds`` rounds, so drift on a shared machine slows both alike. Each fit is whole: start-up,
data, training and its final scoring, as in a ladder. ``speedup`` is ``jobs x alone / side by side``:
above 1, the cores do more fits an hour side by side. Without ``--soft-labels`` the fits are twins.
KEY=VALUE arguments override the recipe as ``distill run``'s do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def timed(runs: list[dict], jobs: int) -> float:
    from distill.training.student_fit import fit_students_side_by_side

    for run in runs:
        shutil.rmtree(run["out"], ignore_errors=True)
    started = time.perf_counter()
    for _ in fit_students_side_by_side(runs, jobs=jobs):
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Speech Commands-layout tree")
    parser.add_argument("--soft-labels", type=Path, help="the teachers' soft labels (distilled fits); without: twins")
    parser.add_argument("--recipe", default="ladder", help="a shipped recipe or a .toml file (default: ladder)")
    parser.add_argument("--student", type=int, action="append", help="index of a recipe student (repeatable; default: 1)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every fit (default 3)")
    parser.add_argument("--jobs", type=int, default=2, help="fits at once in the side-by-side turn (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="turns of alone, then side by side (default 2)")
    parser.add_argument("--work", type=Path, help="folder for the runs (default: a temporary one, removed after)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides of the recipe, e.g. students.1.batch_size=32")
    args = parser.parse_args()
    if args.jobs < 2 or args.rounds < 1 or args.epochs < 1:
        parser.error("need --jobs >= 2, --rounds >= 1 and --epochs >= 1")

    from distill.core.errors import DistillError
    from distill.pipeline.recipe import load_recipe
    from distill.pipeline.run import StudentPlan, student_settings

    indices = args.student or [1]
    try:  # a bad recipe, override or --student index is named by the recipe's own error
        recipe = load_recipe(args.recipe, [*args.overrides, *(f"students.{i}.epochs={args.epochs}" for i in indices)])
    except DistillError as err:
        parser.error(str(err))
    work = args.work or Path(tempfile.mkdtemp(prefix="side_by_side_"))
    results = []
    try:
        for i in indices:
            student = recipe.students[i]
            settings = student_settings(recipe, StudentPlan(student.label, student, teachers=args.soft_labels is not None))

            def runs(tag: str, count: int) -> list[dict]:
                return [dict(data=args.data, out=work / f"{student.label}-{tag}{k}", soft_labels=args.soft_labels, resume=False,
                             recipe=recipe.source, **settings) for k in range(count)]

            alone, side = [], []
            for _ in range(args.rounds):
                alone.append(timed(runs("alone", 1), 1))
                side.append(timed(runs("side", args.jobs), args.jobs))
            ratios = [args.jobs * a / s for a, s in zip(alone, side)]
            results.append({"student": student.label, "frontend": student.frontend or "default", "teachers": args.soft_labels is not None,
                            "epochs": args.epochs, "alone_s": [round(a, 2) for a in alone], "side_by_side_s": [round(s, 2) for s in side],
                            "speedup": round(statistics.median(ratios), 3), "round_speedups": [round(r, 3) for r in ratios]})
            print(json.dumps(results[-1]), flush=True, file=sys.stderr)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"recipe": recipe.name, "jobs": args.jobs, "cores": os.cpu_count(), "rounds": args.rounds, "results": results}, indent=1))


if __name__ == "__main__":
    main()
