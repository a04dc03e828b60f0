"""Student architectures: toy builds run, are seeded, train a step, and trace to TF 1.4 ops only."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import tensorflow as tf

from distill.core.registry import STUDENTS
from distill.layers.frontend import FrontendConfig

NAMES = STUDENTS.names()

# Op types of an inference graph that TensorFlow 1.4 can run (AddV2 is renamed to Add at export;
# the variable ops disappear when the graph is frozen).
TF14_OPS = {
    "Const", "Placeholder", "Identity", "NoOp", "ReadVariableOp", "VarHandleOp",
    "AudioSpectrogram", "Mfcc", "Log", "MatMul", "BiasAdd",
    "Conv2D", "DepthwiseConv2dNative", "SpaceToBatchND", "BatchToSpaceND",
    "Relu", "Relu6", "Add", "AddV2", "Mul", "Sub", "Rsqrt", "Sqrt", "Maximum", "Minimum",
    "MaxPool", "AvgPool", "Mean", "Max", "ConcatV2", "Reshape", "Transpose", "Squeeze",
    "ExpandDims", "Pad", "StridedSlice", "Shape", "Pack", "Softmax", "Cast",
}


def _module(name):
    return importlib.import_module(f"students.{name}")


def _clips(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(0.1 * rng.standard_normal((batch, 16000)), -1, 1).astype(np.float32)


def _float32_bytes(model) -> int:
    return 4 * sum(int(np.prod(w.shape)) for w in model.weights)


def test_registry_has_the_students():
    assert {"dscnn", "tcresnet", "bcresnet"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_size_presets(name):
    sizes = _module(name).SIZES
    assert {"toy", "default"} <= set(sizes)
    expected = {"dscnn": {"s", "m", "l"}, "tcresnet": {"8", "14", "8-w1.5", "14-w1.5", "14-w2"}, "bcresnet": {"1", "2", "3"}}
    assert expected.get(name, set()) <= set(sizes)
    for preset in sizes.values():
        with pytest.raises(Exception):  # frozen dataclasses
            preset.__setattr__(next(iter(preset.__dataclass_fields__)), 0)


@pytest.mark.parametrize("name", NAMES)
def test_toy_maps_waveforms_to_finite_logits(name):
    model = STUDENTS.get(name)(size="toy", seed=0)
    assert model.inputs[0].shape[1:] == (16000,) and model.inputs[0].name.startswith("waveform")
    assert model.count_params() < 10_000
    logits = model(_clips(), training=False).numpy()
    assert logits.shape == (2, 12) and np.isfinite(logits).all()


@pytest.mark.parametrize("name", NAMES)
def test_inference_graph_uses_tf14_ops_only(name):
    model = STUDENTS.get(name)(size="toy", seed=0)
    fn = tf.function(lambda x: model(x, training=False))
    graph = fn.get_concrete_function(tf.TensorSpec((1, 16000), tf.float32)).graph
    ops = {node.op for node in graph.as_graph_def().node}
    assert ops <= TF14_OPS, f"ops TF 1.4 lacks (or not yet vetted): {sorted(ops - TF14_OPS)}"
    assert {"AudioSpectrogram", "Conv2D"} <= ops
    for op in graph.get_operations():
        if op.type == "DepthwiseConv2dNative":
            strides = list(op.get_attr("strides"))
            height = op.inputs[0].shape[1]
            assert strides[1] == strides[2] or height == 1, f"{op.name}: TF 1.4 needs equal strides, got {strides}"


@pytest.mark.parametrize("name", NAMES)
def test_default_size_is_small(name):
    model = STUDENTS.get(name)(seed=0)
    assert _float32_bytes(model) < 1.5e6
    assert model.outputs[0].shape[1:] == (12,)


@pytest.mark.parametrize("name", NAMES)
def test_every_size_fits_the_competition_limit(name):
    for size in _module(name).SIZES:
        assert _float32_bytes(STUDENTS.get(name)(size=size)) < 5e6, size


@pytest.mark.parametrize("name", NAMES)
def test_any_frontend_can_be_plugged_in(name):
    frontend = FrontendConfig(kind="logmel", window_ms=40.0, stride_ms=20.0, num_mel_bins=32)
    model = STUDENTS.get(name)(size="toy", frontend=frontend)
    assert model.get_layer("frontend").frontend == frontend
    assert model(_clips(1), training=False).shape == (1, 12)


def test_paper_sizes():
    # parameter counts of the papers' models (within BN bookkeeping)
    from students.dscnn import build_dscnn
    from students.tcresnet import build_tcresnet

    trainable = lambda m: sum(int(np.prod(w.shape)) for w in m.trainable_weights)  # noqa: E731
    assert 22_000 < trainable(build_dscnn(size="s")) < 26_000  # Hello Edge DS-CNN S
    assert 64_000 < trainable(build_tcresnet(size="8")) < 68_000  # TC-ResNet8: 66 k
    assert 134_000 < trainable(build_tcresnet(size="14")) < 140_000  # TC-ResNet14: 137 k


@pytest.mark.parametrize("name", NAMES)
def test_frontend_none_means_the_papers_frontend(name):
    model = STUDENTS.get(name)(size="toy", frontend=None)
    assert model.get_layer("frontend").frontend == _module(name).DEFAULT_FRONTEND
