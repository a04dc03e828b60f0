"""The feature front-end shared by training and export.

Students train with exactly the ops that the exported graph contains, all of
which TensorFlow 1.4 has: ``AudioSpectrogram`` (a periodic-Hann STFT, FFT size
the next power of two of the window), then either ``Mfcc`` (the tutorial's
features) or a fixed mel matrix applied with ``MatMul`` followed by ``Log``.
A batch runs through ``AudioSpectrogram`` as its channel axis, so one op call
serves a whole batch in training and a single clip in the exported graph.

``numpy_features`` is an independent NumPy implementation used by the tests to
pin the TensorFlow path down numerically.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from distill.core.labels import CLIP_SAMPLES, SAMPLE_RATE

FRONTEND_KINDS = ("logmel", "mfcc")


@dataclass(frozen=True)
class FrontendConfig:
    kind: str = "logmel"
    window_ms: float = 30.0
    stride_ms: float = 10.0
    num_mel_bins: int = 40
    num_mfcc: int = 40  # used by kind="mfcc"; the Mfcc op's filterbank keeps num_mel_bins channels
    lower_hz: float = 20.0
    upper_hz: float = 7600.0
    log_offset: float = 1e-6

    def __post_init__(self) -> None:
        if self.kind not in FRONTEND_KINDS:
            raise ValueError(f"frontend kind must be one of {FRONTEND_KINDS}, got {self.kind!r}")
        if not 0 < self.lower_hz < self.upper_hz <= SAMPLE_RATE / 2:
            raise ValueError(f"need 0 < lower_hz < upper_hz <= {SAMPLE_RATE // 2}, got {self.lower_hz}, {self.upper_hz}")
        if self.window_samples > CLIP_SAMPLES or self.stride_samples <= 0:
            raise ValueError("window must fit in one clip and stride must be positive")

    @property
    def window_samples(self) -> int:
        return int(round(SAMPLE_RATE * self.window_ms / 1000))

    @property
    def stride_samples(self) -> int:
        return int(round(SAMPLE_RATE * self.stride_ms / 1000))

    @property
    def fft_length(self) -> int:
        return 1 << (self.window_samples - 1).bit_length()

    @property
    def num_frames(self) -> int:
        return 1 + (CLIP_SAMPLES - self.window_samples) // self.stride_samples

    @property
    def num_features(self) -> int:
        return self.num_mfcc if self.kind == "mfcc" else self.num_mel_bins

    @property
    def output_shape(self) -> tuple[int, int]:
        return (self.num_frames, self.num_features)

    def replace(self, **changes) -> "FrontendConfig":
        return dataclasses.replace(self, **changes)


# Named front-ends a recipe's ``students.N.frontend`` (and ``student fit --frontend``) may ask for, each the
# whole FrontendConfig: the names are what run folders, recipes and the ladder's table record.
# Names after the first two read ``<kind><features>[-w<window ms>]-hop<stride ms>`` (window 30 ms unless named).
#
# The cheaper ones exist because on a Pi 3 the 98 x 40 front-end costs more than a small network behind it
# (the estimator's AudioSpectrogram ~9 ms + Mfcc ~6.4 ms, against ~3 ms for TC-ResNet-8's whole network). Both ops cost
# in proportion to frames x FFT bins, and AudioSpectrogram's FFT is the next power of two of the window, so
# halving the frame rate (20 ms hop) or the window (16 ms = 256 samples -> 129 bins instead of 257) each halves
# them; a log-mel (one MatMul and a Log) costs less than the Mfcc op on the same spectrogram. With a 16 ms window
# and 40 bands the lowest bands get one FFT bin each, so those presets use at most 32.
# docs/frontends.md has the estimated Pi 3 ms of each, front-end and network; their accuracy cost is not measured.
FRONTEND_PRESETS: dict[str, FrontendConfig] = {
    "logmel": FrontendConfig(kind="logmel"),
    "mfcc": FrontendConfig(kind="mfcc"),
    # 40 MFCCs (TC-ResNet's features) at half the frame rate: 49 x 40
    "mfcc40-hop20": FrontendConfig(kind="mfcc", stride_ms=20.0),
    # 10 MFCCs as DS-CNN's paper, from 30 ms instead of 40 ms windows (FFT 512, not 1024): 49 x 10
    "mfcc10-hop20": FrontendConfig(kind="mfcc", stride_ms=20.0, num_mfcc=10),
    # 10 MFCCs of 32 mel bands from 16 ms windows (FFT 256), 4 ms of every 20 unseen: 50 x 10
    "mfcc10-w16-hop20": FrontendConfig(kind="mfcc", window_ms=16.0, stride_ms=20.0, num_mel_bins=32, num_mfcc=10),
    # the default log-mel at half the frame rate: 49 x 40
    "logmel40-hop20": FrontendConfig(kind="logmel", stride_ms=20.0),
    # 32 log-mel bins from 16 ms windows (FFT 256) at the full 10 ms frame rate: 99 x 32
    "logmel32-w16-hop10": FrontendConfig(kind="logmel", window_ms=16.0, stride_ms=10.0, num_mel_bins=32),
    # 32 log-mel bins from 16 ms windows every 20 ms: 50 x 32
    "logmel32-w16-hop20": FrontendConfig(kind="logmel", window_ms=16.0, stride_ms=20.0, num_mel_bins=32),
    # 20 log-mel bins from 16 ms windows every 20 ms: 50 x 20, the cheapest here
    "logmel20-w16-hop20": FrontendConfig(kind="logmel", window_ms=16.0, stride_ms=20.0, num_mel_bins=20),
}


def frontend_preset(name: str) -> FrontendConfig:
    """The FrontendConfig a preset name stands for (``FRONTEND_PRESETS``)."""
    if name not in FRONTEND_PRESETS:
        raise ValueError(f"unknown front-end {name!r}; choose one of {', '.join(FRONTEND_PRESETS)}")
    return FRONTEND_PRESETS[name]


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(config: FrontendConfig) -> np.ndarray:
    """Triangular HTK-mel filters, shape (fft_length // 2 + 1, num_mel_bins), float32.

    Same construction as ``tf.signal.linear_to_mel_weight_matrix`` (DC bin
    zeroed, triangles in mel space), computed in NumPy so the matrix is a
    plain constant in the exported graph.
    """
    num_bins = config.fft_length // 2 + 1
    bin_hz = np.linspace(0.0, SAMPLE_RATE / 2, num_bins)[1:]
    spectrogram_mel = _hz_to_mel(bin_hz)[:, None]
    edges = np.linspace(_hz_to_mel(config.lower_hz), _hz_to_mel(config.upper_hz), config.num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (spectrogram_mel - lower) / (center - lower)
    falling = (upper - spectrogram_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.pad(weights, [[1, 0], [0, 0]]).astype(np.float32)


def frontend_tf(waveforms, config: FrontendConfig):
    """Features of a float32 batch ``(B, 16000)`` -> ``(B, frames, features)`` with TF 1.4-era ops only."""
    import tensorflow as tf

    waveforms = tf.convert_to_tensor(waveforms, dtype=tf.float32)
    # AudioSpectrogram wants [samples, channels]: the batch rides on the channel axis. A single
    # clip (the exported graph) needs no Transpose node, just a free Reshape.
    samples = tf.reshape(waveforms, [-1, 1]) if waveforms.shape[0] == 1 else tf.transpose(waveforms)
    spectrogram = tf.raw_ops.AudioSpectrogram(
        input=samples,
        window_size=config.window_samples,
        stride=config.stride_samples,
        magnitude_squared=True,
    )
    if config.kind == "mfcc":
        return tf.raw_ops.Mfcc(
            spectrogram=spectrogram,
            sample_rate=tf.constant(SAMPLE_RATE, tf.int32),
            upper_frequency_limit=config.upper_hz,
            lower_frequency_limit=config.lower_hz,
            filterbank_channel_count=config.num_mel_bins,
            dct_coefficient_count=config.num_mfcc,
        )
    num_bins = config.fft_length // 2 + 1
    flat = tf.reshape(spectrogram, [-1, num_bins])
    mel = tf.matmul(flat, tf.constant(mel_matrix(config)))
    mel = tf.reshape(mel, [-1, config.num_frames, config.num_mel_bins])
    return tf.math.log(mel + config.log_offset)


def numpy_spectrogram(waveforms: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Reference power spectrogram (B, frames, bins) matching ``AudioSpectrogram(magnitude_squared=True)``."""
    waveforms = np.asarray(waveforms, dtype=np.float64)
    window_length, stride = config.window_samples, config.stride_samples
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(window_length) / window_length)  # periodic Hann
    starts = np.arange(config.num_frames) * stride
    frames = waveforms[:, starts[:, None] + np.arange(window_length)[None, :]]
    spectrum = np.fft.rfft(frames * window, n=config.fft_length, axis=-1)
    return np.abs(spectrum) ** 2


def numpy_features(waveforms: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Reference log-mel features in NumPy (the MFCC path is pinned by TF's own op tests)."""
    if config.kind != "logmel":
        raise ValueError("numpy_features implements the logmel front-end only")
    power = numpy_spectrogram(waveforms, config)
    return np.log(power @ mel_matrix(config).astype(np.float64) + config.log_offset).astype(np.float32)


def _keras_frontend_layer():
    import keras

    @keras.saving.register_keras_serializable(package="distill")
    class Frontend(keras.layers.Layer):
        """Waveform (B, 16000) -> features (B, frames, features); no weights, identical at train and export time.

        Always computes in float32, whatever the global dtype policy: ``AudioSpectrogram`` and ``Mfcc`` take
        float32 only, and the exported graph computes the features in float32, so a run trained under a
        mixed policy learns from the features it ships with. The next layer casts them to its own compute
        dtype.
        """

        def __init__(self, config: FrontendConfig | dict | None = None, **kwargs):
            kwargs["trainable"] = False
            kwargs["dtype"] = "float32"
            super().__init__(**kwargs)
            if isinstance(config, dict):
                config = FrontendConfig(**config)
            self.frontend = config or FrontendConfig()

        def call(self, waveforms):
            return frontend_tf(waveforms, self.frontend)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], *self.frontend.output_shape)

        def get_config(self):
            return {**super().get_config(), "config": dataclasses.asdict(self.frontend)}

    return Frontend


def __getattr__(name: str):
    # Keras is imported lazily so that data-only commands start fast.
    if name == "Frontend":
        layer = _keras_frontend_layer()
        globals()["Frontend"] = layer
        return layer
    raise AttributeError(name)
