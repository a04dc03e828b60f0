"""The shared front-end: shapes, values against NumPy, and TF 1.4-era ops only."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from distill.layers.frontend import (
    FRONTEND_PRESETS,
    Frontend,
    FrontendConfig,
    frontend_preset,
    frontend_tf,
    mel_matrix,
    numpy_features,
    numpy_spectrogram,
)


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


# -- the named presets: what a recipe's students.N.frontend and --frontend choose from --------------------------------

NEW_PRESETS = [name for name in FRONTEND_PRESETS if name not in ("logmel", "mfcc")]


def test_the_original_presets_are_unchanged():
    # run folders record the preset's name: a changed preset would reload an old run with other features
    assert FRONTEND_PRESETS["logmel"] == FrontendConfig() and FRONTEND_PRESETS["mfcc"] == FrontendConfig(kind="mfcc")
    assert len(NEW_PRESETS) >= 5 and frontend_preset("logmel32-w16-hop20") is FRONTEND_PRESETS["logmel32-w16-hop20"]
    with pytest.raises(ValueError, match="logmel20-w16-hop20"):
        frontend_preset("logmel99")


@pytest.mark.parametrize("name", list(FRONTEND_PRESETS))
def test_preset_names_say_what_they_are(name):
    cfg = FRONTEND_PRESETS[name]
    if name in ("logmel", "mfcc"):
        return
    parsed = re.fullmatch(r"(logmel|mfcc)(\d+)(?:-w(\d+))?-hop(\d+)", name)
    assert parsed, f"{name}: expected <kind><features>[-w<window ms>]-hop<stride ms>"
    kind, features, window, hop = parsed.groups()
    assert (cfg.kind, cfg.num_features, cfg.window_ms, cfg.stride_ms) == (kind, int(features), float(window or 30), float(hop))
    # none is a relabelled default: each one is cheaper in frames x FFT bins, what the Pi 3 pays for
    assert cfg.num_frames * (cfg.fft_length // 2 + 1) < FrontendConfig().num_frames * (FrontendConfig().fft_length // 2 + 1)


@pytest.mark.parametrize("name", NEW_PRESETS)
def test_new_preset_shape_and_numpy_reference(name):
    cfg = frontend_preset(name)
    x = _clips(batch=2, seed=len(name))
    out = frontend_tf(x, cfg).numpy()
    assert out.shape == (2, *cfg.output_shape) and np.isfinite(out).all()
    if cfg.kind == "logmel":
        np.testing.assert_allclose(out, numpy_features(x, cfg), atol=2e-3)
        assert (mel_matrix(cfg).max(axis=0) > 0.5).all()  # no mel band falls between two FFT bins


@pytest.mark.parametrize("name", NEW_PRESETS)
def test_new_preset_frozen_graph_equals_the_keras_layer_with_tf14_ops_only(name):
    """Inside a toy student, frozen as export freezes it: TF 1.4's registry accepts every node, and the frozen
    graph's features and softmax are the Keras model's."""
    from distill.core.metrics import softmax
    from distill.export.freeze import freeze_waveform_model, run_frozen_tf2
    from distill.export.graph_compat import check_tf14_ops
    from students.tcresnet import build_tcresnet

    cfg = frontend_preset(name)
    model = build_tcresnet(size="toy", frontend=cfg, seed=0)
    graph_def = freeze_waveform_model(lambda x: model(x, training=False), check=False)
    issues = check_tf14_ops(graph_def)
    assert not issues, "TF 1.4 would refuse:\n" + "\n".join(map(str, issues))
    ops = {n.op for n in graph_def.node}
    assert "AudioSpectrogram" in ops and ("Mfcc" in ops) == (cfg.kind == "mfcc")
    last = next(n.name for n in graph_def.node if "/frontend" in n.name and n.op == ("Mfcc" if cfg.kind == "mfcc" else "Log"))
    clip = _clips(batch=1, seed=5)
    keras_features = model.get_layer("frontend")(clip).numpy()
    np.testing.assert_allclose(run_frozen_tf2(graph_def, clip[0], fetch=f"{last}:0").reshape(keras_features.shape), keras_features, atol=1e-4)
    np.testing.assert_allclose(run_frozen_tf2(graph_def, clip[0]), softmax(model(clip, training=False).numpy()), atol=1e-5)
