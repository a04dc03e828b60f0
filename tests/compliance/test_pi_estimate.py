"""The Raspberry Pi 3 latency model: static analysis, the references, calibration and its leave-one-out error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distill.compliance import pi_estimate as pe  # noqa: E402
from distill.compliance.reference_graphs import REFERENCES, count_params, reference_graph  # noqa: E402
from distill.core.labels import NUM_CLASSES  # noqa: E402
from distill.export.freeze import freeze_waveform_model  # noqa: E402

tf = pytest.importorskip("tensorflow")



def _toy_graph():
    rng = np.random.default_rng(0)
    w1 = tf.constant(rng.normal(size=(1, 5, 40, 16)).astype(np.float32))
    dw = tf.constant(rng.normal(size=(1, 3, 16, 1)).astype(np.float32))
    pw = tf.constant(rng.normal(size=(1, 1, 16, 32)).astype(np.float32))
    fc = tf.constant(rng.normal(size=(32, NUM_CLASSES)).astype(np.float32))
    scale = tf.constant(rng.uniform(0.5, 1.5, size=16).astype(np.float32))

    def fn(wave):
        x = tf.reshape(wave, [1, 1, 400, 40])
        x = tf.nn.conv2d(x, w1, [1, 1, 2, 1], "VALID")                  # [1,1,198,16]
        x = tf.nn.relu6(x * scale)                                       # broadcast Mul + Relu6
        x = tf.nn.depthwise_conv2d(x, dw, [1, 2, 2, 1], "SAME")          # [1,1,99,16]
        x = tf.nn.conv2d(x, pw, 1, "VALID")                              # pointwise [1,1,99,32]
        return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), fc)

    return freeze_waveform_model(fn)


def test_static_analysis_counts_macs_and_classes():
    costs = {c.op + ("/pw" if c.cls == "pointwise" else ""): c for c in pe.analyze(_toy_graph())}
    assert costs["Conv2D"].cls == "conv2d" and costs["Conv2D"].macs == 198 * 16 * 5 * 40
    assert costs["Conv2D"].weights == 5 * 40 * 16
    assert costs["DepthwiseConv2dNative"].macs == 99 * 16 * 3 and costs["DepthwiseConv2dNative"].policy_units == 1
    assert costs["Conv2D/pw"].macs == 99 * 16 * 32
    assert costs["MatMul"].macs == 32 * NUM_CLASSES
    assert costs["Mul"].cls == "bcast_mul" and costs["Mul"].units == 198 * 16
    assert costs["Relu6"].cls == "eltwise"
    ops = {c.op for c in pe.analyze(_toy_graph())}
    assert "DecodeWav" not in ops and "Placeholder" not in ops      # fed: TF 1.4 never runs them
    assert pe.graph_macs(_toy_graph()) == 198 * 16 * 200 + 99 * 16 * 3 + 99 * 16 * 32 + 32 * NUM_CLASSES


def test_constant_subgraphs_are_folded_like_tf14():
    def fn(wave):
        gamma = tf.constant(np.ones(12, np.float32))
        inv = tf.math.rsqrt(tf.constant(np.full(12, 4.0, np.float32)) + 1e-3) * gamma   # constants only
        return tf.reshape(tf.reduce_mean(wave), [1, 1]) * inv

    costs = pe.analyze(freeze_waveform_model(fn, fold_constants=False))
    assert not any(c.op == "Rsqrt" for c in costs)      # computed once by TF 1.4's constant folding
    assert any(c.op == "Mean" for c in costs)


def test_references_match_the_notes():
    for name, ref in REFERENCES.items():
        graph = reference_graph(name)
        assert count_params(graph) == ref.params
        assert abs(pe.graph_macs(graph) / 1e6 - ref.macs_m) / ref.macs_m < 0.005
        assert graph.ByteSize() < 5_000_000


def test_calibrated_on_both_references_reproduces_each():
    for name, ref in REFERENCES.items():
        est = pe.estimate_pi3_ms(reference_graph(name))
        assert abs(est.ms / ref.pi3_ms - 1) < 0.05
        assert math.isclose(sum(est.breakdown_ms.values()), est.ms, rel_tol=1e-3)
        assert est.calibrated_on == tuple(REFERENCES)


def test_reported_leave_one_out_error_is_recomputable():
    names = list(REFERENCES)
    errors = []
    for held_in in names:
        cal = pe.calibrate((held_in,))
        assert cal.kappa == 1.0                       # one reference: the scale is the only free parameter
        for held_out in names:
            if held_out != held_in:
                predicted = pe.estimate_pi3_ms(reference_graph(held_out), calibration=cal).ms
                errors.append(predicted / REFERENCES[held_out].pi3_ms - 1)
    reported = pe.estimate_pi3_ms(_toy_graph()).loo_error
    assert reported == pytest.approx(max(abs(e) for e in errors), rel=1e-9)
    loo = pe.leave_one_out()
    assert sorted(d["error"] for d in loo["directions"].values()) == pytest.approx(sorted(errors), rel=1e-9)


def test_toy_estimate_is_small_and_explained():
    est = pe.estimate_pi3_ms(_toy_graph())
    assert 0 < est.ms < 10
    assert est.breakdown_ms and "Conv2D" in est.breakdown_ms
    assert est.method.startswith(pe.METHOD)
