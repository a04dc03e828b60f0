"""Best-validation checkpoint against the last one, for finished run folders, as JSON lines.

usage: python scripts/best_vs_last.py RUN_DIR [RUN_DIR ...]

By default a run keeps the epoch that scored best on validation; with 160 epochs and a
validation split of a few hundred clips that maximum flatters validation. The
last checkpoint was not chosen by anyone, so its validation accuracy is an
unbiased estimate; printing both shows how much the choice of epoch adds.
Each line: run, best_epoch, the checkpoint the run keeps, and validation/test accuracy (%) of both checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders (with metrics.json and checkpoints/last.npz)")
    args = parser.parse_args()

    from distill.core.io import read_json
    from distill.training.fit import CHECKPOINTS, kept_checkpoint, score_run

    datasets: dict = {}
    for run in args.runs:
        metrics = read_json(run / "metrics.json")  # only for best_epoch: the scores are measured here
        scores = {}
        for checkpoint in CHECKPOINTS:
            measured = score_run(run, checkpoint=checkpoint, datasets=datasets)
            scores[f"{checkpoint}_validation"] = round(100 * measured["validation"], 2)
            scores[f"{checkpoint}_test"] = round(100 * measured["testing"], 2)
        keeps = kept_checkpoint(run)
        print(json.dumps({"run": str(run), "best_epoch": metrics["best_epoch"], "keeps": keeps, **scores}), flush=True)


if __name__ == "__main__":
    main()
