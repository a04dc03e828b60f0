"""Raspberry Pi 3 latency estimate for a frozen graph (TF 1.4 ``benchmark_model``), with its honest error.

Method ("x86-ops/pi-threads", documented with its numbers in ``docs/pi-latency.md``)
------------------------------------------------------------------------------------
1. Walk the GraphDef with static shapes and give every node a cost class and a
   size: MACs (Conv2D, MatMul, depthwise), elements (element-wise ops,
   reductions, softmax), bytes (data movement), frames (AudioSpectrogram, Mfcc).
   Nodes TF 1.4 never runs per clip are dropped as its runtime does: the
   ``wav_data -> DecodeWav`` part (``decoded_sample_data:0/1`` are fed) and
   every node computed from constants only (DirectSession constant-folds them).
2. Single-core time of a node = per-class coefficient x size + a per-node
   overhead. The coefficients are per-op timings measured in the TF 1.4 runtime
   on this x86 machine (:func:`measure_x86_costs`, microbenchmarks of each class
   at several shapes, one thread); they are constants below.
3. On the Pi, ``benchmark_model`` runs with its default of one intra-op thread
   per core (4). Which ops use them follows TF 1.4's kernels: contractions and
   Eigen element-wise ops split by Eigen's cost model (``numThreads``: 100k-cycle
   start-up, 100k cycles per extra thread), depthwise convolution and pooling
   shard over ``batch x output rows`` / batch, the audio front-end is serial.
   Pi time of a node = s x (x86 time / threads) + s x overhead.
4. ``s`` (Pi core vs x86 core) is the one free parameter of the method, fitted
   on reference graphs with published Pi 3 timings (:mod:`distill.compliance.reference_graphs`).
   :func:`leave_one_out` fits it on one reference and predicts the other, both
   ways; the larger of the two errors is what every estimate reports.
5. The default calibration uses BOTH references and fits a second parameter,
   ``kappa``: how much more the Pi pays, relative to x86, for everything that is
   not a contraction (the a-priori model has kappa = 1). Two parameters on two
   references reproduce both exactly, so this fit has no error estimate of its
   own; the leave-one-out error of the one-parameter method stands for it.

Known limits: the x86 costs were measured on a shared machine (idle-window
minimum over 8 sessions; contention slows contractions up to 2x, and with
contended costs the leave-one-out error was -30%/+43%); two references are all
the ground truth there is; element-wise thread counts follow Eigen's cost model
as read from its source, not measured on a Pi. See ``docs/pi-latency.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import defaultdict
from typing import Any, Iterable

import numpy as np

from distill.core.errors import DistillError
from distill.export.graph_compat import _split_input as _split

METHOD = "x86-ops/pi-threads v1"
PI_THREADS = 4            # benchmark_model's default: intra-op threads = cores
PI_CLOCK_HZ = 1.2e9       # Cortex-A53 in the Raspberry Pi 3
EIGEN_STARTUP_CYCLES = 100_000    # Eigen TensorCostModel::kStartupCycles
EIGEN_PER_THREAD_CYCLES = 100_000  # Eigen TensorCostModel::kPerThreadCycles
TF_SHARD_MIN_COST = 10_000        # tensorflow/core/util/work_sharder.cc

# Single-thread x86 costs in the TF 1.4 runtime (microseconds per unit), from
# combine_measurements() of 8 measure_x86_costs() sessions (60 traced runs each,
# worker at nice -10) on this machine kind (AMD EPYC, 2 vCPUs shared with other
# jobs). Per node the fastest of all sessions: contention from other
# processes slows the contraction kernels up to 2x, an idle machine is what the
# Pi benchmark had. Re-measure with scripts/bench_pi_estimate.py --measure.
X86_US_PER_UNIT: dict[str, float] = {
    "conv2d": 3.811e-05,  # per MAC
    "pointwise": 3.553e-05,  # per MAC
    "matmul": 4.439e-05,  # per MAC
    "pack": 4.76e-05,  # per weight element (contractions)
    "depthwise": 0.0004526,  # per MAC
    "eltwise": 0.0001653,  # per element
    "bcast_add": 0.0005576,  # per element
    "bcast_mul": 0.003742,  # per element
    "reduce": 0.0002011,  # per input element
    "softmax": 0.008283,  # per element
    "move": 0.0003284,  # per byte written
    "patches": 0.0007163,  # per byte written
    "pool": 0.0003785,  # per output element x window
    "spectrogram": 0.009618,  # per frame x bin
    "mfcc": 0.006829,  # per frame x bin in
}
X86_NODE_OVERHEAD_US = 0.173  # executor cost per node (chain of tiny nodes)

# Parallelism policy per cost class on the Pi (TF 1.4 kernels): "eigen" (Eigen
# cost-model thread count), "rows" (TF Shard over batch x output rows), "batch"
# (TF Shard over batch), "serial".
CLASSES: dict[str, str] = {
    "conv2d": "eigen", "pointwise": "eigen", "matmul": "eigen", "depthwise": "rows",
    "eltwise": "eigen", "bcast_add": "eigen", "bcast_mul": "eigen", "reduce": "eigen", "softmax": "eigen",
    "move": "eigen", "patches": "eigen", "pool": "batch", "spectrogram": "serial", "mfcc": "serial",
    "shape": "serial", "const": "serial",
}

SHAPE_OPS = {"Reshape", "ExpandDims", "Squeeze", "Identity", "Shape", "Size", "Rank", "StopGradient", "NoOp",
             "Snapshot", "PlaceholderWithDefault"}
ELTWISE_UNARY = {"Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "Log", "Exp", "Sqrt", "Rsqrt", "Square", "Abs",
                 "Neg", "Floor", "Ceil", "Round", "Reciprocal", "Log1p", "Softplus", "Softsign", "Sign", "Cast",
                 "ClipByValue", "Dequantize", "Erf"}
ELTWISE_BINARY = {"Add", "AddV2", "Sub", "Mul", "RealDiv", "Div", "Maximum", "Minimum", "SquaredDifference",
                  "BiasAdd", "Pow", "FloorDiv", "FloorMod", "Greater", "Less", "Equal", "GreaterEqual",
                  "LessEqual", "Select", "LogicalAnd", "LogicalOr"}
REDUCE_OPS = {"Mean", "Max", "Min", "Sum", "Prod", "ArgMax", "ArgMin", "All", "Any"}
MOVE_OPS = {"ExtractImagePatches", "ConcatV2", "Concat", "Pad", "PadV2", "MirrorPad", "Transpose", "StridedSlice",
            "Slice", "Pack", "Unpack", "Tile", "Split", "SplitV", "Gather", "GatherV2", "ReverseV2", "Fill",
            "Range", "ZerosLike", "OnesLike", "ResizeBilinear", "ResizeNearestNeighbor", "SpaceToBatchND",
            "BatchToSpaceND", "SpaceToDepth", "DepthToSpace"}
NOT_RUN = {"Placeholder", "DecodeWav", "ReadFile", "NoOp"}


@dataclasses.dataclass(frozen=True)
class NodeCost:
    name: str
    op: str
    cls: str
    units: float        # MACs / elements / bytes / frames, per the class
    macs: float
    policy_units: int   # rows or batch for the "rows"/"batch" policies
    weights: float = 0.0  # elements of the weight operand of a contraction (Eigen packs them every call)


@dataclasses.dataclass(frozen=True)
class PiEstimate:
    ms: float                          # estimated Pi 3 ms per clip (benchmark_model average)
    breakdown_ms: dict[str, float]     # by op type, summing to ms
    loo_error: float                   # max |relative error| of the leave-one-out check (0.12 = 12%)
    method: str
    scale: float                       # the fitted Pi/x86 single-core factor s
    kappa: float                       # non-contraction factor (1 unless fitted on two references)
    calibrated_on: tuple[str, ...]
    macs: float
    executed_nodes: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- static analysis -----------------------------------------------------------------------------

def _prod(shape) -> float:
    return float(np.prod([d for d in shape])) if shape is not None else float("nan")


def _fed_region(graph_def, fed: Iterable[str]) -> set[str]:
    """Nodes only needed to compute fed tensors (pruned by TF when the feeds replace them)."""
    nodes = {n.name: n for n in graph_def.node}
    fed_ops = {_split(f)[0] for f in fed}
    needed: set[str] = set()
    consumers_outside = set()
    for n in graph_def.node:
        if n.name in fed_ops:
            continue
        for i in n.input:
            src = _split(i)[0]
            if src not in fed_ops:
                consumers_outside.add(src)
    # a node is pruned when every path from it reaches the outputs only through fed ops
    outputs = [n.name for n in graph_def.node if n.name not in consumers_outside and n.name not in fed_ops]
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name in needed or name in fed_ops or name not in nodes:
            continue
        needed.add(name)
        stack.extend(_split(i)[0] for i in nodes[name].input)
    return {n for n in nodes if n not in needed}


def _constant_nodes(graph_def, pruned: set[str]) -> set[str]:
    """Nodes TF 1.4's DirectSession constant-folds (all inputs constant, not stateful)."""
    nodes = {n.name: n for n in graph_def.node}
    constant: set[str] = set()
    changed = True
    while changed:
        changed = False
        for n in graph_def.node:
            if n.name in constant or n.name in pruned:
                continue
            if n.op == "Const" or (n.input and n.op not in NOT_RUN and
                                   all(_split(i)[0] in constant for i in n.input if not i.startswith("^"))
                                   and all(_split(i)[0] in nodes for i in n.input)):
                constant.add(n.name)
                changed = True
    return constant


def analyze(graph_def, *, fed: Iterable[str] = ("decoded_sample_data:0", "decoded_sample_data:1"),
            shapes: dict | None = None) -> list[NodeCost]:
    """The nodes TF 1.4 executes per clip with their cost class and size."""
    from distill.export.graph_compat import static_shapes

    shapes = static_shapes(graph_def) if shapes is None else shapes
    fed = tuple(fed)
    pruned = _fed_region(graph_def, fed)
    constant = _constant_nodes(graph_def, pruned)
    consumers: dict[str, list[str]] = defaultdict(list)
    for n in graph_def.node:
        for i in n.input:
            consumers[_split(i)[0]].append(n.name)
    out: list[NodeCost] = []

    def shape(tensor: str):
        base, idx = _split(tensor)
        outs = shapes.get(base)
        return outs[idx] if outs and idx < len(outs) else None

    seen_consts: set = set()
    fed_ops = {_split(f)[0] for f in fed}
    for f in fed:
        if _split(f)[0] in shapes and any(_split(i)[0] == _split(f)[0] and _split(i)[1] == _split(f)[1]
                                          for c in graph_def.node if c.name not in pruned for i in c.input):
            out.append(NodeCost(f"_arg_{f}", "_Arg", "const", 0.0, 0.0, 1))
    for n in graph_def.node:
        if n.name in pruned or n.name in fed_ops:
            continue
        if n.op == "Placeholder":
            out.append(NodeCost(n.name, "_Arg", "const", 0.0, 0.0, 1))
            continue
        if n.name in constant:
            # only constants feeding a run-time node survive folding (one Const each); common
            # subexpression elimination merges identical Const nodes (e.g. every ExpandDims' dim)
            if any(c not in constant for c in consumers.get(n.name, [])):
                key = n.attr["value"].SerializeToString() if n.op == "Const" else n.name
                if key not in seen_consts:
                    seen_consts.add(key)
                    out.append(NodeCost(n.name, "Const", "const", 0.0, 0.0, 1))
            continue
        out_shape = shape(f"{n.name}:0")
        if out_shape is not None and any(d is None for d in out_shape):
            raise DistillError(f"pi estimate: node {n.name!r} ({n.op}) has a dynamic shape {out_shape}; "
                               "export with static shapes (batch 1, 16000 samples)")
        out_elems = _prod(out_shape) if out_shape is not None else 0.0
        op = n.op
        if op == "Conv2D":
            f = shape(n.input[1])
            macs = out_elems * f[0] * f[1] * f[2]
            strides = list(n.attr["strides"].list.i)
            cls = "pointwise" if f[0] == 1 and f[1] == 1 and all(s == 1 for s in strides) else "conv2d"
            out.append(NodeCost(n.name, op, cls, macs, macs, 1, _prod(f)))
        elif op == "DepthwiseConv2dNative":
            f = shape(n.input[1])
            macs = out_elems * f[0] * f[1]
            fmt = n.attr["data_format"].s.decode() if "data_format" in n.attr else "NHWC"
            rows = out_shape[0] * (out_shape[1] if fmt == "NHWC" else out_shape[2])
            out.append(NodeCost(n.name, op, "depthwise", macs, macs, int(rows)))
        elif op in ("MatMul", "BatchMatMul", "BatchMatMulV2"):
            a = shape(n.input[0])
            ta = n.attr["transpose_a"].b if "transpose_a" in n.attr else (n.attr["adj_x"].b if "adj_x" in n.attr else False)
            k = a[-2] if ta else a[-1]
            macs = out_elems * k
            out.append(NodeCost(n.name, op, "matmul", macs, macs, 1, _prod(shape(n.input[1]))))
        elif op in ELTWISE_UNARY:
            out.append(NodeCost(n.name, op, "eltwise", out_elems, 0.0, 1))
        elif op in ELTWISE_BINARY:
            # TF 1.4 runs same-shape and scalar operands through fast paths; a real broadcast
            # (row or column vector) goes through Eigen's broadcasting, slowest for Mul/Div
            ins = [shape(i) for i in n.input if not i.startswith("^")]
            sizes = [_prod(s) if s is not None else out_elems for s in ins]
            if all(sz == out_elems or sz == 1 for sz in sizes) and op != "BiasAdd":
                cls = "eltwise"
            else:
                cls = "bcast_mul" if op in ("Mul", "RealDiv", "Div") else "bcast_add"
            out.append(NodeCost(n.name, op, cls, out_elems, 0.0, 1))
        elif op in REDUCE_OPS:
            out.append(NodeCost(n.name, op, "reduce", _prod(shape(n.input[0])), 0.0, 1))
        elif op in ("Softmax", "LogSoftmax"):
            out.append(NodeCost(n.name, op, "softmax", out_elems, 0.0, 1))
        elif op in ("MaxPool", "AvgPool"):
            k = list(n.attr["ksize"].list.i)
            out.append(NodeCost(n.name, op, "pool", out_elems * _prod(k), 0.0, int(out_shape[0])))
        elif op == "AudioSpectrogram":
            out.append(NodeCost(n.name, op, "spectrogram", out_elems, 0.0, 1))  # frames x bins
        elif op == "Mfcc":
            spec = shape(n.input[0])
            out.append(NodeCost(n.name, op, "mfcc", _prod(spec), 0.0, 1))       # frames x bins in
        elif op in SHAPE_OPS:
            out.append(NodeCost(n.name, op, "shape", 0.0, 0.0, 1))
        elif op == "ExtractImagePatches":
            out.append(NodeCost(n.name, op, "patches", out_elems * 4.0, 0.0, 1))  # bytes written
        elif op in MOVE_OPS:
            out.append(NodeCost(n.name, op, "move", out_elems * 4.0, 0.0, 1))   # bytes written
        else:
            out.append(NodeCost(n.name, op, "eltwise", out_elems, 0.0, 1))      # unknown: an element-wise guess
    sinks = [n.name for n in graph_def.node if n.name not in pruned and not consumers.get(n.name)]
    out.extend(NodeCost(f"_retval_{name}", "_Retval", "const", 0.0, 0.0, 1) for name in sinks)
    return out


def graph_macs(graph_def) -> float:
    """Multiply-accumulates per clip (Conv2D, depthwise, MatMul) of a frozen graph."""
    return float(sum(c.macs for c in analyze(graph_def, fed=())))


# -- the model ------------------------------------------------------------------------------------

CONTRACTIONS = ("conv2d", "pointwise", "matmul")

# Eigen's own estimate of an op's cost (cycles per unit), which decides how many
# threads Eigen splits it over (TensorCostModel::numThreads). A priori, from
# Eigen's TensorOpCost figures: contractions k * 1.0 / 4-float packets per
# output (0.25 per MAC, TensorContractionThreadPool::contractionCost without
# FMA); element-wise: 11/64 cycle per byte loaded or stored plus the functor;
# broadcasting adds index arithmetic (~23 cycles / 4-wide packet).
EIGEN_CYCLES_PER_UNIT: dict[str, float] = {
    "conv2d": 0.25, "pointwise": 0.25, "matmul": 0.25, "eltwise": 2.3, "bcast_add": 7.0, "bcast_mul": 7.0,
    "reduce": 1.0, "softmax": 5.0, "move": 0.6, "patches": 2.5,  # patches: ~38 index cycles per 4-wide packet
}


def eigen_threads(cost: NodeCost, max_threads: int = PI_THREADS) -> int:
    """Threads TF 1.4 gives this node on a ``max_threads`` intra-op pool (its kernels' own rules)."""
    policy = CLASSES.get(cost.cls, "serial")
    if policy == "eigen":
        cycles = EIGEN_CYCLES_PER_UNIT.get(cost.cls, 2.3) * cost.units
        t = int((cycles - EIGEN_STARTUP_CYCLES) / EIGEN_PER_THREAD_CYCLES + 0.9)
        return max(1, min(max_threads, t))
    if policy in ("rows", "batch"):
        if cost.units * 2.5 < TF_SHARD_MIN_COST:   # Shard() runs small work inline
            return 1
        return max(1, min(max_threads, cost.policy_units))
    return 1


def x86_node_us(cost: NodeCost, coefficients: dict[str, float] | None = None) -> float:
    """Modelled single-thread x86 op time (µs) of one node in TF 1.4, without the per-node overhead."""
    coefficients = X86_US_PER_UNIT if coefficients is None else coefficients
    t = coefficients.get(cost.cls, 0.0) * cost.units
    if cost.cls in CONTRACTIONS:
        t += coefficients.get("pack", 0.0) * cost.weights
    return t


def pi_node_ms(cost: NodeCost, scale: float, *, kappa: float = 1.0, coefficients=None, overhead_us=None,
               threads=None) -> float:
    """Estimated Pi 3 time (ms) of one node: s x (x86 op time x [kappa] / Pi threads + per-node overhead).

    ``kappa`` multiplies the op time of everything but contractions (Conv2D, MatMul).
    """
    overhead_us = X86_NODE_OVERHEAD_US if overhead_us is None else overhead_us
    n = eigen_threads(cost) if threads is None else threads(cost)
    work = x86_node_us(cost, coefficients) * (1.0 if cost.cls in CONTRACTIONS else kappa)
    return scale * (work / n + overhead_us) / 1000.0


def pi_ms(costs: list[NodeCost], scale: float, **kw) -> float:
    return float(sum(pi_node_ms(c, scale, **kw) for c in costs))


def fit_scale(costs_and_ms: list[tuple[list[NodeCost], float]], **kw) -> float:
    """The scale s minimising the squared log error over (costs, published ms) pairs.

    Pi time is linear in s (thread counts do not depend on it), so this is the
    geometric mean of published / modelled-at-s=1 over the references.
    """
    if not costs_and_ms:
        raise ValueError("need at least one reference to fit the scale")
    logs = [math.log(ms) - math.log(pi_ms(costs, 1.0, **kw)) for costs, ms in costs_and_ms]
    return math.exp(sum(logs) / len(logs))


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Fitted parameters: ``scale`` s always; ``kappa`` only from two or more references (else 1)."""

    scale: float
    kappa: float
    references: tuple[str, ...]

    @property
    def method(self) -> str:
        free = "s, kappa" if len(self.references) > 1 else "s"
        return f"{METHOD} (free: {free}; fitted on {', '.join(self.references)})"


def _fit(pairs: list[tuple[list[NodeCost], float]], fit_kappa: bool, **kw) -> tuple[float, float]:
    if not fit_kappa:
        return fit_scale(pairs, **kw), 1.0

    def loss(log_k: float) -> float:
        k = math.exp(log_k)
        s = fit_scale(pairs, kappa=k, **kw)
        return sum((math.log(pi_ms(c, s, kappa=k, **kw)) - math.log(ms)) ** 2 for c, ms in pairs)

    lo, hi = math.log(0.1), math.log(20.0)   # golden-section search on log kappa
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loss(b)
    kappa = math.exp((lo + hi) / 2)
    return fit_scale(pairs, kappa=kappa, **kw), kappa


@functools.lru_cache(maxsize=None)
def reference_costs(name: str) -> tuple[tuple[NodeCost, ...], float]:
    """(executed nodes, published Pi 3 ms) of a reference graph (built once per process)."""
    from distill.compliance.reference_graphs import REFERENCES, reference_graph

    return tuple(analyze(reference_graph(name))), REFERENCES[name].pi3_ms


def calibrate(references: Iterable[str] = ("tutorial_conv", "winners_pi"), *,
              fit_kappa: bool | None = None) -> Calibration:
    """Fit the model on reference graphs with published Pi 3 timings.

    One reference: only the scale s (kappa = 1, the a-priori model). Two or more:
    s and kappa by default (``fit_kappa=False`` keeps kappa = 1).
    """
    names = tuple(references)
    pairs = [(list(reference_costs(n)[0]), reference_costs(n)[1]) for n in names]
    fit_kappa = len(names) > 1 if fit_kappa is None else fit_kappa
    scale, kappa = _fit(pairs, fit_kappa)
    return Calibration(scale, kappa, names)


@functools.lru_cache(maxsize=None)
def default_calibration() -> Calibration:
    return calibrate()


def leave_one_out(references: Iterable[str] = ("tutorial_conv", "winners_pi")) -> dict[str, Any]:
    """Calibrate on each reference alone (one free parameter, s) and predict every other one.

    This is the estimator's honest error: with one free parameter, a one-reference
    fit says nothing about accuracy; predicting the held-out reference does.
    """
    names = tuple(references)
    directions = {}
    for held_in in names:
        cal = calibrate((held_in,))
        for held_out in names:
            if held_out == held_in:
                continue
            costs, published = reference_costs(held_out)
            predicted = pi_ms(list(costs), cal.scale, kappa=cal.kappa)
            directions[f"{held_in}->{held_out}"] = {
                "calibrated_on": held_in, "predicted": held_out, "scale": cal.scale,
                "predicted_ms": predicted, "published_ms": published, "error": predicted / published - 1.0}
    errors = [abs(d["error"]) for d in directions.values()]
    return {"method": f"{METHOD} (free: s)", "directions": directions,
            "max_abs_error": max(errors), "mean_abs_error": float(np.mean(errors))}


@functools.lru_cache(maxsize=None)
def _loo_max_abs_error() -> float:
    return leave_one_out()["max_abs_error"]


def estimate_pi3_ms(graph_def, *, calibration: Calibration | None = None) -> PiEstimate:
    """Estimated Raspberry Pi 3 time per clip (TF 1.4 benchmark_model average) of a frozen graph.

    ``calibration`` defaults to both references (see :func:`calibrate`); the
    reported ``loo_error`` is :func:`leave_one_out`'s largest error, the honest
    uncertainty of this method. The first call builds the reference graphs (a few seconds).
    """
    cal = default_calibration() if calibration is None else calibration
    costs = analyze(graph_def)
    breakdown: dict[str, float] = defaultdict(float)
    for c in costs:
        breakdown[c.op] += pi_node_ms(c, cal.scale, kappa=cal.kappa)
    total = float(sum(breakdown.values()))
    ordered = dict(sorted(((k, round(v, 4)) for k, v in breakdown.items()), key=lambda kv: -kv[1]))
    return PiEstimate(ms=total, breakdown_ms=ordered, loo_error=_loo_max_abs_error(), method=cal.method,
                      scale=cal.scale, kappa=cal.kappa, calibrated_on=cal.references,
                      macs=float(sum(c.macs for c in costs)), executed_nodes=len(costs))


# -- x86 microbenchmarks in the TF 1.4 runtime ------------------------------------------------------

def _bench_specs():
    """(name, input shapes, build(inputs) -> list of outputs) microbenchmarks; each op class at several shapes."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def w(*shape):
        return tf.constant(rng.normal(0, 0.05, size=shape).astype(np.float32))

    def conv(x, k, s=(1, 1), pad="SAME"):
        return tf.nn.conv2d(x, w(*k), [1, s[0], s[1], 1], pad)

    def dw(x, k, s=1, pad="SAME"):
        return tf.nn.depthwise_conv2d(x, w(k[0], k[1], x.shape[-1], 1), [1, s, s, 1], pad)

    specs = [
        # every op is kept under ~1.5 ms here so that the minimum over runs is an undisturbed one on a
        # shared machine (longer ops are nearly always preempted); per-MAC costs do not depend on size
        ("conv2d", {"a": (1, 49, 40, 1), "b": (1, 13, 20, 64), "c": (1, 1, 800, 40), "d": (1, 49, 40, 16),
                    "e": (1, 49, 20, 64)},
         lambda t: [conv(t["a"], (20, 8, 1, 64)), conv(t["b"], (10, 4, 64, 32)),
                    conv(t["c"], (1, 3, 40, 128), (1, 2), "VALID"), conv(t["d"], (3, 3, 16, 32)),
                    conv(t["e"], (3, 3, 64, 64), (2, 2))]),
        ("pointwise", {"a": (1, 1, 397, 128), "b": (1, 1, 199, 192), "c": (1, 1, 97, 256), "d": (1, 1, 22, 384),
                       "e": (1, 1, 9, 512), "f": (1, 25, 10, 64)},
         lambda t: [conv(t["a"], (1, 1, 128, 128)), conv(t["b"], (1, 1, 192, 192)), conv(t["c"], (1, 1, 256, 256)),
                    conv(t["d"], (1, 1, 384, 512)), conv(t["e"], (1, 1, 512, 512)), conv(t["f"], (1, 1, 64, 128))]),
        ("matmul", {"a": (1, 62720), "b": (1, 1024), "c": (1, 4608), "d": (49, 256)},
         lambda t: [tf.matmul(t["a"], w(62720, 12)), tf.matmul(t["b"], w(1024, 12)), tf.matmul(t["c"], w(4608, 9)),
                    tf.matmul(t["d"], w(256, 256))]),
        ("depthwise", {"a": (1, 1, 399, 128), "b": (1, 1, 199, 192), "c": (1, 1, 49, 320), "d": (1, 49, 20, 64)},
         lambda t: [dw(t["a"], (1, 3), 1, "VALID"), dw(t["b"], (1, 3), 2, "SAME"), dw(t["c"], (1, 3), 1, "VALID"),
                    dw(t["d"], (3, 3)), dw(t["a"], (1, 9), 1, "SAME")]),
        ("eltwise", {"a": (1, 399, 128), "b": (1, 98, 40, 64), "c": (1, 49, 320)},
         lambda t: [tf.nn.relu6(t["a"]), tf.nn.relu(t["b"]), t["a"] + tf.nn.relu(t["a"]), tf.math.rsqrt(t["c"]),
                    t["c"] * tf.nn.relu6(t["c"]), tf.maximum(t["b"], 0.5 * t["b"])]),
        ("broadcast", {"a": (1, 399, 128), "b": (1, 98, 40, 64), "c": (1, 49, 320), "d": (1, 9, 512)},
         lambda t: [t["a"] * w(128), t["a"] + w(128), tf.nn.bias_add(t["b"], w(64)), t["b"] + w(64),
                    t["c"] * w(320), t["c"] - w(320), t["d"] * w(1, 9, 1)]),
        ("reduce", {"a": (1, 9, 512), "b": (1, 49, 20, 64), "c": (1, 399, 128)},
         lambda t: [tf.reduce_mean(t["a"], 1), tf.reduce_max(t["a"], 1), tf.reduce_mean(t["b"], [1, 2]),
                    tf.reduce_max(t["c"], 1), tf.reduce_mean(t["c"], 1)]),
        ("softmax", {"a": (1, 12), "b": (1, 1000), "c": (98, 257)},
         lambda t: [tf.nn.softmax(t["a"]), tf.nn.softmax(t["b"]), tf.nn.softmax(t["c"])]),
        ("move", {"a": (1, 1, 16000, 1), "b": (1, 512), "c": (1, 399, 128), "d": (1, 25, 40, 64)},
         lambda t: [tf.image.extract_patches(t["a"], [1, 1, 40, 1], [1, 1, 20, 1], [1, 1, 1, 1], "SAME"),
                    tf.concat([t["b"], t["b"] * 1.0], -1), tf.pad(t["c"], [[0, 0], [1, 1], [0, 0]]),
                    tf.transpose(t["d"], [0, 2, 1, 3]), tf.concat([t["c"], t["c"] + 1.0], -1),
                    tf.image.extract_patches(t["a"], [1, 1, 400, 1], [1, 1, 160, 1], [1, 1, 1, 1], "VALID")]),
        ("pool", {"a": (1, 98, 40, 64), "b": (1, 1, 399, 128)},
         lambda t: [tf.nn.max_pool2d(t["a"], 2, 2, "SAME"), tf.nn.avg_pool2d(t["a"], 2, 2, "SAME"),
                    tf.nn.max_pool2d(t["b"], (1, 3), (1, 2), "SAME")]),
        ("frontend", {"a": (16000, 1)},
         lambda t: [tf.raw_ops.Mfcc(spectrogram=tf.raw_ops.AudioSpectrogram(input=t["a"], window_size=480, stride=160,
                                                                            magnitude_squared=True),
                                    sample_rate=16000, dct_coefficient_count=40),
                    tf.raw_ops.AudioSpectrogram(input=t["a"], window_size=640, stride=320, magnitude_squared=True)]),
    ]
    return specs


def _bench_graph(inputs: dict, build):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from distill.export.graph_compat import make_tf14_compatible

    names = list(inputs)
    signature = [tf.TensorSpec(inputs[n], tf.float32, name=n) for n in names]
    fn = tf.function(lambda *xs: build(dict(zip(names, xs))), input_signature=signature, autograph=False)
    graph_def = convert_variables_to_constants_v2(fn.get_concrete_function()).graph.as_graph_def()
    return make_tf14_compatible(graph_def)


def _chain_graph(n: int):
    import tensorflow as tf

    from distill.export.graph_compat import make_tf14_compatible

    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32, name="x")], autograph=False)
    def chain(x):
        for _ in range(n):
            x = tf.nn.relu(x)
        return tf.identity(x, name="out")

    return make_tf14_compatible(chain.get_concrete_function().graph.as_graph_def())


def measure_x86_costs(*, trace_runs: int = 60, chain_rounds: int = 15, seed: int = 0,
                      nice: int | None = -10) -> dict[str, Any]:
    """Per-class single-thread costs in the TF 1.4 runtime here (minimum over traced runs).

    Returns {"us_per_unit": {class: coefficient}, "node_overhead_us": float,
    "samples": [...per node: class, units, µs...]}. Slow (about a minute).
    """
    from distill.compliance import tf14
    from distill.export.graph_compat import static_shapes

    rng = np.random.default_rng(seed)
    graphs, feeds, fetches, analyses = {}, {}, {}, {}
    for name, inputs, build in _bench_specs():
        graph = _bench_graph(inputs, build)
        graphs[name] = graph
        feeds[name] = {f"{k}:0": rng.uniform(0.1, 1.0, size=v).astype(np.float32) for k, v in inputs.items()}
        sinks = [n.name for n in graph.node if n.op == "Identity" and n.name.startswith("Identity")]
        fetches[name] = [f"{s}:0" for s in sinks]
        analyses[name] = analyze(graph, fed=list(feeds[name]), shapes=static_shapes(graph))
    results = tf14.run_graphs(graphs, feeds=feeds, fetches=fetches, repeats=0, trace_runs=trace_runs, threads=1,
                              nice=nice)
    samples = []
    for name, costs in analyses.items():
        times = tf14.node_times_us(results[name].run_metadata, agg="min")
        for c in costs:
            if c.cls in ("const", "shape") or c.name not in times:
                continue
            samples.append({"bench": name, "node": c.name, "op": c.op, "cls": c.cls, "units": c.units,
                            "weights": c.weights, "us": times[c.name]})
    coefficients = fit_coefficients(samples)
    # per-node overhead: slope of the fastest run time of a chain of n tiny nodes against n
    counts = (0, 200, 400)
    chains = {f"chain{n}": _chain_graph(n) for n in counts}
    timed = tf14.run_graphs(chains, feeds={"x:0": np.ones(4, np.float32)}, fetches=["out:0"], rounds=chain_rounds,
                            repeats=20, warmup=5, threads=1, nice=nice)
    best = [min(timed[f"chain{n}"].timings_ms) * 1000.0 for n in counts]
    slope = float(np.polyfit(counts, best, 1)[0])
    return {"us_per_unit": coefficients, "node_overhead_us": slope, "chain_us": dict(zip(counts, best)),
            "samples": samples}


def combine_measurements(measurements: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge several :func:`measure_x86_costs` sessions: per node the fastest time seen, then refit.

    On a shared machine other processes slow the contraction kernels most (cache and
    memory contention); the minimum over sessions spread in time is the closest to
    an idle machine, which is what the Pi benchmark had.
    """
    best: dict[tuple[str, str], dict] = {}
    for m in measurements:
        for s in m["samples"]:
            key = (s["bench"], s["node"])
            if key not in best or s["us"] < best[key]["us"]:
                best[key] = dict(s)
    samples = list(best.values())
    return {"us_per_unit": fit_coefficients(samples),
            "node_overhead_us": float(min(m["node_overhead_us"] for m in measurements)),
            "samples": samples, "sessions": len(measurements)}


def fit_coefficients(samples: list[dict]) -> dict[str, float]:
    """Per-class coefficients (µs per unit) from microbenchmark samples."""
    coefficients: dict[str, float] = {}
    for cls in sorted({s["cls"] for s in samples} - set(CONTRACTIONS)):
        rows = [s for s in samples if s["cls"] == cls and s["units"] > 0]
        coefficients[cls] = sum(s["us"] for s in rows) / sum(s["units"] for s in rows)
    # contractions: t = a_class x MACs + pack x weight elements (Eigen packs the weights on every call),
    # least squares on relative error, non-negative
    from scipy.optimize import nnls

    rows = [s for s in samples if s["cls"] in CONTRACTIONS]
    design = np.array([[s["units"] if s["cls"] == c else 0.0 for c in CONTRACTIONS] + [s["weights"]] for s in rows])
    target = np.array([s["us"] for s in rows])
    solution, _ = nnls(design / target[:, None], np.ones(len(rows)))
    coefficients.update({c: float(v) for c, v in zip(CONTRACTIONS, solution[:3])})
    coefficients["pack"] = float(solution[3])
    return coefficients
