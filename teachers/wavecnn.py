"""``wavecnn`` teacher: a very deep 1-D CNN on the raw waveform (no spectral front-end).

Source: W. Dai, C. Dai, S. Qu, J. Li and S. Das, "Very Deep Convolutional Neural
Networks for Raw Waveforms", ICASSP 2017 (M3/M5/M11/M18: a large-stride first
convolution as a learned filterbank, then stacks of small conv-BN-ReLU layers with
max-pooling, global average pooling, no fully connected layers before the
classifier). Raw-waveform CNNs of this family were half of the winning Kaggle
ensemble, and they are the most different of our teachers from the log-mel ones.

Layout (default = M11's 2-2-3-2 layers of 64-128-256-512 channels): waveform
(B, 16000) -> (B, 16000, 1) -> stem Conv1D (kernel 80 = 5 ms, stride 8) -BN-ReLU ->
max-pool 4 -> [feature_augment on the learned (B, 500, channels) "filterbank"
output] -> stages of 3-tap conv-BN-ReLU layers, each stage but the last followed
by max-pool 4 (500 -> 125 -> 31 -> 7 steps) -> global average pooling -> dropout ->
dense logits. No input normalization: the waveform is already in [-1, 1] and the
stem's BatchNorm sets the scale.

Measured (MACs of Conv/Dense layers per 1 s clip, from the layers' output shapes):

=========  ==========  ===========
size       parameters  MACs / clip
=========  ==========  ===========
toy        0.6 k       0.35 M
small      139 k       8.9 M
default    1.79 M      55.2 M
large      5.02 M      187.7 M
=========  ==========  ===========

Parameters are trainable ones (BatchNorm moving statistics add <1%). The
stem is strided 8 (Dai et al. use 4): at stride 4 the 4,000-step stem and the
1,000-step first stage made M11 train at ~50 clips/s on two CPU cores instead of
~250-300.

Training speed (batch 64, 2 threads, shared 2-core machine, several runs under
other users' load): default 190-295 clips/s, small 475-1,130 clips/s.

Default size: 1,789,708 parameters, 55.2 M MACs.

These are the figures :func:`distill.compliance.footprint.model_footprint` reports:
``count_params()`` (BatchNorm statistics included) and the MACs of the frozen
inference graph (the waveform goes straight into the stem: no front-end).
``tests/architectures/test_contract.py`` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.core.labels import CLIP_SAMPLES
from distill.core.registry import TEACHERS
from distill.layers.blocks import Seeds, apply_hook, classifier_head, conv_bn_relu, resolve_size, waveform_input
from distill.layers.frontend import FrontendConfig

DEFAULT_FRONTEND = None  # raw waveform: no spectral front-end


@dataclass(frozen=True)
class WaveCNNSize:
    stem_width: int
    stem_kernel: int
    stem_stride: int
    widths: tuple[int, ...]  # one per stage
    depths: tuple[int, ...]  # 3-tap convs per stage
    pool: int = 4  # max-pool after the stem and after every stage but the last
    dropout: float = 0.2


SIZES: dict[str, WaveCNNSize] = {
    "toy": WaveCNNSize(stem_width=4, stem_kernel=40, stem_stride=8, widths=(8, 8), depths=(1, 1), pool=8, dropout=0.0),
    "small": WaveCNNSize(stem_width=32, stem_kernel=80, stem_stride=8, widths=(32, 64, 128, 256), depths=(1, 1, 1, 1)),
    "default": WaveCNNSize(stem_width=64, stem_kernel=80, stem_stride=8, widths=(64, 128, 256, 512), depths=(2, 2, 3, 2)),
    "large": WaveCNNSize(stem_width=96, stem_kernel=80, stem_stride=8, widths=(96, 192, 384, 512), depths=(4, 4, 4, 4), dropout=0.3),
}


@TEACHERS.register("wavecnn")
def build_wavecnn(
    *,
    size: str = "default",
    num_classes: int = 12,
    frontend: FrontendConfig | None = None,
    seed: int = 0,
    feature_augment=None,
):
    """Raw-waveform 1-D CNN (M11 at default). ``frontend`` is accepted for a uniform
    builder signature and ignored: this model learns its own filterbank.
    ``feature_augment`` (optional, training-only Keras layer such as SpecAugment) is
    applied to the stem's (B, frames, channels) output, a learned time-frequency map."""
    import keras

    cfg = resolve_size(SIZES, size, "wavecnn")
    seeds = Seeds(seed)
    waveform = waveform_input()
    x = keras.layers.Reshape((CLIP_SAMPLES, 1), name="add_channel")(waveform)
    x = conv_bn_relu(x, cfg.stem_width, cfg.stem_kernel, strides=cfg.stem_stride, seeds=seeds, name="stem", rank=1)
    x = keras.layers.MaxPooling1D(cfg.pool, name="stem_pool")(x)
    x = apply_hook(x, feature_augment, name="feature_augment")
    for stage, (width, depth) in enumerate(zip(cfg.widths, cfg.depths), start=1):
        for layer in range(depth):
            x = conv_bn_relu(x, width, 3, seeds=seeds, name=f"stage{stage}_conv{layer + 1}", rank=1)
        if stage < len(cfg.widths):
            x = keras.layers.MaxPooling1D(cfg.pool, name=f"stage{stage}_pool")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    logits = classifier_head(x, num_classes, seeds=seeds, dropout=cfg.dropout)
    return keras.Model(waveform, logits, name=f"wavecnn_{size}")
