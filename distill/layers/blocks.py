"""Building blocks shared by the architectures in ``teachers/`` and ``students/``.

Every builder in those packages has the same shape::

    @TEACHERS.register("name")      # or STUDENTS
    def build_name(*, size="default", num_classes=12, frontend=None, seed=0) -> keras.Model

and uses the helpers here for the parts they all share: the waveform input, the
feature front-end plus input normalization, size presets, seeded initializers
and explicitly named conv/BN/ReLU stacks.

Conventions (the exporter and the trainer rely on them):

* the model input is ``keras.Input((16000,), name="waveform")`` (float32 in [-1, 1]);
  the output is logits ``(B, num_classes)``, no softmax;
* every layer has an explicit, deterministic name (``<block>_conv``, ``<block>_bn``,
  ``<block>_relu`` ...), so two builds of the same size have identical layer names
  and weight order, whatever else was built in the process before;
* every random initializer gets its own integer seed from :class:`Seeds`, so a
  build is a pure function of ``(size, num_classes, frontend, seed)``;
* convolutions followed by batch normalization have no bias (BN is folded into
  the convolution at export); BN uses ``momentum=0.9`` (PyTorch's 0.1) so that
  the moving statistics are usable after a short demo run.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, TypeVar

from distill.core.labels import CLIP_SAMPLES
from distill.layers.frontend import FrontendConfig

T = TypeVar("T")

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-3


def initial_feature_stats(config: FrontendConfig) -> tuple[list[float], list[float]]:
    """Rough per-bin mean and variance of the front-end's output on speech clips.

    Used only as the *initial* moving statistics of :func:`input_normalization`,
    so that a model evaluated after a handful of training steps is not wildly
    off; training replaces them. Measured on real Speech Commands clips: log-mel
    bins have mean ~-6 and variance ~24 (flat across bins); MFCC coefficient 0
    has mean ~-20 and variance ~1000, coefficient k >= 1 variance ~20 / k**1.3
    (21.7, 6.6, 3.4, 3.1, 1.8, ... 0.2) and mean ~0.
    """
    n = config.num_features
    if config.kind == "logmel":
        return [-6.0] * n, [24.0] * n
    mean = [-20.0] + [0.0] * (n - 1)
    var = [1000.0] + [20.0 / k**1.3 for k in range(1, n)]
    return mean, var


def resolve_size(sizes: Mapping[str, T], size: str, arch: str) -> T:
    """``sizes[size]``, or a ``ValueError`` that names the valid presets."""
    if size not in sizes:
        raise ValueError(f"{arch}: unknown size {size!r}; valid sizes: {', '.join(sizes)}")
    return sizes[size]


class Seeds:
    """A deterministic stream of integer seeds, one per random initializer or dropout layer."""

    def __init__(self, seed: int):
        self._base = int(seed)
        self._count = 0

    def __call__(self) -> int:
        self._count += 1
        return (self._base * 1_000_003 + self._count * 7_919) % (2**31 - 1)

    def he(self):
        import keras

        return keras.initializers.HeNormal(seed=self())

    def glorot(self):
        import keras

        return keras.initializers.GlorotUniform(seed=self())

    def orthogonal(self):
        import keras

        return keras.initializers.Orthogonal(seed=self())


def waveform_input():
    import keras

    return keras.Input((CLIP_SAMPLES,), name="waveform", dtype="float32")


def features(waveform, frontend: FrontendConfig | None, *, default: FrontendConfig | None = None):
    """The in-model front-end: waveform (B, 16000) -> features (B, frames, bins), and its config.

    ``frontend`` (a FrontendConfig, or its ``dataclasses.asdict`` form) wins over the
    architecture's ``default`` (None: the toolkit's 98x40 log-mel).
    """
    from distill.layers.frontend import Frontend

    config = frontend if frontend is not None else (default or FrontendConfig())
    if isinstance(config, Mapping):
        config = FrontendConfig(**config)
    if not isinstance(config, FrontendConfig):
        raise TypeError(f"frontend must be a FrontendConfig or None, got {type(config).__name__}")
    return Frontend(config, name="frontend")(waveform), config


# LiteRT export keeps the ops named after this layer in float (distill.export.tflite.float_prefix_nodes)
INPUT_NORM_NAME = "input_norm"


def input_normalization(x, config: FrontendConfig, *, name: str = INPUT_NORM_NAME):
    """Per-bin batch normalization of the features (log-mel values lie around -14..+5).

    Applied on the last axis of ``(B, frames, bins)``: one mean/scale per mel bin or
    MFCC coefficient. In an exported graph it is a per-bin ``Mul`` and ``Add`` (it
    cannot be folded into a SAME-padded convolution exactly, so it stays as is).
    """
    import keras

    mean, var = initial_feature_stats(config)
    return keras.layers.BatchNormalization(
        axis=-1,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        moving_mean_initializer=keras.initializers.Constant(mean),
        moving_variance_initializer=keras.initializers.Constant(var),
        name=name,
    )(x)


def apply_hook(x, hook, *, name: str):
    """Apply an optional training-time augmentation layer (e.g. ``distill.data.augment.SpecAugment``).

    The layer must be an identity when ``training`` is false; it is applied to
    normalized features, so a zero mask means "the mean value".
    """
    if hook is None:
        return x
    import keras

    if not isinstance(hook, keras.layers.Layer):
        raise TypeError(f"{name}: expected a keras Layer, got {type(hook).__name__}")
    return hook(x)


def normalized_features(waveform, frontend: FrontendConfig | None, *, default: FrontendConfig, feature_augment=None):
    """The stem every spectrogram net starts with: :func:`features`, :func:`input_normalization`,
    then the optional training-only ``feature_augment`` layer (:func:`apply_hook`). Returns the
    normalized features (B, frames, bins) and the front-end config they came from.
    """
    x, config = features(waveform, frontend, default=default)
    x = input_normalization(x, config)
    return apply_hook(x, feature_augment, name="feature_augment"), config


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv_bn_relu(
    x,
    filters: int | None,
    kernel_size: int | Sequence[int],
    *,
    seeds: Seeds,
    name: str,
    strides: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
    padding: str = "same",
    depthwise: bool = False,
    relu: bool = True,
    bn: bool = True,
    rank: int = 2,
) -> Any:
    """Conv (or depthwise conv) -> BatchNorm -> ReLU, all layers named ``{name}_conv|_dw|_bn|_relu``.

    ``rank=1`` gives a Conv1D (teachers only; students stay 2-D so that the exported
    graph is plain ``Conv2D``). ``filters`` is ignored for depthwise convolutions.
    """
    import keras

    if depthwise:
        if rank != 2:
            raise ValueError("depthwise convolutions are 2-D here")
        strides2 = _pair(strides)
        layer = keras.layers.DepthwiseConv2D(
            _pair(kernel_size),
            strides=strides2,
            padding=padding,
            dilation_rate=_pair(dilation),
            use_bias=not bn,
            depthwise_initializer=seeds.he(),
            name=f"{name}_dw",
        )
    elif rank == 1:
        layer = keras.layers.Conv1D(
            filters,
            int(kernel_size),
            strides=int(strides),
            padding=padding,
            dilation_rate=int(dilation),
            use_bias=not bn,
            kernel_initializer=seeds.he(),
            name=f"{name}_conv",
        )
    else:
        layer = keras.layers.Conv2D(
            filters,
            _pair(kernel_size),
            strides=_pair(strides),
            padding=padding,
            dilation_rate=_pair(dilation),
            use_bias=not bn,
            kernel_initializer=seeds.he(),
            name=f"{name}_conv",
        )
    x = layer(x)
    if bn:
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def classifier_head(x, num_classes: int, *, seeds: Seeds, dropout: float = 0.0, name: str = "logits"):
    """Optional dropout then a Dense layer to ``num_classes`` logits (no softmax)."""
    import keras

    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if dropout > 0:
        x = keras.layers.Dropout(dropout, seed=seeds(), name="head_dropout")(x)
    return keras.layers.Dense(num_classes, kernel_initializer=seeds.glorot(), name=name)(x)

