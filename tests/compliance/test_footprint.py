"""Footprints of recurrent models: counted on the unrolled graph, with the model's own outputs."""

from __future__ import annotations

import numpy as np
import pytest

from distill.compliance.footprint import run_footprint, with_unrolled_rnns
from distill.training.fit import RunConfig, build_model, save_config


def _crnn():
    return build_model(RunConfig(family="teacher", arch="crnn", data="unused", size="toy", feature_masks=False))


def test_unrolled_crnn_computes_what_the_looped_one_does():
    model = _crnn()
    unrolled = with_unrolled_rnns(model)
    assert unrolled is not model
    waveforms = np.random.default_rng(0).normal(0, 0.1, (2, 16000)).astype(np.float32)
    np.testing.assert_allclose(unrolled(waveforms, training=False), model(waveforms, training=False), atol=1e-5)


def test_models_without_recurrence_are_measured_as_they_are():
    model = build_model(RunConfig(family="student", arch="tcresnet", data="unused", size="toy"))
    assert with_unrolled_rnns(model) is model


@pytest.mark.slow  # 5 s: the crnn teacher frozen with its GRUs unrolled (the contract test freezes it too)
def test_a_recurrent_teacher_has_a_footprint_that_counts_its_gru(tmp_path):
    config = RunConfig(family="teacher", arch="crnn", data="unused", size="toy")
    save_config(config, tmp_path / "config.json")
    fp = run_footprint(tmp_path)
    model = _crnn()
    assert fp.params == model.count_params()
    gru_weights = sum(int(np.prod(w.shape)) for layer in model.layers if "bigru" in layer.name for w in layer.get_weights())
    # the GRU runs its weights once per step (49 steps at the default front-end): a count that missed
    # the loop body would stay below one pass over them
    assert fp.macs > 20 * gru_weights and fp.pi3_ms > 0
