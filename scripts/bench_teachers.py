#!/usr/bin/env python
"""Teacher throughput on this machine, as JSON: training examples/s per architecture and predict clips/s.

usage: python scripts/bench_teachers.py [--size default] [--batch-size 64] [--steps 8] [--arch A ...]

Each architecture runs the real fit loop's train step (same loss, optimizer
and augmentation-free batches of random audio, so data loading is excluded)
and the compiled inference function used by `distill teachers predict`.
Ratios between architectures are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="default")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--arch", action="append")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from distill.core.registry import TEACHERS
    from distill.training.fit import RunConfig, build_model, make_predictor
    from distill.training.loss import distillation_loss

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((args.batch_size, 16000))).astype(np.float32)
    y = rng.integers(0, 12, args.batch_size)
    soft = np.zeros((args.batch_size, 12), np.float32)
    results = {}
    for arch in args.arch or TEACHERS.names():
        model = build_model(RunConfig(family="teacher", arch=arch, data="", size=args.size))
        optimizer = keras.optimizers.AdamW(1e-3)
        optimizer.build(model.trainable_variables)

        @tf.function
        def step(x, y, s):
            with tf.GradientTape() as tape:
                loss = distillation_loss(model(x, training=True), y, s, alpha=1.0, temperature=1.0, label_smoothing=0.1)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        step(x, y, soft)
        started = time.perf_counter()
        for _ in range(args.steps):
            step(x, y, soft)
        train = args.steps * args.batch_size / (time.perf_counter() - started)
        predict = make_predictor(model)
        clips = np.tile(x, (4, 1))
        predict(clips)
        started = time.perf_counter()
        predict(clips)
        results[arch] = {"params": int(model.count_params()), "train_examples_per_s": round(train, 1), "predict_clips_per_s": round(len(clips) / (time.perf_counter() - started), 1)}
    fastest = max(r["train_examples_per_s"] for r in results.values())
    for r in results.values():
        r["train_relative_to_fastest"] = round(r["train_examples_per_s"] / fastest, 3)
    print(json.dumps({"benchmark": "teachers", "size": args.size, "batch_size": args.batch_size, "cpu_count": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
