"""``tcresnet`` student: temporal-convolution ResNet (TC-ResNet8 / TC-ResNet14).

Source: S. Choi, S. Seo, B. Shin, H. Byun, M. Kersner, B. Kim, D. Kim and S. Ha,
"Temporal Convolution for Real-time Keyword Spotting on Mobile Devices",
Interspeech 2019. The MFCC coefficients are the *channels* of a 1-D signal over
time, so every convolution is a 1-D temporal one: a 3-tap conv, then residual
blocks of two 9-tap convs (the first strided by 2 in blocks that change width,
with a 1x1-conv-BN-ReLU shortcut), global average pooling, a dense layer.
``-w1.5`` sizes are the paper's width multiplier k = 1.5.

Layout: features (B, T, 40) -> per-bin BatchNorm -> (B, T, 1, 40) -> Conv2D with
(k, 1) kernels and (2, 1) strides (plain Conv2D accepts unequal strides in TF 1.4;
there are no depthwise convolutions here). Front-end: 40 MFCCs from 30 ms windows
every 10 ms (98 x 40, ``DEFAULT_FRONTEND``) as in the paper, unless ``frontend`` is given.

Every op is TF 1.4-safe: Conv2D, BatchNorm (folded at export), Relu, Add, Mean,
MatMul; the input normalization stays as a per-coefficient Mul/Add.

Measured at the default 98x40 MFCC front-end (MACs of Conv/Dense per 1 s clip from
the layers' output shapes; the front-end itself is not counted):

=======  ==========  ============  ===========
size     parameters  float32 size  MACs / clip
=======  ==========  ============  ===========
toy      2.0 k       9 KB          0.09 M
8        65.3 k      264 KB        1.52 M
8-w0.5   17.2 k      70 KB         0.43 M
14       135.9 k     548 KB        3.03 M     (default)
8-w1.5   144.4 k     582 KB        3.28 M
14-w1.5  303.1 k     1.22 MB       6.68 M
14-w2    536.4 k     2.15 MB       11.74 M
=======  ==========  ============  ===========

Parameters: trainable ones; float32 size: all weights including the BatchNorm
statistics, before BN folding (folding makes the graph slightly smaller).
The paper reports 66 k / 137 k / 145 k / 305 k parameters and 3.0 / 6.3 / 6.6 /
13.4 M FLOPs (2 per MAC, 101 frames) for 8 / 14 / 8-1.5 / 14-1.5.

Latency: frozen and run in the TF 1.4 runtime (x86, one thread), 14 / 14-w1.5 take
about 1.2 / 1.6 ms per clip with BatchNorm folded (1.3 / 1.8 ms unfolded).

On a Raspberry Pi 3 the network is the cheap part: at the default front-end the estimator gives
TC-ResNet-8 18.4 ms, of which AudioSpectrogram and Mfcc take 15.5 (both serial, both in proportion to
frames x FFT bins). The fast small rungs therefore pair a small width with a cheap front-end preset
(``distill.layers.frontend.FRONTEND_PRESETS``: 16 ms windows, FFT 256, every 20 ms). ``8-w0.5`` (not in
the paper: half the width, a quarter of the parameters) is the fast small size, the cheapest network
here; ``8`` at ``mfcc10-w16-hop20`` is the fast size near 65 k parameters. Estimated Pi 3 ms of the graph
``export --quantize-weights`` writes (BatchNorm folded, 8-bit weights, front-end included, before
calibration offsets); parameters and MACs as ``model_footprint`` reports them (the mel MatMul counted);
from ``python scripts/bench_frontends.py`` (docs/frontends.md, where the accuracy cost is still open):

=======  ==================  ==========  =======  =======  =========  =======
size     front-end           parameters  MACs     Pi 3 ms  front-end  bytes
=======  ==================  ==========  =======  =======  =========  =======
8        default (98 x 40)   65,996      1.52 M   18.4     15.5       95,448
8        mfcc10-w16-hop20    64,436      0.72 M   5.4      4.0        93,919
8        logmel32-w16-hop20  65,580      0.98 M   4.3      2.6        100,881
8-w0.5   default (98 x 40)   17,580      0.43 M   17.1     15.5       45,548
8-w0.5   logmel32-w16-hop20  17,356      0.42 M   3.6      2.6        50,740
14       default (98 x 40)   137,100     3.03 M   20.3     15.5       181,847
14       mfcc10-w16-hop20    135,540     1.51 M   6.5      4.0        180,304
14-w1.5  logmel32-w16-hop20  304,172     3.67 M   7.6      2.6        361,851
14-w2    default (98 x 40)   538,604     11.74 M  25.2     15.5       590,173
14-w2    logmel32-w16-hop20  537,804     6.31 M   10.7     2.6        595,337
=======  ==================  ==========  =======  =======  =========  =======

Fast size: 8-w0.5 at logmel32-w16-hop20: 17,356 parameters, 0.42 M MACs, 3.6 ms estimated on a Pi 3, 50,740 bytes exported.
Fast size: 8 at mfcc10-w16-hop20: 64,436 parameters, 0.72 M MACs, 5.4 ms estimated on a Pi 3, 93,919 bytes exported.

Default size: 137,100 parameters, 3.0 M MACs.

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

DEFAULT_FRONTEND = FrontendConfig(kind="mfcc", num_mfcc=40)


@dataclass(frozen=True)
class TCResNetSize:
    first_width: int
    widths: tuple[int, ...]  # one per residual block
    strides: tuple[int, ...]  # one per residual block (time stride of its first conv)
    kernel: int = 9
    first_kernel: int = 3
    dropout: float = 0.0


def _scaled(size: TCResNetSize, k: float) -> TCResNetSize:
    return TCResNetSize(
        first_width=int(size.first_width * k),
        widths=tuple(int(w * k) for w in size.widths),
        strides=size.strides,
        kernel=size.kernel,
        first_kernel=size.first_kernel,
        dropout=size.dropout,
    )


_TC8 = TCResNetSize(first_width=16, widths=(24, 32, 48), strides=(2, 2, 2))
_TC14 = TCResNetSize(first_width=16, widths=(24, 24, 32, 32, 48, 48), strides=(2, 1, 2, 1, 2, 1))

SIZES: dict[str, TCResNetSize] = {
    "toy": TCResNetSize(first_width=4, widths=(8, 8), strides=(2, 2), kernel=5),
    "8": _TC8,
    # not in the paper: half the width, ~17 k parameters, the fast small size (docstring)
    "8-w0.5": _scaled(_TC8, 0.5),
    "14": _TC14,
    "8-w1.5": _scaled(_TC8, 1.5),
    "14-w1.5": _scaled(_TC14, 1.5),
    # not in the paper: twice the width, 0.54 MB at 8 bits and an estimated ~29 ms on a Pi 3 before BN folding
    "14-w2": _scaled(_TC14, 2.0),
}
SIZES["default"] = SIZES["14"]


def _block(x, width: int, stride: int, kernel: int, *, seeds: Seeds, name: str):
    import keras

    shortcut = x
    y = conv_bn_relu(x, width, (kernel, 1), strides=(stride, 1), seeds=seeds, name=f"{name}_a")
    y = conv_bn_relu(y, width, (kernel, 1), seeds=seeds, name=f"{name}_b", relu=False)
    if stride != 1 or x.shape[-1] != width:
        shortcut = conv_bn_relu(x, width, 1, strides=(stride, 1), seeds=seeds, name=f"{name}_proj")
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


@STUDENTS.register("tcresnet")
def build_tcresnet(*, size: str = "default", num_classes: int = 12, frontend: FrontendConfig | None = None, seed: int = 0, feature_augment=None):
    """TC-ResNet; ``size`` in toy/8/8-w0.5/14/8-w1.5/14-w1.5/14-w2 (default = 14), front-end default 98x40 MFCC; ``feature_augment``: optional training-only layer on the normalized features."""
    return tcresnet_model(resolve_size(SIZES, size, "tcresnet"), name=f"tcresnet_{size.replace('.', '_')}", num_classes=num_classes,
                          frontend=frontend, seed=seed, feature_augment=feature_augment)


def tcresnet_model(cfg: TCResNetSize, *, name: str, num_classes: int = 12, frontend: FrontendConfig | None = None, seed: int = 0, feature_augment=None):
    """The TC-ResNet of ``cfg`` as a Keras model (shared with the ``tcwide`` teacher)."""
    import keras

    seeds = Seeds(seed)
    waveform = waveform_input()
    x, fcfg = normalized_features(waveform, frontend, default=DEFAULT_FRONTEND, feature_augment=feature_augment)
    frames, bins = fcfg.output_shape
    x = keras.layers.Reshape((frames, 1, bins), name="bins_as_channels")(x)
    x = conv_bn_relu(x, cfg.first_width, (cfg.first_kernel, 1), seeds=seeds, name="conv1")
    for i, (width, stride) in enumerate(zip(cfg.widths, cfg.strides), start=1):
        x = _block(x, width, stride, cfg.kernel, seeds=seeds, name=f"block{i}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = classifier_head(x, num_classes, seeds=seeds, dropout=cfg.dropout)
    return keras.Model(waveform, logits, name=name)
