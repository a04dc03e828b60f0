"""Prediction with the shipped frozen graph: loading it, and :class:`GraphPredictor`, which predicts a batch of waveforms per call.

The shipped model is a frozen ``model.pb`` (see :mod:`distill.export.freeze`) built for
ONE clip: ``wav_data`` -> DecodeWav ``decoded_sample_data`` ([16000, 1]) ->
front-end -> model -> ``labels_softmax`` ([1, 12] or [12]).

:class:`GraphPredictor` imports it into TF 2 and predicts a batch of waveforms
per call, in chunks of ``chunk`` clips run side by side on ``workers``
threads. A chunk is either the single-clip graph vectorized with
``tf.vectorized_map`` (pfor, with the converters of :mod:`distill.submission.pfor`
for the ops pfor does not batch well) or ``tf.map_fn`` over it; by default both
are timed at load and the faster kept. Every method is checked against
single-clip runs on a probe batch (<= 1e-5). ``scripts/bench_submit.py``
compares them with the one-call-per-clip loop. ``submit`` starts a batch
without waiting for it, so that ``write_submission`` keeps the workers busy
while it reads and writes (docs/submission-speed.md).
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from distill.core.errors import DistillError
from distill.core.labels import CLASSES, CLIP_SAMPLES, KAGGLE, NUM_CLASSES, SAMPLE_RATE, SILENCE, UNKNOWN, LabelSet
from distill.submission.pfor import audio_pfor_converters
from distill.submission.scoring import LABEL_ALIASES

__all__ = [
    "METHODS",
    "GraphPredictor",
    "PendingPrediction",
    "configure_threads",
    "default_workers",
    "load_graph_def",
    "open_predictor",
    "resolve_model",
]

MODEL_FILE = "model.pb"
TFLITE_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
METHODS = ("auto", "vectorized", "map_fn", "loop")
AUTO_CANDIDATES = ("vectorized", "map_fn")  # "loop" is never faster (a Python call per clip)
_FALLBACK = {"vectorized": "map_fn", "map_fn": "loop"}
DEFAULT_METHOD = "auto"
DEFAULT_CHUNK = 32
PROBE_TOLERANCE = 1e-5
# clips every batch function must reproduce (within PROBE_TOLERANCE) against single-clip runs: silence and noise
_PROBE = np.concatenate([np.zeros((1, CLIP_SAMPLES), np.float32),
                         np.random.default_rng(0).uniform(-0.5, 0.5, (3, CLIP_SAMPLES)).astype(np.float32)])


def resolve_model(model: str | os.PathLike) -> Path:
    """The ``.pb`` file of ``model``: the path itself, or ``<dir>/model.pb``."""
    path = Path(model)
    if path.is_dir():
        pb = path / MODEL_FILE
        if not pb.is_file() and (path / TFLITE_FILE).is_file():  # a `distill export --format tflite` folder
            return path / TFLITE_FILE
        if not pb.is_file():
            found = sorted(p.name for p in path.glob("*.pb"))
            hint = f" (it holds {', '.join(found)}; pass that file's path)" if found else ""
            raise DistillError(f"{path}: no {MODEL_FILE} in this folder{hint}")
        return pb
    if not path.is_file():
        raise DistillError(f"{path}: model file does not exist (pass a frozen .pb or the folder holding {MODEL_FILE})")
    return path


def _check_labels_file(path: Path) -> LabelSet:
    """The model's classes from its labels file: the Kaggle twelve in CLASSES order, or silence, unknown and
    another word list (a model of ``--words``)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DistillError(f"{path}: cannot read the labels file ({err})") from err
    found = [line.strip() for line in lines]
    while found and not found[-1]:
        found.pop()
    normalized = [LABEL_ALIASES.get(name, name) for name in found]
    if tuple(normalized) == CLASSES:
        return KAGGLE
    if sorted(normalized) != sorted(CLASSES) and tuple(normalized[:2]) == (SILENCE, UNKNOWN) and len(normalized) > 2:
        try:
            return LabelSet(normalized[2:])
        except DistillError as err:
            raise DistillError(f"{path}: not a usable label list ({str(err).removeprefix('--words: ')})") from None
    diff = next((i for i, (a, b) in enumerate(zip(normalized, CLASSES)) if a != b), min(len(normalized), NUM_CLASSES))
    got = found[diff] if diff < len(found) else "(end of file)"
    raise DistillError(
        f"{path}: labels do not match the model's class order: line {diff + 1} is {got!r}, expected "
        f"{CLASSES[diff] if diff < NUM_CLASSES else '(end of file)'!r}; the graph's softmax index i must be "
        f"CLASSES[i] = {', '.join(CLASSES)} ({len(found)} labels found); a model of another word list "
        f"lists silence, unknown, then its words"
    )


def model_labels(model: str | os.PathLike) -> LabelSet | None:
    """The classes a model folder's ``labels.txt`` names (None: no labels file beside the graph)."""
    labels = resolve_model(model).parent / LABELS_FILE
    return _check_labels_file(labels) if labels.is_file() else None


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


def open_predictor(model: Any, *, method: str = DEFAULT_METHOD, chunk: int = DEFAULT_CHUNK, workers: int | None = None, verify: bool = True):
    """A :class:`GraphPredictor` for a frozen graph, or a LiteRT predictor for a ``.tflite`` model (run by ai-edge-litert)."""
    if isinstance(model, (str, os.PathLike)) and resolve_model(model).suffix == ".tflite":
        from distill.compliance.litert_worker import LiteRTPredictor

        path = resolve_model(model)
        return LiteRTPredictor(path, labels=model_labels(path), workers=workers if workers is not None else default_workers())
    return GraphPredictor(model, method=method, chunk=chunk, workers=workers, verify=verify)


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


class PendingPrediction:
    """Probabilities being computed by :meth:`GraphPredictor.submit`: ``result()`` waits for and returns them."""

    def __init__(self, parts: list, num_classes: int):
        self._parts = parts
        self._num_classes = num_classes

    def result(self) -> np.ndarray:
        if not self._parts:
            return np.zeros((0, self._num_classes), np.float32)
        return np.concatenate([part.result() for part in self._parts]).astype(np.float32, copy=False)

    def cancel(self) -> None:
        for part in self._parts:
            part.cancel()


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
        named = model_labels(self.path) if self.path is not None else None
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
        # the classes: labels.txt beside the graph names them (any word list); without one, a 12-way graph is Kaggle's
        k = named.num_classes if named is not None else NUM_CLASSES
        if out_shape is not None and out_shape not in ([1, k], [k]):
            if named is None and len(out_shape) in (1, 2) and out_shape[-1] not in (None, NUM_CLASSES):
                raise DistillError(f"{where}: {OUTPUT_TENSOR} is {out_shape[-1]}-way, not the Kaggle 12: put the model's labels.txt "
                                   f"(silence, unknown, then its words, one a line) beside it")
            raise DistillError(f"{where}: {OUTPUT_TENSOR} has shape {out_shape}, expected [1, {k}] or [{k}]"
                               + (f" ({LABELS_FILE} names {k} classes)" if named is not None else ""))
        self.labels: LabelSet = named if named is not None else KAGGLE
        self.classes: tuple[str, ...] = self.labels.classes
        self.num_classes = k
        feeds = [graph.get_tensor_by_name(AUDIO_TENSOR)]
        uses_rate = names[AUDIO_TENSOR.split(":")[0]] == "DecodeWav"  # then :1, the sample rate, is fed too
        if uses_rate:
            feeds.append(graph.get_tensor_by_name(RATE_TENSOR))
        self._clip_fn_raw = wrapped.prune(feeds=feeds, fetches=out)
        self._wav_fn = (wrapped.prune(feeds=[graph.get_tensor_by_name(f"{INPUT_NODE}:0")], fetches=out)
                        if self.has_wav_input else None)
        rate = tf.constant(SAMPLE_RATE, tf.int32)
        raw = self._clip_fn_raw

        def clip_fn(x):  # (16000,) -> (K,)
            args = (tf.reshape(x, [CLIP_SAMPLES, 1]), rate) if uses_rate else (tf.reshape(x, [CLIP_SAMPLES, 1]),)
            return tf.reshape(raw(*args), [k])

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
        with audio_pfor_converters() as installed:
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
            return np.zeros((0, self.num_classes), np.float32)
        return self._predict_with(self.method, np.ascontiguousarray(x))

    def _predict_with(self, method: str, x: np.ndarray) -> np.ndarray:
        chunks = [x[i:i + self.chunk] for i in range(0, len(x), self.chunk)]
        run = functools.partial(self._run_with, method)
        if self.workers > 1 and len(chunks) > 1:
            parts = list(self._workers().map(run, chunks))
        else:
            parts = [run(c) for c in chunks]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _workers(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="distill-predict")
        return self._pool

    def submit(self, waveforms: np.ndarray) -> "PendingPrediction":
        """``predict(waveforms)`` started on the worker threads; the result's ``result()`` waits for it.

        Chunks of successive calls queue on the same workers, so a caller that
        submits the next batch before collecting this one keeps every core busy
        through the end of each batch and while it handles the rows. The
        probabilities are ``predict``'s, bit for bit: each chunk runs the same
        function, and a clip's result does not depend on its chunk.
        """
        x = np.ascontiguousarray(np.asarray(waveforms, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != CLIP_SAMPLES:
            raise DistillError(f"waveforms must have shape (B, {CLIP_SAMPLES}), got {x.shape}")
        run = functools.partial(self._run_with, self.method)
        pool = self._workers()
        return PendingPrediction([pool.submit(run, x[i:i + self.chunk]) for i in range(0, len(x), self.chunk)],
                                 self.num_classes)

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
        return self._wav_fn(tf.constant(data, dtype=tf.string)).numpy().reshape(self.num_classes)

