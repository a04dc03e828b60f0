"""Freeze a waveform -> logits function into the competition's reference graph interface.

The shipped graph, like the TensorFlow tutorial's ``conv.pb``, reads::

    wav_data (string placeholder)
      -> DecodeWav(desired_channels=1, desired_samples=16000) named ``decoded_sample_data``
         (:0 = [16000, 1] float PCM, :1 = int32 sample rate; both can be fed directly)
      -> reshape [1, 16000] -> fn -> (+ logit_bias) -> Softmax named ``labels_softmax`` ([1, 12])

:func:`freeze_waveform_model` builds that around any TF 2 callable (a Keras
model, a ``tf.function``, plain TF ops), freezes variables into constants,
prunes everything ``labels_softmax`` does not need and makes the result
TensorFlow 1.4 compatible (:mod:`distill.export.graph_compat`).
"""

from __future__ import annotations

import contextlib
import io
import wave
from collections import Counter
from typing import Any, Callable

import numpy as np

from distill.core.errors import DistillError
from distill.core.labels import CLIP_SAMPLES, NUM_CLASSES, SAMPLE_RATE

INPUT_NODE = "wav_data"
DECODE_NODE = "decoded_sample_data"
OUTPUT_NODE = "labels_softmax"
AUDIO_TENSOR = f"{DECODE_NODE}:0"
RATE_TENSOR = f"{DECODE_NODE}:1"
OUTPUT_TENSOR = f"{OUTPUT_NODE}:0"


def freeze_waveform_model(fn: Callable[..., Any], *, logit_bias: np.ndarray | None = None, name_prefix: str = "",
                          flat_output: bool = False, pass_sample_rate: bool = False, fold_constants: bool = True,
                          check: bool = True, num_classes: int | None = None):
    """Frozen, pruned, TF-1.4-compatible GraphDef computing ``softmax(fn(waveform) + logit_bias)``.

    ``fn`` maps a float32 [1, 16000] waveform tensor (values in [-1, 1], as
    DecodeWav gives them) to logits [1, 12] in :data:`distill.core.labels.CLASSES`
    order. ``logit_bias`` (12 floats, e.g. calibration offsets) is added to the
    logits as a constant. ``name_prefix`` puts ``fn``'s nodes under a name
    scope. ``flat_output`` reshapes the softmax to [12] (the shape the Kaggle
    winners' graph had); by default ``labels_softmax`` is the [1, 12] Softmax
    itself. ``pass_sample_rate`` calls ``fn(waveform, sample_rate)`` with the
    int32 ``decoded_sample_data:1`` tensor (for an Mfcc front-end).
    ``fold_constants`` (default) pre-computes every node whose inputs are all
    constants (variable reads, batch-norm scale arithmetic, filter reshapes):
    each node costs time per clip in TF 1.4, so fewer is faster on the Pi.
    With ``check`` the result must pass :func:`graph_compat.check_tf14_ops`.
    ``num_classes``: K, the width of the logits for a word list other than the Kaggle ten (12 above
    stands for K); None is 12.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from distill.export.graph_compat import assert_tf14_compatible, make_tf14_compatible, static_shapes

    k = NUM_CLASSES if num_classes is None else int(num_classes)
    bias = None
    if logit_bias is not None:
        bias = np.asarray(logit_bias, dtype=np.float32).reshape(-1)
        if bias.shape != (k,):
            raise DistillError(f"logit_bias must hold {k} values, got shape {np.shape(logit_bias)}")

    def build(wav_data):
        audio, rate = tf.raw_ops.DecodeWav(contents=wav_data, desired_channels=1, desired_samples=CLIP_SAMPLES,
                                           name=DECODE_NODE)
        waveform = tf.reshape(audio, [1, CLIP_SAMPLES], name="waveform")
        scope = tf.name_scope(name_prefix.rstrip("/")) if name_prefix else contextlib.nullcontext()
        with scope:
            logits = tf.convert_to_tensor(fn(waveform, rate) if pass_sample_rate else fn(waveform))
        if logits.dtype != tf.float32:
            logits = tf.cast(logits, tf.float32)
        if logits.shape.rank is not None and logits.shape.is_fully_defined():
            if tuple(logits.shape.as_list()) not in ((1, k), (k,)):
                raise DistillError(f"fn must return logits of shape [1, {k}], got {logits.shape}")
        if tuple(logits.shape.as_list() if logits.shape.rank is not None else ()) != (1, k):
            logits = tf.reshape(logits, [1, k])
        if bias is not None:
            logits = tf.add(logits, tf.constant(bias.reshape(1, k), name="logit_bias"), name="calibrated_logits")
        if flat_output:
            probs = tf.nn.softmax(logits, name="softmax")
            return tf.reshape(probs, [k], name=OUTPUT_NODE)
        return tf.nn.softmax(logits, name=OUTPUT_NODE)

    serve = tf.function(build, input_signature=[tf.TensorSpec([], tf.string, name=INPUT_NODE)], autograph=False)
    concrete = serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    names = {n.name: n for n in graph_def.node}
    for name, op in ((INPUT_NODE, "Placeholder"), (DECODE_NODE, "DecodeWav"),
                     (OUTPUT_NODE, "Reshape" if flat_output else "Softmax")):
        if name not in names or names[name].op != op:
            got = names[name].op if name in names else "missing"
            raise DistillError(f"frozen graph: node {name!r} should be a {op} ({got}); does fn create a node with "
                               f"that name? pass name_prefix= to scope fn's nodes")
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [OUTPUT_NODE])
    if fold_constants:
        graph_def = fold_constant_nodes(graph_def, keep=(INPUT_NODE, DECODE_NODE, OUTPUT_NODE))
    graph_def = make_tf14_compatible(graph_def)
    shape = static_shapes(graph_def)[OUTPUT_NODE][0]
    want = (k,) if flat_output else (1, k)
    if shape != want:
        raise DistillError(f"frozen graph: {OUTPUT_TENSOR} has static shape {shape}, expected {list(want)}")
    if check:
        assert_tf14_compatible(graph_def)
    return graph_def


# ops never folded: stateful, random or I/O ops, and the interface ops
_NO_FOLD = {"Placeholder", "PlaceholderWithDefault", "DecodeWav", "ReadFile", "RandomUniform", "RandomStandardNormal",
            "TruncatedNormal", "RandomShuffle", "Multinomial", "NoOp", "VarHandleOp", "ReadVariableOp", "Assert",
            "Print", "PrintV2"}
_FOLD_MAX_BYTES = 64 << 20


def fold_constant_nodes(graph_def, *, keep: tuple[str, ...] = ()):
    """A copy of ``graph_def`` where every node computed from constants alone is replaced by a Const.

    Node names are kept (a folded node becomes a Const of the same name), so
    fetch names still work; the nodes that only fed folded nodes are pruned.
    Nodes named in ``keep`` are never folded. Values are computed by TF 2 once.
    """
    import tensorflow as tf
    from tensorflow.core.framework import graph_pb2

    nodes = {n.name: n for n in graph_def.node}
    order = _topological(graph_def)
    constant: set[str] = set()
    for name in order:
        node = nodes[name]
        if node.op == "Const":
            constant.add(name)
            continue
        if name in keep or node.op in _NO_FOLD or not node.input:
            continue
        if all(_input_node(i) in constant for i in node.input):
            constant.add(name)
    # fold only the frontier: constant nodes that feed a non-constant node (or are kept outputs)
    consumers: dict[str, list[str]] = {}
    for n in graph_def.node:
        for i in n.input:
            consumers.setdefault(_input_node(i), []).append(n.name)
    targets = [name for name in order if name in constant and nodes[name].op != "Const"
               and (name in keep or any(c not in constant for c in consumers.get(name, [])))]
    if not targets:
        return graph_def
    multi_output = [t for t in targets if any(_input_index(i) > 0 for c in consumers.get(t, [])
                                               for i in nodes[c].input if _input_node(i) == t)]
    targets = [t for t in targets if t not in multi_output]
    if not targets:
        return graph_def
    sub = tf.compat.v1.graph_util.extract_sub_graph(graph_def, targets)

    def _import():
        tf.graph_util.import_graph_def(sub, name="")

    wrapped = tf.compat.v1.wrap_function(_import, [])
    fetch = [wrapped.graph.get_tensor_by_name(f"{t}:0") for t in targets]
    values = wrapped.prune(feeds=[], fetches=fetch)()
    out = graph_pb2.GraphDef()
    out.CopyFrom(graph_def)
    replaced = {}
    for name, value in zip(targets, values):
        if value.dtype in (tf.variant, tf.resource):  # an RNN's TensorList handle has no constant form; it stays computed
            continue
        array = value.numpy()
        if array.nbytes > _FOLD_MAX_BYTES:
            continue
        replaced[name] = array
    for node in out.node:
        if node.name in replaced:
            array = replaced[node.name]
            node.op = "Const"
            del node.input[:]
            node.attr.clear()
            node.attr["dtype"].type = tf.as_dtype(array.dtype).as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(array))
    outputs = [n.name for n in out.node if not consumers.get(n.name)] + list(keep)
    outputs = [o for o in dict.fromkeys(outputs) if o in nodes]
    return tf.compat.v1.graph_util.extract_sub_graph(out, outputs)


def _input_node(name: str) -> str:
    return name.lstrip("^").split(":")[0]


def _input_index(name: str) -> int:
    if name.startswith("^"):
        return -1
    _, _, idx = name.partition(":")
    return int(idx) if idx else 0


def _topological(graph_def) -> list[str]:
    nodes = {n.name: n for n in graph_def.node}
    state: dict[str, int] = {}
    order: list[str] = []
    for root in nodes:
        if root in state:
            continue
        stack = [(root, iter(nodes[root].input))]
        state[root] = 1
        while stack:
            name, it = stack[-1]
            for inp in it:
                src = _input_node(inp)
                if src in nodes and src not in state:
                    state[src] = 1
                    stack.append((src, iter(nodes[src].input)))
                    break
            else:
                stack.pop()
                state[name] = 2
                order.append(name)
    return order


def run_frozen_tf2(graph_def, waveform: np.ndarray, *, sample_rate: int = SAMPLE_RATE,
                   fetch: str = OUTPUT_TENSOR) -> np.ndarray:
    """Run a frozen graph in TensorFlow 2, feeding ``decoded_sample_data:0/1`` (a [16000] or [16000, 1] clip)."""
    import tensorflow as tf
    from tensorflow.core.framework import graph_pb2

    audio = np.asarray(waveform, dtype=np.float32).reshape(CLIP_SAMPLES, 1)
    copy = graph_pb2.GraphDef()
    copy.CopyFrom(graph_def)  # TF 2's import adds default attrs to the GraphDef it is given

    def _import():
        tf.graph_util.import_graph_def(copy, name="")

    wrapped = tf.compat.v1.wrap_function(_import, [])
    pruned = wrapped.prune(feeds=[wrapped.graph.get_tensor_by_name(AUDIO_TENSOR),
                                  wrapped.graph.get_tensor_by_name(RATE_TENSOR)],
                           fetches=wrapped.graph.get_tensor_by_name(fetch))
    return pruned(tf.constant(audio), tf.constant(sample_rate, dtype=tf.int32)).numpy()


def wav_bytes(waveform: np.ndarray, *, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 16-bit mono PCM wav file (bytes) of a float waveform in [-1, 1], for feeding ``wav_data:0``."""
    samples = np.clip(np.asarray(waveform, dtype=np.float64).reshape(-1), -1.0, 1.0)
    pcm = np.round(samples * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(sample_rate)
        wf.writeframes(pcm.tobytes())
    return buf.getvalue()


_DTYPE_BYTES = {1: 4, 2: 8, 3: 4, 4: 1, 5: 2, 6: 1, 9: 8, 10: 1, 14: 2, 17: 2, 19: 2, 22: 4, 23: 8, 11: 1, 12: 1, 13: 4}


def _const_bytes(tensor) -> tuple[int, int]:
    """(bytes, elements) a Const tensor holds."""
    n = 1
    for d in tensor.tensor_shape.dim:
        n *= d.size
    if tensor.dtype == 7:  # DT_STRING
        return sum(len(s) for s in tensor.string_val), n
    return n * _DTYPE_BYTES.get(tensor.dtype, 4), n


def graph_summary(graph_def) -> dict[str, Any]:
    """Node count by op, constant bytes/elements and serialized size of a GraphDef."""
    ops = Counter(n.op for n in graph_def.node)
    const_bytes = const_elems = 0
    for n in graph_def.node:
        if n.op == "Const" and "value" in n.attr:
            b, e = _const_bytes(n.attr["value"].tensor)
            const_bytes += b
            const_elems += e
    return {"nodes": len(graph_def.node), "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
            "const_bytes": const_bytes, "const_elements": const_elems, "serialized_bytes": graph_def.ByteSize()}
