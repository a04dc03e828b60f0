"""``export --format tflite --check``: a LiteRT model measured in LiteRT's own interpreter.

The model runs in ``ai-edge-litert`` in a subprocess that never imports TensorFlow
(:mod:`distill.compliance.litert_worker`), as it would on a device that has LiteRT alone. Lines:

1. file size < 5 MB;
2. operators: every one a LiteRT builtin, or LiteRT's own ``AudioSpectrogram``/``Mfcc`` custom kernels; no Flex (Select TF ops),
   and every layer after the student's input normalization runs in int8;
3. agreement: top-1 agreement with the float Keras student (plus calibration offsets) on the validation split >= 90%,
   with the largest probability difference;
4. int8 accuracy on validation and test, beside the float student's: at most 3 points lower on validation;
5. latency: single-thread median per clip here (x86), <= 175 ms.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from distill.compliance.checks import MAX_BYTES, MAX_PI3_MS, CheckLine, CheckReport
from distill.core.errors import DistillError

MIN_AGREEMENT = 0.90
MAX_ACCURACY_DROP = 0.03
WORKER_TIMEOUT_S = 1800


def run_litert(model_path: Path, waveforms: np.ndarray, *, timing_rounds: int = 5) -> dict:
    """Run ``model_path`` on ``waveforms`` (N, 16000) in the LiteRT worker subprocess; its result arrays as a dict."""
    with tempfile.TemporaryDirectory(prefix="distill-litert-") as tmp:
        request, result = Path(tmp) / "request.npz", Path(tmp) / "result.npz"
        np.savez(request, model_path=np.asarray(str(Path(model_path).resolve())), waveforms=np.asarray(waveforms, np.float32),
                 timing_rounds=np.int64(timing_rounds))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("DISTILL_QUIET_TF", None)
        try:
            proc = subprocess.run([sys.executable, "-m", "distill.compliance.litert_worker", str(request), str(result)],
                                  capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired as err:
            raise DistillError(f"{model_path}: the LiteRT worker ran past {WORKER_TIMEOUT_S} s") from err
        if proc.returncode != 0 or not result.exists():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
            hint = " (pip install ai-edge-litert)" if "No module named 'ai_edge_litert'" in (proc.stderr or "") else ""
            raise DistillError(f"{model_path}: LiteRT could not run the model{hint}: " + " | ".join(tail))
        with np.load(result, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}


def float_after_quantize(ops: list[str], types: list[str]) -> list[int]:
    """Positions of the builtin ops that compute in float after the first QUANTIZE (all of them when there is none).

    ``ops`` in execution order, ``types`` the dtype of each op's first input. Float before the first QUANTIZE is
    the front-end and the student's input normalization, kept in float on purpose (docs/litert.md).
    """
    first = ops.index("QUANTIZE") if "QUANTIZE" in ops else -1
    return [i for i, (name, dtype) in enumerate(zip(ops, types))
            if i > first and dtype == "float32" and name.isupper() and name not in ("QUANTIZE", "DEQUANTIZE", "DELEGATE")]


def operator_issues(ops: list[str], types: list[str]) -> list[str]:
    """What breaks the builtin-only rule: Flex ops, unknown custom ops, float compute after the input is quantized."""
    from distill.compliance.litert_worker import AUDIO_CUSTOM_OPS

    issues = [] if "QUANTIZE" in ops else ["no QUANTIZE op: the model is not quantized"]
    in_float = set(float_after_quantize(ops, types))
    for position, name in enumerate(ops):
        if name.startswith("Flex"):
            issues.append(f"{name} is a Flex (Select TF) op")
        elif name in AUDIO_CUSTOM_OPS or name in ("QUANTIZE", "DEQUANTIZE", "DELEGATE"):
            continue
        elif not name.isupper():
            issues.append(f"{name} is a custom op LiteRT does not ship")
        elif position in in_float:
            issues.append(f"{name} runs in float (not quantized)")
    return issues


def check_tflite(*, model_path: Path, run: Path, calibration_offsets: np.ndarray | None = None, timing_rounds: int = 5, max_clips: int | None = None) -> CheckReport:
    """Every line on ``model_path`` against the run's float Keras student, on the run's validation and test splits."""
    from distill.core.config import load_config
    from distill.data.examples import materialize
    from distill.training.fit import CONFIG_FILE, RunConfig, evaluation_examples, load_run, make_predictor, open_run_dataset

    report = CheckReport()
    size = Path(model_path).stat().st_size
    report.lines.append(CheckLine("1. file size < 5 MB", size < MAX_BYTES, f"{size:,} bytes ({size / 2**20:.2f} MiB)"))

    config = load_config(RunConfig, Path(run) / CONFIG_FILE)
    dataset = open_run_dataset(config, progress=False)
    _, model = load_run(Path(run))
    predict = make_predictor(model)
    splits = {}
    for split in ("validation", "testing"):
        examples = evaluation_examples(dataset, config, split)
        positions = np.arange(len(examples) if max_clips is None else min(max_clips, len(examples)))
        splits[split] = (materialize(dataset, examples, positions).astype(np.float32), examples.labels[positions])
    waves = np.concatenate([w for w, _ in splits.values()])
    try:
        result = run_litert(Path(model_path), waves, timing_rounds=timing_rounds)
    except DistillError as err:
        report.lines.append(CheckLine("2. operators: LiteRT builtins, no Flex", False, "not measured: LiteRT did not run the model", str(err)[:500]))
        return report
    ops, types = [str(o) for o in result["ops"]], [str(t) for t in result["op_types"]]
    issues = operator_issues(ops, types)
    if bool(result["tensorflow_imported"]):
        issues.append("the worker imported TensorFlow")
    counts: dict[str, int] = {}
    for name in ops:
        if name != "DELEGATE":
            counts[name] = counts.get(name, 0) + 1
    listing = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in counts.items())
    report.measurements["operators"] = counts
    report.lines.append(CheckLine("2. operators: LiteRT builtins (+ its AudioSpectrogram/Mfcc), no Flex", not issues, f"{sum(counts.values())} operators, {len(issues)} issues",
                                  "; ".join(issues[:5]) if issues else listing))

    probs = result["probs"].astype(np.float64)
    n_val = len(splits["validation"][0])
    logits = predict(waves).astype(np.float64)
    if calibration_offsets is not None:
        logits = logits + np.asarray(calibration_offsets, np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    student = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    agree = float((probs[:n_val].argmax(1) == student[:n_val].argmax(1)).mean()) if n_val else 0.0
    diff = float(np.abs(probs[:n_val] - student[:n_val]).max()) if n_val else float("nan")
    top = np.sort(probs[:n_val], axis=1)
    ties = int((top[:, -1] == top[:, -2]).sum()) if n_val and probs.shape[1] > 1 else 0  # int8 softmax: probabilities in steps of 1/256
    report.measurements["agreement"] = {"validation_top1": agree, "max_prob_diff": diff, "clips": n_val, "int8_top_ties": ties}
    report.lines.append(CheckLine(f"3. top-1 agreement with the float Keras student >= {MIN_AGREEMENT:.0%}", n_val > 0 and agree >= MIN_AGREEMENT,
                                  f"{100 * agree:.2f}% of {n_val} validation clips",
                                  f"largest probability difference {diff:.3f}; {ties} clips with a tied int8 top probability"))

    acc, parts = {}, []
    start = 0
    for split, (w, labels) in splits.items():
        sl = slice(start, start + len(w))
        start += len(w)
        acc[split] = {"int8": float((probs[sl].argmax(1) == labels).mean()) if len(w) else float("nan"),
                      "float": float((student[sl].argmax(1) == labels).mean()) if len(w) else float("nan"), "clips": int(len(w))}
        parts.append(f"{split} {100 * acc[split]['int8']:.2f}% (float {100 * acc[split]['float']:.2f}%, {len(w)} clips)")
    report.measurements["accuracy"] = acc
    drop = acc["validation"]["float"] - acc["validation"]["int8"]
    report.lines.append(CheckLine(f"4. int8 accuracy, at most {100 * MAX_ACCURACY_DROP:.0f} points under float on validation", bool(drop <= MAX_ACCURACY_DROP),
                                  "; ".join(parts)))

    ms = float(result["median_ms"])
    report.measurements["litert_single_thread_ms"] = ms
    report.lines.append(CheckLine(f"5. LiteRT latency per clip <= {MAX_PI3_MS:.0f} ms", bool(np.isfinite(ms) and ms <= MAX_PI3_MS), f"{ms:.2f} ms",
                                  "median single-thread invoke on this machine (not a Pi estimate)"))
    return report
