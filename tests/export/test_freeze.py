"""Freezing a toy waveform -> logits function into the reference interface, checked in TF 2 and TF 1.4."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from distill.compliance import tf14  # noqa: E402
from distill.core.errors import DistillError  # noqa: E402
from distill.core.labels import NUM_CLASSES  # noqa: E402
from distill.export.freeze import (  # noqa: E402
    fold_constant_nodes,
    freeze_waveform_model,
    graph_summary,
    run_frozen_tf2,
    wav_bytes,
)
from distill.export.graph_compat import check_tf14_ops, static_shapes  # noqa: E402

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


BIAS = np.linspace(-0.5, 0.5, NUM_CLASSES).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _toy():
    """A tiny raw-wave Keras student: frames -> conv1d -> batch norm -> depthwise -> pool -> dense."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16000,)),
        keras.layers.Reshape((100, 160)),
        keras.layers.Conv1D(8, 3, strides=2, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.DepthwiseConv1D(3, strides=2),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(NUM_CLASSES),
    ])
    bn = model.layers[2]
    rng = np.random.default_rng(1)
    bn.moving_mean.assign(rng.normal(size=8).astype(np.float32))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=8).astype(np.float32))
    fn = lambda x: model(x, training=False)  # noqa: E731
    graph = freeze_waveform_model(fn, logit_bias=BIAS, name_prefix="student")
    return model, fn, graph


def _clip(seed=2):
    return np.random.default_rng(seed).uniform(-0.6, 0.6, size=16000).astype(np.float32)


def _reference(fn, clip):
    return tf.nn.softmax(fn(clip[None]) + BIAS).numpy()


def test_interface_nodes_and_shapes():
    _, _, graph = _toy()
    nodes = {n.name: n for n in graph.node}
    assert nodes["wav_data"].op == "Placeholder" and nodes["wav_data"].attr["dtype"].type == tf.string.as_datatype_enum
    assert nodes["decoded_sample_data"].op == "DecodeWav"
    assert list(nodes["decoded_sample_data"].input) == ["wav_data"]
    assert nodes["decoded_sample_data"].attr["desired_samples"].i == 16000
    assert nodes["decoded_sample_data"].attr["desired_channels"].i == 1
    assert nodes["labels_softmax"].op == "Softmax"
    shapes = static_shapes(graph)
    assert shapes["labels_softmax"] == [(1, NUM_CLASSES)]
    assert shapes["decoded_sample_data"] == [(16000, 1), ()]
    assert check_tf14_ops(graph) == []
    assert not any(n.op in ("VarHandleOp", "ReadVariableOp", "AddV2", "Identity") for n in graph.node)
    summary = graph_summary(graph)
    assert summary["nodes"] == len(graph.node) and summary["ops"]["DecodeWav"] == 1
    assert summary["const_elements"] >= 160 * 3 * 8 + NUM_CLASSES * 8


def test_frozen_graph_matches_tf2_function():
    _, fn, graph = _toy()
    clip = _clip()
    np.testing.assert_allclose(run_frozen_tf2(graph, clip), _reference(fn, clip), rtol=1e-5, atol=1e-6)


def test_fold_constants_keeps_the_function():
    _, fn, _ = _toy()
    unfolded = freeze_waveform_model(fn, logit_bias=BIAS, name_prefix="student", fold_constants=False)
    folded = fold_constant_nodes(unfolded, keep=("wav_data", "decoded_sample_data", "labels_softmax"))
    assert len(folded.node) < len(unfolded.node)
    clip = _clip(3)
    np.testing.assert_allclose(run_frozen_tf2(folded, clip), run_frozen_tf2(unfolded, clip), rtol=1e-5, atol=1e-7)


def test_bad_logits_shape_is_refused():
    with pytest.raises(DistillError, match="logits of shape"):
        freeze_waveform_model(lambda x: tf.reduce_sum(x, axis=1, keepdims=True))
    with pytest.raises(DistillError, match="logit_bias"):
        freeze_waveform_model(lambda x: tf.zeros([1, NUM_CLASSES]) + tf.reduce_mean(x), logit_bias=np.zeros(3))


_TF14 = tf14.tf14_unavailable_reason(fetch=True)


@pytest.mark.skipif(_TF14 is not None, reason=f"TF 1.4 wheel not available and could not be fetched: {_TF14}")
def test_tf14_runs_the_frozen_graph_like_tf2():
    _, fn, graph = _toy()
    clip = _clip()
    want = _reference(fn, clip)
    fed = tf14.run_graph(graph, feeds={"decoded_sample_data:0": clip[:, None], "decoded_sample_data:1": np.int32(16000)},
                         fetches=["labels_softmax:0"])
    assert fed.outputs["labels_softmax:0"].shape == (1, NUM_CLASSES)
    np.testing.assert_allclose(fed.outputs["labels_softmax:0"], want, atol=1e-5)
    # the same through the wav path: TF 1.4 decodes the 16-bit file itself
    wav = wav_bytes(clip)
    via_wav = tf14.run_graph(graph, feeds={"wav_data:0": wav},
                             fetches=["labels_softmax:0", "decoded_sample_data:0", "decoded_sample_data:1"])
    pcm = np.frombuffer(wav[44:], dtype="<i2") / 32768.0
    np.testing.assert_allclose(via_wav.outputs["decoded_sample_data:0"][:, 0], pcm, atol=1e-6)
    assert int(via_wav.outputs["decoded_sample_data:1"]) == 16000
    np.testing.assert_allclose(via_wav.outputs["labels_softmax:0"], _reference(fn, pcm.astype(np.float32)), atol=1e-5)


def test_a_recurrent_loop_is_refused_by_name_not_by_a_constant_folding_crash():
    from distill.training.fit import RunConfig, build_model

    model = build_model(RunConfig(family="teacher", arch="crnn", data="unused", size="toy", feature_masks=False))
    # the loop's TensorList handle cannot become a constant; folding leaves it, and the TF 1.4 check names the ops
    with pytest.raises(DistillError, match="TensorList"):
        freeze_waveform_model(lambda x: model(x, training=False))
