"""``resnet`` teacher: a deep residual 2-D CNN on log-mel features.

Source: R. Tang and J. Lin, "Deep Residual Learning for Small-Footprint Keyword
Spotting", ICASSP 2018 (res8/res15/res26: 3x3 conv-BN-ReLU residual blocks on
log-mel/MFCC, global average pooling, softmax), widened and strided like the
wide residual networks of S. Zagoruyko and N. Komodakis, "Wide Residual
Networks", BMVC 2016, so that it is a strong, unconstrained teacher that still
trains fast on a CPU: where Tang & Lin keep 45 channels at full resolution
(res15: 894 M MACs), this net halves time and frequency at each of three stages
and grows the width instead.

Layout: features (B, 98, 40) -> per-bin BatchNorm -> [feature_augment] ->
3x3 conv-BN-ReLU stem (default: 32 channels, stride (2, 1) in (time, frequency),
49 x 40) -> stages of basic blocks (3x3 conv-BN-ReLU, 3x3 conv-BN, identity or
1x1-conv-BN shortcut, add, ReLU), the first block of each stage strided (2, 2)
(default: 64, 128, 256 channels on 25 x 20, 13 x 10, 7 x 5) -> global average
pooling -> dropout -> dense logits.

Measured at the default log-mel 98x40 front-end (MACs of Conv/Dense layers per 1 s
clip, counted from the layers' output shapes; the front-end adds ~1 M for the
mel matrix and the FFT):

=========  ==========  ===========
size       parameters  MACs / clip
=========  ==========  ===========
toy        1.5 k       0.17 M
small      173 k       7.2 M
default    1.21 M      91.2 M
large      2.76 M      207.7 M
=========  ==========  ===========

Parameters are trainable ones (BatchNorm moving statistics add <1%).

Training speed (Keras fit step, batch 64, 2 threads, on this project's shared 2-core
machine, best of 5 x 3 steps, several runs under other users' load): default
155-240 clips/s, small 640-840 clips/s.

Default size: 1,213,260 parameters, 92.2 M MACs.

These are the figures :func:`distill.compliance.footprint.model_footprint` reports:
``count_params()`` (BatchNorm statistics included) and the MACs of the frozen
inference graph, front-end included.
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
class ResNetSize:
    stem_width: int
    stem_strides: tuple[int, int]
    widths: tuple[int, ...]  # one per stage; each stage after the stem halves time and frequency
    blocks: tuple[int, ...]  # basic blocks per stage
    dropout: float = 0.2


SIZES: dict[str, ResNetSize] = {
    "toy": ResNetSize(stem_width=4, stem_strides=(2, 2), widths=(4, 8), blocks=(1, 1), dropout=0.0),
    "small": ResNetSize(stem_width=16, stem_strides=(2, 2), widths=(24, 48, 96), blocks=(1, 1, 1)),
    "default": ResNetSize(stem_width=32, stem_strides=(2, 1), widths=(64, 128, 256), blocks=(1, 1, 1)),
    "large": ResNetSize(stem_width=32, stem_strides=(2, 1), widths=(64, 128, 256), blocks=(2, 2, 2), dropout=0.3),
}


def _basic_block(x, width: int, strides: int, *, seeds: Seeds, name: str):
    import keras

    shortcut = x
    y = conv_bn_relu(x, width, 3, strides=strides, seeds=seeds, name=f"{name}_a")
    y = conv_bn_relu(y, width, 3, seeds=seeds, name=f"{name}_b", relu=False)
    if strides != 1 or x.shape[-1] != width:
        shortcut = conv_bn_relu(x, width, 1, strides=strides, seeds=seeds, name=f"{name}_proj", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


@TEACHERS.register("resnet")
def build_resnet(
    *,
    size: str = "default",
    num_classes: int = 12,
    frontend: FrontendConfig | None = None,
    seed: int = 0,
    feature_augment=None,
):
    """Residual 2-D CNN on log-mel (default 98x40); ``feature_augment`` is an optional training-only
    Keras layer (e.g. SpecAugment) applied to the normalized (B, frames, bins) features."""
    import keras

    cfg = resolve_size(SIZES, size, "resnet")
    seeds = Seeds(seed)
    waveform = waveform_input()
    x, fcfg = normalized_features(waveform, frontend, default=DEFAULT_FRONTEND, feature_augment=feature_augment)
    x = keras.layers.Reshape((*fcfg.output_shape, 1), name="add_channel")(x)
    x = conv_bn_relu(x, cfg.stem_width, 3, strides=cfg.stem_strides, seeds=seeds, name="stem")
    for stage, (width, blocks) in enumerate(zip(cfg.widths, cfg.blocks), start=1):
        for block in range(blocks):
            x = _basic_block(x, width, 2 if block == 0 else 1, seeds=seeds, name=f"stage{stage}_block{block + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = classifier_head(x, num_classes, seeds=seeds, dropout=cfg.dropout)
    return keras.Model(waveform, logits, name=f"resnet_{size}")
