"""Kaggle submission from a frozen graph: batch prediction, a resumable CSV writer, validation, scoring.

The shipped model is a frozen ``model.pb`` (see :mod:`distill.export.freeze`) built for
ONE clip: ``wav_data`` -> DecodeWav ``decoded_sample_data`` ([16000, 1]) ->
front-end -> model -> ``labels_softmax`` ([1, 12] or [12]).

* :class:`GraphPredictor` imports it into TF 2 and predicts a batch of waveforms
  per call, in chunks of ``chunk`` clips run side by side on ``workers``
  threads. A chunk is either the single-clip graph vectorized with
  ``tf.vectorized_map`` (pfor; converters are added here for the audio ops
  pfor does not know, ``AudioSpectrogram`` and ``Mfcc``, which take a batch on
  their channel axis, and for ``DepthwiseConv2dNative`` with a constant
  filter, which pfor would fold into the channels) or ``tf.map_fn`` over it;
  by default both are timed at load and the faster kept. Every method is
  checked against single-clip runs on a probe batch (<= 1e-5).
  ``scripts/bench_submit.py`` compares them with the one-call-per-clip loop.
* :func:`write_submission` streams a test folder (``data.iter_unlabeled``),
  appends rows to ``<out>.part`` as it goes (flushed every batch, fsynced every
  few seconds), resumes after the last complete row of a matching partial file,
  and writes the final ``fname,label`` CSV atomically, sorted, then validates it.
* :func:`validate_submission`, :func:`score_submission`, :func:`label_wav`
  (the TensorFlow tutorial's ``label_wav.py``: raw wav bytes into ``wav_data:0``).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from distill.core.errors import BadAudioError, DistillError
from distill.core.io import atomic_path
from distill.core.labels import CLASS_INDEX, CLASSES, CLIP_SAMPLES, NUM_CLASSES, SAMPLE_RATE

__all__ = [
    "METHODS",
    "GraphPredictor",
    "LabelWavResult",
    "SubmissionResult",
    "configure_threads",
    "default_workers",
    "label_wav",
    "load_graph_def",
    "read_submission",
    "resolve_model",
    "score_submission",
    "validate_submission",
    "write_submission",
]

MODEL_FILE = "model.pb"
LABELS_FILE = "labels.txt"
HEADER = "fname,label"
METHODS = ("auto", "vectorized", "map_fn", "loop")
AUTO_CANDIDATES = ("vectorized", "map_fn")  # "loop" is never faster (a Python call per clip)
_FALLBACK = {"vectorized": "map_fn", "map_fn": "loop"}
DEFAULT_METHOD = "auto"
DEFAULT_CHUNK = 32
PROBE_TOLERANCE = 1e-5
# the TensorFlow tutorial's conv_labels.txt spells the first two classes this way
_LABEL_ALIASES = {"_silence_": "silence", "_unknown_": "unknown"}
_PART_MAGIC = "# distill-submission-part v1 "
_FSYNC_SECONDS = 5.0
_EXAMPLES = 5
# clips every batch function must reproduce (within PROBE_TOLERANCE) against single-clip runs: silence and noise
_PROBE = np.concatenate([np.zeros((1, CLIP_SAMPLES), np.float32),
                         np.random.default_rng(0).uniform(-0.5, 0.5, (3, CLIP_SAMPLES)).astype(np.float32)])


# --------------------------------------------------------------------------- loading


def resolve_model(model: str | os.PathLike) -> Path:
    """The ``.pb`` file of ``model``: the path itself, or ``<dir>/model.pb``."""
    path = Path(model)
    if path.is_dir():
        pb = path / MODEL_FILE
        if not pb.is_file():
            found = sorted(p.name for p in path.glob("*.pb"))
            hint = f" (it holds {', '.join(found)}; pass that file's path)" if found else ""
            raise DistillError(f"{path}: no {MODEL_FILE} in this folder{hint}")
        return pb
    if not path.is_file():
        raise DistillError(f"{path}: model file does not exist (pass a frozen .pb or the folder holding {MODEL_FILE})")
    return path


def _check_labels_file(path: Path) -> None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DistillError(f"{path}: cannot read the labels file ({err})") from err
    found = [line.strip() for line in lines]
    while found and not found[-1]:
        found.pop()
    normalized = [_LABEL_ALIASES.get(name, name) for name in found]
    if tuple(normalized) != CLASSES:
        diff = next((i for i, (a, b) in enumerate(zip(normalized, CLASSES)) if a != b), min(len(normalized), NUM_CLASSES))
        got = found[diff] if diff < len(found) else "(end of file)"
        raise DistillError(
            f"{path}: labels do not match the model's class order: line {diff + 1} is {got!r}, expected "
            f"{CLASSES[diff] if diff < NUM_CLASSES else '(end of file)'!r}; the graph's softmax index i must be "
            f"CLASSES[i] = {', '.join(CLASSES)} ({len(found)} labels found)"
        )


def load_graph_def(model: str | os.PathLike):
    """(GraphDef, path of the .pb) of a frozen model; checks ``labels.txt`` beside it when present."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.framework import graph_pb2

    pb = resolve_model(model)
    labels = pb.parent / LABELS_FILE
    if labels.is_file():
        _check_labels_file(labels)
    graph_def = graph_pb2.GraphDef()
    try:
        graph_def.ParseFromString(pb.read_bytes())
    except (DecodeError, OSError) as err:
        raise DistillError(f"{pb}: not a frozen GraphDef ({err})") from err
    return graph_def, pb


def default_workers() -> int:
    """Concurrent graph calls of :meth:`GraphPredictor.predict`: one per core, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def configure_threads(intra: int, inter: int) -> bool:
    """Set TensorFlow's process-wide thread pools; False if TF's runtime already started (then nothing changes)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(intra))
        tf.config.threading.set_inter_op_parallelism_threads(int(inter))
    except RuntimeError:
        return (tf.config.threading.get_intra_op_parallelism_threads() == intra
                and tf.config.threading.get_inter_op_parallelism_threads() == inter)
    return True


# --------------------------------------------------------------------------- pfor converters


@contextlib.contextmanager
def _audio_pfor_converters() -> Iterator[bool]:
    """Install pfor converters for AudioSpectrogram / Mfcc / a batch-folding depthwise conv while tracing.

    pfor (``tf.vectorized_map``) has no converter for the two audio ops, so it
    would run them in a while loop, one clip at a time; both take several
    signals on their channel axis, so a batch is one call. Its
    ``DepthwiseConv2dNative`` converter folds the batch into the channels (a
    single image of B*C channels, which TF shards over rows only); with a
    loop-invariant filter folding into the batch axis computes the same thing
    faster. The registry is private TF API: if it is missing the block runs
    without these converters (vectorized_map then falls back to while loops)
    and yields False. Entries are restored on exit.
    """
    try:
        from tensorflow.python.ops.parallel_for import pfor as P

        registry = P._pfor_converter_registry
        wrap, create_op = P.wrap, P._create_op
        flatten, unflatten = P._flatten_first_two_dims, P._unflatten_first_dim
        not_implemented = P.ConversionNotImplementedError  # pfor then falls back to a while loop for the op
    except (ImportError, AttributeError):
        yield False
        return
    import tensorflow as tf

    def spectrogram(pfor_input):
        x = pfor_input.stacked_input(0)  # [B, samples, channels]
        n = pfor_input.pfor.loop_len_vector
        shape = tf.shape(x)
        flat = tf.reshape(tf.transpose(x, [1, 0, 2]), tf.stack([shape[1], -1]))  # [samples, B * channels]
        out = create_op("AudioSpectrogram", [flat], [o.dtype for o in pfor_input.outputs],
                        attrs=pfor_input.op.node_def.attr).outputs[0]  # [B * channels, frames, bins]
        return wrap(unflatten(out, n), True)

    def mfcc(pfor_input):
        pfor_input.stack_inputs(stack_indices=[0])
        if pfor_input.inputs[1].is_stacked:  # a per-clip sample rate: leave it to the while-loop fallback
            raise not_implemented("Mfcc with a per-iteration sample rate")
        n = pfor_input.pfor.loop_len_vector
        out = create_op("Mfcc", [flatten(pfor_input.stacked_input(0)), pfor_input.unstacked_input(1)],
                        [o.dtype for o in pfor_input.outputs], attrs=pfor_input.op.node_def.attr).outputs[0]
        return wrap(unflatten(out, n), True)

    original_depthwise = registry.get("DepthwiseConv2dNative")

    def depthwise(pfor_input):
        if pfor_input.inputs[1].is_stacked or pfor_input.get_attr("data_format") != b"NHWC":
            if original_depthwise is None:
                raise not_implemented("DepthwiseConv2dNative with a per-iteration filter")
            return original_depthwise(pfor_input)
        n = pfor_input.pfor.loop_len_vector
        out = create_op("DepthwiseConv2dNative", [flatten(pfor_input.stacked_input(0)), pfor_input.unstacked_input(1)],
                        [o.dtype for o in pfor_input.outputs], attrs=pfor_input.op.node_def.attr).outputs[0]
        return wrap(unflatten(out, n), True)

    ours = {"AudioSpectrogram": spectrogram, "Mfcc": mfcc, "DepthwiseConv2dNative": depthwise}
    saved = {name: registry.get(name) for name in ours}
    registry.update(ours)
    try:
        yield True
    finally:
        for name, fn in saved.items():
            if fn is None:
                registry.pop(name, None)
            else:
                registry[name] = fn


# --------------------------------------------------------------------------- the predictor


class GraphPredictor:
    """Batch prediction with a frozen single-clip graph (``decoded_sample_data:0`` -> ``labels_softmax:0``).

    ``GraphPredictor(model)`` takes a ``.pb`` path, a folder with ``model.pb``
    (and optionally ``labels.txt``, checked against ``CLASSES``) or a GraphDef.
    ``predict(waveforms)`` maps float32 ``(B, 16000)`` in [-1, 1] to
    probabilities ``(B, 12)``, ``chunk`` clips per graph call.

    ``method``: ``"vectorized"`` (``tf.vectorized_map`` of the single-clip
    graph), ``"map_fn"`` (``tf.map_fn``, ``parallel_iterations=chunk``),
    ``"loop"`` (one call per clip, always slowest) or ``"auto"`` (default):
    build vectorized and map_fn, time both on two chunks and keep the one with
    more clips per CPU-second (``timings``). Which wins depends on the graph:
    vectorized for the toolkit's students (e.g. DS-CNN-M 1,660 vs 1,520
    clips/CPU-s), map_fn for the TF tutorial's conv (245 vs 181). With
    ``verify`` (default) every method is checked on a probe batch against
    single-clip runs (max abs difference <= 1e-5); a method that fails to
    trace or to match is dropped for the next (vectorized -> map_fn -> loop),
    with the reason in ``notes``. ``method`` is the method in use.

    ``workers`` chunks run at once on a thread pool (default: one per core, at
    most 4): the audio front-end ops are single-threaded kernels, so cores are
    used by running chunks side by side. TensorFlow runs concurrent calls only
    with ``inter_op_parallelism_threads >= workers`` (its default is the core
    count; :func:`configure_threads` ``(1, workers)`` measured best on 2 cores).
    """

    def __init__(self, model: Any, *, method: str = DEFAULT_METHOD, chunk: int = DEFAULT_CHUNK, workers: int | None = None,
                 verify: bool = True):
        import tensorflow as tf
        from tensorflow.core.framework import graph_pb2

        from distill.export.freeze import AUDIO_TENSOR, INPUT_NODE, OUTPUT_TENSOR, RATE_TENSOR

        if method not in METHODS:
            raise DistillError(f"unknown prediction method {method!r}; choose one of {', '.join(METHODS)}")
        if chunk < 1:
            raise DistillError(f"chunk must be >= 1, got {chunk}")
        if isinstance(model, graph_pb2.GraphDef):
            graph_def, self.path = model, None
        else:
            graph_def, self.path = load_graph_def(model)
        self.notes: list[str] = []
        self.chunk = int(chunk)
        self.workers = max(1, int(workers if workers is not None else default_workers()))
        self._pool = None
        names = {n.name: n.op for n in graph_def.node}
        where = str(self.path) if self.path else "graph"
        for tensor in (AUDIO_TENSOR, OUTPUT_TENSOR):
            if tensor.split(":")[0] not in names:
                raise DistillError(f"{where}: no node {tensor.split(':')[0]!r}; expected the competition interface "
                                   f"wav_data -> decoded_sample_data (DecodeWav) -> ... -> labels_softmax")
        self.has_wav_input = INPUT_NODE in names and names.get("decoded_sample_data") == "DecodeWav"
        copy = graph_pb2.GraphDef()
        copy.CopyFrom(graph_def)  # TF 2's import adds default attrs to the GraphDef it is given

        def _import():
            tf.graph_util.import_graph_def(copy, name="")

        try:
            wrapped = tf.compat.v1.wrap_function(_import, [])
        except (ValueError, TypeError, tf.errors.OpError) as err:
            raise DistillError(f"{where}: TensorFlow cannot import this graph ({err})") from err
        graph = wrapped.graph
        out = graph.get_tensor_by_name(OUTPUT_TENSOR)
        out_shape = out.shape.as_list() if out.shape.rank is not None else None
        if out_shape is not None and out_shape not in ([1, NUM_CLASSES], [NUM_CLASSES]):
            raise DistillError(f"{where}: {OUTPUT_TENSOR} has shape {out_shape}, expected [1, {NUM_CLASSES}] or [{NUM_CLASSES}]")
        feeds = [graph.get_tensor_by_name(AUDIO_TENSOR)]
        uses_rate = names[AUDIO_TENSOR.split(":")[0]] == "DecodeWav"  # then :1, the sample rate, is fed too
        if uses_rate:
            feeds.append(graph.get_tensor_by_name(RATE_TENSOR))
        self._clip_fn_raw = wrapped.prune(feeds=feeds, fetches=out)
        self._wav_fn = (wrapped.prune(feeds=[graph.get_tensor_by_name(f"{INPUT_NODE}:0")], fetches=out)
                        if self.has_wav_input else None)
        rate = tf.constant(SAMPLE_RATE, tf.int32)
        raw = self._clip_fn_raw

        def clip_fn(x):  # (16000,) -> (12,)
            args = (tf.reshape(x, [CLIP_SAMPLES, 1]), rate) if uses_rate else (tf.reshape(x, [CLIP_SAMPLES, 1]),)
            return tf.reshape(raw(*args), [NUM_CLASSES])

        self._clip_fn = clip_fn
        self._single = tf.function(clip_fn, input_signature=[tf.TensorSpec([CLIP_SAMPLES], tf.float32)])
        self.verify = verify
        self.timings: dict[str, float] = {}  # clips per CPU-second of each candidate (method="auto")
        self._probe_reference: np.ndarray | None = None
        self._fns: dict[str, Any] = {}
        self.method = self._choose(method)

    # -- choosing and building the batch function

    def _choose(self, method: str) -> str:
        if method == "auto":
            ready = [m for m in AUTO_CANDIDATES if self._prepare(m)]
            if len(ready) > 1:
                self.timings = self._time_methods(ready)
                ready.sort(key=lambda m: -self.timings[m])
            return ready[0] if ready else self._fallback_from("loop")
        if self._prepare(method):
            return method
        return self._fallback_from(_FALLBACK[method])

    def _fallback_from(self, method: str) -> str:
        while not self._prepare(method):
            method = _FALLBACK[method]
        return method

    def _prepare(self, method: str) -> bool:
        """Build ``method``'s batch function and (with verify) check it on a probe batch; False with a note if unusable."""
        if method == "loop":
            self._fns["loop"] = None
            if self.verify:
                self._probe()
            return True
        try:
            fn = self._build(method)
        except Exception as exc:  # noqa: BLE001 - a graph this path cannot trace: use another
            self.notes.append(f"method {method!r} cannot run this graph ({type(exc).__name__}: {exc}); not used")
            return False
        self._fns[method] = fn
        if not self.verify:
            return True
        reference = self._probe()
        try:
            err = float(np.abs(self._run_with(method, _PROBE) - reference).max())
        except Exception as exc:  # noqa: BLE001
            why = f"{type(exc).__name__}: {exc}"
        else:
            if err <= PROBE_TOLERANCE:
                return True
            why = f"max difference {err:.2e} from single-clip runs"
        self.notes.append(f"method {method!r} rejected on the probe batch ({why}); not used")
        del self._fns[method]
        return False

    def _build(self, method: str):
        import tensorflow as tf

        spec = [tf.TensorSpec([None, CLIP_SAMPLES], tf.float32)]
        if method == "map_fn":
            fn = tf.function(lambda x: tf.map_fn(self._clip_fn, x, parallel_iterations=self.chunk,
                                                 fn_output_signature=tf.float32), input_signature=spec)
            return fn.get_concrete_function()
        if method != "vectorized":
            raise ValueError(f"no batch function for {method!r}")
        fn = tf.function(lambda x: tf.vectorized_map(self._clip_fn, x, fallback_to_while_loop=True), input_signature=spec)
        with _audio_pfor_converters() as installed:
            if not installed:
                self.notes.append("pfor converter registry not found in this TensorFlow: the audio front-end runs "
                                  "one clip at a time inside vectorized_map")
            return fn.get_concrete_function()

    def _probe(self) -> np.ndarray:
        if self._probe_reference is None:
            reference = np.stack([self._single(clip).numpy() for clip in _PROBE])
            if not np.all(np.isfinite(reference)) or np.abs(reference.sum(axis=1) - 1).max() > 1e-3:
                self.notes.append("labels_softmax rows of the probe clips do not sum to 1 (is it a softmax?)")
            self._probe_reference = reference
        return self._probe_reference

    def _time_methods(self, methods: Sequence[str], *, rounds: int = 2) -> dict[str, float]:
        """Clips per CPU-second of each method, one chunk of noise per worker run side by side as predict() does.

        CPU time (all threads) rather than wall time: other processes on the
        machine barely skew it. Concurrent chunks matter: a method whose
        batched tensors outgrow the caches loses when two run at once.
        """
        n = self.chunk * max(2, self.workers)
        x = np.random.default_rng(1).uniform(-0.5, 0.5, (n, CLIP_SAMPLES)).astype(np.float32)
        best = {m: float("inf") for m in methods}
        for m in methods:
            self._predict_with(m, x[: self.chunk])  # warm-up (first-call allocations)
        for _ in range(rounds):
            for m in methods:
                c = time.process_time()
                self._predict_with(m, x)
                best[m] = min(best[m], time.process_time() - c)
        return {m: round(n / max(best[m], 1e-9), 1) for m in methods}

    # -- prediction

    def _run_with(self, method: str, waveforms: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        fn = self._fns[method]
        if fn is None:
            return np.stack([self._single(tf.constant(clip)).numpy() for clip in waveforms])
        return fn(tf.constant(waveforms)).numpy()

    def predict(self, waveforms: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, 12)`` float32 of float32 waveforms ``(B, 16000)`` (a single ``(16000,)`` clip gives ``(1, 12)``)."""
        x = np.asarray(waveforms, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != CLIP_SAMPLES:
            raise DistillError(f"waveforms must have shape (B, {CLIP_SAMPLES}), got {x.shape}")
        if len(x) == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        return self._predict_with(self.method, np.ascontiguousarray(x))

    def _predict_with(self, method: str, x: np.ndarray) -> np.ndarray:
        chunks = [x[i:i + self.chunk] for i in range(0, len(x), self.chunk)]
        run = functools.partial(self._run_with, method)
        if self.workers > 1 and len(chunks) > 1:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="distill-predict")
            parts = list(self._pool.map(run, chunks))
        else:
            parts = [run(c) for c in chunks]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def close(self) -> None:
        """Stop the worker threads (a later predict() starts them again)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "GraphPredictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def predict_single(self, waveform: np.ndarray) -> np.ndarray:
        """Probabilities ``(12,)`` of one clip through the graph as built (one call, no batching)."""
        import tensorflow as tf

        x = np.asarray(waveform, dtype=np.float32).reshape(-1)
        if x.shape != (CLIP_SAMPLES,):
            raise DistillError(f"a clip must have {CLIP_SAMPLES} samples, got {x.size}")
        return self._single(tf.constant(x)).numpy()

    def predict_wav_bytes(self, data: bytes) -> np.ndarray:
        """Probabilities ``(12,)`` of a whole wav file's bytes fed to ``wav_data:0`` (DecodeWav runs in the graph)."""
        import tensorflow as tf

        if self._wav_fn is None:
            raise DistillError("this graph has no wav_data -> DecodeWav input; feed waveforms with predict()")
        return self._wav_fn(tf.constant(data, dtype=tf.string)).numpy().reshape(NUM_CLASSES)


# --------------------------------------------------------------------------- validation


def read_submission(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The ``(fname, label)`` rows of a submission CSV, checked by :func:`validate_submission` (without a clip list)."""
    return _parse_submission(Path(path), _read_text(Path(path), "submission"))


def _read_text(path: Path, what: str) -> str:
    if path.is_dir():
        raise DistillError(f"{path}: is a folder, expected a {what} CSV file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DistillError(f"{path}: cannot read the {what} file ({err.strerror or err})") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DistillError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[err.start]:02x})") from err


def _parse_submission(path: Path, text: str) -> list[tuple[str, str]]:
    if not text:
        raise DistillError(f"{path}: empty file; a submission starts with the header line {HEADER!r}")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline
    header = lines[0].rstrip("\r")
    if header != HEADER:
        if header.startswith("\ufeff"):
            problem = "starts with a UTF-8 byte-order mark"
        else:
            problem = f"is {header[:80]!r}"
        raise DistillError(f"{path}: line 1: the header {problem}; it must be exactly {HEADER!r}")
    rows: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        if not line.strip():
            raise DistillError(f"{path}: line {number}: empty line (every line after the header is fname,label)")
        fields = line.split(",")
        if len(fields) != 2:
            raise DistillError(f"{path}: line {number}: {len(fields)} comma-separated fields in {line[:80]!r}, expected 2 (fname,label)")
        fname, label = fields
        if not fname or fname != fname.strip():
            raise DistillError(f"{path}: line {number}: fname {fname!r} is empty or has surrounding spaces")
        if label not in CLASS_INDEX:
            near = _LABEL_ALIASES.get(label.strip(), label.strip().lower())
            hint = f" (did you mean {near!r}?)" if near in CLASS_INDEX else ""
            raise DistillError(f"{path}: line {number}: label {label!r} of {fname} is not one of the 12 classes "
                               f"({', '.join(CLASSES)}){hint}")
        if fname in seen:
            raise DistillError(f"{path}: line {number}: duplicate fname {fname} (first on line {seen[fname]})")
        seen[fname] = number
        rows.append((fname, label))
    return rows


def _examples(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_EXAMPLES])
    return shown + (f", ... ({len(items) - _EXAMPLES} more)" if len(items) > _EXAMPLES else "")


def _check_coverage(path: Path, rows: Sequence[tuple[str, str]], names: Sequence[str], source: str) -> None:
    have = {fname for fname, _ in rows}
    want = set(names)
    missing = sorted(want - have)
    extra = sorted(have - want)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} clip(s) of {source} have no row (e.g. {_examples(missing)})")
        if extra:
            parts.append(f"{len(extra)} row(s) name no clip of {source} (e.g. {_examples(extra)})")
        raise DistillError(f"{path}: {len(rows)} rows for {len(want)} clips: " + "; ".join(parts)
                           + "; Kaggle needs exactly one row per test clip")


def validate_submission(path: str | os.PathLike, *, test_dir: str | os.PathLike | None = None,
                        names: Sequence[str] | None = None) -> None:
    """Raise DistillError (naming the file, line and problem) unless ``path`` is a valid submission.

    Checks: header exactly ``fname,label``; two fields per row; every label one
    of the 12 classes; no duplicate fname; no blank lines. With ``test_dir``
    (its ``clip_*.wav`` names) or ``names``: exactly one row per clip (the
    missing and extra counts, with examples).
    """
    path = Path(path)
    rows = _parse_submission(path, _read_text(path, "submission"))
    if names is None and test_dir is not None:
        from distill.data.unlabeled import list_unlabeled

        names, source = list_unlabeled(Path(test_dir)), str(test_dir)
    else:
        source = "the clip list"
    if names is not None:
        _check_coverage(path, rows, names, source)


def score_submission(path: str | os.PathLike, answer_key: str | os.PathLike) -> dict[str, Any]:
    """Accuracy, per-class recall, confusion and count of a submission against a ``fname,label`` answer key.

    Both files must be valid submissions (the key is checked with the same
    rules) over the same clips.
    """
    from distill.core.metrics import classification_report

    path, answer_key = Path(path), Path(answer_key)
    key = dict(_parse_submission(answer_key, _read_text(answer_key, "answer key")))
    rows = _parse_submission(path, _read_text(path, "submission"))
    _check_coverage(path, rows, list(key), f"the answer key {answer_key}")
    labels = np.array([CLASS_INDEX[key[fname]] for fname, _ in rows], dtype=np.int64)
    predicted = np.array([CLASS_INDEX[label] for _, label in rows], dtype=np.int64)
    report = classification_report(labels, predicted)
    return {**report.to_dict(), "submission": str(path), "answer_key": str(answer_key)}


# --------------------------------------------------------------------------- the resumable writer


@dataclass
class SubmissionResult:
    """What :func:`write_submission` did.

    ``counts``: rows per label (CLASSES order); ``bad``: ``(fname, reason)`` of
    clips predicted as digital silence because they could not be read;
    ``resumed_rows``: rows taken from an earlier interrupted run;
    ``predicted_rows``: this run's; ``seconds``: the whole call (model load
    included); ``stream_seconds``: reading, predicting and writing the rows
    (``stream_cpu_seconds``: the process's CPU time meanwhile, all threads);
    ``clips_per_second`` = predicted_rows / stream_seconds; ``predict_seconds``:
    the part of it spent in the graph.
    """

    out: Path
    clips: int
    counts: dict[str, int]
    bad: list[tuple[str, str]]
    bad_report: Path | None
    probs: Path | None
    resumed_rows: int
    predicted_rows: int
    seconds: float
    stream_seconds: float
    stream_cpu_seconds: float
    clips_per_second: float
    predict_seconds: float
    method: str
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "clips": self.clips, "counts": self.counts, "bad": [list(b) for b in self.bad],
                "bad_report": str(self.bad_report) if self.bad_report else None,
                "probs": str(self.probs) if self.probs else None, "resumed_rows": self.resumed_rows,
                "predicted_rows": self.predicted_rows, "seconds": self.seconds,
                "stream_seconds": self.stream_seconds, "stream_cpu_seconds": self.stream_cpu_seconds, "predict_seconds": self.predict_seconds,
                "clips_per_second": self.clips_per_second, "method": self.method, "notes": list(self.notes),
                "timings": dict(self.timings)}


def _sidecar(out: Path, suffix: str) -> Path:
    return out.with_name(out.name + suffix)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _part_meta(model_sha: str, names: Sequence[str], *, probs: bool) -> dict[str, Any]:
    return {"model_sha256": model_sha, "clips": len(names),
            "names_sha256": hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest(), "probs": bool(probs)}


def _part_header(probs: bool) -> list[str]:
    return ["fname", "label", "bad_reason", *([f"p_{c}" for c in CLASSES] if probs else [])]


@dataclass
class _Resume:
    rows: list[tuple[str, str, str]]  # (fname, label, bad reason)
    probs: list[np.ndarray]
    offset: int  # bytes of the part file that hold the meta line, header and those rows


def _read_part(part: Path, meta: dict[str, Any], names: Sequence[str], *, skip_bad: bool) -> tuple[_Resume | None, str]:
    """The reusable prefix of a partial file, or (None, why it cannot be used)."""
    try:
        data = part.read_bytes()
    except OSError as err:
        return None, f"unreadable ({err.strerror or err})"
    first, sep, rest = data.partition(b"\n")
    if not sep or not first.startswith(_PART_MAGIC.encode()):
        return None, "not a distill partial submission"
    try:
        old = json.loads(first[len(_PART_MAGIC):].decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None, "its first line is damaged"
    if old != meta:
        changed = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
        return None, f"it was written for a different {', '.join(changed)}"
    offset = len(first) + 1
    header, sep, rest = rest.partition(b"\n")
    probs = meta["probs"]
    if not sep or header.decode("utf-8", "replace") != ",".join(_part_header(probs)):
        return None, "its header is damaged"
    offset += len(header) + 1
    want_fields = 3 + (NUM_CLASSES if probs else 0)
    rows: list[tuple[str, str, str]] = []
    prob_rows: list[np.ndarray] = []
    for raw in rest.split(b"\n")[:-1]:  # the piece after the last newline is an incomplete row
        try:
            fields = next(csv.reader([raw.decode("utf-8")]))
        except (UnicodeDecodeError, StopIteration, csv.Error):
            return None, f"row {len(rows) + 1} is damaged"
        i = len(rows)
        if len(fields) != want_fields or i >= len(names) or fields[0] != names[i] or fields[1] not in CLASS_INDEX:
            return None, f"row {i + 1} ({raw[:60]!r}) is not clip {i + 1} of the sorted clip list"
        if probs:
            try:
                prob_rows.append(np.array([float(v) for v in fields[3:]], dtype=np.float32))
            except ValueError:
                return None, f"row {i + 1} has a damaged probability"
        if fields[2] and not skip_bad:
            return None, f"row {i + 1} is an unreadable clip predicted as silence (--skip-bad), and skip_bad is off now"
        rows.append((fields[0], fields[1], fields[2]))
        offset += len(raw) + 1
    return _Resume(rows, prob_rows, offset), ""


class _Progress:
    def __init__(self, total: int, done: int, disable: bool, description: str):
        self._progress = None
        self._done = done
        if disable:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                  console=Console(file=sys.stderr))
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, completed=done, rate="")
        self._start = time.perf_counter()
        self._done0 = done

    def update(self, done: int) -> None:
        if self._progress is not None and done != self._done:
            rate = (done - self._done0) / max(1e-9, time.perf_counter() - self._start)
            self._progress.update(self._task, completed=done, rate=f"{rate:,.0f} clips/s")
        self._done = done

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _clean_reason(reason: str) -> str:
    return " ".join(str(reason).split())


def write_submission(*, model: str | os.PathLike, test_dir: str | os.PathLike, out: str | os.PathLike,
                     batch_size: int = 256, resume: bool = True, progress: bool = True, skip_bad: bool = False,
                     probs: bool = False, method: str = DEFAULT_METHOD, chunk: int = DEFAULT_CHUNK,
                     workers: int | None = None, predictor: GraphPredictor | None = None) -> SubmissionResult:
    """Predict every clip of ``test_dir`` with the frozen ``model`` and write the Kaggle CSV ``out``.

    Streams the folder in batches of ``batch_size`` (never holding all clips),
    appending rows to ``<out>.part`` (flushed every batch, fsynced every few
    seconds). With ``resume`` a partial file from an interrupted run for the
    same model and clip list is continued after its last complete row;
    anything else starts over. The final ``fname,label`` CSV (sorted by fname,
    one row per clip) is written atomically and validated against the clip
    list, then the partial file is removed.

    Bad clips raise BadAudioError, or with ``skip_bad`` are predicted as
    digital silence (zeros: Kaggle needs a row for every clip), listed with
    their reason in ``<out>.bad.tsv`` and warned about on stderr. ``probs``
    also saves ``<out>.probs.npz`` (``names``, float16 ``probs`` (N, 12) in
    CSV row order, ``classes``). ``method``, ``chunk``, ``workers``: see
    :class:`GraphPredictor`; ``predictor`` reuses a loaded one instead.
    """
    from distill.data.unlabeled import list_unlabeled

    t0 = time.perf_counter()
    out, test_dir = Path(out), Path(test_dir)
    if batch_size < 1:
        raise DistillError(f"batch_size must be >= 1, got {batch_size}")
    if out.is_dir():
        raise DistillError(f"{out}: is a folder; --out must be the CSV file to write")
    if not test_dir.is_dir():
        raise DistillError(f"{test_dir}: test folder {'is not a folder' if test_dir.exists() else 'does not exist'}")
    names = list_unlabeled(test_dir)
    own = predictor is None
    if own:
        predictor = GraphPredictor(model, method=method, chunk=chunk, workers=workers)
    model_path = predictor.path if own else resolve_model(model)
    try:
        return _write_submission(predictor=predictor, model_path=model_path, test_dir=test_dir, out=out, names=names,
                                 batch_size=batch_size, resume=resume, progress=progress, skip_bad=skip_bad,
                                 probs=probs, t0=t0)
    finally:
        if own:
            predictor.close()


def _write_submission(*, predictor: GraphPredictor, model_path: Path, test_dir: Path, out: Path, names: list[str],
                      batch_size: int, resume: bool, progress: bool, skip_bad: bool, probs: bool,
                      t0: float) -> SubmissionResult:
    from distill.data.unlabeled import iter_unlabeled

    notes = list(predictor.notes)
    meta = _part_meta(_sha256_file(model_path), names, probs=probs)
    part = _sidecar(out, ".part")
    out.parent.mkdir(parents=True, exist_ok=True)

    state = None
    if part.exists():
        if resume:
            state, why = _read_part(part, meta, names, skip_bad=skip_bad)
            if state is None:
                notes.append(f"{part}: not resumed ({why}); starting over")
            elif state.rows:
                notes.append(f"{part}: resumed after {len(state.rows)} of {len(names)} rows")
        else:
            notes.append(f"{part}: discarded (resume is off); starting over")
    if state is None:
        with open(part, "w", encoding="utf-8", newline="") as fh:
            fh.write(_PART_MAGIC + json.dumps(meta, sort_keys=True) + "\n")
            csv.writer(fh, lineterminator="\n").writerow(_part_header(probs))
        state = _Resume([], [], part.stat().st_size)
    else:
        with open(part, "r+b") as fh:
            fh.truncate(state.offset)  # drop an incomplete last row

    done = len(state.rows)
    rows: list[tuple[str, str, str]] = list(state.rows)
    prob_rows: list[np.ndarray] = list(state.probs)
    bad_now: list[tuple[str, str]] = []
    zero_probs: np.ndarray | None = None
    todo = names[done:]
    bar = _Progress(len(names), done, not progress, f"predicting {len(names):,} clips")
    last_sync = time.perf_counter()
    fh = open(part, "a", encoding="utf-8", newline="")
    writer = csv.writer(fh, lineterminator="\n")

    def emit(batch_names: Sequence[str], batch_probs: np.ndarray, reasons: Sequence[str]) -> None:
        labels = np.asarray(batch_probs).argmax(axis=1)
        for name, label, reason, p in zip(batch_names, labels, reasons, batch_probs):
            line = [name, CLASSES[label], reason]
            if probs:
                text = [f"{v:.6g}" for v in p]
                line += text
                # kept as written, so a resumed run's probabilities equal an uninterrupted run's bit for bit
                prob_rows.append(np.array([float(v) for v in text], dtype=np.float32))
            writer.writerow(line)
            rows.append((name, CLASSES[label], reason))

    predict_seconds = 0.0
    t_stream, cpu_stream = time.perf_counter(), time.process_time()
    try:
        if todo:
            bad_reported: list[tuple[str, str]] = []
            position = {name: i for i, name in enumerate(todo)}
            cursor = 0  # todo[:cursor] have rows

            def flush_bad(upto: int) -> None:
                # every clip before ``upto`` that has no row was left out by iter_unlabeled as bad
                nonlocal cursor, zero_probs
                if upto <= cursor:
                    return
                reasons = dict(bad_reported)
                missing = todo[cursor:upto]
                unexplained = [n for n in missing if n not in reasons]
                if unexplained:
                    raise DistillError(f"internal error: clips {unexplained[:3]} were neither predicted nor reported bad")
                if zero_probs is None:
                    zero_probs = predictor.predict(np.zeros((1, CLIP_SAMPLES), np.float32))[0]
                for n in missing:
                    bad_now.append((n, reasons[n]))
                emit(missing, np.repeat(zero_probs[None], len(missing), axis=0),
                     [_clean_reason(reasons[n]) for n in missing])
                cursor = upto

            for batch_names, waveforms in iter_unlabeled(test_dir, batch_size=batch_size, names=todo,
                                                         skip_bad=skip_bad, bad_report=bad_reported):
                first = position[batch_names[0]]
                last = position[batch_names[-1]]
                flush_bad(first)
                t = time.perf_counter()
                p = predictor.predict(waveforms)
                predict_seconds += time.perf_counter() - t
                if last - first + 1 == len(batch_names):
                    emit(batch_names, p, [""] * len(batch_names))
                    cursor = last + 1
                else:  # bad clips inside the batch: interleave their rows in name order
                    got = dict(zip(batch_names, p))
                    for name in todo[first:last + 1]:
                        if name in got:
                            emit([name], got[name][None], [""])
                            cursor = position[name] + 1
                        else:
                            flush_bad(position[name] + 1)
                fh.flush()
                if time.perf_counter() - last_sync >= _FSYNC_SECONDS:
                    os.fsync(fh.fileno())
                    last_sync = time.perf_counter()
                bar.update(len(rows))
            flush_bad(len(todo))
            fh.flush()
            os.fsync(fh.fileno())
            bar.update(len(rows))
    finally:
        fh.close()
        bar.close()
    stream_seconds = time.perf_counter() - t_stream
    stream_cpu_seconds = time.process_time() - cpu_stream

    if len(rows) != len(names) or any(r[0] != n for r, n in zip(rows, names)):
        raise DistillError(f"internal error: {len(rows)} rows for {len(names)} clips; {part} is kept for inspection")
    bad = [(name, reason) for name, _, reason in rows if reason]
    if bad_now:
        print(f"warning: {len(bad_now)} clip(s) could not be read and were predicted as digital silence "
              f"(all zeros); see {_sidecar(out, '.bad.tsv')}", file=sys.stderr)
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])
    text = HEADER + "\n" + "".join(f"{rows[i][0]},{rows[i][1]}\n" for i in order)
    _parse_submission(out, text)  # never rename an invalid file into place
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    validate_submission(out, names=names)

    bad_report = _sidecar(out, ".bad.tsv")
    if bad:
        with atomic_path(bad_report) as tmp:
            tmp.write_text("fname\treason\n" + "".join(f"{n}\t{r}\n" for n, r in bad), encoding="utf-8")
    elif bad_report.exists():
        bad_report.unlink()
        notes.append(f"removed {bad_report} of an earlier run (no bad clips now)")
    probs_path = None
    if probs:
        probs_path = _sidecar(out, ".probs.npz")
        with atomic_path(probs_path) as tmp:
            with open(tmp, "wb") as pf:
                np.savez(pf, names=np.array([rows[i][0] for i in order]),
                         probs=np.stack([prob_rows[i] for i in order]).astype(np.float16),
                         classes=np.array(CLASSES))
    part.unlink()
    counts = {c: 0 for c in CLASSES}
    for _, label, _ in rows:
        counts[label] += 1
    seconds = time.perf_counter() - t0
    predicted = len(rows) - done
    return SubmissionResult(out=out, clips=len(rows), counts=counts, bad=bad, bad_report=bad_report if bad else None,
                            probs=probs_path, resumed_rows=done, predicted_rows=predicted, seconds=seconds,
                            stream_seconds=stream_seconds, stream_cpu_seconds=stream_cpu_seconds,
                            clips_per_second=predicted / max(stream_seconds, 1e-9),
                            predict_seconds=predict_seconds, method=predictor.method, notes=notes,
                            timings=dict(predictor.timings))


# --------------------------------------------------------------------------- label_wav


_LABEL_WAV_HINT = "label-wav needs a plain 16 kHz 16-bit mono PCM RIFF/WAVE file, like the Kaggle clips"


def _tf_error_line(message: str) -> str:
    """The op's own complaint out of a TF graph-execution error (which also lists Python frames)."""
    lines = [line.strip() for line in message.splitlines()]
    useful = [line for line in lines if line and not line.startswith(("[[", "Detected at", "File ", "Graph execution"))]
    return useful[-1] if useful else message.strip()


@dataclass(frozen=True)
class LabelWavResult:
    """Top-k ``(label, score)`` and all 12 probabilities of one wav file."""

    path: Path
    top: list[tuple[str, float]]
    probs: np.ndarray

    def lines(self) -> list[str]:
        """``label (score = 0.xxxxx)`` lines, as the TensorFlow tutorial's ``label_wav.py`` prints them."""
        return [f"{label} (score = {score:.5f})" for label, score in self.top]


def label_wav(*, model: str | os.PathLike | GraphPredictor, wavs: Sequence[str | os.PathLike],
              top_k: int = 3) -> list[LabelWavResult]:
    """Label wav files like the tutorial's ``label_wav.py``: each file's raw bytes go to ``wav_data:0``.

    Each file is first checked with :func:`distill.data.wav.read_wav` (16 kHz,
    16-bit, mono PCM), which raises BadAudioError with the reason. Returns
    one :class:`LabelWavResult` per file, in order.
    """
    import tensorflow as tf

    from distill.data.wav import read_wav

    if not 1 <= top_k <= NUM_CLASSES:
        raise DistillError(f"top_k must be in 1..{NUM_CLASSES}, got {top_k}")
    if not wavs:
        raise DistillError("no wav files given")
    predictor = model if isinstance(model, GraphPredictor) else GraphPredictor(model, method="loop", verify=False)
    results = []
    for wav in wavs:
        path = Path(wav)
        try:
            read_wav(path)  # the same checks (and reasons) as the data layer, before TensorFlow sees the bytes
        except BadAudioError as err:
            raise BadAudioError(path, err.reason, hint=_LABEL_WAV_HINT) from err
        try:
            p = predictor.predict_wav_bytes(path.read_bytes())
        except tf.errors.InvalidArgumentError as err:
            raise BadAudioError(path, f"the graph's DecodeWav rejected it: {_tf_error_line(err.message)}",
                                hint=_LABEL_WAV_HINT) from err
        top = np.argsort(-p, kind="stable")[:top_k]
        results.append(LabelWavResult(path=path, top=[(CLASSES[i], float(p[i])) for i in top], probs=p))
    return results
