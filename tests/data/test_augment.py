"""Augmentation: views are pure functions of (clip, seed, view, noise, config); each transform does what it says."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from distill.core.config import load_config, save_config
from distill.core.errors import DistillError
from distill.core.labels import CLIP_SAMPLES, SAMPLE_RATE
from distill.data import augment
from distill.data.augment import AugmentConfig, SpecAugment, augment_waveforms, spec_augment

N = CLIP_SAMPLES
OFF = AugmentConfig.none()


def _only(**changes) -> AugmentConfig:
    """A config with just the given transform(s) switched on."""
    return dataclasses.replace(OFF, **changes)


def _speech_like(batch: int, *, seed: int = 0, amplitude: float = 0.1) -> np.ndarray:
    # Random samples with no exact zeros, so a zero in the output can only come from padding or masks.
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 1.0, (batch, N)) * rng.choice([-1.0, 1.0], (batch, N))
    return (amplitude * x).astype(np.float32)


def _noise_recordings(seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(3 * N).astype(np.float32), (rng.standard_normal(2 * N) * 3000).astype(np.int16)]


def _rms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=-1))


def _dominant_hz(x: np.ndarray) -> np.ndarray:
    spectrum = np.abs(np.fft.rfft(x, axis=-1))
    return np.argmax(spectrum, axis=-1) * SAMPLE_RATE / x.shape[-1]


# ---------------------------------------------------------------------------------------------
# Counter-based randomness
# ---------------------------------------------------------------------------------------------


def _splitmix_reference(seed: int, view: int, domain: int, draw: int) -> float:
    """The documented scheme, in plain Python integers."""
    mask = (1 << 64) - 1
    golden = 0x9E3779B97F4A7C15

    def mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    key = mix((seed & mask) ^ mix((view * golden + domain) & mask))
    return (mix((key + (draw + 1) * golden) & mask) >> 11) / 2.0**53


def test_uniforms_follow_the_documented_splitmix_scheme():
    seeds = np.array([0, 1, -5, 2**40 + 7], dtype=np.int64)
    views = np.array([1, 2, 3, 9], dtype=np.int64)
    u = augment._uniforms(seeds, views, domain=augment._DOMAIN_WAVEFORM, draws=3)
    for i in range(4):
        for d in range(3):
            expected = _splitmix_reference(int(seeds[i]), int(views[i]), int(augment._DOMAIN_WAVEFORM), d)
            assert u[i, d] == expected
    many = augment._uniforms(np.arange(4000, dtype=np.int64), np.ones(4000, np.int64), domain=augment._DOMAIN_SPEC, draws=2)
    assert many.min() >= 0.0 and many.max() < 1.0
    assert abs(many.mean() - 0.5) < 0.02 and abs(np.corrcoef(many[:, 0], many[:, 1])[0, 1]) < 0.05


def test_stored_views_do_not_drift():
    """Pinned draws for (seed 42, view 1): a change here silently invalidates every stored teacher label."""
    audio = _speech_like(1)
    seeds = np.array([42])
    shifted = augment_waveforms(audio, seeds=seeds, view=1, noise=[], config=_only(time_shift_ms=100.0))
    np.testing.assert_array_equal(shifted[0, 1329:], audio[0, : N - 1329])
    assert (shifted[0, :1329] == 0).all()
    gained = augment_waveforms(audio, seeds=seeds, view=1, noise=[], config=_only(gain_db=(-6.0, 6.0)))
    np.testing.assert_allclose(20 * np.log10(gained[0, 0] / audio[0, 0]), -4.103447, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


def test_views_are_pure_functions_of_seed_and_view():
    audio = _speech_like(24)
    seeds = np.arange(100, 124, dtype=np.int64)
    noise = _noise_recordings()
    config = AugmentConfig()

    first = augment_waveforms(audio, seeds=seeds, view=1, noise=noise, config=config)
    np.random.seed(12345)  # global RNG state must not matter
    again = augment_waveforms(audio, seeds=seeds, view=1, noise=noise, config=config)
    np.testing.assert_array_equal(first, again)

    # An example's view does not depend on its batch: permute, or cut the batch to a few rows.
    order = np.random.default_rng(3).permutation(24)
    permuted = augment_waveforms(audio[order], seeds=seeds[order], view=1, noise=noise, config=config)
    np.testing.assert_array_equal(permuted, first[order])
    alone = augment_waveforms(audio[5:7], seeds=seeds[5:7], view=1, noise=noise, config=config)
    np.testing.assert_array_equal(alone, first[5:7])

    # Different views differ (row by row); per-row views mix freely with view 0 (the clean clip).
    second = augment_waveforms(audio, seeds=seeds, view=2, noise=noise, config=config)
    assert all(not np.array_equal(a, b) for a, b in zip(first, second))
    views = np.array([0, 1, 2] * 8)
    mixed = augment_waveforms(audio, seeds=seeds, view=views, noise=noise, config=config)
    np.testing.assert_array_equal(mixed[views == 0], audio[views == 0])
    np.testing.assert_array_equal(mixed[views == 1], first[views == 1])
    np.testing.assert_array_equal(mixed[views == 2], second[views == 2])

    clean = augment_waveforms(audio, seeds=seeds, view=0, noise=noise, config=config)
    np.testing.assert_array_equal(clean, audio)
    assert clean is not audio and clean.dtype == np.float32


def test_input_is_not_modified_and_output_is_float32_in_range():
    audio = (_speech_like(16, amplitude=0.99)).astype(np.float64)
    before = audio.copy()
    out = augment_waveforms(audio, seeds=np.arange(16), view=3, noise=_noise_recordings(),
                            config=AugmentConfig(gain_db=(6.0, 6.0)))
    np.testing.assert_array_equal(audio, before)
    assert out.dtype == np.float32 and out.shape == (16, N)
    assert out.min() >= -1.0 and out.max() <= 1.0 and out.max() == 1.0  # loud + 6 dB clips


def test_toggling_one_transform_leaves_the_others_draws_alone():
    audio = _speech_like(8)
    seeds = np.arange(8)
    with_noise_off = AugmentConfig(noise_probability=0.0)
    no_recordings = augment_waveforms(audio, seeds=seeds, view=1, noise=[], config=AugmentConfig())
    np.testing.assert_array_equal(
        no_recordings, augment_waveforms(audio, seeds=seeds, view=1, noise=_noise_recordings(), config=with_noise_off)
    )


# ---------------------------------------------------------------------------------------------
# Each transform on its own
# ---------------------------------------------------------------------------------------------


def test_time_shift_is_a_zero_filled_whole_sample_shift_within_the_bound():
    audio = _speech_like(64)
    out = augment_waveforms(audio, seeds=np.arange(64), view=1, noise=[], config=_only(time_shift_ms=100.0))
    bound = 1600
    shifts = []
    for x, y in zip(audio, out):
        lead = int(np.argmax(y != 0))
        trail = int(np.argmax(y[::-1] != 0))
        shift = lead if lead else -trail
        assert abs(shift) <= bound
        np.testing.assert_array_equal(y, np.roll(x, shift) * (np.arange(N) - shift >= 0) * (np.arange(N) - shift < N))
        shifts.append(shift)
    assert len(set(shifts)) > 50 and min(shifts) < -800 and max(shifts) > 800


def test_gain_scales_each_clip_within_the_db_range():
    audio = _speech_like(64)
    out = augment_waveforms(audio, seeds=np.arange(64), view=1, noise=[], config=_only(gain_db=(-6.0, 6.0)))
    ratio = out / audio
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones((1, N)), rtol=1e-6)
    gain_db = 20 * np.log10(ratio[:, 0])
    assert gain_db.min() >= -6.0 - 1e-4 and gain_db.max() <= 6.0 + 1e-4
    assert gain_db.min() < -3 and gain_db.max() > 3


def test_noise_is_mixed_at_the_requested_snr():
    audio = _speech_like(32, amplitude=0.05)
    noise = _noise_recordings()
    out = augment_waveforms(audio, seeds=np.arange(32), view=1, noise=noise,
                            config=_only(noise_probability=1.0, noise_snr_db=(10.0, 10.0)))
    added = out.astype(np.float64) - audio
    snr = 20 * np.log10(_rms(audio) / _rms(added))
    np.testing.assert_allclose(snr, 10.0, atol=0.05)

    ranged = augment_waveforms(audio, seeds=np.arange(32), view=1, noise=noise,
                               config=_only(noise_probability=1.0, noise_snr_db=(0.0, 20.0)))
    snr = 20 * np.log10(_rms(audio) / _rms(ranged.astype(np.float64) - audio))
    assert snr.min() > -0.05 and snr.max() < 20.05 and snr.max() - snr.min() > 10


def test_noise_probability_and_window_choice():
    audio = _speech_like(600, amplitude=0.05)
    # Two pure tones, so the dominant frequency of the added part tells which recording was used.
    t = np.arange(5 * N) / SAMPLE_RATE
    tones = [np.sin(2 * np.pi * 500 * t).astype(np.float32), np.sin(2 * np.pi * 3000 * t).astype(np.float32)]
    out = augment_waveforms(audio, seeds=np.arange(600), view=1, noise=tones, config=_only(noise_probability=0.8))
    added = out - audio
    mixed = np.abs(added).max(axis=1) > 0
    assert 0.74 < mixed.mean() < 0.86
    freqs = _dominant_hz(added[mixed])
    assert set(np.round(freqs).astype(int)) == {500, 3000}


def test_silent_clips_get_noise_at_an_absolute_level_and_never_nan():
    silent = np.zeros((8, N), np.float32)
    config = _only(noise_probability=1.0, noise_snr_db=(20.0, 20.0))
    out = augment_waveforms(silent, seeds=np.arange(8), view=1, noise=_noise_recordings(), config=config)
    np.testing.assert_allclose(_rms(out), config.silent_reference_rms / 10.0, rtol=1e-3)

    everything = augment_waveforms(silent, seeds=np.arange(8), view=2, noise=_noise_recordings(), config=AugmentConfig())
    assert np.isfinite(everything).all()
    # A digital-silence noise recording has no level to scale: it adds nothing instead of NaN.
    quiet = augment_waveforms(silent, seeds=np.arange(8), view=1, noise=[np.zeros(2 * N, np.float32)], config=config)
    np.testing.assert_array_equal(quiet, silent)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_scales_pitch_and_keeps_the_centre(factor):
    t = np.arange(N) / SAMPLE_RATE
    sine = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None, :].repeat(4, axis=0)
    out = augment_waveforms(sine, seeds=np.arange(4), view=1, noise=[],
                            config=_only(speed_probability=1.0, speed_range=(factor, factor)))
    assert out.shape == (4, N) and out.dtype == np.float32
    np.testing.assert_allclose(_dominant_hz(out), 1000 * factor, atol=1.0)
    # Faster clips are padded at both ends, slower ones cropped; a click at the centre stays put.
    edge = int(N / 2 * (1 - 1 / factor)) - 2 if factor > 1 else 0
    assert (out[:, :edge] == 0).all() and (out[:, N - edge:] == 0).all()
    click = np.zeros((1, N), np.float32)
    click[0, N // 2 - 1 : N // 2 + 1] = 1.0
    moved = augment_waveforms(click, seeds=np.arange(1), view=1, noise=[],
                              config=_only(speed_probability=1.0, speed_range=(factor, factor)))
    assert abs(int(np.argmax(moved[0])) - N // 2) <= 1


def test_speed_perturbation_hits_about_its_share_of_clips_with_varied_factors():
    t = np.arange(N) / SAMPLE_RATE
    sine = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None, :].repeat(200, axis=0)
    out = augment_waveforms(sine, seeds=np.arange(200), view=1, noise=[], config=_only(speed_probability=0.5, speed_range=(0.9, 1.1)))
    changed = np.abs(out - sine).max(axis=1) > 1e-6
    assert 0.38 < changed.mean() < 0.62
    np.testing.assert_array_equal(out[~changed], sine[~changed])  # untouched rows are bit-exact
    freqs = _dominant_hz(out[changed])
    assert freqs.min() >= 899 and freqs.max() <= 1101 and freqs.max() - freqs.min() > 100


# ---------------------------------------------------------------------------------------------
# Config and input checks
# ---------------------------------------------------------------------------------------------


def test_config_helpers_and_round_trip(tmp_path):
    assert AugmentConfig().enabled() and not AugmentConfig.none().enabled()
    assert _only(time_masks=1).spec_enabled() and not _only(time_masks=1).waveform_enabled()
    config = AugmentConfig(noise_snr_db=(5.0, 15.0), time_masks=3)
    assert load_config(AugmentConfig, save_config(config, tmp_path / "augment.json")) == config
    with pytest.raises(DistillError, match="speed_range"):
        AugmentConfig(speed_range=(1.1, 0.9))
    with pytest.raises(DistillError, match="noise_probability"):
        AugmentConfig(noise_probability=1.5)
    audio = _speech_like(3)
    np.testing.assert_array_equal(
        augment_waveforms(audio, seeds=np.arange(3), view=4, noise=_noise_recordings(), config=OFF), audio
    )


def test_bad_shapes_name_the_expected_shape():
    audio = _speech_like(4)
    seeds = np.arange(4)
    with pytest.raises(ValueError, match=r"\(batch, 16000\)"):
        augment_waveforms(audio[0], seeds=seeds[:1], view=1, noise=[], config=AugmentConfig())
    with pytest.raises(ValueError, match=r"\(batch, 16000\)"):
        augment_waveforms(audio[:, :8000], seeds=seeds, view=1, noise=[], config=AugmentConfig())
    with pytest.raises(ValueError, match=r"seeds.*\(4,\)"):
        augment_waveforms(audio, seeds=seeds[:3], view=1, noise=[], config=AugmentConfig())
    with pytest.raises(ValueError, match=r"view.*\(4,\)"):
        augment_waveforms(audio, seeds=seeds, view=np.ones(3, int), noise=[], config=AugmentConfig())
    with pytest.raises(ValueError, match=r"noise\[0\].*\(samples,\)"):
        augment_waveforms(audio, seeds=seeds, view=1, noise=[np.zeros((2, N))], config=AugmentConfig())
    with pytest.raises(ValueError, match=r"\(batch, frames, bins\)"):
        spec_augment(np.zeros((98, 40)), seeds=seeds, view=1, config=AugmentConfig())


# ---------------------------------------------------------------------------------------------
# SpecAugment
# ---------------------------------------------------------------------------------------------


def _runs(flags: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], flags, [False]]).astype(int)
    edges = np.flatnonzero(np.diff(padded))
    return list(edges[1::2] - edges[0::2])


def _check_mask_bounds(masked: np.ndarray, config: AugmentConfig) -> tuple[int, int]:
    """Assert the zeros of ``masked`` (made from ones) are whole-frame / whole-bin bands within the limits."""
    zero = masked == 0
    frames = zero.all(axis=1)
    bins = zero.all(axis=0)
    np.testing.assert_array_equal(zero, frames[:, None] | bins[None, :])
    for flags, count, width in ((frames, config.time_masks, config.time_mask_frames),
                                (bins, config.freq_masks, config.freq_mask_bins)):
        runs = _runs(flags)
        assert len(runs) <= count and sum(runs) <= count * width
    return int(frames.sum()), int(bins.sum())


def test_spec_augment_masks_within_bounds_deterministically():
    config = AugmentConfig()
    features = np.ones((64, 98, 40), np.float32)
    seeds = np.arange(64)
    out = spec_augment(features, seeds=seeds, view=1, config=config)
    totals = np.array([_check_mask_bounds(m, config) for m in out])
    assert totals[:, 0].max() > 10 and totals[:, 1].max() > 5 and totals.sum(axis=1).min() >= 0
    np.testing.assert_array_equal(out, spec_augment(features, seeds=seeds, view=1, config=config))
    order = np.random.default_rng(0).permutation(64)
    np.testing.assert_array_equal(spec_augment(features[order], seeds=seeds[order], view=1, config=config), out[order])
    assert not np.array_equal(out, spec_augment(features, seeds=seeds, view=2, config=config))
    np.testing.assert_array_equal(spec_augment(features, seeds=seeds, view=0, config=config), features)
    np.testing.assert_array_equal(spec_augment(features, seeds=seeds, view=1, config=OFF), features)
    # Masks wider than the input are clamped to it.
    tiny = spec_augment(np.ones((16, 6, 3), np.float32), seeds=seeds[:16], view=1, config=config)
    assert all(_check_mask_bounds(m, config)[0] <= 6 for m in tiny)


def test_spec_augment_layer_is_identity_at_inference_and_reproducible_in_training():
    features = np.random.default_rng(0).uniform(1.0, 2.0, (8, 98, 40)).astype(np.float32)
    layer = SpecAugment(seed=7)
    np.testing.assert_array_equal(np.asarray(layer(features, training=False)), features)
    np.testing.assert_array_equal(np.asarray(layer(features)), features)

    first = np.asarray(layer(features, training=True))
    config = AugmentConfig()
    for row_in, row_out in zip(features, first):
        masked = np.where(row_out == 0, 0.0, 1.0)
        _check_mask_bounds(masked, config)
        np.testing.assert_array_equal(row_out[row_out != 0], row_in[row_out != 0])
    assert (first == 0).any()
    second = np.asarray(layer(features, training=True))
    assert not np.array_equal(first, second)  # the seed generator advances: fresh masks each batch

    twin = SpecAugment(seed=7)
    np.testing.assert_array_equal(np.asarray(twin(features, training=True)), first)

    channels = np.asarray(SpecAugment(seed=7)(features[..., None], training=True))
    np.testing.assert_array_equal(channels[..., 0], first)


def test_spec_augment_layer_traces_with_unknown_batch_and_frames():
    import tensorflow as tf

    layer = SpecAugment(seed=1)

    @tf.function(input_signature=[tf.TensorSpec((None, None, 40), tf.float32)])
    def train_step(features):
        return layer(features, training=True)

    out = train_step(tf.ones((3, 98, 40))).numpy()
    assert out.shape == (3, 98, 40) and (out == 0).any()
    for row in out:
        _check_mask_bounds(row, AugmentConfig())


def test_spec_augment_layer_config_round_trip():
    layer = SpecAugment.from_augment_config(AugmentConfig(time_masks=3, freq_mask_bins=8), seed=11, name="specaug")
    config = layer.get_config()
    assert config["time_masks"] == 3 and config["freq_mask_bins"] == 8 and config["seed"] == 11
    clone = SpecAugment.from_config(config)
    assert clone.get_config() == config
    features = np.ones((2, 50, 40), np.float32)
    np.testing.assert_array_equal(np.asarray(clone(features, training=True)), np.asarray(layer(features, training=True)))
    with pytest.raises(ValueError, match="time_masks"):
        SpecAugment(time_masks=-1)


# ---------------------------------------------------------------------------------------------
# Masks inside the views (consistent masking)
# ---------------------------------------------------------------------------------------------


def _zero_runs(row: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of exact zeros."""
    padded = np.concatenate([[False], row == 0, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2])]


def test_view_time_masks_zero_at_most_their_spans_and_touch_nothing_else():
    audio = _speech_like(32)
    seeds = np.arange(32)
    plain = augment_waveforms(audio, seeds=seeds, view=2, noise=_noise_recordings(), config=AugmentConfig())
    config = dataclasses.replace(AugmentConfig(), view_time_masks=2, view_time_mask_ms=100.0)
    masked = augment_waveforms(audio, seeds=seeds, view=2, noise=_noise_recordings(), config=config)
    changed = masked != plain
    assert (masked[changed] == 0).all()  # the masks only ever zero samples, every other transform drew the same
    assert changed.any(axis=1).mean() > 0.9  # U{0..1600} widths: nearly every row loses something
    for before, after in zip(plain, masked):
        new_zeros = (after == 0) & (before != 0)
        runs = [run for run in _zero_runs(after) if new_zeros[run[0]:run[0] + run[1]].any()]
        assert len(runs) <= 2 and all(length <= 2 * 1600 for _, length in runs)  # two spans, which may touch
    np.testing.assert_array_equal(augment_waveforms(audio, seeds=seeds, view=0, noise=[], config=config), audio)


def test_view_freq_masks_remove_a_band_of_at_most_their_mel_width():
    t = np.arange(N) / SAMPLE_RATE
    tones = np.array([100, 300, 700, 1200, 2000, 3000, 4500, 6000, 7500], dtype=np.float64)
    audio = np.tile((0.02 * np.sin(2 * np.pi * tones[:, None] * t[None, :])).sum(0).astype(np.float32), (24, 1))
    config = _only(view_freq_masks=1, view_freq_mask_mel=600.0)
    out = augment_waveforms(audio, seeds=np.arange(24), view=1, noise=[], config=config)
    amplitude = np.abs(np.fft.rfft(out, axis=-1))[:, tones.astype(int)] / (N / 2)
    gone = amplitude < 1e-4
    kept = np.abs(amplitude - 0.02) < 1e-4
    assert (gone | kept).all()  # each tone is either fully removed or untouched
    mel = augment._hz_to_mel(tones)
    for row in gone:
        if row.any():
            assert np.ptp(mel[row]) <= 600.0  # one band removes tones within its width only
    assert gone.any(axis=1).mean() > 0.3


def test_view_masks_keep_views_pure_and_old_configs_loadable(tmp_path):
    audio = _speech_like(20)
    seeds = np.arange(20, 40)
    config = AugmentConfig.with_view_masks()
    assert (config.view_time_masks, config.view_freq_masks) == (2, 2) and config.view_masks_enabled()
    assert _only(view_time_masks=1).waveform_enabled() and not AugmentConfig().view_masks_enabled()
    first = augment_waveforms(audio, seeds=seeds, view=3, noise=_noise_recordings(), config=config)
    alone = augment_waveforms(audio[7:9], seeds=seeds[7:9], view=3, noise=_noise_recordings(), config=config)
    np.testing.assert_array_equal(alone, first[7:9])
    assert not np.array_equal(first, augment_waveforms(audio, seeds=seeds, view=4, noise=_noise_recordings(), config=config))
    # a soft-label folder written before view masks existed has no such fields in its JSON: they are off
    path = save_config(AugmentConfig(), tmp_path / "augment.json")
    text = path.read_text()
    for field in ("view_time_masks", "view_time_mask_ms", "view_freq_masks", "view_freq_mask_mel"):
        assert f'"{field}"' in text
    import json

    stored = json.loads(text)
    inner = stored.get("config", stored)
    for field in ("view_time_masks", "view_time_mask_ms", "view_freq_masks", "view_freq_mask_mel"):
        inner.pop(field)
    path.write_text(json.dumps(stored))
    assert load_config(AugmentConfig, path) == AugmentConfig()
    with pytest.raises(DistillError, match="view_time_mask_ms"):
        AugmentConfig(view_time_mask_ms=1000.0)
    with pytest.raises(DistillError, match="view_freq_mask_mel"):
        AugmentConfig(view_freq_mask_mel=-1.0)
    with pytest.raises(DistillError, match="view_freq_masks"):
        AugmentConfig(view_freq_masks=-1)
