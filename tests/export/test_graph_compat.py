"""TF 1.4 compatibility rewriting and the static op-registry checker (toy graphs, no TF 1.4 runtime needed)."""

from __future__ import annotations

import numpy as np
import pytest

from distill.core.errors import DistillError  # noqa: E402
from distill.export.graph_compat import (  # noqa: E402
    OpIssue,
    assert_tf14_compatible,
    check_tf14_ops,
    make_tf14_compatible,
    static_shapes,
    tf14_ops,
)

tf = pytest.importorskip("tensorflow")



def _graph(fn, *specs):
    return tf.function(fn, input_signature=list(specs), autograph=False).get_concrete_function().graph.as_graph_def()


def _conv_graph():
    def f(x):
        y = tf.nn.conv2d(x, tf.ones([3, 3, 2, 4]), 1, "SAME")
        return tf.matmul(tf.reshape(y, [1, -1]), tf.ones([8 * 8 * 4, 3])) + 1.0

    return _graph(f, tf.TensorSpec([1, 8, 8, 2], tf.float32, name="x"))


def _node(graph_def, op):
    return next(n for n in graph_def.node if n.op == op)


def test_registry_is_tf14():
    ops = tf14_ops()
    for op in ("DecodeWav", "AudioSpectrogram", "Mfcc", "Conv2D", "DepthwiseConv2dNative", "Add", "Relu6",
               "ExtractImagePatches", "Dequantize", "FusedBatchNorm"):
        assert op in ops
    assert "AddV2" not in ops and "LeakyRelu" not in ops
    assert "explicit_paddings" not in ops["Conv2D"]["attrs"] and "dilations" not in ops["Conv2D"]["attrs"]
    assert ops["Conv2D"]["attrs"]["T"]["allowed"] == ["DT_HALF", "DT_FLOAT"]


def test_tf2_graph_fails_the_checker_with_named_attrs_and_ops():
    issues = check_tf14_ops(_conv_graph())
    named = {(i.op, i.attr) for i in issues}
    assert ("Conv2D", "explicit_paddings") in named and ("Conv2D", "dilations") in named
    assert ("MatMul", "grad_a") in named
    addv2 = [i for i in issues if i.op == "AddV2"]
    assert addv2 and addv2[0].attr is None and "does not exist in TF 1.4" in addv2[0].reason
    assert all(isinstance(i, OpIssue) and i.node for i in issues)


def test_checker_rejects_unknown_op_and_unknown_attr_by_name():
    graph_def = make_tf14_compatible(_conv_graph())
    relu = graph_def.node.add()
    relu.name, relu.op = "my_fancy", "FancyOp"
    relu.input.append("x")
    conv = _node(graph_def, "Conv2D")
    conv.attr["bogus_attr"].i = 3
    issues = check_tf14_ops(graph_def)
    assert [(i.node, i.op, i.attr) for i in issues if i.op == "FancyOp"] == [("my_fancy", "FancyOp", None)]
    bogus = [i for i in issues if i.attr == "bogus_attr"]
    assert bogus and bogus[0].node == conv.name and "not in TF 1.4's OpDef" in bogus[0].reason
    assert "my_fancy" in str(issues[0]) or "my_fancy" in " ".join(map(str, issues))
    with pytest.raises(DistillError, match="FancyOp"):
        assert_tf14_compatible(graph_def)


def test_checker_attr_types_and_allowed_values():
    graph_def = make_tf14_compatible(_conv_graph())
    conv = _node(graph_def, "Conv2D")
    conv.attr["T"].type = tf.int32.as_datatype_enum        # TF 1.4's Conv2D: half/float only
    conv.attr["padding"].s = b"EXPLICIT"                   # TF 1.4 has SAME/VALID only
    conv.attr["data_format"].i = 1                         # wrong kind: int for a string attr
    reasons = {i.attr: i.reason for i in check_tf14_ops(graph_def)}
    assert "DT_INT32 not allowed" in reasons["T"]
    assert "'EXPLICIT' not allowed" in reasons["padding"]
    assert "expected a string" in reasons["data_format"]


def test_make_compatible_strips_tf2_defaults_and_renames_addv2():
    original = _conv_graph()
    fixed = make_tf14_compatible(original)
    assert check_tf14_ops(fixed) == []
    conv = _node(fixed, "Conv2D")
    assert "explicit_paddings" not in conv.attr and "dilations" not in conv.attr
    assert not any(n.op == "AddV2" for n in fixed.node) and any(n.op == "Add" for n in fixed.node)
    assert all(not n.device for n in fixed.node)
    assert any(n.op == "AddV2" for n in original.node)     # the input is left alone
    # static_shapes must not write default attrs back into the caller's graph
    static_shapes(fixed)
    assert "explicit_paddings" not in _node(fixed, "Conv2D").attr


def test_make_compatible_refuses_non_default_dilations():
    def f(x):
        return tf.nn.conv2d(x, tf.ones([3, 3, 2, 4]), 1, "SAME", dilations=2)

    with pytest.raises(DistillError, match="dilations"):
        make_tf14_compatible(_graph(f, tf.TensorSpec([1, 8, 8, 2], tf.float32)))


def test_depthwise_unequal_strides_rewritten_when_height_is_one():
    def f(x):
        return tf.raw_ops.DepthwiseConv2dNative(input=x, filter=tf.ones([1, 3, 4, 1]), strides=[1, 1, 2, 1],
                                                padding="SAME")

    original = _graph(f, tf.TensorSpec([1, 1, 16, 4], tf.float32, name="x"))
    fixed = make_tf14_compatible(original)
    assert list(_node(fixed, "DepthwiseConv2dNative").attr["strides"].list.i) == [1, 2, 2, 1]
    assert check_tf14_ops(fixed) == []
    x = np.random.default_rng(0).normal(size=(1, 1, 16, 4)).astype(np.float32)
    fixed_out = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(fixed, input_map={"x:0": tf.constant(x)}, return_elements=[
        _node(fixed, "DepthwiseConv2dNative").name + ":0"], name=""), [])()[0].numpy()
    # The reference is written out by hand: TF >= 2.21 refuses to run the original graph at all, which is
    # the reason for the rewrite. SAME with stride 2 over 16 samples and a 3-tap filter pads 0 left, 1 right.
    padded = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 0)))
    expected = np.stack([padded[:, :, 2 * i:2 * i + 3, :].sum(axis=2) for i in range(8)], axis=2)
    np.testing.assert_allclose(fixed_out, expected, rtol=1e-5, atol=1e-6)


def test_depthwise_unequal_strides_refused_on_2d_input():
    def f(x):
        return tf.raw_ops.DepthwiseConv2dNative(input=x, filter=tf.ones([3, 3, 4, 1]), strides=[1, 1, 2, 1],
                                                padding="SAME")

    with pytest.raises(DistillError, match="equal length strides"):
        make_tf14_compatible(_graph(f, tf.TensorSpec([1, 8, 16, 4], tf.float32)))


def test_leaky_relu_and_fused_batch_norm_v3_are_rewritten():
    def f(x):
        y, *_ = tf.compat.v1.nn.fused_batch_norm(x, tf.ones([4]), tf.zeros([4]), tf.zeros([4]), tf.ones([4]),
                                                 is_training=False)
        return tf.nn.leaky_relu(y, alpha=0.1)

    original = _graph(f, tf.TensorSpec([1, 2, 2, 4], tf.float32, name="x"))
    assert {"FusedBatchNormV3", "LeakyRelu"} <= {n.op for n in original.node}
    fixed = make_tf14_compatible(original)
    ops = {n.op for n in fixed.node}
    assert "FusedBatchNormV3" not in ops and "LeakyRelu" not in ops and "Maximum" in ops
    assert check_tf14_ops(fixed) == []
