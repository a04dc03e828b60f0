#!/usr/bin/env python
"""Estimated Raspberry Pi 3 time of every front-end preset under small students, front-end and network apart, as JSON.

usage: python scripts/bench_frontends.py [--model ARCH:SIZE ...] [--frontend NAME ...] [--float32]
                                         [--budget-ms 10] [--budget-bytes 100000] [--markdown]

Each student (``--model``, repeatable; by default the small rungs below) is built once per front-end
(``--frontend``, repeatable; by default ``default``, the architecture's own, then every name in
``distill.layers.frontend.FRONTEND_PRESETS``) and frozen the way ``distill export --quantize-weights``
freezes it: ``freeze_waveform_model``, batch norms folded, 8-bit weights (``--float32``: not quantized).
Each row gives:

- ``pi3_ms``: ``estimate_pi3_ms`` of that exported graph, and its split: ``frontend_ms`` (the nodes of the
  ``frontend`` layer: AudioSpectrogram, then Mfcc or the mel MatMul and Log) and ``network_ms`` (the rest,
  input normalization included), with ``breakdown_ms`` by op type as the estimator reports it;
- ``bytes``: the serialized graph, the file export writes (less its calibration offsets, 12 floats);
- ``params``, ``macs`` and ``fit_pi3_ms``: ``model_footprint``'s figures, the ones ``student fit --max-ms``
  checks (its graph is not batch-norm folded, so ``fit_pi3_ms`` is above ``pi3_ms``);
- ``fits``: ``pi3_ms <= --budget-ms`` and ``bytes <= --budget-bytes``.

Random weights (seed 0): times and sizes do not depend on trained values. What a cheaper front-end costs in
accuracy needs real-audio training and is not measured here. ``--markdown`` prints the rows as a table instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# the small rungs of the student ladder, at the sizes that are (or were) candidates for ~10 ms on a Pi 3
DEFAULT_MODELS = ("tcresnet:8", "tcresnet:8-w0.5", "bcresnet:1", "bcresnet:1-stride2", "dscnn:s")
DEFAULT_FRONTEND = "default"
# the frontend layer's nodes in a frozen graph: "<model>/frontend_1/AudioSpectrogram" and the like
FRONTEND_NODE = re.compile(r"(^|/)frontend(_\d+)?/")


def split_ms(graph_def, estimate) -> tuple[float, float]:
    """(front-end ms, network ms) of ``estimate`` (``estimate_pi3_ms(graph_def)``), by the nodes' layer."""
    from distill.compliance.pi_estimate import analyze, default_calibration, pi_node_ms

    calibration = default_calibration()
    frontend = network = 0.0
    for cost in analyze(graph_def):
        ms = pi_node_ms(cost, calibration.scale, kappa=calibration.kappa)
        if FRONTEND_NODE.search(cost.name):
            frontend += ms
        else:
            network += ms
    if abs(frontend + network - estimate.ms) > 1e-6 * max(1.0, estimate.ms):
        raise RuntimeError(f"front-end + network = {frontend + network:.4f} ms, the estimate says {estimate.ms:.4f} ms")
    return frontend, network


def bench_one(arch: str, size: str, frontend: str, *, quantize: bool = True) -> dict:
    """One row: the student ``arch``/``size`` with front-end preset ``frontend`` ('default': its own), frozen as export does."""
    from distill.compliance.footprint import model_footprint
    from distill.compliance.pi_estimate import estimate_pi3_ms
    from distill.core.registry import STUDENTS
    from distill.export.student_export import shipped_graph
    from distill.layers.frontend import frontend_preset

    model = STUDENTS.get(arch)(size=size, frontend=None if frontend == DEFAULT_FRONTEND else frontend_preset(frontend), seed=0)
    config = model.get_layer("frontend").frontend
    graph_def, _, _ = shipped_graph(model, quantize=quantize)
    estimate = estimate_pi3_ms(graph_def)
    frontend_ms, network_ms = split_ms(graph_def, estimate)
    footprint = model_footprint(model)
    return {
        "arch": arch, "size": size, "frontend": frontend, "features": list(config.output_shape), "kind": config.kind,
        "window_ms": config.window_ms, "stride_ms": config.stride_ms, "fft_length": config.fft_length,
        "pi3_ms": round(estimate.ms, 3), "frontend_ms": round(frontend_ms, 3), "network_ms": round(network_ms, 3),
        "breakdown_ms": {op: round(ms, 3) for op, ms in estimate.breakdown_ms.items()},
        "bytes": len(graph_def.SerializeToString()), "params": footprint.params, "macs": int(footprint.macs),
        "fit_pi3_ms": round(footprint.pi3_ms, 3),
    }


def markdown(report: dict) -> str:
    budget = report["budget"]
    lines = [f"| student | front-end | features | Pi 3 ms | front-end ms | network ms | params | MACs | bytes | fits {budget['ms']:g} ms, {budget['bytes']:,} B |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in report["results"]:
        lines.append(f"| {row['arch']} {row['size']} | {row['frontend']} | {row['features'][0]}x{row['features'][1]} | {row['pi3_ms']:.1f} "
                     f"| {row['frontend_ms']:.1f} | {row['network_ms']:.1f} | {row['params']:,} | {row['macs'] / 1e6:.2f} M "
                     f"| {row['bytes']:,} | {'yes' if row['fits'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", metavar="ARCH:SIZE", help=f"a student and size (repeatable; default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--frontend", action="append", metavar="NAME", help="a front-end preset, or 'default' for the architecture's own (repeatable; default: all)")
    parser.add_argument("--float32", action="store_true", help="export float32 weights (default: 8-bit, as --quantize-weights)")
    parser.add_argument("--budget-ms", type=float, default=10.0, help="the Pi 3 time a row must stay within to fit (default 10)")
    parser.add_argument("--budget-bytes", type=int, default=100_000, help="the exported size a row must stay within to fit (default 100000)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead of JSON")
    args = parser.parse_args()

    from distill.core.registry import STUDENTS
    from distill.layers.frontend import FRONTEND_PRESETS

    models = []
    for spec in args.model or DEFAULT_MODELS:
        arch, _, size = spec.partition(":")
        if arch not in STUDENTS.names():
            parser.error(f"unknown --model {spec}: the students are {', '.join(STUDENTS.names())}")
        models.append((arch, size or "default"))
    frontends = args.frontend or [DEFAULT_FRONTEND, *FRONTEND_PRESETS]
    for name in frontends:
        if name != DEFAULT_FRONTEND and name not in FRONTEND_PRESETS:
            parser.error(f"unknown --frontend {name}: choose {DEFAULT_FRONTEND} or one of {', '.join(FRONTEND_PRESETS)}")

    from distill.compliance.pi_estimate import leave_one_out

    results = []
    for arch, size in models:
        for name in frontends:
            try:
                row = bench_one(arch, size, name, quantize=not args.float32)
            except ValueError as err:  # an unknown size names the valid ones
                parser.error(str(err))
            row["fits"] = row["pi3_ms"] <= args.budget_ms and row["bytes"] <= args.budget_bytes
            results.append(row)
            print(f"{arch} {size} {name}: {row['pi3_ms']:.1f} ms, {row['bytes']:,} bytes", file=sys.stderr, flush=True)
    report = {"quantized": not args.float32, "budget": {"ms": args.budget_ms, "bytes": args.budget_bytes},
              "pi3_loo_error": leave_one_out()["max_abs_error"], "results": results}
    print(markdown(report) if args.markdown else json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
