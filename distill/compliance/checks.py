"""``export --check-pi``: every line of the competition's rules, measured.

1. file size < 5 MB;
2. static: every node's op, attribute and type exists in TF 1.4's op registry;
3. runtime: the graph loads and runs in TensorFlow 1.4 itself (subprocess, C API),
   fed both ways (``decoded_sample_data:0/1`` and raw ``wav_data:0`` bytes);
4. parity: TF 1.4's ``labels_softmax`` equals the trained Keras student (plus
   its calibration offsets) within 1e-4 on real clips of the run's data;
5. Raspberry Pi 3 latency: the per-op cost model (with its leave-one-out
   error) <= 175 ms, cross-checked by timing the graph single-threaded in
   TF 1.4 here beside both public references.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from distill.core.labels import CLIP_SAMPLES, SAMPLE_RATE

MAX_BYTES = 5 * 1024 * 1024
MAX_PI3_MS = 175.0
PARITY_ATOL = 1e-4


@dataclass(frozen=True)
class CheckLine:
    name: str
    passed: bool
    value: str
    detail: str = ""


@dataclass
class CheckReport:
    lines: list[CheckLine] = field(default_factory=list)
    measurements: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.lines) and all(line.passed for line in self.lines)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "lines": [asdict(line) for line in self.lines], "measurements": self.measurements}


def _check_clips(run: Path | None, count: int) -> np.ndarray:
    """Real validation clips of the run's data (plus one silent clip); random noise without a run."""
    rng = np.random.default_rng(0)
    if run is not None:
        from distill.core.config import load_config
        from distill.training.fit import CONFIG_FILE, RunConfig, open_run_dataset

        # the run's own data settings: a tree it trained on by skipping bad files must open the same way
        dataset = open_run_dataset(load_config(RunConfig, run / CONFIG_FILE), progress=False)
        rows = dataset.index.positions("validation")
        if len(rows) == 0:
            rows = np.arange(len(dataset))
        chosen = rng.choice(rows, size=min(count - 1, len(rows)), replace=False)
        clips = dataset.waveforms(np.sort(chosen))
    else:
        clips = (0.1 * rng.standard_normal((count - 1, CLIP_SAMPLES))).astype(np.float32)
    return np.concatenate([clips, np.zeros((1, CLIP_SAMPLES), np.float32)]).astype(np.float32)


def _graph_classes(graph_def) -> int:
    """K, the width of ``labels_softmax`` by the graph's static shape (12 when it cannot be read)."""
    from distill.core.errors import DistillError
    from distill.export.graph_compat import static_shapes

    try:
        shape = (static_shapes(graph_def).get("labels_softmax") or [None])[0]
    except DistillError:
        return 12
    return int(shape[-1]) if shape and shape[-1] is not None else 12


def check_graph(*, model_path: Path, run: Path | None = None, calibration_offsets: np.ndarray | None = None, clips: int = 16,
                wheel: Path | None = None, timing_rounds: int = 5, timing_repeats: int = 20, quantized: bool = False) -> CheckReport:
    """Run every check on ``model_path``; with ``run`` the parity check compares against the trained student.

    A ``quantized`` graph cannot equal the float student to 1e-4 by design: its
    parity line compares TF 1.4 with the same graph in TF 2, and states how far
    the quantized graph is from the float student (max difference, argmax agreement).
    """
    import tensorflow as tf

    from distill.compliance.pi_estimate import estimate_pi3_ms, leave_one_out
    from distill.compliance.reference_graphs import reference_graph
    from distill.compliance.tf14 import find_tf14_wheel, run_graphs
    from distill.core.errors import DistillError
    from distill.export.freeze import wav_bytes
    from distill.export.graph_compat import check_tf14_ops

    report = CheckReport()
    data = Path(model_path).read_bytes()
    size = len(data)
    report.lines.append(CheckLine("1. file size < 5 MB", size < MAX_BYTES, f"{size:,} bytes ({size / 2**20:.2f} MiB)"))

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(data)
    issues = check_tf14_ops(graph_def)
    report.lines.append(CheckLine("2. ops and attrs in TF 1.4's registry", not issues, f"{len(graph_def.node)} nodes, {len(issues)} issues",
                                  "; ".join(f"{i.node} ({i.op}{'.' + i.attr if i.attr else ''}): {i.reason}" for i in issues[:5])))

    waveforms = _check_clips(run, clips)
    k = _graph_classes(graph_def)  # the graph's own K (12 for the Kaggle ten; len(words) + 2 for another word list)
    try:
        if wheel is not None:
            find_tf14_wheel(wheel=wheel)
        graphs = {f"clip{i}": data for i in range(len(waveforms))}
        feeds = {f"clip{i}": {"decoded_sample_data:0": w[:, None], "decoded_sample_data:1": np.int32(SAMPLE_RATE)} for i, w in enumerate(waveforms)}
        results = run_graphs(graphs, feeds=feeds, fetches=["labels_softmax:0"])
        tf14_probs = np.concatenate([results[f"clip{i}"].outputs["labels_softmax:0"].reshape(1, -1) for i in range(len(waveforms))])
        via_wav = run_graphs({"wav": data}, feeds={"wav_data:0": wav_bytes(waveforms[0])}, fetches=["labels_softmax:0"])["wav"]
        version = via_wav.version
        wav_ok = np.allclose(via_wav.outputs["labels_softmax:0"].reshape(-1), tf14_probs[0], atol=1e-3)  # 16-bit wav rounding
        shape = list(results["clip0"].outputs["labels_softmax:0"].shape)
        runtime_ok = shape == [1, k] and wav_ok and np.allclose(tf14_probs.sum(axis=1), 1.0, atol=1e-4)
        report.lines.append(CheckLine("3. loads and runs in TensorFlow 1.4", bool(runtime_ok), f"TF {version}: labels_softmax {shape}, fed decoded_sample_data:0/1 and wav_data:0"))
    except DistillError as err:
        report.lines.append(CheckLine("3. loads and runs in TensorFlow 1.4", False, "failed", str(err)[:500]))
        tf14_probs = None

    if tf14_probs is not None:
        student = None
        if run is not None:
            from distill.training.fit import load_run

            _, model = load_run(run)
            logits = model(waveforms, training=False).numpy().astype(np.float64)
            if calibration_offsets is not None:
                logits = logits + calibration_offsets
            student = tf.nn.softmax(logits).numpy()
        if student is not None and not quantized:
            reference, against, detail = student, "the trained Keras student", ""
        else:
            from distill.export.freeze import run_frozen_tf2

            reference = np.concatenate([run_frozen_tf2(graph_def, w).reshape(1, -1) for w in waveforms])
            against, detail = "the same graph in TF 2", ""
            if student is not None:
                agree = int((tf14_probs.argmax(1) == student.argmax(1)).sum())
                report.measurements["quantized_vs_student"] = {"max_abs_diff": float(np.abs(tf14_probs - student).max()), "argmax_agreement": agree}
                detail = (f"8-bit weights vs the float Keras student: max |diff| {np.abs(tf14_probs - student).max():.2e}, "
                          f"same top class on {agree}/{len(waveforms)} clips")
        diff = float(np.abs(tf14_probs - reference).max())
        report.measurements["parity_max_abs_diff"] = diff
        report.lines.append(CheckLine(f"4. parity with {against}", diff <= PARITY_ATOL, f"max |diff| {diff:.2e} on {len(waveforms)} clips (limit {PARITY_ATOL:g})", detail))
    else:
        report.lines.append(CheckLine("4. parity", False, "not measured: TF 1.4 did not run the graph"))

    estimate = estimate_pi3_ms(graph_def)
    loo = leave_one_out()
    report.measurements["pi3_estimate"] = {"ms": estimate.ms, "loo_error": estimate.loo_error, "method": estimate.method, "breakdown_ms": estimate.breakdown_ms, "leave_one_out": loo}
    detail = f"method {estimate.method}; leave-one-out error up to {100 * estimate.loo_error:.1f}%"
    if tf14_probs is not None:
        try:
            timed = run_graphs({"model": data, "tutorial_conv": reference_graph("tutorial_conv").SerializeToString(),
                                "winners_pi": reference_graph("winners_pi").SerializeToString()},
                               feeds={"decoded_sample_data:0": waveforms[0][:, None], "decoded_sample_data:1": np.int32(SAMPLE_RATE)},
                               fetches=["labels_softmax:0"], rounds=timing_rounds, repeats=timing_repeats, threads=1)
            x86 = {name: r.median_ms for name, r in timed.items()}
            report.measurements["tf14_x86_single_thread_ms"] = x86
            detail += (f"; TF 1.4 here, 1 thread: model {x86['model']:.2f} ms, tutorial conv {x86['tutorial_conv']:.2f} ms (Pi 3: 74.5), "
                       f"winners' Pi model {x86['winners_pi']:.2f} ms (Pi 3: 58.0)")
        except DistillError as err:
            detail += f"; TF 1.4 timing failed: {err}"
    report.lines.append(CheckLine("5. Raspberry Pi 3 estimate <= 175 ms", estimate.ms <= MAX_PI3_MS,
                                  f"{estimate.ms:.1f} ms (+-{100 * estimate.loo_error:.0f}%)", detail))
    return report
