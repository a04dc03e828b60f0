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

    from distill.data import open_dataset
    from distill.io import read_json
    from distill.train import evaluate, evaluation_examples, load_run, make_predictor

    datasets = {}
    for run in args.runs:
        metrics = read_json(run / "metrics.json")  # only for best_epoch: the scores are measured here, whichever checkpoint the run keeps
        scores = {}
        for checkpoint in ("best", "last"):
            config, model = load_run(run, checkpoint=checkpoint)
            if config.data not in datasets:
                datasets[config.data] = open_dataset(Path(config.data), progress=False)
            dataset = datasets[config.data]
            predict = make_predictor(model)
            for split, key in (("validation", "validation"), ("testing", "test")):
                scores[f"{checkpoint}_{key}"] = round(100 * evaluate(predict, dataset, evaluation_examples(dataset, config, split))["accuracy"], 2)
        print(json.dumps({"run": str(run), "best_epoch": metrics["best_epoch"], "keeps": config.schedule.keep, **scores}), flush=True)


if __name__ == "__main__":
    main()
