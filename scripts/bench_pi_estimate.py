#!/usr/bin/env python
"""Print (JSON) how the Pi 3 latency estimate does on its two references, and a TF 1.4 timing cross-check.

    python scripts/bench_pi_estimate.py [--rounds 5] [--repeats 50] [--nice -10] [--no-timing]
    python scripts/bench_pi_estimate.py --measure 8      # re-measure the x86 per-class costs (slow)

Output: each reference's published Pi 3 ms, the estimate calibrated on both
references and the leave-one-out prediction; the leave-one-out errors; the same
for simpler variants of the model (sensitivity); and both references timed
single-threaded in the TF 1.4 runtime on this machine (interleaved rounds,
median and minimum) with their ratio next to the Pi's. See docs/pi-latency.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from distill.compliance import pi_estimate as pe  # noqa: E402
from distill.compliance.reference_graphs import REFERENCES, count_params, reference_graph  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))



def variants() -> dict:
    """Leave-one-out errors of simpler versions of the model (how much each ingredient matters)."""
    threads = {
        "tf14_threading (the method)": None,
        "contractions_on_4_threads_only": lambda c: pe.PI_THREADS if c.cls in pe.CONTRACTIONS else 1,
        "single_thread (one x86->Pi ratio per op class)": lambda c: 1,
    }
    names = list(REFERENCES)
    out = {}
    for label, th in threads.items():
        directions = {}
        for held_in in names:
            costs, ms = pe.reference_costs(held_in)
            s = pe.fit_scale([(list(costs), ms)], threads=th)
            for held_out in names:
                if held_out != held_in:
                    oc, oms = pe.reference_costs(held_out)
                    pred = pe.pi_ms(list(oc), s, threads=th)
                    directions[f"{held_in}->{held_out}"] = round(pred / oms - 1, 4)
        out[label] = directions
    macs = {n: sum(c.macs for c in pe.reference_costs(n)[0]) for n in names}
    a, b = names
    per_mac = {f"{a}->{b}": macs[b] / macs[a] * REFERENCES[a].pi3_ms / REFERENCES[b].pi3_ms - 1,
               f"{b}->{a}": macs[a] / macs[b] * REFERENCES[b].pi3_ms / REFERENCES[a].pi3_ms - 1}
    out["macs_only"] = {k: round(v, 4) for k, v in per_mac.items()}
    return out


def timing(rounds: int, repeats: int, nice: int | None) -> dict:
    from distill.compliance import tf14

    clip = np.random.default_rng(0).uniform(-0.5, 0.5, size=(16000, 1)).astype(np.float32)
    feeds = {"decoded_sample_data:0": clip, "decoded_sample_data:1": np.int32(16000)}
    graphs = {n: reference_graph(n) for n in REFERENCES}
    results = tf14.run_graphs(graphs, feeds=feeds, fetches=["labels_softmax:0"], rounds=rounds, repeats=repeats,
                              warmup=10, threads=1, nice=nice)
    out = {"runtime": f"TensorFlow {next(iter(results.values())).version} C API (subprocess), 1 intra + 1 inter-op "
                      f"thread, {rounds} interleaved rounds x {repeats} runs", "loadavg_1min": os.getloadavg()[0],
           "nice": nice}
    for name, r in results.items():
        t = np.array(r.timings_ms).reshape(rounds, repeats)
        out[name] = {"median_ms": round(float(np.median(t)), 3), "min_ms": round(float(t.min()), 3),
                     "round_medians_ms": [round(float(v), 3) for v in np.median(t, axis=1)]}
    a, b = list(REFERENCES)
    out["ratio_median"] = round(out[b]["median_ms"] / out[a]["median_ms"], 3)
    out["ratio_min"] = round(out[b]["min_ms"] / out[a]["min_ms"], 3)
    out["ratio_pi3"] = round(REFERENCES[b].pi3_ms / REFERENCES[a].pi3_ms, 3)
    out["ratio_note"] = f"{b} / {a}"
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--nice", type=int, default=None, help="raise the TF 1.4 worker's priority (e.g. -10)")
    parser.add_argument("--no-timing", action="store_true", help="skip the TF 1.4 timing cross-check")
    parser.add_argument("--measure", type=int, default=0, metavar="N",
                        help="re-measure the x86 per-class costs in N sessions and print them (slow)")
    args = parser.parse_args(argv)

    if args.measure:
        import time

        sessions = []
        for i in range(args.measure):
            sessions.append(pe.measure_x86_costs())
            if i + 1 < args.measure:
                time.sleep(30)   # spread the sessions in time: the quietest moment wins
        combined = pe.combine_measurements(sessions)
        print(json.dumps({"us_per_unit": combined["us_per_unit"], "node_overhead_us": combined["node_overhead_us"],
                          "sessions": combined["sessions"], "in_module": pe.X86_US_PER_UNIT}, indent=2))
        return 0

    cal = pe.default_calibration()
    loo = pe.leave_one_out()
    report = {"method": cal.method, "calibration": {"scale": cal.scale, "kappa": cal.kappa,
                                                    "references": list(cal.references)},
              "references": {}, "leave_one_out": loo, "variants_leave_one_out": variants()}
    for name, ref in REFERENCES.items():
        graph = reference_graph(name)
        est = pe.estimate_pi3_ms(graph)
        loo_pred = next(d["predicted_ms"] for d in loo["directions"].values() if d["predicted"] == name)
        report["references"][name] = {
            "published_pi3_ms": ref.pi3_ms, "estimated_ms_both_refs": round(est.ms, 2),
            "estimated_ms_leave_one_out": round(loo_pred, 2), "params": count_params(graph),
            "macs_m": round(est.macs / 1e6, 2), "executed_nodes": est.executed_nodes,
            "graph_bytes": graph.ByteSize(), "breakdown_ms": est.breakdown_ms}
    if not args.no_timing:
        report["tf14_x86_timing"] = timing(args.rounds, args.repeats, args.nice)
    print(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
