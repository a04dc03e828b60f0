"""Student architectures, beyond the contract every architecture meets (``test_contract.py``):
the papers' presets and parameter counts, the competition's size limit, the vetted op set of the
shipped graph, and front-end overrides."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from distill.core.registry import STUDENTS
from distill.layers.frontend import FrontendConfig

NAMES = STUDENTS.names()

# Op types of a frozen student graph (export's graph, front-end included) that have been vetted for the
# TF 1.4 runtime on the Pi; TF 1.4 has many more, which check_tf14_ops accepts (test_contract.py).
VETTED_OPS = {
    "Const", "Placeholder", "DecodeWav", "Identity", "NoOp",
    "AudioSpectrogram", "Mfcc", "Log", "MatMul", "BiasAdd",
    "Conv2D", "DepthwiseConv2dNative", "SpaceToBatchND", "BatchToSpaceND",
    "Relu", "Relu6", "Add", "Mul", "Sub", "Rsqrt", "Sqrt", "Maximum", "Minimum",
    "MaxPool", "AvgPool", "Mean", "Max", "ConcatV2", "Reshape", "Transpose", "Squeeze",
    "ExpandDims", "Pad", "StridedSlice", "Shape", "Pack", "Softmax", "Cast",
}


def _module(name):
    return sys.modules[STUDENTS.get(name).__module__]


def _clips(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(0.1 * rng.standard_normal((batch, 16000)), -1, 1).astype(np.float32)


def _float32_bytes(model) -> int:
    return 4 * sum(int(np.prod(w.shape)) for w in model.weights)


def test_registry_has_the_students():
    assert set(NAMES) == {"bcresnet", "dscnn", "tcresnet"}


@pytest.mark.parametrize("name", NAMES)
def test_the_papers_presets_exist(name):
    expected = {"dscnn": {"s", "m", "l"}, "tcresnet": {"8", "14", "8-w1.5", "14-w1.5", "14-w2"}, "bcresnet": {"1", "2", "3"}}
    assert expected[name] <= set(_module(name).SIZES)


@pytest.mark.parametrize("name", NAMES)
def test_frozen_student_uses_vetted_ops_only(name):
    from distill.export.freeze import freeze_waveform_model

    model = STUDENTS.get(name)(size="toy", seed=0)
    graph_def = freeze_waveform_model(lambda x: model(x, training=False))
    ops = {node.op for node in graph_def.node}
    assert ops <= VETTED_OPS, f"ops not yet vetted for the Pi's TF 1.4: {sorted(ops - VETTED_OPS)}"
    assert {"AudioSpectrogram", "Conv2D"} <= ops


@pytest.mark.parametrize("name", NAMES)
def test_every_size_fits_the_competition_limit(name):
    for size in _module(name).SIZES:
        assert _float32_bytes(STUDENTS.get(name)(size=size)) < 5e6, size
    assert _float32_bytes(STUDENTS.get(name)()) < 1.5e6  # the default, well under it


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
