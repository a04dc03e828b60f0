#!/usr/bin/env python
"""Data-pipeline throughput on this machine, as JSON.

Measures (1) decoded-cache build speed (clips/s, cold: cache removed first)
and (2) the augmented feature pipeline: materialize + augment_waveforms on a
background thread + the TF front-end, as training consumes it (clips/s).
Target: >= 3,000 augmented clips/s on 2 cores so training is never data-bound.

usage: python scripts/bench_data.py [--data DIR] [--batches N] [--batch-size B]
(default data: a synthesized demo tree made in a temp folder)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="Speech Commands-layout tree (default: synthesize a demo one)")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--frontend", default="logmel")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from distill.data.augment import AugmentConfig, augment_waveforms
    from distill.data.cache import open_dataset
    from distill.data.examples import MixConfig, make_examples, materialize
    from distill.layers.frontend import FrontendConfig, frontend_tf
    from distill.training.fit import prefetch

    work = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        data = args.data
        if data is None:
            from distill.data.synth import SynthConfig, synthesize_dataset

            data = synthesize_dataset(out=work / "synth", config=SynthConfig(), progress=False).out
        cache_home = work / "cache"
        started = time.perf_counter()
        dataset = open_dataset(data, cache_dir=cache_home, progress=False)
        build_seconds = time.perf_counter() - started
        started = time.perf_counter()
        open_dataset(data, cache_dir=cache_home, progress=False)
        reopen_seconds = time.perf_counter() - started

        examples = make_examples(dataset, split="training", mix=MixConfig(), seed=0, all_unknown=True)
        frontend = FrontendConfig(kind=args.frontend)
        features = tf.function(lambda x: frontend_tf(x, frontend), input_signature=[tf.TensorSpec([None, 16000], tf.float32)])
        rng = np.random.default_rng(0)
        config = AugmentConfig()

        def batches(n):
            for i in range(n):
                chosen = examples.subset(rng.integers(0, len(examples), args.batch_size))
                audio = materialize(dataset, chosen)
                yield augment_waveforms(audio, seeds=chosen.seeds, view=1 + i, noise=dataset.noise, config=config)

        for audio in batches(3):  # warm-up: trace the front-end once
            features(audio)
        started = time.perf_counter()
        for audio in prefetch(batches(args.batches)):
            features(audio).numpy()
        pipeline = args.batches * args.batch_size / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in batches(args.batches):
            pass
        augment_only = args.batches * args.batch_size / (time.perf_counter() - started)
        result = {
            "benchmark": "data",
            "cpu_count": os.cpu_count(),
            "clips": len(dataset),
            "cache_build_clips_per_s": round(len(dataset) / build_seconds, 1),
            "cache_reopen_s": round(reopen_seconds, 3),
            "augment_only_clips_per_s": round(augment_only, 1),
            "augmented_feature_pipeline_clips_per_s": round(pipeline, 1),
            "frontend": args.frontend,
            "target_clips_per_s": 3000,
            "meets_target": pipeline >= 3000,
        }
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
