"""``dscnn`` student: the depthwise-separable CNN of "Hello Edge".

Source: Y. Zhang, N. Suda, L. Lai and V. Chandra, "Hello Edge: Keyword Spotting on
Microcontrollers", arXiv:1711.07128, 2017 (DS-CNN S/M/L; layer sizes as in the
authors' ARM-software/ML-KWS-for-MCU ``--model_size_info``): a conv (10x4 kernel)
-BN-ReLU, then depthwise-separable layers (3x3 depthwise-BN-ReLU, 1x1 conv-BN-ReLU),
global average pooling, a dense layer.

Front-end: the paper's, unless ``frontend`` is given: 10 MFCCs from 40 ms windows
every 20 ms, i.e. 49 x 10 per clip (``DEFAULT_FRONTEND``; 40 mel channels, 20-7600 Hz,
where the paper used TensorFlow's default 4 kHz upper limit). MACs scale with the
front-end's frames x bins: on the 98x40 log-mel front-end ``m`` costs ~8x more
(~76 M MACs), so pass a 49x10 MFCC front-end to keep a student small.

Every op is TF 1.4-safe: Conv2D, DepthwiseConv2dNative with (1,1) or (2,2) strides,
BatchNorm (folded at export), Relu, Mean, MatMul. The per-bin input normalization
is a BatchNorm on the features that stays as a Mul/Add in the graph.

Measured at the default 49x10 MFCC front-end (MACs of Conv/Depthwise/Dense per 1 s
clip from the layers' output shapes; the front-end itself is not counted):

=======  ==========  ============  ===========
size     parameters  float32 size  MACs / clip
=======  ==========  ============  ===========
toy      0.8 k       4 KB          0.07 M
s        23.2 k      97 KB         2.66 M
m        136.6 k     559 KB        9.82 M     (default)
l        413.8 k     1.68 MB       28.3 M
=======  ==========  ============  ===========

Parameters: trainable ones; float32 size: all weights including the BatchNorm
statistics, before BN folding (folding makes the graph slightly smaller).
On the 98x40 log-mel or MFCC front-end: s 20.8 M MACs, m 75.8 M.

Latency: frozen and run in the TF 1.4 runtime (x86, one thread), s / m / l take
about 0.8 / 1.8 / 3.3 ms per clip with BatchNorm folded (1.6 / 3.0-3.6 / 6.6 ms unfolded).

On a Raspberry Pi 3 the paper's front-end is the expensive part: its 40 ms windows need a 1,024-point
FFT, so 49 frames cost the Pi 3 estimator as much as the 98 x 40 front-ends (15.5 ms). The
``mfcc10-w16-hop20`` preset computes the same 49-50 x 10 input from 16 ms windows (FFT 256) in 4.0 ms,
which puts ``s`` at 9.9 ms: within a 10 ms budget, but by less than the estimator's +-20%; ``s`` has no
faster variant here (its network, 5.9 ms, is mostly Conv2D 2.3, BiasAdd 1.5 and depthwise 1.2 ms).
Estimated Pi 3 ms of the graph ``export --quantize-weights`` writes (BatchNorm folded, 8-bit weights,
front-end included, before calibration offsets); parameters and MACs as ``model_footprint`` reports
them; from ``python scripts/bench_frontends.py`` (docs/frontends.md, where the accuracy cost is still open):

=======  ==================  ==========  =======  =======  =========  =======
size     front-end           parameters  MACs     Pi 3 ms  front-end  bytes
=======  ==================  ==========  =======  =======  =========  =======
s        default (49 x 10)   24,372      2.66 M   21.4     15.5       53,131
s        mfcc10-w16-hop20    24,372      2.66 M   9.9      4.0        53,131
s        logmel20-w16-hop20  24,412      5.44 M   12.1     2.5        57,359
m        default (49 x 10)   139,716     9.82 M   23.1     15.5       178,208
m        mfcc10-w16-hop20    139,716     9.82 M   11.6     4.0        178,208
=======  ==================  ==========  =======  =======  =========  =======

Fast size: s at mfcc10-w16-hop20: 24,372 parameters, 2.66 M MACs, 9.9 ms estimated on a Pi 3, 53,131 bytes exported.

Default size: 139,716 parameters, 9.8 M MACs.

These are the figures :func:`distill.compliance.footprint.model_footprint` reports:
``count_params()`` (BatchNorm statistics included) and the MACs of the frozen
inference graph, front-end included.
``tests/architectures/test_contract.py`` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.core.registry import STUDENTS
from distill.layers.blocks import Seeds, classifier_head, conv_bn_relu, normalized_features, resolve_size, waveform_input
from distill.layers.frontend import FrontendConfig

DEFAULT_FRONTEND = FrontendConfig(kind="mfcc", window_ms=40.0, stride_ms=20.0, num_mfcc=10)


@dataclass(frozen=True)
class DSCNNSize:
    first_filters: int
    first_strides: tuple[int, int]  # (time, frequency) of the 10x4 convolution
    filters: tuple[int, ...]  # one per depthwise-separable layer
    strides: tuple[int, ...]  # one per depthwise-separable layer: 1 or 2 in both axes (TF 1.4 needs equal strides)
    first_kernel: tuple[int, int] = (10, 4)
    dropout: float = 0.0


SIZES: dict[str, DSCNNSize] = {
    "toy": DSCNNSize(first_filters=8, first_strides=(2, 2), filters=(8, 8), strides=(1, 1)),
    "s": DSCNNSize(first_filters=64, first_strides=(2, 2), filters=(64,) * 4, strides=(1, 1, 1, 1)),
    "m": DSCNNSize(first_filters=172, first_strides=(2, 1), filters=(172,) * 4, strides=(2, 1, 1, 1)),
    "l": DSCNNSize(first_filters=276, first_strides=(2, 1), filters=(276,) * 5, strides=(2, 1, 1, 1, 1)),
}
SIZES["default"] = SIZES["m"]


@STUDENTS.register("dscnn")
def build_dscnn(*, size: str = "default", num_classes: int = 12, frontend: FrontendConfig | None = None, seed: int = 0, feature_augment=None):
    """DS-CNN (Hello Edge); ``size`` in toy/s/m/l (default = m), front-end default 49x10 MFCC; ``feature_augment``: optional training-only layer on the normalized features."""
    import keras

    cfg = resolve_size(SIZES, size, "dscnn")
    seeds = Seeds(seed)
    waveform = waveform_input()
    x, fcfg = normalized_features(waveform, frontend, default=DEFAULT_FRONTEND, feature_augment=feature_augment)
    x = keras.layers.Reshape((*fcfg.output_shape, 1), name="add_channel")(x)
    x = conv_bn_relu(x, cfg.first_filters, cfg.first_kernel, strides=cfg.first_strides, seeds=seeds, name="conv1")
    for i, (filters, stride) in enumerate(zip(cfg.filters, cfg.strides), start=1):
        x = conv_bn_relu(x, None, 3, strides=stride, depthwise=True, seeds=seeds, name=f"ds{i}")
        x = conv_bn_relu(x, filters, 1, seeds=seeds, name=f"ds{i}_pw")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = classifier_head(x, num_classes, seeds=seeds, dropout=cfg.dropout)
    return keras.Model(waveform, logits, name=f"dscnn_{size}")
