"""Teacher architectures: toy builds run, are seeded, train a step, take an augmentation hook."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from distill.core.registry import TEACHERS
from distill.layers.frontend import FrontendConfig

NAMES = TEACHERS.names()


def _module(name):
    return importlib.import_module(f"teachers.{name}")


def _clips(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(0.1 * rng.standard_normal((batch, 16000)), -1, 1).astype(np.float32)


def test_registry_has_three_families():
    assert {"resnet", "wavecnn"} <= set(NAMES) and len(NAMES) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_size_presets(name):
    sizes = _module(name).SIZES
    assert {"toy", "small", "default"} <= set(sizes)
    for preset in sizes.values():
        with pytest.raises(Exception):  # frozen dataclasses
            preset.__setattr__(next(iter(preset.__dataclass_fields__)), 0)


@pytest.mark.parametrize("name", NAMES)
def test_toy_maps_waveforms_to_finite_logits(name):
    model = TEACHERS.get(name)(size="toy", seed=0)
    assert model.inputs[0].shape[1:] == (16000,) and model.inputs[0].name.startswith("waveform")
    assert model.count_params() < 10_000
    logits = model(_clips(), training=False).numpy()
    assert logits.shape == (2, 12) and np.isfinite(logits).all()


@pytest.mark.parametrize("name", NAMES)
def test_toy_traces_in_graph_mode_for_training(name):
    import tensorflow as tf

    model = TEACHERS.get(name)(size="toy", seed=0)
    step = tf.function(lambda x: model(x, training=True))
    logits = step(tf.constant(_clips(3))).numpy()
    assert logits.shape == (3, 12) and np.isfinite(logits).all()


@pytest.mark.parametrize("name", NAMES)
def test_feature_augment_hook_is_training_only(name):
    import keras

    hook = keras.layers.GaussianNoise(1.0, seed=0, name="hook")
    plain = TEACHERS.get(name)(size="toy", seed=3)
    hooked = TEACHERS.get(name)(size="toy", seed=3, feature_augment=hook)
    assert hook in hooked.layers
    x = _clips(2)
    np.testing.assert_allclose(hooked(x, training=False).numpy(), plain(x, training=False).numpy(), atol=1e-6)
    with pytest.raises(TypeError):
        TEACHERS.get(name)(size="toy", feature_augment=lambda t: t)


@pytest.mark.parametrize("name", NAMES)
def test_default_and_small_build(name):
    # build only (no forward pass): the default teachers are 0.5-5 M parameters
    build = TEACHERS.get(name)
    small, default = build(size="small"), build(size="default")
    assert default.outputs[0].shape[1:] == (12,)
    assert small.count_params() < default.count_params()
    assert 3e5 < default.count_params() < 5e6


def test_frontend_argument():
    # spectrogram teachers take any front-end; the raw-wave teacher has none
    frontend = FrontendConfig(kind="mfcc", num_mfcc=20)
    for name in NAMES:
        model = TEACHERS.get(name)(size="toy", frontend=frontend)
        names = {layer.name for layer in model.layers}
        assert ("frontend" in names) == (name != "wavecnn")
        if "frontend" in names:
            assert model.get_layer("frontend").frontend == frontend
        assert model(_clips(1), training=False).shape == (1, 12)


@pytest.mark.parametrize("name", NAMES)
def test_frontend_none_means_the_architectures_default(name):
    default = _module(name).DEFAULT_FRONTEND
    model = TEACHERS.get(name)(size="toy", frontend=None)
    if default is None:
        assert "frontend" not in {layer.name for layer in model.layers}
    else:
        assert model.get_layer("frontend").frontend == default
