"""Student architectures, beyond the contract every architecture meets (``test_contract.py``):
the papers' presets and parameter counts, the competition's size limit, the vetted op set of the
shipped graph, and front-end overrides."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from distill.core.registry import STUDENTS
from distill.layers.frontend import FrontendConfig, frontend_preset

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


# "Fast size: 8-w0.5 at logmel32-w16-hop20: 17,356 parameters, 0.42 M MACs, 3.6 ms estimated on a Pi 3, 50,740 bytes exported."
FAST_LINE = re.compile(r"^Fast size: (?P<size>\S+) at (?P<frontend>\S+): (?P<params>\d{1,3}(?:,\d{3})*) parameters, "
                       r"(?P<macs>\d+\.\d+) M MACs, (?P<ms>\d+\.\d) ms estimated on a Pi 3, (?P<bytes>\d{1,3}(?:,\d{3})*) bytes exported\.$",
                       re.MULTILINE)
# the small rungs' budget (the ladder's issue): estimated Pi 3 time, front-end included, and the exported file
FAST_MS, FAST_BYTES = 10.0, 100_000


def stated_fast_sizes(doc: str) -> list[dict]:
    """The ``Fast size:`` lines of a module docstring, numbers parsed."""
    return [{"size": m["size"], "frontend": m["frontend"], "params": int(m["params"].replace(",", "")), "macs": m["macs"],
             "ms": float(m["ms"]), "bytes": int(m["bytes"].replace(",", ""))} for m in FAST_LINE.finditer(doc or "")]


def test_the_fast_line_parser():
    line = "Fast size: 1-stride2 at logmel20-w16-hop20: 8,484 parameters, 0.49 M MACs, 7.7 ms estimated on a Pi 3, 93,243 bytes exported."
    assert stated_fast_sizes(f"x\n{line}\ny") == [{"size": "1-stride2", "frontend": "logmel20-w16-hop20", "params": 8484, "macs": "0.49",
                                                   "ms": 7.7, "bytes": 93243}]
    assert stated_fast_sizes(line.replace("8,484", "8484")) == [] and stated_fast_sizes(line.replace(" ms ", " s ")) == []


FAST_SIZES = [pytest.param(name, fast, id=f"{name}-{fast['size']}-{fast['frontend']}") for name in NAMES
              for fast in stated_fast_sizes(_module(name).__doc__)]


def test_the_ladder_has_fast_small_rungs():
    # at least two sizes within the budget, one of them under 20 k parameters; every student states one
    assert {p.values[0] for p in FAST_SIZES} == set(NAMES)
    assert len(FAST_SIZES) >= 2 and min(p.values[1]["params"] for p in FAST_SIZES) < 20_000


@pytest.mark.parametrize("name,fast", FAST_SIZES)
def test_fast_sizes_have_the_documented_figures_within_the_budget(name, fast):
    """Built at its front-end preset and frozen as ``export --quantize-weights`` freezes it, a fast size has the
    parameters and MACs its docstring states, its estimated Pi 3 time and bytes, and stays within 10 ms and 100 KB."""
    from distill.compliance.pi_estimate import estimate_pi3_ms
    from distill.export.freeze import freeze_waveform_model
    from distill.export.student_export import fold_batch_norms, quantize_weights

    assert fast["size"] in _module(name).SIZES
    model = STUDENTS.get(name)(size=fast["size"], frontend=frontend_preset(fast["frontend"]), seed=0)
    graph_def, _ = fold_batch_norms(freeze_waveform_model(lambda x: model(x, training=False)))
    graph_def, _ = quantize_weights(graph_def)
    estimate = estimate_pi3_ms(graph_def)
    size = len(graph_def.SerializeToString())
    assert (model.count_params(), f"{estimate.macs / 1e6:.2f}") == (fast["params"], fast["macs"])
    assert estimate.ms == pytest.approx(fast["ms"], abs=0.06) and size == pytest.approx(fast["bytes"], rel=0.005), \
        f"measured {estimate.ms:.2f} ms, {size:,} bytes; update the docstring's 'Fast size:' line"
    assert estimate.ms <= FAST_MS and size <= FAST_BYTES
    # Dequantize reads constants only: TF 1.4 folds it at load (distill.export.student_export.quantize_weights)
    assert {n.op for n in graph_def.node} - {"Dequantize"} <= VETTED_OPS
