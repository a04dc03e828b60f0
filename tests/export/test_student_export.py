"""Export: BN folding and quantization keep the function; the frozen graph equals the Keras student; --check-pi."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from distill.compliance.tf14 import tf14_unavailable_reason
from distill.core.errors import DistillError
from distill.core.registry import STUDENTS
from distill.export.freeze import freeze_waveform_model, run_frozen_tf2
from distill.export.student_export import export_student, fold_batch_norms, load_offsets, quantize_weights
from distill.training.fit import load_run


def _student_with_nontrivial_batch_norm(name="dscnn"):
    model = STUDENTS.get(name)(size="toy", seed=1)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(0.5, 2, gamma.shape), beta + rng.normal(0, 0.3, beta.shape), mean + rng.normal(0, 0.3, mean.shape), var * rng.uniform(0.5, 2, var.shape)])
    return model


@pytest.mark.parametrize("name", ["dscnn", "tcresnet", "bcresnet"])
def test_batch_norm_folding_keeps_the_function(name):
    model = _student_with_nontrivial_batch_norm(name)
    graph = freeze_waveform_model(lambda x: model(x, training=False))
    folded, count = fold_batch_norms(graph)
    assert count >= 2
    after_conv = {n.input[0] for n in folded.node if n.op == "Mul"}
    convs = {n.name for n in folded.node if n.op in ("Conv2D", "DepthwiseConv2dNative")}
    assert not after_conv & convs  # no Mul reads a conv output any more
    x = np.random.default_rng(2).normal(0, 0.2, 16000).astype(np.float32)
    import tensorflow as tf

    keras_probs = tf.nn.softmax(model(x[None], training=False)).numpy().reshape(-1)
    np.testing.assert_allclose(run_frozen_tf2(folded, x).reshape(-1), keras_probs, atol=1e-5)


def test_quantized_weights_are_close_and_small():
    model = STUDENTS.get("dscnn")(size="s", seed=0)
    graph, _ = fold_batch_norms(freeze_waveform_model(lambda x: model(x, training=False)))
    quantized, count = quantize_weights(graph)
    assert count > 0 and len(quantized.SerializeToString()) < 0.55 * len(graph.SerializeToString())  # the front-end constants stay float
    assert any(n.op == "Dequantize" for n in quantized.node)
    x = np.random.default_rng(3).normal(0, 0.2, 16000).astype(np.float32)
    np.testing.assert_allclose(run_frozen_tf2(quantized, x), run_frozen_tf2(graph, x), atol=0.05)


def test_exported_graph_matches_keras_student(toy_student_run, tiny_tree, tmp_path):
    result = export_student(run=toy_student_run, out=tmp_path / "export")
    assert (tmp_path / "export" / "labels.txt").read_text().split() == ["silence", "unknown", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["source_run"] == str(toy_student_run.resolve()) and manifest["folded_batch_norms"] == result.folded_batch_norms > 0
    import tensorflow as tf

    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(result.model_path.read_bytes())
    names = {n.name: n.op for n in graph.node}
    assert names["wav_data"] == "Placeholder" and names["decoded_sample_data"] == "DecodeWav" and names["labels_softmax"] == "Softmax"
    _, model = load_run(toy_student_run)
    from distill.data.cache import open_dataset

    clips = open_dataset(tiny_tree, progress=False).waveforms(np.arange(6))
    keras_probs = tf.nn.softmax(model(clips, training=False)).numpy()
    for clip, expected in zip(clips, keras_probs):
        np.testing.assert_allclose(run_frozen_tf2(graph, clip).reshape(-1), expected, atol=1e-5)


def test_calibration_offsets_become_a_bias(toy_student_run, tmp_path):
    offsets = np.linspace(-1, 1, 12).astype(np.float32)
    (tmp_path / "cal").mkdir()
    (tmp_path / "cal" / "calibration.json").write_text(json.dumps({"classes": ["silence", "unknown", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"], "offsets": offsets.tolist()}))
    plain = export_student(run=toy_student_run, out=tmp_path / "plain")
    biased = export_student(run=toy_student_run, out=tmp_path / "biased", calibration=tmp_path / "cal")
    import tensorflow as tf

    x = np.random.default_rng(4).normal(0, 0.1, 16000).astype(np.float32)
    graphs = []
    for r in (plain, biased):
        g = tf.compat.v1.GraphDef()
        g.ParseFromString(r.model_path.read_bytes())
        graphs.append(g)
    p, b = (np.log(run_frozen_tf2(g, x).reshape(-1)) for g in graphs)
    np.testing.assert_allclose((b - p) - (b - p).mean(), offsets - offsets.mean(), atol=1e-4)
    with pytest.raises(DistillError, match="no calibration"):
        load_offsets(tmp_path / "missing")


def test_teacher_runs_are_not_exported(teacher_runs, tmp_path):
    with pytest.raises(DistillError, match="ships students"):
        export_student(run=teacher_runs[0], out=tmp_path / "x")


@pytest.mark.skipif(tf14_unavailable_reason() is not None, reason=f"TF 1.4 runtime unavailable: {tf14_unavailable_reason()}")
def test_check_pi_passes_for_a_toy_student(toy_student_run, tmp_path):
    result = export_student(run=toy_student_run, out=tmp_path / "export", check=True, check_clips=4)
    lines = {line["name"][:2]: line for line in result.checks["lines"]}
    assert result.checks["passed"], result.checks
    assert set(lines) == {"1.", "2.", "3.", "4.", "5."}
    assert result.checks["measurements"]["parity_max_abs_diff"] <= 1e-4
    assert set(result.checks["measurements"]["tf14_x86_single_thread_ms"]) == {"model", "tutorial_conv", "winners_pi"}


@pytest.mark.skipif(tf14_unavailable_reason() is not None, reason=f"TF 1.4 runtime unavailable: {tf14_unavailable_reason()}")
def test_check_pi_on_quantized_weights_compares_like_with_like(toy_student_run, tmp_path):
    result = export_student(run=toy_student_run, out=tmp_path / "export", quantize=True, check=True, check_clips=4)
    parity = next(line for line in result.checks["lines"] if line["name"].startswith("4."))
    assert "same graph in TF 2" in parity["name"] and parity["passed"]
    assert "quantized_vs_student" in result.checks["measurements"] and "8-bit weights" in parity["detail"]


def test_per_channel_ranges_keep_narrow_channels_accurate():
    # after BN folding, channels differ in scale by orders of magnitude; one range per tensor rounds
    # the narrow ones to a handful of levels, one range per channel keeps each within half a step
    import tensorflow as tf

    rng = np.random.default_rng(0)
    weights = (rng.normal(0, 1, (9, 1, 16, 8)) * np.logspace(-3, 0, 8)).astype(np.float32)
    with tf.Graph().as_default() as graph:
        tf.constant(weights, name="filter")
    graph_def = graph.as_graph_def()

    def restored(gd):
        with tf.Graph().as_default() as g:
            tf.graph_util.import_graph_def(gd, name="")
            with tf.compat.v1.Session(graph=g) as session:
                return session.run("filter:0")

    per_channel, count = quantize_weights(graph_def)
    per_tensor, _ = quantize_weights(graph_def, per_channel=False)
    assert count == 1 and {"Dequantize", "Mul", "Add"} <= {n.op for n in per_channel.node}
    narrow = np.s_[..., 0]
    step = (weights[narrow].max() - weights[narrow].min()) / 255
    assert np.abs(restored(per_channel) - weights).max(axis=(0, 1, 2)).max() <= 0.5 * (weights.max(axis=(0, 1, 2)) - weights.min(axis=(0, 1, 2))).max() / 255 + 1e-6
    assert np.abs(restored(per_channel)[narrow] - weights[narrow]).max() <= 0.5 * step + 1e-7
    assert np.abs(restored(per_tensor)[narrow] - weights[narrow]).max() > 20 * step
