"""Subprocess side of :mod:`distill.compliance.tf14`: run frozen graphs in TensorFlow 1.4 through its C API.

Run as ``python -m distill.compliance.tf14_worker REQUEST.json``. It must never import
TensorFlow 2 (the two cannot share a process: protobuf descriptor clash), so it
uses only the standard library, numpy and ctypes.

The request (JSON) names the extracted runtime folder, the mode and the files::

    {"lib_dir": ".../tensorflow", "mode": "run" | "oplist" | "version",
     "inputs_npz": "...", "outputs_npz": "...", "result_json": "...",
     "threads": 1,
     "sessions": [{"graph": "a.pb", "feeds": {"decoded_sample_data:0": "f0"},
                   "fetches": ["labels_softmax:0"]}],
     "rounds": 1, "repeats": 0, "warmup": 1, "trace_runs": 0}

Feeds are arrays in ``inputs_npz`` (string tensors as ``<key>.__bytes`` uint8
+ ``<key>.__lens`` int64 + ``<key>.__shape``). Every session is run once
(outputs), ``warmup`` times untimed, then ``rounds`` x ``repeats`` timed runs,
interleaved across sessions round by round; ``trace_runs`` more runs with a
FULL_TRACE ``RunOptions`` return serialized ``RunMetadata`` (per-node step
stats) for the parent to decode. A TF error is written to ``result_json`` as
``{"ok": false, "error": message}`` and the worker exits with status 3.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
import traceback

import numpy as np

# TF_DataType enum values (tensorflow/c/c_api.h, TF 1.4)
TF_FLOAT, TF_DOUBLE, TF_INT32, TF_UINT8, TF_INT16, TF_INT8, TF_STRING = 1, 2, 3, 4, 5, 6, 7
TF_INT64, TF_BOOL, TF_UINT16, TF_HALF = 9, 10, 17, 19
_NP_OF_TF = {
    TF_FLOAT: np.float32, TF_DOUBLE: np.float64, TF_INT32: np.int32, TF_UINT8: np.uint8,
    TF_INT16: np.int16, TF_INT8: np.int8, TF_INT64: np.int64, TF_BOOL: np.bool_,
    TF_UINT16: np.uint16, TF_HALF: np.float16,
}
_TF_OF_NP = {np.dtype(v).str: k for k, v in _NP_OF_TF.items()}
_TF_NAMES = {TF_FLOAT: "float32", TF_DOUBLE: "float64", TF_INT32: "int32", TF_UINT8: "uint8", TF_INT16: "int16",
             TF_INT8: "int8", TF_STRING: "string", TF_INT64: "int64", TF_BOOL: "bool", TF_UINT16: "uint16",
             TF_HALF: "float16"}

_vp = ctypes.c_void_p


class TFError(Exception):
    """An error reported by TensorFlow 1.4 (its status message) or by a check here."""


class _TFBuffer(ctypes.Structure):
    _fields_ = [("data", _vp), ("length", ctypes.c_size_t), ("data_deallocator", _vp)]


class _TFOutput(ctypes.Structure):
    _fields_ = [("oper", _vp), ("index", ctypes.c_int)]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def config_proto(threads: int) -> bytes:
    """A serialized ConfigProto: intra_op_parallelism_threads (field 2) and inter_op (field 5)."""
    threads = int(threads)
    if threads <= 0:
        return b""  # TensorFlow's default: one thread per core
    return b"\x10" + _varint(threads) + b"\x28" + _varint(threads)


FULL_TRACE_RUN_OPTIONS = b"\x08\x03"  # RunOptions.trace_level (field 1) = FULL_TRACE (3)


class Runtime:
    """The loaded TF 1.4 C library with the argtypes/restypes this worker needs."""

    def __init__(self, lib_dir: str):
        if "tensorflow" in sys.modules:
            raise TFError("the TF 1.4 worker must not share a process with TensorFlow 2 (it was imported)")
        framework = os.path.join(lib_dir, "libtensorflow_framework.so")
        internal = os.path.join(lib_dir, "python", "_pywrap_tensorflow_internal.so")
        for path in (framework, internal):
            if not os.path.exists(path):
                raise TFError(f"TF 1.4 runtime file missing: {path}")
        ctypes.CDLL(framework, mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(internal, mode=ctypes.RTLD_GLOBAL)
        self.lib = lib
        sig = {
            "TF_Version": (ctypes.c_char_p, []),
            "TF_NewStatus": (_vp, []),
            "TF_DeleteStatus": (None, [_vp]),
            "TF_GetCode": (ctypes.c_int, [_vp]),
            "TF_Message": (ctypes.c_char_p, [_vp]),
            "TF_NewGraph": (_vp, []),
            "TF_DeleteGraph": (None, [_vp]),
            "TF_NewBufferFromString": (ctypes.POINTER(_TFBuffer), [ctypes.c_char_p, ctypes.c_size_t]),
            "TF_NewBuffer": (ctypes.POINTER(_TFBuffer), []),
            "TF_DeleteBuffer": (None, [ctypes.POINTER(_TFBuffer)]),
            "TF_GetAllOpList": (ctypes.POINTER(_TFBuffer), []),
            "TF_NewImportGraphDefOptions": (_vp, []),
            "TF_DeleteImportGraphDefOptions": (None, [_vp]),
            "TF_GraphImportGraphDef": (None, [_vp, ctypes.POINTER(_TFBuffer), _vp, _vp]),
            "TF_GraphOperationByName": (_vp, [_vp, ctypes.c_char_p]),
            "TF_OperationNumOutputs": (ctypes.c_int, [_vp]),
            "TF_OperationOutputType": (ctypes.c_int, [_TFOutput]),
            "TF_OperationOpType": (ctypes.c_char_p, [_vp]),
            "TF_NewSessionOptions": (_vp, []),
            "TF_DeleteSessionOptions": (None, [_vp]),
            "TF_SetConfig": (None, [_vp, ctypes.c_char_p, ctypes.c_size_t, _vp]),
            "TF_NewSession": (_vp, [_vp, _vp, _vp]),
            "TF_CloseSession": (None, [_vp, _vp]),
            "TF_DeleteSession": (None, [_vp, _vp]),
            "TF_SessionRun": (None, [_vp, ctypes.POINTER(_TFBuffer), ctypes.POINTER(_TFOutput), ctypes.POINTER(_vp),
                                     ctypes.c_int, ctypes.POINTER(_TFOutput), ctypes.POINTER(_vp), ctypes.c_int,
                                     ctypes.POINTER(_vp), ctypes.c_int, ctypes.POINTER(_TFBuffer), _vp]),
            "TF_AllocateTensor": (_vp, [ctypes.c_int, ctypes.POINTER(ctypes.c_int64), ctypes.c_int, ctypes.c_size_t]),
            "TF_DeleteTensor": (None, [_vp]),
            "TF_TensorType": (ctypes.c_int, [_vp]),
            "TF_NumDims": (ctypes.c_int, [_vp]),
            "TF_Dim": (ctypes.c_int64, [_vp, ctypes.c_int]),
            "TF_TensorByteSize": (ctypes.c_size_t, [_vp]),
            "TF_TensorData": (_vp, [_vp]),
            "TF_StringEncodedSize": (ctypes.c_size_t, [ctypes.c_size_t]),
            "TF_StringEncode": (ctypes.c_size_t, [ctypes.c_char_p, ctypes.c_size_t, _vp, ctypes.c_size_t, _vp]),
            "TF_StringDecode": (ctypes.c_size_t, [_vp, ctypes.c_size_t, ctypes.POINTER(ctypes.c_char_p),
                                                  ctypes.POINTER(ctypes.c_size_t), _vp]),
        }
        for name, (restype, argtypes) in sig.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        self.version = lib.TF_Version().decode()

    # -- status -----------------------------------------------------------------------------
    def check(self, status, context: str) -> None:
        code = self.lib.TF_GetCode(status)
        if code != 0:
            message = (self.lib.TF_Message(status) or b"").decode("utf-8", "replace")
            raise TFError(f"{context}: {message}")

    def op_list(self) -> bytes:
        buf = self.lib.TF_GetAllOpList()
        if not buf:
            raise TFError("TF_GetAllOpList returned NULL")
        data = ctypes.string_at(buf.contents.data, buf.contents.length)
        self.lib.TF_DeleteBuffer(buf)
        return data

    # -- tensors ----------------------------------------------------------------------------
    def make_tensor(self, value, tf_type: int):
        lib = self.lib
        if tf_type == TF_STRING:
            items, shape = value
            dims = (ctypes.c_int64 * max(len(shape), 1))(*shape)
            n = len(items)
            offsets_bytes = 8 * n
            encoded = [lib.TF_StringEncodedSize(len(s)) for s in items]
            total = offsets_bytes + sum(encoded)
            tensor = lib.TF_AllocateTensor(TF_STRING, dims, len(shape), total)
            if not tensor:
                raise TFError("TF_AllocateTensor failed for a string tensor")
            base = lib.TF_TensorData(tensor)
            offsets = (ctypes.c_uint64 * max(n, 1)).from_address(base)
            status = lib.TF_NewStatus()
            try:
                pos = 0
                for i, s in enumerate(items):
                    offsets[i] = pos
                    lib.TF_StringEncode(s, len(s), base + offsets_bytes + pos, encoded[i], status)
                    self.check(status, "TF_StringEncode")
                    pos += encoded[i]
            finally:
                lib.TF_DeleteStatus(status)
            return tensor
        arr = np.asarray(value, order="C")  # (ascontiguousarray would turn a scalar into shape [1])
        dims = (ctypes.c_int64 * max(arr.ndim, 1))(*arr.shape)
        tensor = lib.TF_AllocateTensor(tf_type, dims, arr.ndim, arr.nbytes)
        if not tensor:
            raise TFError("TF_AllocateTensor failed")
        if arr.nbytes:
            ctypes.memmove(lib.TF_TensorData(tensor), arr.ctypes.data, arr.nbytes)
        return tensor

    def read_tensor(self, tensor):
        lib = self.lib
        tf_type = lib.TF_TensorType(tensor)
        shape = tuple(lib.TF_Dim(tensor, i) for i in range(lib.TF_NumDims(tensor)))
        base = lib.TF_TensorData(tensor)
        nbytes = lib.TF_TensorByteSize(tensor)
        if tf_type == TF_STRING:
            n = int(np.prod(shape)) if shape else 1
            offsets = np.frombuffer(ctypes.string_at(base, 8 * n), dtype=np.uint64) if n else []
            status = lib.TF_NewStatus()
            items = []
            try:
                for off in offsets:
                    dst = ctypes.c_char_p()
                    dst_len = ctypes.c_size_t()
                    start = base + 8 * n + int(off)
                    lib.TF_StringDecode(start, nbytes - 8 * n - int(off), ctypes.byref(dst), ctypes.byref(dst_len), status)
                    self.check(status, "TF_StringDecode")
                    items.append(ctypes.string_at(dst, dst_len.value))
            finally:
                lib.TF_DeleteStatus(status)
            return ("string", items, shape)
        if tf_type not in _NP_OF_TF:
            raise TFError(f"cannot read a tensor of TF_DataType {tf_type}")
        arr = np.frombuffer(ctypes.string_at(base, nbytes), dtype=_NP_OF_TF[tf_type]).reshape(shape).copy()
        return arr


def _parse_name(name: str) -> tuple[str, int]:
    op, _, index = name.partition(":")
    try:
        return op, int(index) if index else 0
    except ValueError:
        raise TFError(f"bad tensor name {name!r} (expected 'op' or 'op:index')") from None


class Session:
    """One imported graph + session with its resolved feeds and fetches."""

    def __init__(self, rt: Runtime, graph_bytes: bytes, feeds: dict, fetches: list[str], threads: int, label: str):
        lib = rt.lib
        self.rt = rt
        self.label = label
        self.graph = lib.TF_NewGraph()
        status = lib.TF_NewStatus()
        self.status = status
        opts = lib.TF_NewImportGraphDefOptions()
        buf = lib.TF_NewBufferFromString(graph_bytes, len(graph_bytes))
        try:
            lib.TF_GraphImportGraphDef(self.graph, buf, opts, status)
            rt.check(status, f"TF 1.4 could not import the graph {label}")
        finally:
            lib.TF_DeleteBuffer(buf)
            lib.TF_DeleteImportGraphDefOptions(opts)
        sess_opts = lib.TF_NewSessionOptions()
        config = config_proto(threads)
        if config:
            lib.TF_SetConfig(sess_opts, config, len(config), status)
            rt.check(status, "TF_SetConfig")
        self.session = lib.TF_NewSession(self.graph, sess_opts, status)
        lib.TF_DeleteSessionOptions(sess_opts)
        rt.check(status, "TF_NewSession")
        if not self.session:
            raise TFError("TF_NewSession returned NULL")

        self.feed_names = list(feeds)
        self.fetch_names = list(fetches)
        self.cpu_ms: list[float] = []
        self.inputs = (_TFOutput * max(len(feeds), 1))()
        self.input_tensors = (_vp * max(len(feeds), 1))()
        for i, (name, value) in enumerate(feeds.items()):
            port = self._port(name, "feed")
            want = lib.TF_OperationOutputType(port)
            self.inputs[i] = port
            self.input_tensors[i] = rt.make_tensor(self._convert(name, value, want), want)
        self.outputs = (_TFOutput * max(len(fetches), 1))()
        for i, name in enumerate(fetches):
            self.outputs[i] = self._port(name, "fetch")

    def _port(self, name: str, what: str) -> _TFOutput:
        lib = self.rt.lib
        op_name, index = _parse_name(name)
        oper = lib.TF_GraphOperationByName(self.graph, op_name.encode())
        if not oper:  # NULL: the name is not in the graph; never use it
            raise TFError(f"{what} {name!r}: no operation named {op_name!r} in the graph {self.label}")
        n = lib.TF_OperationNumOutputs(oper)
        if not 0 <= index < n:
            raise TFError(f"{what} {name!r}: operation {op_name!r} has {n} output(s), no output {index}")
        return _TFOutput(oper, index)

    @staticmethod
    def _convert(name, value, want: int):
        if want == TF_STRING:
            if not isinstance(value, tuple):
                raise TFError(f"feed {name!r} is a string tensor in the graph; got a numeric array")
            return value
        if isinstance(value, tuple):
            raise TFError(f"feed {name!r} is a {_TF_NAMES.get(want, want)} tensor in the graph; got strings")
        arr = np.asarray(value)
        target = np.dtype(_NP_OF_TF.get(want, arr.dtype))
        if want not in _NP_OF_TF:
            raise TFError(f"feed {name!r}: unsupported TF_DataType {want}")
        if arr.dtype != target:
            same_kind = (arr.dtype.kind in "fc" and target.kind == "f") or (arr.dtype.kind in "iub" and target.kind in "iu")
            if not same_kind:
                raise TFError(f"feed {name!r}: graph wants {_TF_NAMES[want]}, got {arr.dtype}")
            arr = arr.astype(target)
        return arr

    def run(self, run_options: bytes | None = None):
        lib = self.rt.lib
        nout = len(self.fetch_names)
        out_values = (_vp * max(nout, 1))()
        opts_buf = meta_buf = None
        if run_options is not None:
            opts_buf = lib.TF_NewBufferFromString(run_options, len(run_options))
            meta_buf = lib.TF_NewBuffer()
        lib.TF_SessionRun(self.session, opts_buf, self.inputs, self.input_tensors, len(self.feed_names),
                          self.outputs, out_values, nout, None, 0, meta_buf, self.status)
        metadata = None
        try:
            self.rt.check(self.status, f"TF 1.4 run failed ({self.label})")
            if meta_buf is not None:
                metadata = ctypes.string_at(meta_buf.contents.data, meta_buf.contents.length)
        finally:
            if opts_buf is not None:
                lib.TF_DeleteBuffer(opts_buf)
                lib.TF_DeleteBuffer(meta_buf)
        return out_values, metadata

    def fetch_once(self) -> list:
        out_values, _ = self.run()
        results = []
        for i in range(len(self.fetch_names)):
            results.append(self.rt.read_tensor(out_values[i]))
            self.rt.lib.TF_DeleteTensor(out_values[i])
        return results

    def timed_run(self) -> float:
        start = time.perf_counter()
        cpu_start = time.process_time()
        out_values, _ = self.run()
        elapsed = (time.perf_counter() - start) * 1000.0
        self.cpu_ms.append((time.process_time() - cpu_start) * 1000.0)
        for i in range(len(self.fetch_names)):
            if out_values[i]:
                self.rt.lib.TF_DeleteTensor(out_values[i])
        return elapsed

    def traced_run(self) -> bytes:
        out_values, metadata = self.run(FULL_TRACE_RUN_OPTIONS)
        for i in range(len(self.fetch_names)):
            if out_values[i]:
                self.rt.lib.TF_DeleteTensor(out_values[i])
        return metadata or b""

    def close(self) -> None:
        lib = self.rt.lib
        for i in range(len(self.feed_names)):
            if self.input_tensors[i]:
                lib.TF_DeleteTensor(self.input_tensors[i])
        lib.TF_CloseSession(self.session, self.status)
        lib.TF_DeleteSession(self.session, self.status)
        lib.TF_DeleteGraph(self.graph)
        lib.TF_DeleteStatus(self.status)


def _load_feeds(npz, keys: dict) -> dict:
    feeds = {}
    for name, key in keys.items():
        if f"{key}.__bytes" in npz:
            blob = npz[f"{key}.__bytes"].tobytes()
            lens = npz[f"{key}.__lens"]
            shape = tuple(int(d) for d in npz[f"{key}.__shape"])
            items, pos = [], 0
            for n in lens:
                items.append(blob[pos:pos + int(n)])
                pos += int(n)
            feeds[name] = (items, shape)
        else:
            feeds[name] = npz[key]
    return feeds


def _store_output(store: dict, key: str, value) -> None:
    if isinstance(value, tuple) and value and value[0] == "string":
        _, items, shape = value
        store[f"{key}.__bytes"] = np.frombuffer(b"".join(items), dtype=np.uint8)
        store[f"{key}.__lens"] = np.array([len(s) for s in items], dtype=np.int64)
        store[f"{key}.__shape"] = np.array(shape, dtype=np.int64)
    else:
        store[key] = value


def _serve_batch(rt: Runtime, request: dict, result: dict) -> dict:
    """One session, the same graph run once per row of a stacked feed (e.g. every clip of a test split)."""
    inputs = np.load(request["inputs_npz"])
    batch_name = request["batch_feed"]
    batch = inputs[request["batch_key"]]
    feeds = {batch_name: batch[0], **_load_feeds(inputs, request.get("feeds", {}))}
    with open(request["graph"], "rb") as fh:
        sess = Session(rt, fh.read(), feeds, request["fetches"], int(request.get("threads", 1)), "batch")
    try:
        slot = sess.feed_names.index(batch_name)
        want = rt.lib.TF_OperationOutputType(sess.inputs[slot])
        outputs: list[list] = [[] for _ in sess.fetch_names]
        for row in batch:
            rt.lib.TF_DeleteTensor(sess.input_tensors[slot])
            sess.input_tensors[slot] = rt.make_tensor(sess._convert(batch_name, row, want), want)
            for j, value in enumerate(sess.fetch_once()):
                outputs[j].append(value)
        np.savez(request["outputs_npz"], **{f"o{j}": np.stack(values) for j, values in enumerate(outputs)})
        return result
    finally:
        sess.close()


def serve(request: dict) -> dict:
    if request.get("nice"):
        try:  # benchmarks only: a higher priority keeps other processes from preempting the timed runs
            os.nice(int(request["nice"]))
        except OSError:
            pass
    rt = Runtime(request["lib_dir"])
    result: dict = {"ok": True, "version": rt.version}
    mode = request.get("mode", "run")
    if mode == "version":
        return result
    if mode == "oplist":
        with open(request["outputs_path"], "wb") as fh:
            fh.write(rt.op_list())
        return result
    if mode == "batch":
        return _serve_batch(rt, request, result)
    if mode != "run":
        raise TFError(f"unknown worker mode {mode!r}")

    inputs = np.load(request["inputs_npz"]) if request.get("inputs_npz") else {}
    sessions = []
    try:
        for i, spec in enumerate(request["sessions"]):
            with open(spec["graph"], "rb") as fh:
                graph_bytes = fh.read()
            feeds = _load_feeds(inputs, spec.get("feeds", {}))
            sessions.append(Session(rt, graph_bytes, feeds, spec["fetches"], int(request.get("threads", 1)),
                                    spec.get("label", f"#{i}")))
        store: dict = {}
        for i, sess in enumerate(sessions):
            for j, value in enumerate(sess.fetch_once()):
                _store_output(store, f"s{i}.o{j}", value)
        for _ in range(int(request.get("warmup", 0))):
            for sess in sessions:
                sess.timed_run()
        rounds, repeats = int(request.get("rounds", 1)), int(request.get("repeats", 0))
        timings = [[] for _ in sessions]
        for sess in sessions:
            sess.cpu_ms.clear()
        for _ in range(rounds if repeats else 0):
            for i, sess in enumerate(sessions):  # interleaved: every session each round
                timings[i].append([sess.timed_run() for _ in range(repeats)])
        result["cpu_ms"] = [sess.cpu_ms for sess in sessions]
        traces = []
        for i, sess in enumerate(sessions):
            meta = [sess.traced_run() for _ in range(int(request.get("trace_runs", 0)))]
            for j, blob in enumerate(meta):
                store[f"s{i}.trace{j}"] = np.frombuffer(blob, dtype=np.uint8)
            traces.append(len(meta))
        np.savez(request["outputs_npz"], **store)
        result["timings_ms"] = timings
        result["traces"] = traces
        return result
    finally:
        for sess in sessions:
            sess.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m distill.compliance.tf14_worker REQUEST.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as fh:
        request = json.load(fh)
    try:
        result = serve(request)
        code = 0
    except TFError as exc:
        result, code = {"ok": False, "error": str(exc)}, 3
    except Exception as exc:  # report, never hang the parent
        result, code = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}, 4
    with open(request["result_json"], "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return code


if __name__ == "__main__":
    sys.exit(main())
