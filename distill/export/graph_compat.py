"""Make a GraphDef written by TensorFlow 2 loadable by TensorFlow 1.4, and check it statically.

TF 1.4 refuses a NodeDef that mentions an attr its OpDef lacks ("NodeDef
mentions attr 'explicit_paddings' not in Op Conv2D") and ops added after 1.4
(``AddV2``). :func:`make_tf14_compatible` rewrites a graph so TF 1.4 imports it
and computes the same function:

* drops internal (``_*``) attrs, device strings and TF 2-only NodeDef fields;
* drops attrs TF 1.4's OpDef does not know when they hold TF 2's default
  (``explicit_paddings=[]``, ``dilations=[1,1,1,1]``, ``grad_a``/``grad_b``,
  ``Truncate``, ...); a non-default value cannot be expressed in 1.4 and raises;
* renames/rewrites ops TF 1.4 lacks: ``AddV2`` -> ``Add``, ``FusedBatchNormV3`` ->
  ``FusedBatchNorm``/``V2``, ``LeakyRelu`` -> ``Maximum(x, alpha*x)``,
  ``BatchMatMulV2`` with a 2-D right operand -> ``Reshape``/``MatMul``/``Reshape``;
* equalises the row/column strides of ``DepthwiseConv2dNative`` where the
  strided dimension has size 1 (TF 1.4's kernel only supports equal strides).

:func:`check_tf14_ops` checks a graph against TF 1.4's op registry
(``resources/tf14_ops.json``, extracted from the TF 1.4 wheel by
``scripts/extract_tf14_ops.py``) without running anything.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from importlib import resources
from typing import Any

import numpy as np

from distill.core.errors import DistillError

OPS_RESOURCE = "tf14_ops.json"

# ops renamed one-to-one (same inputs, outputs and semantics)
RENAMES = {"AddV2": "Add"}


@dataclasses.dataclass(frozen=True)
class OpIssue:
    """One reason TF 1.4 would refuse (or mis-run) a node."""

    node: str
    op: str
    attr: str | None
    reason: str

    def __str__(self) -> str:
        where = f"node {self.node!r} (op {self.op}" + (f", attr {self.attr!r})" if self.attr else ")")
        return f"{where}: {self.reason}"


@functools.lru_cache(maxsize=1)
def tf14_ops() -> dict[str, Any]:
    """TF 1.4's op registry: op name -> {"attrs", "inputs", "outputs"} (see scripts/extract_tf14_ops.py)."""
    text = resources.files("distill").joinpath("resources").joinpath(OPS_RESOURCE).read_text(encoding="utf-8")
    return json.loads(text)["ops"]


# -- AttrValue helpers --------------------------------------------------------------------------

_ATTR_KIND = {"type": "type", "int": "i", "float": "f", "bool": "b", "string": "s", "shape": "shape",
              "tensor": "tensor", "func": "func", "placeholder": "placeholder"}


def _dtype_name(enum: int) -> str:
    from tensorflow.core.framework import types_pb2

    try:
        return types_pb2.DataType.Name(enum)
    except ValueError:
        return f"DT_{enum}"


def _attr_type_error(value, attr_type: str) -> str | None:
    """Why ``value`` (AttrValue) does not fit the OpDef attr type, or None."""
    kind = value.WhichOneof("value")
    if attr_type.startswith("list("):
        if kind != "list":
            return f"expected a {attr_type}, got {kind or 'nothing'}"
        inner = attr_type[5:-1]
        lst = value.list
        fields = {"type": "type", "int": "i", "float": "f", "bool": "b", "string": "s", "shape": "shape",
                  "tensor": "tensor", "func": "func"}
        used = [f for f in ("s", "i", "f", "b", "type", "shape", "tensor", "func") if len(getattr(lst, f))]
        if used and used != [fields.get(inner, inner)]:
            return f"expected a {attr_type}, got a list of {used[0]}"
        return None
    want = _ATTR_KIND.get(attr_type, attr_type)
    if kind != want:
        return f"expected a {attr_type}, got {'a list' if kind == 'list' else kind or 'nothing'}"
    return None


def _allowed_error(value, spec: dict) -> str | None:
    allowed = spec.get("allowed")
    if not allowed:
        return None
    attr_type = spec["type"]
    if attr_type == "type":
        name = _dtype_name(value.type)
        return None if name in allowed else f"{name} not allowed in TF 1.4 (allowed: {', '.join(allowed)})"
    if attr_type == "list(type)":
        bad = [_dtype_name(t) for t in value.list.type if _dtype_name(t) not in allowed]
        return f"{', '.join(bad)} not allowed in TF 1.4 (allowed: {', '.join(allowed)})" if bad else None
    if attr_type == "string":
        s = value.s.decode("utf-8", "replace")
        return None if s in allowed else f"{s!r} not allowed in TF 1.4 (allowed: {', '.join(allowed)})"
    return None


def _count_args(args: list[dict], node) -> int | None:
    total = 0
    for arg in args:
        if "number_attr" in arg:
            if arg["number_attr"] not in node.attr:
                return None
            total += node.attr[arg["number_attr"]].i
        elif "type_list_attr" in arg:
            if arg["type_list_attr"] not in node.attr:
                return None
            total += len(node.attr[arg["type_list_attr"]].list.type)
        else:
            total += 1
    return total


def _split_input(name: str) -> tuple[str, int]:
    name = name.lstrip("^")
    base, _, idx = name.rpartition(":")
    if base and idx.isdigit():
        return base, int(idx)
    return name, 0


# -- static checker ----------------------------------------------------------------------------

def check_tf14_ops(graph_def) -> list[OpIssue]:
    """Static check of ``graph_def`` against TF 1.4's op registry; [] means TF 1.4 should import it.

    Checks every node's op exists, every (non-internal) attr exists with the
    right type, ``type``/``list(type)``/``string`` values are in the allowed
    values, required attrs are present, input/output arity matches, function
    libraries are absent, and DepthwiseConv2dNative strides are equal (TF 1.4's
    kernel refuses unequal ones at run time).
    """
    ops = tf14_ops()
    issues: list[OpIssue] = []
    by_name = {n.name: n for n in graph_def.node}
    if len(graph_def.library.function):
        issues.append(OpIssue("<library>", "-", None, f"graph has {len(graph_def.library.function)} function "
                              "definition(s); a frozen TF 1.4 graph must not use functions"))
    for node in graph_def.node:
        spec = ops.get(node.op)
        if spec is None:
            hint = f" (TF 1.4 has {RENAMES[node.op]}; run make_tf14_compatible)" if node.op in RENAMES else ""
            issues.append(OpIssue(node.name, node.op, None, f"op {node.op!r} does not exist in TF 1.4{hint}"))
            continue
        attrs = spec["attrs"]
        for name in node.attr:
            if name.startswith("_"):
                continue  # TF validates only non-internal attrs
            if name not in attrs:
                issues.append(OpIssue(node.name, node.op, name, f"attr {name!r} is not in TF 1.4's OpDef for {node.op}"))
                continue
            value = node.attr[name]
            why = _attr_type_error(value, attrs[name]["type"]) or _allowed_error(value, attrs[name])
            if why:
                issues.append(OpIssue(node.name, node.op, name, why))
        for name, attr_spec in attrs.items():
            if name not in node.attr and "default" not in attr_spec:
                issues.append(OpIssue(node.name, node.op, name, f"required attr {name!r} is missing"))
        n_inputs = _count_args(spec["inputs"], node)
        data_inputs = [i for i in node.input if not i.startswith("^")]
        if n_inputs is not None and n_inputs != len(data_inputs):
            issues.append(OpIssue(node.name, node.op, None,
                                  f"has {len(data_inputs)} input(s); TF 1.4's {node.op} takes {n_inputs}"))
        for inp in data_inputs:
            src, idx = _split_input(inp)
            producer = by_name.get(src)
            if producer is None:
                issues.append(OpIssue(node.name, node.op, None, f"input {inp!r} names no node in the graph"))
                continue
            pspec = ops.get(producer.op)
            if pspec is not None:
                n_out = _count_args(pspec["outputs"], producer)
                if n_out is not None and idx >= n_out:
                    issues.append(OpIssue(node.name, node.op, None, f"input {inp!r}: TF 1.4's {producer.op} has "
                                          f"only {n_out} output(s)"))
        if node.op == "DepthwiseConv2dNative" and "strides" in node.attr:
            s = list(node.attr["strides"].list.i)
            fmt = node.attr["data_format"].s.decode() if "data_format" in node.attr else "NHWC"
            rows, cols = (s[1], s[2]) if fmt == "NHWC" else (s[2], s[3])
            if len(s) == 4 and rows != cols:
                issues.append(OpIssue(node.name, node.op, "strides", f"strides {s}: TF 1.4's depthwise kernel only "
                                      "supports equal row and column strides"))
    return issues


def assert_tf14_compatible(graph_def) -> None:
    """Raise DistillError listing every issue :func:`check_tf14_ops` finds."""
    issues = check_tf14_ops(graph_def)
    if issues:
        lines = "\n  ".join(str(i) for i in issues[:30])
        more = f"\n  ... and {len(issues) - 30} more" if len(issues) > 30 else ""
        raise DistillError(f"graph is not loadable by TensorFlow 1.4 ({len(issues)} issue(s)):\n  {lines}{more}")


# -- static shapes (TF 2 shape functions) ------------------------------------------------------

def static_shapes(graph_def) -> dict[str, list[tuple[int | None, ...] | None]]:
    """Node name -> static shape of each output (None: unknown rank), by importing into a TF 2 graph."""
    import tensorflow as tf
    from tensorflow.core.framework import graph_pb2

    copy = graph_pb2.GraphDef()
    copy.CopyFrom(graph_def)  # TF 2's import adds default attrs to the GraphDef it is given: never the caller's
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.graph_util.import_graph_def(copy, name="")
        except (ValueError, tf.errors.OpError) as exc:
            raise DistillError(f"cannot infer static shapes of the graph: {exc}") from None
    shapes = {}
    for op in graph.get_operations():
        outs = []
        for t in op.outputs:
            outs.append(None if t.shape.rank is None else tuple(t.shape.as_list()))
        shapes[op.name] = outs
    return shapes


# -- rewriting ---------------------------------------------------------------------------------

def _tf2_default(op: str, attr: str):
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(op)
    if op_def is None:
        return None
    for a in op_def.attr:
        if a.name == attr and a.HasField("default_value"):
            return a.default_value
    return None


def _fmt_attr(value) -> str:
    return str(value).replace("\n", " ").strip()


def _const_node(graph_def, name: str, array: np.ndarray):
    import tensorflow as tf

    node = graph_def.node.add()
    node.name = name
    node.op = "Const"
    node.attr["dtype"].type = tf.as_dtype(array.dtype).as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(array))
    return node


def _unique(taken: set[str], name: str) -> str:
    out, k = name, 1
    while out in taken:
        out = f"{name}_{k}"
        k += 1
    taken.add(out)
    return out


def make_tf14_compatible(graph_def, *, shapes: dict | None = None):
    """A copy of ``graph_def`` that TensorFlow 1.4 imports and runs with the same results.

    Raises DistillError for what 1.4 cannot express (a non-default value of an
    attr 1.4 lacks, unequal depthwise strides on a dimension larger than 1, ...).
    Ops 1.4 lacks and that are not rewritten here are left for
    :func:`check_tf14_ops` to report.
    """
    from tensorflow.core.framework import graph_pb2

    src = graph_def
    out = graph_pb2.GraphDef()
    out.CopyFrom(src)
    if len(out.library.function) or len(out.library.gradient):
        used = {f.signature.name for f in out.library.function}
        if any(n.op in used for n in out.node):
            raise DistillError("the graph calls functions from its function library; freeze it first "
                               "(convert_variables_to_constants_v2 inlines them)")
        out.ClearField("library")
    ops = tf14_ops()
    taken = {n.name for n in out.node}
    consumers_of: dict[str, set[int]] = {}
    for n in out.node:
        for inp in n.input:
            if not inp.startswith("^"):
                base, idx = _split_input(inp)
                consumers_of.setdefault(base, set()).add(idx)
    problems: list[str] = []
    lazy_shapes = {"value": shapes}

    def shape_of(tensor_name: str):
        if lazy_shapes["value"] is None:
            lazy_shapes["value"] = static_shapes(src)
        base, idx = _split_input(tensor_name)
        outs = lazy_shapes["value"].get(base)
        return outs[idx] if outs and idx < len(outs) else None

    new_nodes = []
    for node in list(out.node):
        node.device = ""
        for field in ("experimental_debug_info", "experimental_type"):
            try:
                node.ClearField(field)
            except ValueError:
                pass
        for name in [a for a in node.attr if a.startswith("_")]:
            del node.attr[name]
        original_op = node.op

        if node.op in RENAMES:
            node.op = RENAMES[node.op]
        elif node.op == "FusedBatchNormV3":
            if 5 in consumers_of.get(node.name, set()):
                problems.append(f"node {node.name!r} (FusedBatchNormV3): output 5 is used; TF 1.4 has no such output")
            t, u = node.attr["T"].type, node.attr["U"].type if "U" in node.attr else node.attr["T"].type
            if t == u:
                node.op = "FusedBatchNorm"
                if "U" in node.attr:
                    del node.attr["U"]
            else:
                node.op = "FusedBatchNormV2"
        elif node.op == "LeakyRelu":
            alpha = node.attr["alpha"].f if "alpha" in node.attr else 0.2
            dtype = node.attr["T"].type if "T" in node.attr else 1
            import tensorflow as tf

            np_dtype = tf.as_dtype(dtype).as_numpy_dtype
            const = _const_node(out, _unique(taken, f"{node.name}/tf14_alpha"), np.asarray(alpha, dtype=np_dtype))
            mul = out.node.add()
            mul.name = _unique(taken, f"{node.name}/tf14_scaled")
            mul.op = "Mul"
            mul.input.extend([node.input[0], const.name])
            mul.attr["T"].type = dtype
            new_nodes += [const, mul]
            x = node.input[0]
            controls = [i for i in node.input if i.startswith("^")]
            del node.input[:]
            node.input.extend([x, mul.name, *controls])
            node.op = "Maximum"
            node.attr.clear()
            node.attr["T"].type = dtype
            original_op = "Maximum"
        elif node.op == "BatchMatMulV2":
            new_nodes += _rewrite_batch_matmul(out, node, taken, shape_of, problems)
            original_op = node.op

        spec = ops.get(node.op)
        if spec is None:
            continue  # left for check_tf14_ops to report
        for name in list(node.attr):
            if name in spec["attrs"]:
                continue
            default = _tf2_default(original_op, name)
            if default is not None and node.attr[name] == default:
                del node.attr[name]
            else:
                problems.append(f"node {node.name!r} ({original_op}): attr {name}={_fmt_attr(node.attr[name])} "
                                f"cannot be expressed in TF 1.4 (its {node.op} has no {name!r} attr)")
        if node.op == "DepthwiseConv2dNative":
            _fix_depthwise_strides(node, shape_of, problems)

    if problems:
        raise DistillError("cannot make the graph TensorFlow 1.4 compatible:\n  " + "\n  ".join(problems))
    return out


def _fix_depthwise_strides(node, shape_of, problems: list[str]) -> None:
    strides = list(node.attr["strides"].list.i)
    fmt = node.attr["data_format"].s.decode() if "data_format" in node.attr else "NHWC"
    h_axis, w_axis = (1, 2) if fmt == "NHWC" else (2, 3)
    if len(strides) != 4 or strides[h_axis] == strides[w_axis]:
        return
    shape = shape_of(node.input[0])
    filt = shape_of(node.input[1])
    h = shape[h_axis] if shape else None
    w = shape[w_axis] if shape else None
    kh = filt[0] if filt else None
    kw = filt[1] if filt else None
    if h == 1 and kh == 1:
        strides[h_axis] = strides[w_axis]  # a size-1 dimension is unaffected by its stride
    elif w == 1 and kw == 1:
        strides[w_axis] = strides[h_axis]
    else:
        problems.append(
            f"node {node.name!r} (DepthwiseConv2dNative): strides {strides} differ between rows and columns on an "
            f"input of shape {shape}; TF 1.4's depthwise kernel refuses unequal strides ('Current implementation "
            f"only supports equal length strides in the row and column dimensions'). Use equal strides, or lay a "
            f"1-D sequence out as [batch, 1, length, channels] with a 1 x k kernel so the height stride is moot")
        return
    del node.attr["strides"].list.i[:]
    node.attr["strides"].list.i.extend(strides)


def _rewrite_batch_matmul(out, node, taken: set[str], shape_of, problems: list[str]) -> list:
    """BatchMatMulV2(x [..., m, k], w [k, n]) -> Reshape(MatMul(Reshape(x, [-1, k]), w), [..., m, n])."""
    x_shape, w_shape = shape_of(node.input[0]), shape_of(node.input[1])
    adj_x = node.attr["adj_x"].b if "adj_x" in node.attr else False
    adj_y = node.attr["adj_y"].b if "adj_y" in node.attr else False
    if (x_shape is None or w_shape is None or len(w_shape) != 2 or adj_x or None in x_shape or None in w_shape):
        problems.append(f"node {node.name!r} (BatchMatMulV2): TF 1.4 lacks BatchMatMulV2 and it can only be "
                        f"rewritten for a static [..., m, k] x [k, n] product (shapes {x_shape} x {w_shape})")
        return []
    dtype = node.attr["T"].type
    k = x_shape[-1]
    n = w_shape[0] if adj_y else w_shape[1]
    flat_shape = _const_node(out, _unique(taken, f"{node.name}/tf14_flat_shape"), np.array([-1, k], np.int32))
    flat = out.node.add()
    flat.name = _unique(taken, f"{node.name}/tf14_flat")
    flat.op = "Reshape"
    flat.input.extend([node.input[0], flat_shape.name])
    flat.attr["T"].type = dtype
    flat.attr["Tshape"].type = 3  # DT_INT32
    mm = out.node.add()
    mm.name = _unique(taken, f"{node.name}/tf14_matmul")
    mm.op = "MatMul"
    mm.input.extend([flat.name, node.input[1]])
    mm.attr["T"].type = dtype
    mm.attr["transpose_a"].b = False
    mm.attr["transpose_b"].b = adj_y
    out_shape = _const_node(out, _unique(taken, f"{node.name}/tf14_out_shape"),
                            np.array([*x_shape[:-1], n], np.int32))
    controls = [i for i in node.input if i.startswith("^")]
    del node.input[:]
    node.input.extend([mm.name, out_shape.name, *controls])
    node.op = "Reshape"
    node.attr.clear()
    node.attr["T"].type = dtype
    node.attr["Tshape"].type = 3
    return [flat_shape, flat, mm, out_shape]
