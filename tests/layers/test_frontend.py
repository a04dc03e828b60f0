"""The shared front-end: shapes, values against NumPy, and TF 1.4-era ops only."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from distill.layers.frontend import Frontend, FrontendConfig, frontend_tf, mel_matrix, numpy_features, numpy_spectrogram


def _clips(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000.0
    tones = np.sin(2 * np.pi * rng.uniform(200, 3000, size=(batch, 1)) * t)
    return (0.3 * tones + 0.05 * rng.standard_normal((batch, 16000))).astype(np.float32)


def test_default_shapes():
    cfg = FrontendConfig()
    assert (cfg.window_samples, cfg.stride_samples, cfg.fft_length, cfg.num_frames) == (480, 160, 512, 98)
    assert mel_matrix(cfg).shape == (257, 40)
    assert frontend_tf(_clips(), cfg).shape == (3, 98, 40)
    assert frontend_tf(_clips(), cfg.replace(kind="mfcc", num_mfcc=13)).shape == (3, 98, 13)


def test_spectrogram_matches_numpy():
    cfg = FrontendConfig()
    x = _clips()
    ours = tf.raw_ops.AudioSpectrogram(input=tf.transpose(x), window_size=480, stride=160, magnitude_squared=True).numpy()
    ref = numpy_spectrogram(x, cfg)
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-3 * ref.max())


@pytest.mark.parametrize("window_ms,stride_ms,bins", [(30.0, 10.0, 40), (25.0, 10.0, 64), (40.0, 20.0, 32)])
def test_logmel_matches_numpy(window_ms, stride_ms, bins):
    cfg = FrontendConfig(window_ms=window_ms, stride_ms=stride_ms, num_mel_bins=bins)
    x = _clips(seed=bins)
    np.testing.assert_allclose(frontend_tf(x, cfg).numpy(), numpy_features(x, cfg), atol=2e-3)


def test_batch_equals_single_clip():
    cfg = FrontendConfig()
    x = _clips(batch=4)
    batch = frontend_tf(x, cfg).numpy()
    for i in range(4):
        np.testing.assert_allclose(frontend_tf(x[i : i + 1], cfg).numpy()[0], batch[i], atol=1e-5)


def test_mel_matrix_is_a_partition_of_the_band():
    weights = mel_matrix(FrontendConfig())
    assert weights[0].sum() == 0  # DC carries no speech
    assert (weights >= 0).all() and (weights.max(axis=0) > 0.5).all()


def test_keras_layer_round_trip():
    import keras

    layer = Frontend(FrontendConfig(kind="mfcc", num_mfcc=10))
    clone = Frontend.from_config(layer.get_config())
    x = _clips(batch=2)
    np.testing.assert_allclose(layer(x).numpy(), clone(x).numpy())
    inputs = keras.Input((16000,))
    model = keras.Model(inputs, layer(inputs))
    assert model.output_shape == (None, 98, 10)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="kind"):
        FrontendConfig(kind="cqt")
    with pytest.raises(ValueError, match="upper_hz"):
        FrontendConfig(upper_hz=9000)
