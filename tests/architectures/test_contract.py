"""The contract every registered architecture meets, teacher or student.

Parametrized over ``TEACHERS.names()`` and ``STUDENTS.names()``, so a newly registered
architecture is checked without touching this file: size presets, toy builds that map
waveforms to finite logits, an inference graph of TensorFlow 1.4 ops only, training-mode
tracing, a gradient to every weight, seeded builds, the augmentation hook and front-end
defaults, and, at the default size, the parameter and MAC counts its module docstring states.
Family-specific checks (paper sizes, front-end overrides, budgets) stay in
``test_teachers.py`` / ``test_students.py``.
"""

from __future__ import annotations

import dataclasses
import re
import sys

import numpy as np
import pytest

from distill.core.registry import STUDENTS, TEACHERS

ARCHITECTURES = [(reg, name) for reg in (TEACHERS, STUDENTS) for name in reg.names()]
IDS = [f"{reg.family}-{name}" for reg, name in ARCHITECTURES]

# "Default size: 1,213,260 parameters, 92.2 M MACs." on a line of its own in the module docstring
DEFAULT_LINE = re.compile(r"^Default size: (?P<params>\d{1,3}(?:,\d{3})*) parameters, (?P<macs>\d+(?:\.\d+)?) M MACs\.$", re.MULTILINE)


def _module(registry, name):
    return sys.modules[registry.get(name).__module__]


def _clips(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(0.1 * rng.standard_normal((batch, 16000)), -1, 1).astype(np.float32)


def stated_default_figures(doc: str) -> tuple[int, str]:
    """(parameters, MACs in millions as written) from a module docstring's ``Default size:`` line."""
    found = DEFAULT_LINE.findall(doc or "")
    assert len(found) == 1, f"the module docstring needs exactly one line like 'Default size: 1,234 parameters, 5.6 M MACs.', found {found}"
    params, macs = found[0]
    return int(params.replace(",", "")), macs


def test_the_docstring_line_parser():
    assert stated_default_figures("x\nDefault size: 1,213,260 parameters, 92.2 M MACs.\ny") == (1213260, "92.2")
    assert stated_default_figures("Default size: 980 parameters, 3 M MACs.") == (980, "3")
    for bad in ("Default size: 1213260 parameters, 92.2 M MACs.", "Default size: 1,213,260 parameters, 92.2 MMACs.",
                "default size: 12 parameters, 1.0 M MACs.", ""):
        with pytest.raises(AssertionError):
            stated_default_figures(bad)


@pytest.mark.parametrize("registry,name", ARCHITECTURES, ids=IDS)
def test_size_presets_are_frozen_and_include_toy_and_default(registry, name):
    sizes = _module(registry, name).SIZES
    assert {"toy", "default"} <= set(sizes)
    for preset in sizes.values():
        field = next(iter(preset.__dataclass_fields__))
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(preset, field, 0)


@pytest.mark.parametrize("registry,name", ARCHITECTURES, ids=IDS)
def test_toy_maps_waveforms_to_finite_logits(registry, name):
    model = registry.get(name)(size="toy", seed=0)
    assert model.inputs[0].shape[1:] == (16000,) and model.inputs[0].name.startswith("waveform")
    assert model.count_params() < 10_000
    logits = model(_clips(3), training=False).numpy()
    assert logits.shape == (3, 12) and np.isfinite(logits).all()


@pytest.mark.parametrize("registry,name", ARCHITECTURES, ids=IDS)
def test_inference_graph_uses_tf14_ops_only(registry, name):
    """Frozen as export freezes it (recurrent layers unrolled, as the footprint counts them): TF 1.4's op
    registry accepts every node, and the frozen graph computes the Keras model's softmax."""
    from distill.compliance.footprint import with_unrolled_rnns
    from distill.core.metrics import softmax
    from distill.export.freeze import freeze_waveform_model, run_frozen_tf2
    from distill.export.graph_compat import check_tf14_ops

    model = registry.get(name)(size="toy", seed=0)
    inference = with_unrolled_rnns(model)
    graph_def = freeze_waveform_model(lambda x: inference(x, training=False), check=False)
    issues = check_tf14_ops(graph_def)
    assert not issues, "TF 1.4 would refuse:\n" + "\n".join(map(str, issues))
    ops = {node.op for node in graph_def.node}
    assert "Conv2D" in ops
    assert ("AudioSpectrogram" in ops) == (_module(registry, name).DEFAULT_FRONTEND is not None)
    clip = _clips(1, seed=2)
    np.testing.assert_allclose(run_frozen_tf2(graph_def, clip[0]), softmax(model(clip, training=False).numpy()), atol=1e-5)


@pytest.mark.parametrize("registry,name", ARCHITECTURES, ids=IDS)
def test_toy_traces_in_graph_mode_for_training(registry, name):
    import tensorflow as tf

    model = registry.get(name)(size="toy", seed=0)
    step = tf.function(lambda x: model(x, training=True))
    logits = step(tf.constant(_clips(3))).numpy()
    assert logits.shape == (3, 12) and np.isfinite(logits).all()


@pytest.mark.parametrize("registry,name", ARCHITECTURES, ids=IDS)
def test_one_fit_step_moves_every_weight(registry, name):
    import keras

    model = registry.get(name)(size="toy", num_classes=5, seed=1)
    # eager: a traced train step costs 3-8 s per toy model on 2 cores; graph mode is covered by the tracing test
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.CategoricalCrossentropy(from_logits=True), run_eagerly=True)
    assert model.outputs[0].shape[1:] == (5,)
    before = [v.numpy().copy() for v in model.trainable_variables]
    x, y = _clips(8, seed=1), np.eye(5, dtype=np.float32)[np.arange(8) % 5]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    frozen = [v.path for v, b in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), b)]
    assert not frozen, f"no gradient reached {frozen}"


@pytest.mark.parametrize("registry,name", ARCHITECTURES, ids=IDS)
def test_seeded_builds_are_identical(registry, name):
    build = registry.get(name)
    a, b, c = build(size="toy", seed=7), build(size="toy", seed=7), build(size="toy", seed=8)
    assert [w.name for w in a.weights] == [w.name for w in b.weights]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()))


@pytest.mark.parametrize("registry,name", ARCHITECTURES, ids=IDS)
def test_invalid_size_lists_the_valid_ones(registry, name):
    with pytest.raises(ValueError, match="valid sizes") as err:
        registry.get(name)(size="enormous")
    listed = re.search(r"valid sizes: (.*)$", str(err.value)).group(1).split(", ")
    assert listed == list(_module(registry, name).SIZES)


@pytest.mark.parametrize("registry,name", ARCHITECTURES, ids=IDS)
def test_feature_augment_hook_is_training_only(registry, name):
    import keras

    hook = keras.layers.GaussianNoise(1.0, seed=0, name="hook")
    plain = registry.get(name)(size="toy", seed=3)
    hooked = registry.get(name)(size="toy", seed=3, feature_augment=hook)
    assert hook in hooked.layers
    x = _clips(2)
    np.testing.assert_allclose(hooked(x, training=False).numpy(), plain(x, training=False).numpy(), atol=1e-6)
    assert not np.allclose(hooked(x, training=True).numpy(), plain(x, training=True).numpy(), atol=1e-3)
    with pytest.raises(TypeError):
        registry.get(name)(size="toy", feature_augment=lambda t: t)


@pytest.mark.parametrize("registry,name", ARCHITECTURES, ids=IDS)
def test_frontend_none_means_the_architectures_default(registry, name):
    default = _module(registry, name).DEFAULT_FRONTEND
    model = registry.get(name)(size="toy", frontend=None)
    if default is None:
        assert "frontend" not in {layer.name for layer in model.layers}
    else:
        assert model.get_layer("frontend").frontend == default


# A teacher's default-size footprint freezes a large graph (the CRNN's unrolled BiGRUs: 10-24 s on the shared 2 cores),
# which took this module past 40 s: the teachers' cases run with -m slow, the students' in the default run.
DEFAULT_SIZE_CASES = [pytest.param(reg, name, id=f"{reg.family}-{name}", marks=[pytest.mark.slow] if reg is TEACHERS else [])
                      for reg, name in ARCHITECTURES]


@pytest.mark.parametrize("registry,name", DEFAULT_SIZE_CASES)
def test_default_size_has_the_documented_parameters_and_macs(registry, name):
    """The builder's default is the ``default`` preset, and its footprint (the figures the product reports)
    is the one the module docstring states: parameters exactly, MACs to the stated rounding."""
    from distill.compliance.footprint import model_footprint

    params, macs = stated_default_figures(_module(registry, name).__doc__)
    model = registry.get(name)(seed=0)
    assert model.outputs[0].shape[1:] == (12,)
    assert model.count_params() == registry.get(name)(size="default", seed=0).count_params()
    footprint = model_footprint(model)
    decimals = len(macs.partition(".")[2])
    assert (footprint.params, f"{footprint.macs / 1e6:.{decimals}f}") == (params, macs), \
        f"measured {footprint.params:,} parameters, {footprint.macs / 1e6:.2f} M MACs; update the docstring's 'Default size:' line"
