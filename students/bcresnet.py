"""``bcresnet`` student: broadcasted residual network (BC-ResNet-1/2/3).

Source: B. Kim, S. Chang, J. Lee and D. Sung, "Broadcasted Residual Learning for
Efficient Keyword Spotting", Interspeech 2021 (layout as in the authors'
Qualcomm-AI-research/bcresnet code). A BC-ResBlock runs a frequency-wise
depthwise conv (2-D part f2), averages the result over frequency, runs a dilated
temporal depthwise conv + 1x1 conv on that 1-D sequence (f1) and broadcasts it
back over frequency: ``y = ReLU(x + f2(x) + broadcast(f1(avgpool_freq(f2(x)))))``
(transition blocks, which change the width, first apply a 1x1 conv-BN-ReLU and
have no identity term). Widths are ``base * (2, 1, 1.5, 2, 2.5, 4)`` with
``base = 8 * tau`` for BC-ResNet-tau, stages of (2, 2, 4, 4) blocks, temporal
dilations (1, 2, 4, 8), frequency halved at the start of stages 2 and 3.

Changes from the paper, so that the exported graph is TF 1.4 ops that fold:

* plain BatchNorm instead of SubSpectralNorm (SSN normalizes sub-bands with
  separate statistics: a reshape-normalize-reshape that does not fold into the
  preceding conv of a TF 1.4 graph);
* ReLU instead of Swish in f1 (TF 1.4 has no fused Swish; a sigmoid-gate is
  an extra op per block for little gain);
* frequency downsampling by a 1x2 average pooling after a stride-1
  frequency-wise depthwise conv, instead of a (2, 1)-strided depthwise conv,
  because TF 1.4's DepthwiseConv2dNative needs equal row and column strides.

Layout: features (B, T, F) -> per-bin BatchNorm -> (B, T, F, 1), i.e. time on
the rows and frequency on the columns; the frequency-wise depthwise conv has a
1x3 kernel, the temporal one a 3x1 kernel (dilation (d, 1), which TF lowers to
SpaceToBatchND / DepthwiseConv2dNative / BatchToSpaceND, all TF 1.4 ops) on the
(B, T, 1, C) frequency average; all depthwise strides are (1, 1). Head: 5x5 conv
with stride (1, 2) (frequency halved); tail: 5x5 depthwise conv valid in
frequency (5 -> 1 bins) and padded in time, 1x1 conv-BN-ReLU, global average
pooling, dense. Front-end: 40 log-mel bins, 30 ms / 10 ms (98 x 40), as in the paper.

Measured at the default 98x40 log-mel front-end (MACs of Conv/Depthwise/Dense per
1 s clip from the layers' output shapes; the front-end itself is not counted):

=========  ==========  ============  ===========
size       parameters  float32 size  MACs / clip
=========  ==========  ============  ===========
toy        1.7 k       8 KB          0.75 M
1          7.8 k       35 KB         2.47 M
1-stride2  7.8 k       35 KB         1.24 M
2          24.4 k      106 KB        7.22 M     (default)
3          49.8 k      211 KB        14.3 M
=========  ==========  ============  ===========

Parameters: trainable ones; float32 size: all weights including the BatchNorm
statistics, before BN folding (folding makes the graph slightly smaller).
The paper reports 9.2 k / 27.3 k / 54.2 k parameters for BC-ResNet-1 / 2 / 3
(SubSpectralNorm's 5 sub-band affines account for the difference).

Latency: frozen and run in the TF 1.4 runtime (x86, one thread), BC-ResNet-1 / 2 / 3
take about 3.7 / 5.7 / 7.5 ms per clip with BatchNorm folded (7.3 / 11 / 14.7 ms
unfolded): the broadcast residual adds and the per-block elementwise ops run at
full 98 x 20 resolution, so per MAC this is the slowest student; with the notes'
x8.6-11.7 x86-to-Pi ratios, BC-ResNet-2 is ~50-70 ms on a Pi 3.

The fast size is ``1-stride2`` (not in the paper): BC-ResNet-1 whose head conv is strided by 2 in time as
well as in frequency, so every block runs on half as many frames, with the same weights. What makes
BC-ResNet slow on the Pi is not MACs but element-wise work at full resolution (per block a residual add
of three terms, a BiasAdd, a ReLU, an average pooling over frequency; the Pi 3 estimator's
BiasAdd/Add/Mul/AvgPool/Relu rows), all in proportion to frames x bins x channels: halving the frames
roughly halves it, and a cheap front-end preset with 50 frames of 32 bins halves it again. The estimator gives
BC-ResNet-1 22.8 ms of network behind its own front-end, ``1-stride2`` 12.9 ms, and ``1-stride2`` at
``logmel32-w16-hop20`` 6.4 ms (the front-end 2.6 ms more). Estimated Pi 3 ms of the graph ``export
--quantize-weights`` writes (BatchNorm folded, 8-bit weights, front-end included, before calibration
offsets); parameters and MACs as ``model_footprint`` reports them (the mel MatMul counted); from
``python scripts/bench_frontends.py`` (docs/frontends.md, where the accuracy cost is still open):

=========  ==================  ==========  =======  =======  =========  =======
size       front-end           parameters  MACs     Pi 3 ms  front-end  bytes
=========  ==================  ==========  =======  =======  =========  =======
1          default (98 x 40)   8,864       3.48 M   32.6     9.8        96,904
1          logmel32-w16-hop20  8,732       1.26 M   13.7     2.6        90,224
1-stride2  default (98 x 40)   8,864       2.24 M   22.7     9.8        102,479
1-stride2  logmel32-w16-hop20  8,732       0.73 M   9.0      2.6        95,799
1-stride2  logmel20-w16-hop20  8,484       0.49 M   7.7      2.5        93,243
2          default (98 x 40)   26,388      8.23 M   50.0     9.8        136,584
2          logmel32-w16-hop20  26,156      3.32 M   23.7     2.6        129,504
=========  ==================  ==========  =======  =======  =========  =======

The exported graph is large for its parameters (~90 KB for 8.7 k): most of BC-ResNet's weight tensors
are under the 1,024 values from which export stores 8-bit weights, and its ~350 nodes each cost their
name and attributes.

Fast size: 1-stride2 at logmel32-w16-hop20: 8,732 parameters, 0.73 M MACs, 9.0 ms estimated on a Pi 3, 95,799 bytes exported.
Fast size: 1-stride2 at logmel20-w16-hop20: 8,484 parameters, 0.49 M MACs, 7.7 ms estimated on a Pi 3, 93,243 bytes exported.

Default size: 26,388 parameters, 8.2 M MACs.

These are the figures :func:`distill.compliance.footprint.model_footprint` reports:
``count_params()`` (BatchNorm statistics included) and the MACs of the frozen
inference graph, front-end included.
``tests/architectures/test_contract.py`` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.core.registry import STUDENTS
from distill.layers.blocks import (
    BN_EPSILON,
    BN_MOMENTUM,
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
class BCResNetSize:
    base: int  # 8 * tau
    blocks: tuple[int, int, int, int] = (2, 2, 4, 4)
    dropout: float = 0.1  # channel-wise dropout at the end of f1, as in the paper
    head_time_stride: int = 1  # 2: the head conv also halves the frames, and every block runs on half as many

    @property
    def widths(self) -> tuple[int, ...]:
        b = self.base
        return (2 * b, b, int(1.5 * b), 2 * b, int(2.5 * b), 4 * b)


SIZES: dict[str, BCResNetSize] = {
    "toy": BCResNetSize(base=4, blocks=(1, 1, 1, 1), dropout=0.0),
    "1": BCResNetSize(base=8),
    "2": BCResNetSize(base=16),
    "3": BCResNetSize(base=24),
    # not in the paper: BC-ResNet-1 with its head strided by 2 in time, the fast small size (docstring)
    "1-stride2": BCResNetSize(base=8, head_time_stride=2),
}
SIZES["default"] = SIZES["2"]

_DILATIONS = (1, 2, 4, 8)
_FREQ_DOWNSAMPLE_STAGES = (1, 2)  # 0-based stages whose first block halves frequency


def _bc_block(x, width: int, *, downsample: bool, dilation: int, dropout: float, seeds: Seeds, name: str):
    import keras

    transition = x.shape[-1] != width
    shortcut = x
    if transition:
        x = conv_bn_relu(x, width, 1, seeds=seeds, name=f"{name}_expand")
    # f2: frequency-wise depthwise conv (1 x 3 over (time, freq)) + BN, no activation
    x = conv_bn_relu(x, None, (1, 3), depthwise=True, relu=False, seeds=seeds, name=f"{name}_freq")
    if downsample:
        x = keras.layers.AveragePooling2D((1, 2), strides=(1, 2), name=f"{name}_freq_pool")(x)
    aux = x
    # f1: average over frequency, dilated temporal depthwise conv, BN, ReLU, 1x1 conv, channel dropout
    y = keras.layers.AveragePooling2D((1, int(x.shape[2])), name=f"{name}_freq_mean")(x)
    y = conv_bn_relu(y, None, (3, 1), dilation=(dilation, 1), depthwise=True, seeds=seeds, name=f"{name}_time")
    y = keras.layers.Conv2D(width, 1, use_bias=False, kernel_initializer=seeds.he(), name=f"{name}_pw_conv")(y)
    if dropout > 0:
        y = keras.layers.SpatialDropout2D(dropout, seed=seeds(), name=f"{name}_dropout")(y)
    terms = [aux, y] if transition else [shortcut, aux, y]  # y (B, T, 1, C) broadcasts over frequency
    x = keras.layers.Add(name=f"{name}_add")(terms)
    return keras.layers.ReLU(name=f"{name}_out")(x)


@STUDENTS.register("bcresnet")
def build_bcresnet(*, size: str = "default", num_classes: int = 12, frontend: FrontendConfig | None = None, seed: int = 0, feature_augment=None):
    """BC-ResNet-tau; ``size`` in toy/1/2/3/1-stride2 (default = 2), front-end default 98x40 log-mel; ``feature_augment``: optional training-only layer on the normalized features."""
    import keras

    cfg = resolve_size(SIZES, size, "bcresnet")
    seeds = Seeds(seed)
    waveform = waveform_input()
    x, fcfg = normalized_features(waveform, frontend, default=DEFAULT_FRONTEND, feature_augment=feature_augment)
    x = keras.layers.Reshape((*fcfg.output_shape, 1), name="add_channel")(x)
    widths = cfg.widths
    x = conv_bn_relu(x, widths[0], 5, strides=(cfg.head_time_stride, 2), seeds=seeds, name="head")
    for stage, blocks in enumerate(cfg.blocks):
        for block in range(blocks):
            x = _bc_block(
                x,
                widths[stage + 1],
                downsample=block == 0 and stage in _FREQ_DOWNSAMPLE_STAGES and x.shape[2] >= 2,
                dilation=_DILATIONS[stage],
                dropout=cfg.dropout,
                seeds=seeds,
                name=f"stage{stage + 1}_block{block + 1}",
            )
    # tail: depthwise conv over all remaining frequency bins (5 at 40 bins; valid) and 5 frames (same)
    freq_kernel = min(5, int(x.shape[2]))
    x = keras.layers.ZeroPadding2D(((2, 2), (0, 0)), name="tail_pad")(x)
    x = keras.layers.DepthwiseConv2D(
        (5, freq_kernel), padding="valid", use_bias=False, depthwise_initializer=seeds.he(), name="tail_dw"
    )(x)
    x = keras.layers.Conv2D(widths[-1], 1, use_bias=False, kernel_initializer=seeds.he(), name="tail_pw_conv")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="tail_pw_bn")(x)
    x = keras.layers.ReLU(name="tail_pw_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = classifier_head(x, num_classes, seeds=seeds)
    return keras.Model(waveform, logits, name=f"bcresnet_{size}")
