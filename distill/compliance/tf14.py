"""The TensorFlow 1.4 runtime, always in a subprocess.

A shipped model must load and run in TensorFlow 1.4. TF 1.4 cannot share a
process with TensorFlow 2 (their protobuf descriptors clash), so this module
finds the TF 1.4.0 manylinux wheel, extracts its two native libraries once, and
runs graphs through TF 1.4's C API in ``python -m distill.compliance.tf14_worker``
(ctypes; no TF 1.4 Python code runs). Arrays travel through temporary ``.npz``
files.

Where the wheel comes from, in order: the ``wheel=`` argument, the
``DISTILL_TF14_WHEEL`` environment variable (a ``.whl`` file or a folder that
holds the extracted libraries), a ``tensorflow-1.4.0-*.whl`` in the cache folder
(``~/.cache/distill/tf14`` or ``DISTILL_TF14_CACHE``), else ``pip download``
fetches it (41 MB, once).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from distill.core.errors import DistillError
from distill.core.io import atomic_folder

TF14_VERSION = "1.4.0"
WHEEL_ENV = "DISTILL_TF14_WHEEL"
CACHE_ENV = "DISTILL_TF14_CACHE"
WHEEL_GLOB = "tensorflow-1.4.0-*manylinux1_x86_64.whl"
_WHEEL_PREFIX = "tensorflow-1.4.0.data/purelib/tensorflow/"
RUNTIME_FILES = ("libtensorflow_framework.so", "python/_pywrap_tensorflow_internal.so")
PIP_DOWNLOAD = ("download", "--no-deps", "--only-binary=:all:", "--python-version", "36",
                "--platform", "manylinux1_x86_64", f"tensorflow=={TF14_VERSION}")
_FIX = (f"set {WHEEL_ENV} to a tensorflow-1.4.0-cp36-cp36m-manylinux1_x86_64.whl (get one with "
        f"`pip download --no-deps --only-binary=:all: --python-version 36 --platform manylinux1_x86_64 "
        f"tensorflow==1.4.0 -d DIR`) or to a folder holding its extracted libraries")


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "distill" / "tf14"


def find_tf14_wheel(*, wheel: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                    fetch: bool = True) -> Path:
    """Path of the TF 1.4.0 wheel (or of an already-extracted runtime folder).

    ``wheel`` (or ``$DISTILL_TF14_WHEEL``) wins; else the cache folder is searched
    and, when ``fetch`` is set, ``pip download`` fills it. Raises DistillError
    saying how to provide the wheel when none can be had.
    """
    given = wheel if wheel is not None else os.environ.get(WHEEL_ENV) or None
    if given:
        path = Path(given).expanduser()
        if path.is_dir():
            _runtime_in_folder(path)  # raises if the libraries are not there
            return path
        if path.is_file() and zipfile.is_zipfile(path):
            return path
        source = "wheel=" if wheel is not None else f"${WHEEL_ENV}"
        raise DistillError(f"{source} {path}: not a TF 1.4 wheel nor a folder with its libraries ({_FIX})")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    found = sorted(cache.glob(WHEEL_GLOB)) if cache.is_dir() else []
    if found:
        return found[0]
    if not fetch:
        raise DistillError(f"no TensorFlow 1.4 wheel in {cache} and fetching is off ({_FIX})")
    return _pip_download(cache)


def _pip_download(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", *PIP_DOWNLOAD, "-d", tmp, "--retries", "1", "--timeout", "30",
               "--disable-pip-version-check", "--quiet"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DistillError(f"could not fetch TensorFlow 1.4 with pip ({exc}); {_FIX}") from None
        found = sorted(Path(tmp).glob(WHEEL_GLOB))
        if proc.returncode != 0 or not found:
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            raise DistillError(f"`pip download tensorflow==1.4.0` failed: {' / '.join(tail) or 'no wheel'}; {_FIX}")
        target = cache / found[0].name
        os.replace(found[0], target)
        return target


def _runtime_in_folder(folder: Path) -> Path:
    """The folder (at or below ``folder``) that holds both TF 1.4 libraries."""
    candidates = [folder, folder / "tensorflow", folder / _WHEEL_PREFIX.rstrip("/")]
    candidates += [p.parent for p in folder.rglob("libtensorflow_framework.so")]
    for cand in candidates:
        if all((cand / rel).is_file() for rel in RUNTIME_FILES):
            return cand
    raise DistillError(f"{folder}: no libtensorflow_framework.so + python/_pywrap_tensorflow_internal.so inside ({_FIX})")


def tf14_runtime_dir(*, wheel: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                     fetch: bool = True) -> Path:
    """Folder with the extracted TF 1.4 libraries, extracting them from the wheel once (atomically)."""
    source = find_tf14_wheel(wheel=wheel, cache_dir=cache_dir, fetch=fetch)
    if source.is_dir():
        return _runtime_in_folder(source)
    target = source.parent / (source.name[: -len(".whl")] + ".runtime")
    marker = target / "COMPLETE"
    if marker.is_file():
        return target / "tensorflow"
    # renamed into place when complete; a folder another process put there first is kept
    with atomic_folder(target, replace=False) as tmp:
        try:
            with zipfile.ZipFile(source) as zf:
                for rel in RUNTIME_FILES:
                    member = _WHEEL_PREFIX + rel
                    out = tmp / "tensorflow" / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, length=1 << 20)
        except (KeyError, zipfile.BadZipFile, OSError) as exc:
            raise DistillError(f"{source}: cannot extract the TF 1.4 libraries ({exc}); {_FIX}") from None
        (tmp / "COMPLETE").write_text(json.dumps({"wheel": str(source), "files": list(RUNTIME_FILES)}))
    if not marker.is_file():
        raise DistillError(f"{target}: exists but is incomplete; delete it and retry")
    return target / "tensorflow"


def tf14_unavailable_reason(*, fetch: bool = True) -> str | None:
    """None when the TF 1.4 runtime can be had (fetching if allowed), else why not."""
    try:
        tf14_runtime_dir(fetch=fetch)
    except DistillError as exc:
        return str(exc)
    return None


def tf14_available(*, fetch: bool = True) -> bool:
    """True when the TF 1.4 runtime can be had (for skipping tests)."""
    return tf14_unavailable_reason(fetch=fetch) is None


@dataclasses.dataclass(frozen=True)
class Tf14Result:
    """What one TF 1.4 run returned."""

    outputs: dict[str, Any]          # fetch name -> numpy array (string tensors: numpy object array of bytes)
    timings_ms: list[float]          # per timed run, in order
    version: str                     # TF_Version() of the runtime, "1.4.0"
    run_metadata: list[bytes] = dataclasses.field(default_factory=list)  # serialized RunMetadata (trace runs)
    cpu_ms: list[float] = dataclasses.field(default_factory=list)  # process CPU time per timed run (all threads)

    @property
    def median_ms(self) -> float:
        return float(np.median(self.timings_ms)) if self.timings_ms else float("nan")


GraphLike = Any  # bytes | str | os.PathLike | GraphDef


def _graph_bytes(graph: GraphLike) -> bytes:
    if isinstance(graph, (bytes, bytearray)):
        return bytes(graph)
    if isinstance(graph, (str, os.PathLike)):
        path = Path(graph)
        if not path.is_file():
            raise DistillError(f"{path}: no such graph file")
        return path.read_bytes()
    if hasattr(graph, "SerializeToString"):
        return graph.SerializeToString()
    raise TypeError(f"expected GraphDef bytes, a path or a GraphDef, got {type(graph).__name__}")


def _store_feed(store: dict, key: str, value: Any) -> None:
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if isinstance(value, (bytes, bytearray)) or arr.dtype.kind in "SOU":
        items = [value] if isinstance(value, (bytes, bytearray)) else list(arr.reshape(-1))
        items = [bytes(s, "utf-8") if isinstance(s, str) else bytes(s) for s in items]
        shape = () if isinstance(value, (bytes, bytearray)) else arr.shape
        store[f"{key}.__bytes"] = np.frombuffer(b"".join(items), dtype=np.uint8)
        store[f"{key}.__lens"] = np.array([len(s) for s in items], dtype=np.int64)
        store[f"{key}.__shape"] = np.array(shape, dtype=np.int64)
    else:
        store[key] = arr


def _load_output(npz, key: str) -> Any:
    if f"{key}.__bytes" in npz:
        blob = npz[f"{key}.__bytes"].tobytes()
        items, pos = [], 0
        for n in npz[f"{key}.__lens"]:
            items.append(blob[pos:pos + int(n)])
            pos += int(n)
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(tuple(int(d) for d in npz[f"{key}.__shape"]))
    return npz[key]


def _call_worker(request: dict, tmp: Path, *, timeout: float) -> dict:
    request = dict(request, result_json=str(tmp / "result.json"))
    req_path = tmp / "request.json"
    req_path.write_text(json.dumps(request))
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", "distill.compliance.tf14_worker", str(req_path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise DistillError(f"the TF 1.4 worker did not finish within {timeout:.0f} s") from None
    result_path = tmp / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    if result is None or proc.returncode < 0:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-8:])
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"status {proc.returncode}"
        raise DistillError(f"the TF 1.4 worker crashed ({how}) without a result:\n{tail}")
    if not result.get("ok"):
        raise DistillError(result.get("error", "TF 1.4 worker failed"))
    return result


def tf14_version(**kwargs) -> str:
    """TF_Version() of the runtime the worker loads ("1.4.0")."""
    with tempfile.TemporaryDirectory(prefix="distill-tf14-") as tmp:
        result = _call_worker({"lib_dir": str(tf14_runtime_dir(**kwargs)), "mode": "version"}, Path(tmp), timeout=120)
    return result["version"]


def tf14_op_list_bytes(**kwargs) -> bytes:
    """The serialized ``OpList`` of every op TF 1.4 registers (``TF_GetAllOpList``)."""
    with tempfile.TemporaryDirectory(prefix="distill-tf14-") as tmp:
        out = Path(tmp) / "oplist.pb"
        _call_worker({"lib_dir": str(tf14_runtime_dir(**kwargs)), "mode": "oplist", "outputs_path": str(out)},
                     Path(tmp), timeout=120)
        return out.read_bytes()


def run_graphs(graphs: Mapping[str, GraphLike], *, feeds: Mapping[str, Any] | Mapping[str, Mapping[str, Any]],
               fetches: Sequence[str] | Mapping[str, Sequence[str]], rounds: int = 1, repeats: int = 0,
               warmup: int = 1, threads: int = 1, trace_runs: int = 0, timeout: float = 600.0,
               runtime_dir: str | os.PathLike | None = None, nice: int | None = None) -> dict[str, Tf14Result]:
    """Run several graphs in one TF 1.4 worker; timed runs interleave graph by graph, round by round.

    ``feeds``/``fetches`` are shared by all graphs, or given per graph name. Each
    result's ``timings_ms`` lists every timed run (rounds x repeats, round-major).
    ``nice`` (e.g. -10, needs the privilege) raises the worker's priority for
    benchmarks on a shared machine; leave it None otherwise.
    """
    names = list(graphs)
    lib_dir = Path(runtime_dir) if runtime_dir is not None else tf14_runtime_dir()
    per_graph_feeds = {n: (feeds[n] if n in feeds and isinstance(feeds[n], Mapping) else feeds) for n in names}
    per_graph_fetches = {n: list(fetches[n] if isinstance(fetches, Mapping) else fetches) for n in names}
    with tempfile.TemporaryDirectory(prefix="distill-tf14-") as tmp_name:
        tmp = Path(tmp_name)
        store: dict = {}
        sessions = []
        for i, name in enumerate(names):
            graph_path = tmp / f"graph{i}.pb"
            graph_path.write_bytes(_graph_bytes(graphs[name]))
            keys = {}
            for j, (feed_name, value) in enumerate(per_graph_feeds[name].items()):
                key = f"g{i}f{j}"
                _store_feed(store, key, value)
                keys[feed_name] = key
            sessions.append({"graph": str(graph_path), "feeds": keys, "fetches": per_graph_fetches[name], "label": name})
        np.savez(tmp / "inputs.npz", **store)
        request = {"lib_dir": str(lib_dir), "mode": "run", "inputs_npz": str(tmp / "inputs.npz"),
                   "outputs_npz": str(tmp / "outputs.npz"), "sessions": sessions, "threads": int(threads),
                   "rounds": int(rounds), "repeats": int(repeats), "warmup": int(warmup) if repeats else 0,
                   "trace_runs": int(trace_runs), "nice": int(nice) if nice else 0}
        result = _call_worker(request, tmp, timeout=timeout)
        results = {}
        with np.load(tmp / "outputs.npz") as npz:
            for i, name in enumerate(names):
                outputs = {f: _load_output(npz, f"s{i}.o{j}") for j, f in enumerate(per_graph_fetches[name])}
                traces = [npz[f"s{i}.trace{k}"].tobytes() for k in range(result["traces"][i])]
                timings = [t for round_ in result["timings_ms"][i] for t in round_]
                results[name] = Tf14Result(outputs=outputs, timings_ms=timings, version=result["version"],
                                           run_metadata=traces, cpu_ms=list(result.get("cpu_ms", [[]] * len(names))[i]))
    return results


def run_graph_batch(graph: GraphLike, *, batch_feed: str, batch: np.ndarray, feeds: Mapping[str, Any] | None = None,
                    fetches: Sequence[str], threads: int = 1, timeout: float = 3600.0,
                    runtime_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Run one graph in TF 1.4 once per row of ``batch`` (fed to ``batch_feed``); outputs stacked per fetch.

    One worker and one session serve every row, so evaluating a whole test
    split in TF 1.4 costs one graph import, not one per clip.
    """
    lib_dir = Path(runtime_dir) if runtime_dir is not None else tf14_runtime_dir()
    with tempfile.TemporaryDirectory(prefix="distill-tf14-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "graph.pb").write_bytes(_graph_bytes(graph))
        store: dict = {"batch": np.ascontiguousarray(batch)}
        keys = {}
        for j, (name, value) in enumerate((feeds or {}).items()):
            _store_feed(store, f"f{j}", value)
            keys[name] = f"f{j}"
        np.savez(tmp / "inputs.npz", **store)
        request = {"lib_dir": str(lib_dir), "mode": "batch", "inputs_npz": str(tmp / "inputs.npz"), "outputs_npz": str(tmp / "outputs.npz"),
                   "graph": str(tmp / "graph.pb"), "batch_feed": batch_feed, "batch_key": "batch", "feeds": keys,
                   "fetches": list(fetches), "threads": int(threads)}
        _call_worker(request, tmp, timeout=timeout)
        with np.load(tmp / "outputs.npz") as npz:
            return {name: npz[f"o{j}"] for j, name in enumerate(fetches)}


def run_graph(graph: GraphLike, *, feeds: Mapping[str, Any], fetches: Sequence[str], repeats: int = 0,
              threads: int = 1, warmup: int = 1, trace_runs: int = 0, timeout: float = 600.0,
              runtime_dir: str | os.PathLike | None = None) -> Tf14Result:
    """Run one frozen graph in TensorFlow 1.4 (subprocess) and return its outputs and timings.

    ``graph``: serialized GraphDef bytes, a path to a ``.pb``, or a GraphDef.
    ``feeds``: tensor name -> value (float32/int32/... arrays; ``bytes`` or an
    array of bytes for string tensors such as ``wav_data:0``).
    ``fetches``: tensor names (``op:index``; a bare op name means output 0).
    One untimed run gives the outputs; with ``repeats`` > 0, ``warmup`` untimed
    runs then ``repeats`` timed runs follow (``timings_ms``, wall-clock around
    ``TF_SessionRun``). ``threads`` sets intra- and inter-op threads (0: TF default).
    TF 1.4's own errors (import, unknown names, run failures) raise DistillError
    carrying TF's message.
    """
    return run_graphs({"graph": graph}, feeds=feeds, fetches=fetches, rounds=1, repeats=repeats, warmup=warmup,
                      threads=threads, trace_runs=trace_runs, timeout=timeout, runtime_dir=runtime_dir)["graph"]


def node_times_us(run_metadata: bytes | Sequence[bytes], *, agg: str = "median") -> dict[str, float]:
    """Per-node compute time (microseconds, op start to op end) from serialized RunMetadata, over runs.

    ``agg``: "median" (default), "mean" or "min" (the least disturbed by other
    processes on a shared machine). Decodes with TensorFlow 2's protobuf
    classes: call this in the parent, never in the worker.
    """
    from tensorflow.core.protobuf import config_pb2

    blobs = [run_metadata] if isinstance(run_metadata, (bytes, bytearray)) else list(run_metadata)
    samples: dict[str, list[float]] = {}
    for blob in blobs:
        meta = config_pb2.RunMetadata.FromString(bytes(blob))
        per_run: dict[str, float] = {}
        for dev in meta.step_stats.dev_stats:
            for ns in dev.node_stats:
                if ns.node_name == "_SOURCE":
                    continue
                dt = max(ns.op_end_rel_micros - ns.op_start_rel_micros, 0)
                per_run[ns.node_name] = per_run.get(ns.node_name, 0.0) + dt
        for name, dt in per_run.items():
            samples.setdefault(name, []).append(dt)
    reduce = {"median": np.median, "mean": np.mean, "min": np.min}[agg]
    return {name: float(reduce(v)) for name, v in samples.items()}
