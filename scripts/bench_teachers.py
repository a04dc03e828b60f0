#!/usr/bin/env python
"""Training throughput of every architecture in float32 and in mixed precision, side by side, as JSON.

usage: python scripts/bench_teachers.py [--family teacher|student|all] [--arch A ...] [--size default]
                                        [--batch-size 64] [--steps 8] [--rounds 3]

Each architecture (teachers and students, or those named with --arch) is built twice, once under
each precision (``--precision float32`` and ``mixed``: bfloat16 on CPU, float16 with loss scaling on
GPU), and runs the fit loop's loss and optimizer on batches of random audio, so data loading is
excluded. The two take turns, ``--steps`` steps each per round for ``--rounds`` rounds (float32,
mixed, float32, mixed, ...), so a machine whose speed drifts (other jobs, clocks) slows both alike
and their ratio holds; ``round_ratios`` shows its spread. Also printed: the float32 predictor's
clips/s (prediction and export always run in float32) and each model's parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _trainer(config, precision: str, x, y, soft):
    """(policy name, model, one compiled train step) built under ``precision``."""
    import tensorflow as tf

    from distill.training.fit import build_model, make_optimizer, precision_policy
    from distill.training.loss import distillation_loss

    with precision_policy(precision) as policy:
        model = build_model(config)
        optimizer = make_optimizer(config.schedule, policy)
        optimizer.build(model.trainable_variables)

        @tf.function
        def step(x, y, s):
            with tf.GradientTape() as tape:
                loss = distillation_loss(model(x, training=True), y, s, alpha=1.0, temperature=1.0, label_smoothing=0.1)
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        step(x, y, soft)  # traced here, under the policy, and left out of the timing
    return policy, model, step


def _timed(step, x, y, soft, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        loss = step(x, y, soft)
    float(loss)  # wait for the last step
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("teacher", "student", "all"), default="all", help="which registry to time (default: both)")
    parser.add_argument("--arch", action="append", help="only these architectures (repeatable; teacher or student names)")
    parser.add_argument("--size", default="default", help="size preset of every architecture ('toy' for a smoke run)")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per train step (default 64, the recipes' value)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per precision per round")
    parser.add_argument("--rounds", type=int, default=3, help="float32/mixed turns")
    parser.add_argument("--predict-clips", type=int, default=256, help="clips timed through the float32 predictor (0: skip)")
    args = parser.parse_args()
    for name in ("batch_size", "steps", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")

    import numpy as np

    from distill.core.registry import STUDENTS, TEACHERS
    from distill.training.fit import RunConfig, ScheduleConfig, make_predictor

    registries = {"teacher": TEACHERS, "student": STUDENTS}
    families = ("teacher", "student") if args.family == "all" else (args.family,)
    archs = [(family, name) for family in families for name in registries[family].names()]
    if args.arch:
        unknown = sorted(set(args.arch) - {name for _, name in archs})
        if unknown:
            parser.error(f"unknown --arch {', '.join(unknown)}; choose from {', '.join(name for _, name in archs)}")
        archs = [(family, name) for family, name in archs if name in args.arch]

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((args.batch_size, 16000))).astype(np.float32)
    y = rng.integers(0, 12, args.batch_size)
    soft = np.zeros((args.batch_size, 12), np.float32)
    results = {}
    mixed_policy = None
    for family, arch in archs:
        config = RunConfig(family=family, arch=arch, data="", size=args.size, schedule=ScheduleConfig(batch_size=args.batch_size))
        _, model, float32_step = _trainer(config, "float32", x, y, soft)
        mixed_policy, _, mixed_step = _trainer(config, "mixed", x, y, soft)
        seconds = {"float32": [], "mixed": []}
        for _ in range(args.rounds):
            seconds["float32"].append(_timed(float32_step, x, y, soft, args.steps))
            seconds["mixed"].append(_timed(mixed_step, x, y, soft, args.steps))
        examples = args.rounds * args.steps * args.batch_size
        rate = {p: examples / sum(s) for p, s in seconds.items()}
        row = {"family": family, "params": int(model.count_params()), "float32_examples_per_s": round(rate["float32"], 1),
               "mixed_examples_per_s": round(rate["mixed"], 1), "mixed_over_float32": round(rate["mixed"] / rate["float32"], 3),
               "round_ratios": [round(f / m, 3) for f, m in zip(seconds["float32"], seconds["mixed"])]}
        if args.predict_clips:
            predict = make_predictor(model)
            clips = np.resize(x, (args.predict_clips, 16000))
            predict(clips[: min(len(clips), 256)])
            started = time.perf_counter()
            predict(clips)
            row["predict_clips_per_s"] = round(len(clips) / (time.perf_counter() - started), 1)
        results[arch] = row
    print(json.dumps({"benchmark": "precision", "size": args.size, "batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds,
                      "mixed_policy": mixed_policy, "cpu_count": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
