"""The two Raspberry Pi 3 latency references, rebuilt as frozen TF-1.4 graphs with random weights.

Two models with published Pi 3 timings (TF 1.4 ``benchmark_model``) anchor the
latency estimate (:mod:`distill.compliance.pi_estimate`); see
``/work/shared/notes/kaggle-facts.md`` and ``docs/pi-latency.md``:

* ``tutorial_conv``: the TensorFlow speech_commands tutorial's ``conv`` model
  (AudioSpectrogram 480/160 -> Mfcc 40 -> conv 20x8x64 -> max-pool 2 -> conv
  10x4x64 -> dense 12); 926,860 parameters, ~201.5 M MACs; 74.5 ms on a Pi 3.
* ``winners_pi``: the Kaggle winners' Pi model (see--/speech_recognition,
  experiment 195): ExtractImagePatches 40/20 -> Conv1D 128 k3 s2 + BN + ReLU6 ->
  11 depthwise-separable units (depthwise k3, 1x1 conv, unfolded batch norm,
  ReLU6; context stride 1 VALID / reduce stride 2 SAME) -> attention head ->
  dense 1024 -> 12 without bias; 1,198,601 parameters, ~56.2 M MACs; 58.0 ms.

They are built the way their authors' frameworks wrote them (variables read
through ``Identity``, Keras 2's decomposed batch norm, ``tf.nn.conv1d``'s
ExpandDims/Conv2D/Squeeze, Keras' ``batch_flatten``), without constant folding,
so their node counts, and so their per-node overhead, resemble the originals.
Weights are random (fixed seed): only the structure matters for latency.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from distill.core.labels import NUM_CLASSES


@dataclasses.dataclass(frozen=True)
class Reference:
    name: str
    description: str
    pi3_ms: float            # published Raspberry Pi 3 time, TF 1.4 benchmark_model
    params: int              # parameter count from the notes
    macs_m: float            # multiply-accumulates per clip, millions, from the notes
    source: str


REFERENCES: dict[str, Reference] = {
    "tutorial_conv": Reference(
        "tutorial_conv", "TF speech_commands tutorial conv model (MFCC 98x40, conv 20x8x64, pool 2, conv 10x4x64, dense 12)",
        74.5, 926_860, 201.5, "tutorial conv.pb with TF 1.4 benchmark_model on a Pi 3 (seed's run; kaggle-facts.md)"),
    "winners_pi": Reference(
        "winners_pi", "Kaggle winners' Pi model (raw wave, 11 depthwise-separable units, attention head)",
        58.0, 1_198_601, 56.2, "see--/speech_recognition experiment 195, TF 1.4 benchmark_model on a Pi 3 (kaggle-facts.md)"),
}

SEED = 1234
CHANNELS = (128, 192, 192, 256, 256, 320, 320, 384, 384, 512, 512)


def _var(rng: np.random.Generator, shape, std: float, name: str):
    import tensorflow as tf

    return tf.Variable(rng.normal(0.0, std, size=shape).astype(np.float32), name=name)


def tutorial_conv_fn(seed: int = SEED):
    """fn(waveform [1, 16000], sample_rate) -> logits [1, 12] of the tutorial's conv model (variables inside)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    w1 = _var(rng, (20, 8, 1, 64), 0.01, "first_weights")
    b1 = tf.Variable(np.zeros(64, np.float32), name="first_bias")
    w2 = _var(rng, (10, 4, 64, 64), 0.01, "second_weights")
    b2 = tf.Variable(np.zeros(64, np.float32), name="second_bias")
    wf = _var(rng, (49 * 20 * 64, NUM_CLASSES), 0.01, "final_fc_weights")
    bf = tf.Variable(np.zeros(NUM_CLASSES, np.float32), name="final_fc_bias")

    def fn(waveform, sample_rate):
        audio = tf.reshape(waveform, [16000, 1])
        spectrogram = tf.raw_ops.AudioSpectrogram(input=audio, window_size=480, stride=160, magnitude_squared=True)
        mfcc = tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=sample_rate, dct_coefficient_count=40)
        fingerprint = tf.reshape(mfcc, [-1, 98 * 40])
        x = tf.reshape(fingerprint, [-1, 98, 40, 1])
        x = tf.nn.relu(tf.nn.conv2d(x, w1, [1, 1, 1, 1], "SAME") + b1)
        x = tf.nn.max_pool2d(x, [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
        x = tf.nn.relu(tf.nn.conv2d(x, w2, [1, 1, 1, 1], "SAME") + b2)
        x = tf.reshape(x, [-1, 49 * 20 * 64])
        return tf.matmul(x, wf) + bf

    fn.variables = (w1, b1, w2, b2, wf, bf)
    return fn


def winners_pi_fn(seed: int = SEED):
    """fn(waveform [1, 16000]) -> logits [1, 12] of the winners' Pi model (softmax added by the freezer)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    keep = []

    def bn_vars(c: int, prefix: str):
        vs = (tf.Variable(1.0 + 0.1 * rng.standard_normal(c).astype(np.float32), name=f"{prefix}/gamma"),
              tf.Variable(0.1 * rng.standard_normal(c).astype(np.float32), name=f"{prefix}/beta"),
              tf.Variable(0.1 * rng.standard_normal(c).astype(np.float32), name=f"{prefix}/moving_mean"),
              tf.Variable(1.0 + 0.1 * rng.random(c).astype(np.float32), name=f"{prefix}/moving_variance"))
        keep.extend(vs)
        return vs

    conv0 = _var(rng, (3, 40, 128), np.sqrt(2.0 / 120), "conv1d_1/kernel")
    bn0 = bn_vars(128, "batch_normalization_1")
    keep.append(conv0)
    units = []
    cin = 128
    for i, cout in enumerate(CHANNELS):
        dw = _var(rng, (1, 3, cin, 1), np.sqrt(2.0 / 3), f"depthwise_conv2d_{i + 1}/depthwise_kernel")
        pw = _var(rng, (1, cin, cout), np.sqrt(2.0 / cin), f"conv1d_{i + 2}/kernel")
        keep.extend((dw, pw))
        units.append((dw, pw, bn_vars(cout, f"batch_normalization_{i + 2}"), 1 if i % 2 == 0 else 2))
        cin = cout
    att_w = _var(rng, (9 * 512, 9), 0.01, "dense_1/kernel")
    att_b = tf.Variable(np.zeros(9, np.float32), name="dense_1/bias")
    out_w = _var(rng, (1024, NUM_CLASSES), 0.03, "dense_2/kernel")
    keep.extend((att_w, att_b, out_w))

    def batch_norm(x, vs):
        gamma, beta, mean, var = vs
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-3)  # Keras 2's K.batch_normalization

    def fn(waveform):
        x = tf.reshape(waveform, [-1, 1, 16000, 1])
        x = tf.image.extract_patches(x, [1, 1, 40, 1], [1, 1, 20, 1], [1, 1, 1, 1], "SAME")
        x = tf.squeeze(x, axis=1)                                    # [1, 800, 40]
        x = tf.nn.conv1d(x, conv0, 2, "VALID")                       # [1, 399, 128]
        x = tf.nn.relu6(batch_norm(x, bn0))
        for dw, pw, bn, stride in units:
            x = tf.expand_dims(x, 1)                                 # [1, 1, L, C]
            padding = "VALID" if stride == 1 else "SAME"
            x = tf.nn.depthwise_conv2d(x, dw, [1, stride, stride, 1], padding)
            x = tf.squeeze(x, axis=1)
            x = tf.nn.conv1d(x, pw, 1, "VALID")
            x = tf.nn.relu6(batch_norm(x, bn))
        # attention head: softmax weights over the 9 time steps
        flat = tf.reshape(x, tf.stack([-1, tf.reduce_prod(tf.shape(x)[1:])]))    # Keras batch_flatten
        att = tf.nn.softmax(tf.nn.bias_add(tf.matmul(flat, att_w), att_b))     # [1, 9]
        weighted = x * tf.expand_dims(att, -1)
        pooled = tf.concat([tf.reduce_max(weighted, axis=1), tf.reduce_mean(x, axis=1)], axis=-1)  # [1, 1024]
        return tf.matmul(pooled, out_w)

    fn.variables = tuple(keep)
    return fn


@functools.lru_cache(maxsize=None)
def _build(name: str) -> bytes:
    from distill.export.freeze import freeze_waveform_model

    if name == "tutorial_conv":
        graph = freeze_waveform_model(tutorial_conv_fn(), pass_sample_rate=True, fold_constants=False)
    elif name == "winners_pi":
        graph = freeze_waveform_model(winners_pi_fn(), flat_output=True, fold_constants=False)
    else:
        raise KeyError(f"unknown reference {name!r}; known: {', '.join(REFERENCES)}")
    return graph.SerializeToString()


def reference_graph(name: str):
    """The reference as a frozen, TF-1.4-compatible GraphDef (built once per process, ~1-3 s)."""
    from tensorflow.core.framework import graph_pb2

    return graph_pb2.GraphDef.FromString(_build(name))


def reference_graphs() -> dict:
    return {name: reference_graph(name) for name in REFERENCES}


def count_params(graph_def) -> int:
    """Elements of the float constants with at least one dimension (weights, biases, batch-norm vectors)."""
    from tensorflow.core.framework import types_pb2

    total = 0
    for node in graph_def.node:
        if node.op != "Const" or node.attr["dtype"].type not in (types_pb2.DT_FLOAT, types_pb2.DT_HALF):
            continue
        dims = [d.size for d in node.attr["value"].tensor.tensor_shape.dim]
        if dims:
            total += int(np.prod(dims))
    return total
