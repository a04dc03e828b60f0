"""``crnn`` teacher: a convolutional recurrent network with attention pooling on log-mel.

Source: D. C. de Andrade, S. Leo, M. L. Da Silva Viana and C. Bernkopf, "A neural
attention model for speech command recognition", arXiv:1808.08929, 2018 (conv
layers on the mel spectrogram, two bidirectional LSTMs, a dot-product attention
whose query is a projection of the middle output vector, dense layers).

Differences from the paper, for CPU training speed and for a stronger teacher:
the two 5x1 convolutions are replaced by three 3x3 conv-BN-ReLU layers that halve
time (98 -> 49 steps, halving the recurrent cost) and reduce frequency (40 -> 10),
and the LSTMs are bidirectional GRUs (three gates instead of four: a quarter less
recurrent compute; the recurrent loop is what limits this model's CPU speed).
A recurrent, attention-pooled model gives the ensemble a third inductive bias
next to the residual CNN and the raw-wave CNN.

Layout: features (B, 98, 40) -> per-bin BatchNorm -> [feature_augment] -> conv 3x3
(stride 1) -> conv 3x3 (stride 2, 2) -> conv 3x3 (stride 1, 2) -> (B, 49, 10 * C) ->
dense projection -> 2 x BiGRU (return sequences) -> attention pooling (query =
dense(middle step); softmax over time of <query, step>; weighted sum) -> dense-ReLU ->
dropout -> dense logits.

Measured at the default log-mel 98x40 front-end (MACs of Conv/Dense/GRU per 1 s clip,
counted from the layers' output shapes; the attention adds T * 2H * 2 more):

=========  ==========  ===========
size       parameters  MACs / clip
=========  ==========  ===========
toy        1.3 k       0.38 M
small      106 k       8.1 M
default    700 k       42.2 M
=========  ==========  ===========

Parameters are trainable ones. Of the default's MACs, the convs are 14.1 M,
the projection 4.0 M and the two BiGRU layers 24.1 M (3 gates x (input +
recurrent) x 49 steps x 2 directions).

Training speed (batch 64, 2 threads, shared 2-core machine, several runs under
other users' load): default 155-180 clips/s, small 220-690 clips/s; the GRU loop
(a tf.while_loop on CPU) dominates, so widening the convs costs little.

Default size: 700,668 parameters, 43.1 M MACs.

These are the figures :func:`distill.compliance.footprint.model_footprint` reports:
``count_params()`` (BatchNorm statistics included) and the MACs of the frozen
inference graph, front-end included; recurrent layers unrolled.
``tests/architectures/test_contract.py`` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.core.registry import TEACHERS
from distill.layers.blocks import (
    Seeds,
    classifier_head,
    conv_bn_relu,
    normalized_features,
    resolve_size,
    waveform_input,
)
from distill.layers.frontend import FrontendConfig

DEFAULT_FRONTEND = FrontendConfig()  # 40 log-mel bins, 30 ms windows every 10 ms: 98 x 40


@dataclass(frozen=True)
class CRNNSize:
    conv_widths: tuple[int, int, int]  # the three 3x3 conv layers
    projection: int  # dense projection of each time step before the recurrent layers
    rnn_units: int  # per direction
    rnn_layers: int
    hidden: int  # dense layer after attention pooling
    dropout: float = 0.25


SIZES: dict[str, CRNNSize] = {
    "toy": CRNNSize(conv_widths=(4, 4, 4), projection=8, rnn_units=4, rnn_layers=1, hidden=8, dropout=0.0),
    "small": CRNNSize(conv_widths=(16, 16, 16), projection=64, rnn_units=48, rnn_layers=2, hidden=64),
    "default": CRNNSize(conv_widths=(16, 32, 64), projection=128, rnn_units=128, rnn_layers=2, hidden=128),
}


def _attention_layer():
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="distill")
    class QueryAttentionPooling(keras.layers.Layer):
        """de Andrade et al.'s attention: query = dense(x[:, T // 2]); weights = softmax_t(<x_t, query>)."""

        def __init__(self, seed: int = 0, **kwargs):
            super().__init__(**kwargs)
            self.seed = int(seed)

        def build(self, input_shape):
            dim = int(input_shape[-1])
            self.query = keras.layers.Dense(dim, kernel_initializer=keras.initializers.GlorotUniform(seed=self.seed), name="query")
            self.query.build((input_shape[0], dim))
            super().build(input_shape)

        def call(self, x):
            middle = x[:, ops.shape(x)[1] // 2, :]
            query = self.query(middle)  # (B, D)
            scores = ops.sum(x * query[:, None, :], axis=-1)  # (B, T)
            weights = ops.softmax(scores, axis=-1)
            return ops.sum(x * weights[:, :, None], axis=1)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], input_shape[-1])

        def get_config(self):
            return {**super().get_config(), "seed": self.seed}

    return QueryAttentionPooling


_POOLING = None


def _pooling_class():
    global _POOLING
    if _POOLING is None:
        _POOLING = _attention_layer()
    return _POOLING


@TEACHERS.register("crnn")
def build_crnn(
    *,
    size: str = "default",
    num_classes: int = 12,
    frontend: FrontendConfig | None = None,
    seed: int = 0,
    feature_augment=None,
):
    """Conv + BiGRU + attention on log-mel (default 98x40); ``feature_augment`` is an optional
    training-only Keras layer (e.g. SpecAugment) applied to the normalized features."""
    import keras

    cfg = resolve_size(SIZES, size, "crnn")
    seeds = Seeds(seed)
    waveform = waveform_input()
    x, fcfg = normalized_features(waveform, frontend, default=DEFAULT_FRONTEND, feature_augment=feature_augment)
    x = keras.layers.Reshape((*fcfg.output_shape, 1), name="add_channel")(x)
    for i, (width, strides) in enumerate(zip(cfg.conv_widths, ((1, 1), (2, 2), (1, 2))), start=1):
        x = conv_bn_relu(x, width, 3, strides=strides, seeds=seeds, name=f"conv{i}")
    steps, bins, channels = x.shape[1], x.shape[2], x.shape[3]
    x = keras.layers.Reshape((steps, bins * channels), name="to_sequence")(x)
    x = keras.layers.Dense(cfg.projection, kernel_initializer=seeds.he(), name="projection")(x)
    x = keras.layers.ReLU(name="projection_relu")(x)
    for i in range(1, cfg.rnn_layers + 1):
        # both directions get their own seeds (Bidirectional would otherwise clone one initialization)
        forward, backward = (
            keras.layers.GRU(
                cfg.rnn_units,
                return_sequences=True,
                go_backwards=direction == "backward",
                kernel_initializer=seeds.glorot(),
                recurrent_initializer=seeds.orthogonal(),
                seed=seeds(),
                name=f"gru{i}_{direction}",
            )
            for direction in ("forward", "backward")
        )
        x = keras.layers.Bidirectional(forward, backward_layer=backward, name=f"bigru{i}")(x)
    x = _pooling_class()(seed=seeds(), name="attention")(x)
    x = keras.layers.Dense(cfg.hidden, kernel_initializer=seeds.he(), name="hidden")(x)
    x = keras.layers.ReLU(name="hidden_relu")(x)
    logits = classifier_head(x, num_classes, seeds=seeds, dropout=cfg.dropout)
    return keras.Model(waveform, logits, name=f"crnn_{size}")
