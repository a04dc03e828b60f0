"""Teacher architectures, beyond the contract every architecture meets (``test_contract.py``):
the registered families, their ``small`` preset, the size range and front-end overrides."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from distill.core.registry import TEACHERS
from distill.layers.frontend import FrontendConfig

NAMES = TEACHERS.names()


def _module(name):
    return sys.modules[TEACHERS.get(name).__module__]


def _clips(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(0.1 * rng.standard_normal((batch, 16000)), -1, 1).astype(np.float32)


def test_registry_has_the_four_teacher_families():
    assert set(NAMES) == {"crnn", "resnet", "tcwide", "wavecnn"}


@pytest.mark.parametrize("name", NAMES)
def test_teachers_have_a_small_preset_between_toy_and_default(name):
    assert "small" in _module(name).SIZES
    build = TEACHERS.get(name)
    toy, small, default = build(size="toy"), build(size="small"), build(size="default")
    assert toy.count_params() < small.count_params() < default.count_params()
    assert 3e5 < default.count_params() < 5e6  # the default teachers are 0.3-5 M parameters


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
