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

Default size: 139,716 parameters, 9.8 M MACs.

These are the figures :func:`distill.compliance.footprint.model_footprint` reports:
``count_params()`` (BatchNorm statistics included) and the MACs of the frozen
inference graph, front-end included.
``tests/architectures/test_contract.py`` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.core.registry import STUDENTS
from distill.layers.blocks import Seeds, apply_hook, classifier_head, conv_bn_relu, features, input_normalization, resolve_size, waveform_input
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
    x, fcfg = features(waveform, frontend, default=DEFAULT_FRONTEND)
    x = input_normalization(x, fcfg)
    x = apply_hook(x, feature_augment, name="feature_augment")
    x = keras.layers.Reshape((*fcfg.output_shape, 1), name="add_channel")(x)
    x = conv_bn_relu(x, cfg.first_filters, cfg.first_kernel, strides=cfg.first_strides, seeds=seeds, name="conv1")
    for i, (filters, stride) in enumerate(zip(cfg.filters, cfg.strides), start=1):
        x = conv_bn_relu(x, None, 3, strides=stride, depthwise=True, seeds=seeds, name=f"ds{i}")
        x = conv_bn_relu(x, filters, 1, seeds=seeds, name=f"ds{i}_pw")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = classifier_head(x, num_classes, seeds=seeds, dropout=cfg.dropout)
    return keras.Model(waveform, logits, name=f"dscnn_{size}")
