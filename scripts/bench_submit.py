#!/usr/bin/env python
"""Submission throughput on this machine, as JSON.

Builds a default-size student (``--arch``, random weights: speed does not
depend on them), freezes it with ``distill.export.freeze.freeze_waveform_model`` (and,
with ``--fold-bn``, folds batch norms the way ``distill export`` does), writes
a folder of ``--clips`` generated 1 s clips, then measures

1. ``GraphPredictor.predict`` alone for each batching method (vectorized /
   map_fn / loop): clips/s of wall time and clips per CPU-second (the second
   is what a busy shared machine cannot distort much);
   ``write_submission`` itself uses ``method="auto"`` (times vectorized and
   map_fn at load and keeps the faster: ``auto_timings_clips_per_cpu_s``);
2. ``side_by_side``: the streaming part of a submission (read, predict, write
   the rows), the pipelined ``write_submission`` ("new") against the
   sequential loop it replaced ("old": one file per reader task, then the
   graph, then the rows, one after another; reproduced below) with the same
   loaded predictor, in ``--rounds`` alternating rounds (old-new, new-old,
   ...) so that load from other processes falls on both alike. Each round
   gives a ratio; their median is the figure to trust on a noisy machine.
   Both CSVs are compared byte for byte (``identical_csv``). ``outside_graph``
   times both streams again with a predictor that costs nothing: the CPU and
   wall microseconds a clip that reading, converting and writing rows add to
   the graph's own time (the part this path can change);
3. ``write_submission`` end to end, best of the new rounds, and the projected
   minutes for the 158,538 Kaggle test clips;
4. with ``--litert``, ``formats``: the same pipelined ``write_submission``
   through the frozen graph ("pb") and through the student's LiteRT
   conversions as ``distill export --format tflite`` writes them (``float``,
   and ``int8`` calibrated on ``--representative`` of the generated clips),
   in alternating rounds: clips/s, clips per CPU-second, each format's ratio
   over pb (median of the round ratios) and the share of its labels equal to
   pb's (random weights: a check that it runs the same network, not an
   accuracy; ``distill export --format tflite --check`` measures that).

The machine's load average and ``cores_used`` (CPU time / wall time) are
printed too: other processes on the same cores lower the wall-time figures,
not the clips per CPU-second; ``projected_clips_per_s_on_free_cores`` is
clips per CPU-second times ``--threads`` (an upper bound: it assumes perfect
scaling).

usage: python scripts/bench_submit.py --clips 2000 --arch tcresnet --size 14-w2 --fold-bn --rounds 6 [--litert]
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

KAGGLE_TEST_CLIPS = 158_538


def _write_clips(folder: Path, n: int) -> None:
    import numpy as np

    from distill.export.freeze import wav_bytes

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000.0
    for i in range(n):
        f0 = rng.uniform(100, 3000)
        x = 0.4 * np.sin(2 * np.pi * f0 * t) * np.exp(-((t - rng.uniform(0.2, 0.8)) ** 2) / 0.02)
        x += rng.uniform(0.001, 0.05) * rng.standard_normal(16000)
        (folder / f"clip_{i:09x}.wav").write_bytes(wav_bytes(x))


def _timed(fn, repeat: int):
    walls, cpus = [], []
    for _ in range(repeat):
        c, t = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return walls, cpus


def _old_submission(predictor, test_dir: Path, out: Path, batch_size: int) -> tuple[float, float]:
    """The streaming loop ``write_submission`` ran before it was pipelined; (wall, CPU seconds) of the stream.

    Reads each batch through ``read_many`` (a reader task per file), converts
    with ``np.multiply(int16, scale, dtype=float32)``, predicts the batch
    (the caller waits), then takes each row's argmax and writes the rows, one
    step after another; the sorted CSV is written as ``write_submission``
    writes it, so the two files can be compared byte for byte.
    """
    import csv

    import numpy as np

    from distill.core.errors import BadAudioError
    from distill.core.io import atomic_path
    from distill.core.labels import CLIP_SAMPLES
    from distill.data.unlabeled import list_unlabeled
    from distill.data.wav import read_many
    from distill.submission.scoring import HEADER

    scale = np.float32(1.0 / 32768.0)
    names = list_unlabeled(test_dir)
    rows = []
    t, c = time.perf_counter(), time.process_time()
    results = read_many([test_dir / n for n in names])
    with open(out.with_name(out.name + ".part"), "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        for start in range(0, len(names), batch_size):
            batch = names[start:start + batch_size]
            waveforms = np.zeros((len(batch), CLIP_SAMPLES), dtype=np.float32)
            for row in range(len(batch)):
                samples = next(results)
                if isinstance(samples, BadAudioError):
                    raise samples
                n = min(len(samples), CLIP_SAMPLES)
                np.multiply(samples[:n], scale, out=waveforms[row, :n], dtype=np.float32)
            ok = np.ones(len(batch), dtype=bool)
            probs = np.empty((len(batch), predictor.num_classes), np.float32)
            probs[ok] = predictor.predict(waveforms)
            for name, p in zip(batch, probs):
                label = predictor.classes[int(p.argmax())]
                writer.writerow([name, label, ""])
                rows.append((name, label))
            fh.flush()
        os.fsync(fh.fileno())
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    rows.sort()
    with atomic_path(out) as tmp:
        tmp.write_text(HEADER + "\n" + "".join(f"{n},{label}\n" for n, label in rows), encoding="utf-8", newline="")
    out.with_name(out.name + ".part").unlink()
    return wall, cpu


class _NullPredictor:
    """A predictor that costs nothing (fixed probabilities), to time the stream outside the graph."""

    def __init__(self, classes):
        import numpy as np

        self.classes = tuple(classes)
        self.num_classes = len(self.classes)
        self._row = np.linspace(0.0, 1.0, self.num_classes, dtype=np.float32)

    def predict(self, waveforms):
        import numpy as np

        return np.tile(self._row, (len(waveforms), 1))


def _outside_graph(predictor, model_dir: Path, test_dir: Path, work: Path, batch_size: int, rounds: int) -> dict:
    """CPU and wall microseconds a clip of the old and the new stream with a predictor that costs nothing:
    what reading, converting and writing the rows cost beside the graph, alternating rounds as above."""
    from distill.submission.writer import write_submission

    clips = len(list(test_dir.glob("clip_*.wav")))
    null = _NullPredictor(predictor.classes)
    null.labels, null.notes, null.method, null.timings = predictor.labels, [], "none", {}
    found = {"old": [], "new": []}
    for i in range(rounds):
        for which in (("old", "new") if i % 2 == 0 else ("new", "old")):
            out = work / f"null_{which}_{i}.csv"
            if which == "old":
                found["old"].append(_old_submission(null, test_dir, out, batch_size))
            else:
                run = write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=batch_size, progress=False,
                                       resume=False, predictor=null)
                found["new"].append((run.stream_seconds, run.stream_cpu_seconds))
    return {which: {"cpu_us_per_clip": round(1e6 * _median([c for _, c in runs]) / clips, 1),
                    "wall_us_per_clip": round(1e6 * _median([w for w, _ in runs]) / clips, 1)} for which, runs in found.items()}


def _formats(model, graph_dir: Path, test_dir: Path, work: Path, batch_size: int, rounds: int, threads: int,
             representative: int) -> dict:
    """``write_submission`` through the frozen graph and the LiteRT float and int8 models, alternating rounds."""
    import numpy as np

    from distill.compliance.litert_worker import LiteRTPredictor
    from distill.data.wav import decode_wav
    from distill.export.tflite import MODEL_FILE, convert_float, convert_int8
    from distill.submission.predictor import GraphPredictor
    from distill.submission.writer import write_submission

    names = sorted(p.name for p in test_dir.glob("clip_*.wav"))
    clips = np.stack([decode_wav(test_dir / n) for n in names[:representative]])
    float_model = convert_float(model, None)
    files = {"float": float_model, "int8": convert_int8(model, clips, float_model=float_model)}
    folders = {"pb": graph_dir}
    for name, data in files.items():
        folders[name] = work / f"tflite_{name}"
        folders[name].mkdir()
        (folders[name] / MODEL_FILE).write_bytes(data)
    predictors = {"pb": GraphPredictor(graph_dir, workers=threads)}
    predictors |= {name: LiteRTPredictor(folders[name] / MODEL_FILE, workers=threads) for name in files}
    runs: dict[str, list] = {name: [] for name in folders}
    labels: dict[str, list[str]] = {}
    try:
        for name in folders:  # warm-up, and each format's labels
            out = work / f"fmt_{name}_warm.csv"
            write_submission(model=folders[name], test_dir=test_dir, out=out, batch_size=batch_size, progress=False,
                             predictor=predictors[name])
            labels[name] = [line.split(",")[1] for line in out.read_text(encoding="utf-8").splitlines()[1:]]
        order = list(folders)
        for i in range(rounds):
            for name in (order if i % 2 == 0 else order[::-1]):
                run = write_submission(model=folders[name], test_dir=test_dir, out=work / f"fmt_{name}_{i}.csv", batch_size=batch_size,
                                       progress=False, resume=False, predictor=predictors[name])
                runs[name].append((run.stream_seconds, run.stream_cpu_seconds))
    finally:
        for predictor in predictors.values():
            predictor.close()
    report = {}
    for name, found in runs.items():
        report[name] = _stream_summary(len(names), found) | {
                        "bytes": (folders[name] / ("model.pb" if name == "pb" else MODEL_FILE)).stat().st_size,
                        "over_pb_clips_per_s": round(_median([pw / w for (pw, _), (w, _) in zip(runs["pb"], found)]), 3),
                        "over_pb_clips_per_cpu_s": round(_median([pc / c for (_, pc), (_, c) in zip(runs["pb"], found)]), 3),
                        "labels_equal_to_pb": round(float(np.mean([a == b for a, b in zip(labels[name], labels["pb"])])), 4)}
    return {"rounds": rounds, "representative": int(len(clips)), "formats": report}


def _stream_summary(clips: int, runs: list[tuple[float, float]]) -> dict:
    """Clips/s (median and best) and clips per CPU-second of streams given as (wall, CPU) seconds."""
    return {"clips_per_s_median": round(clips / _median([w for w, _ in runs]), 1),
            "clips_per_s_best": round(clips / min(w for w, _ in runs), 1),
            "clips_per_cpu_s_median": round(clips / _median([c for _, c in runs]), 1),
            "cores_used_median": round(_median([c / w for w, c in runs]), 2)}


def _median(values):
    import numpy as np

    return float(np.median(np.asarray(values, dtype=float)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2000, help="generated test clips")
    parser.add_argument("--arch", default="tcresnet", help="student architecture (distill.core.registry.STUDENTS)")
    parser.add_argument("--size", default="14-w2", help="student size preset")
    parser.add_argument("--threads", type=int, default=None,
                        help="concurrent graph calls (TF inter-op threads; 1 intra-op); default: `distill submit`'s")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--methods", default="vectorized,map_fn,loop",
                        help="batching methods to time with predict() alone ('' for none)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each predict()-alone measurement")
    parser.add_argument("--rounds", type=int, default=6, help="alternating old/new submission rounds")
    parser.add_argument("--fold-bn", action=argparse.BooleanOptionalAction, default=True,
                        help="fold batch norms like `distill export` (default on)")
    parser.add_argument("--litert", action="store_true",
                        help="also stream the clips through the student's LiteRT float and int8 models, side by side with the graph")
    parser.add_argument("--representative", type=int, default=300, help="--litert: generated clips that calibrate the int8 model")
    args = parser.parse_args()
    if args.clips < 1 or args.rounds < 1 or args.repeat < 1:
        parser.error("--clips, --rounds and --repeat must be >= 1")

    from distill.core.registry import STUDENTS

    if args.arch not in STUDENTS.names():
        parser.error(f"unknown --arch {args.arch}; choose one of {', '.join(STUDENTS.names())}")
    from distill.submission.predictor import configure_threads, default_workers

    threads = args.threads or default_workers()
    configure_threads(1, threads)
    import numpy as np

    from distill.data.wav import decode_wav
    from distill.export.freeze import freeze_waveform_model, graph_summary
    from distill.submission.predictor import GraphPredictor
    from distill.submission.writer import write_submission

    work = Path(tempfile.mkdtemp(prefix="bench_submit_"))
    try:
        started = time.perf_counter()
        model = STUDENTS.get(args.arch)(size=args.size)
        graph = freeze_waveform_model(lambda x: model(x, training=False))
        folded = 0
        if args.fold_bn:
            from distill.export.student_export import fold_batch_norms

            graph, folded = fold_batch_norms(graph)  # (graph, number of folded layers)
        model_dir = work / "model"
        model_dir.mkdir()
        (model_dir / "model.pb").write_bytes(graph.SerializeToString())
        freeze_seconds = time.perf_counter() - started
        test_dir = work / "test"
        started = time.perf_counter()
        _write_clips(test_dir, args.clips)
        write_clips_seconds = time.perf_counter() - started

        names = sorted(p.name for p in test_dir.glob("clip_*.wav"))
        sample = np.stack([decode_wav(test_dir / n) for n in names[: min(512, len(names))]])
        predict_only = {}
        reference = None
        for method in filter(None, args.methods.split(",")):
            t = time.perf_counter()
            predictor = GraphPredictor(model_dir, method=method, chunk=args.chunk, workers=threads)
            load = time.perf_counter() - t
            got = predictor.predict(sample)  # warm-up
            if reference is None:
                reference = np.stack([predictor.predict_single(x) for x in sample[:32]])
            walls, cpus = _timed(lambda: predictor.predict(sample), args.repeat)
            predictor.close()
            predict_only[method] = {
                "method_used": predictor.method,
                "clips_per_s_best": round(len(sample) / min(walls), 1),
                "clips_per_s_median": round(len(sample) / _median(walls), 1),
                "clips_per_cpu_s": round(len(sample) / _median(cpus), 1),
                "cores_used": round(_median(np.array(cpus) / np.array(walls)), 2),
                "max_abs_diff_vs_single_clip": float(np.abs(got[:32] - reference[: len(got)]).max()),
                "load_and_trace_s": round(load, 2),
                "notes": predictor.notes,
            }

        # one predictor for both paths, as `distill submit` loads it (method auto): the comparison is the streaming
        t = time.perf_counter()
        predictor = GraphPredictor(model_dir, chunk=args.chunk, workers=threads)
        load_seconds = time.perf_counter() - t
        write_submission(model=model_dir, test_dir=test_dir, out=work / "warm.csv", batch_size=args.batch_size,
                         progress=False, predictor=predictor)
        old_runs, new_runs, ratios_wall, ratios_cpu = [], [], [], []
        identical = True
        for i in range(args.rounds):
            result = {}
            for which in (("old", "new") if i % 2 == 0 else ("new", "old")):
                out = work / f"{which}_{i}.csv"
                if which == "old":
                    wall, cpu = _old_submission(predictor, test_dir, out, args.batch_size)
                    result["old"] = {"wall": wall, "cpu": cpu}
                else:
                    run = write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=args.batch_size,
                                           progress=False, resume=False, predictor=predictor)
                    result["new"] = {"wall": run.stream_seconds, "cpu": run.stream_cpu_seconds, "run": run}
            identical &= (work / f"old_{i}.csv").read_bytes() == (work / f"new_{i}.csv").read_bytes()
            old_runs.append(result["old"])
            new_runs.append(result["new"])
            ratios_wall.append(result["old"]["wall"] / result["new"]["wall"])
            ratios_cpu.append(result["old"]["cpu"] / result["new"]["cpu"])
        outside = _outside_graph(predictor, model_dir, test_dir, work, args.batch_size, args.rounds)
        predictor.close()

        best = max((r["run"] for r in new_runs), key=lambda r: r.clips_per_second)
        streaming = [r["run"].clips_per_second for r in new_runs]
        setup = load_seconds + best.seconds - best.stream_seconds
        report = {
            "arch": args.arch,
            "size": args.size,
            "params": int(model.count_params()),
            "graph": {k: v for k, v in graph_summary(graph).items() if k != "ops"} | {"bn_layers_folded": folded},
            "clips": args.clips,
            "threads": threads,
            "chunk": args.chunk,
            "batch_size": args.batch_size,
            "cpu_count": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "predict_only": predict_only,
            "side_by_side": {
                "rounds": args.rounds,
                "method": predictor.method,
                "old": _stream_summary(args.clips, [(r["wall"], r["cpu"]) for r in old_runs]),
                "new": _stream_summary(args.clips, [(r["wall"], r["cpu"]) for r in new_runs]),
                "new_over_old_clips_per_s": round(_median(ratios_wall), 3),
                "new_over_old_clips_per_cpu_s": round(_median(ratios_cpu), 3),
                "round_ratios_clips_per_s": [round(r, 3) for r in ratios_wall],
                "round_ratios_clips_per_cpu_s": [round(r, 3) for r in ratios_cpu],
                "identical_csv": identical,
                "outside_graph": outside,
            },
            "write_submission": {
                "method": best.method,
                "auto_timings_clips_per_cpu_s": best.timings,
                "clips_per_s_streaming_best": round(max(streaming), 1),
                "clips_per_s_streaming_median": round(_median(streaming), 1),
                "clips_per_cpu_s": round(best.predicted_rows / best.stream_cpu_seconds, 1),
                "cores_used": round(best.stream_cpu_seconds / best.stream_seconds, 2),
                "projected_clips_per_s_on_free_cores": round(
                    best.predicted_rows / best.stream_cpu_seconds * min(threads, os.cpu_count() or 1), 1),
                "wait_share_of_stream": round(best.predict_seconds / best.stream_seconds, 3),
                "setup_s": round(setup, 2),
                "projected_minutes_158538": round((KAGGLE_TEST_CLIPS / max(streaming) + setup) / 60, 2),
                "target_clips_per_s": 3000,
                "meets_target": max(streaming) >= 3000,
            },
            "freeze_s": round(freeze_seconds, 2),
            "litert": (_formats(model, model_dir, test_dir, work, args.batch_size, args.rounds, threads, args.representative)
                       if args.litert else None),
            "write_clips_s": round(write_clips_seconds, 2),
        }
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
