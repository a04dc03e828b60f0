"""Data augmentation: deterministic waveform views and SpecAugment masks.

Why everything here is a pure function
--------------------------------------
Teachers label ``K`` augmented *views* of every training clip and the student is
later trained on exactly those views, possibly in another process, another
batch order and another batch size. So a view must be a pure function of

    (clean waveform, per-example seed, view number, noise recordings, config)

and never of the batch it happens to sit in, of the global numpy/TF RNG, or of
how many views were drawn before it. View 0 is by definition the clean clip and
is returned unchanged.

Randomness scheme (counter-based, vectorized)
---------------------------------------------
There is no RNG *state*. Every random number is a hash of a counter:

    key(seed, view, domain) = mix64(seed ^ mix64(view * GOLDEN + domain))
    draw(seed, view, domain, d) = mix64(key + (d + 1) * GOLDEN)
    uniform = (draw >> 11) * 2**-53            # in [0, 1), 53 random bits

where ``mix64`` is the SplitMix64 finalizer and ``GOLDEN = 0x9E3779B97F4A7C15``
(i.e. draw ``d`` is the ``d``-th output of a SplitMix64 stream started at
``key``). Each transform reads fixed draw indices (``_DRAW_*`` below), so turning
one transform on or off never changes the numbers another one sees, and adding a
transform later only needs a new index. ``domain`` separates the waveform draws
from the SpecAugment draws. All of it is uint64 array arithmetic over the batch,
so it costs microseconds and needs no per-example ``numpy.random.Generator``.

Changing the hash, the draw indices or the order of transforms changes every
stored view: treat them like ``labels.CLASSES`` (append, never reorder) and
bump ``AUGMENT_SCHEME_VERSION`` if you must.

Order of the waveform transforms: speed perturbation -> time shift -> gain ->
noise mixing -> view masks (removed frequency bands, then silent spans; off by
default, drawn in their own domain so views without them keep their bits) ->
clip to [-1, 1].

Bit-exact, not just statistically equal
---------------------------------------
A row's output bits are the same in any batch, order or chunk (the tests check
this): per-row numbers never depend on other rows (e.g. the resampling margin
is added to integer indices, not to float positions), and the only reductions
(clip and noise energies) use numpy's fixed-order pairwise sum on one row at a
time instead of BLAS, whose order may depend on the thread count. Across different CPUs or numpy builds the float64 ``power`` of a
gain/SNR may differ in its last bit, which survives the float32 cast with
probability ~1e-9: views are reproducible, not guaranteed bit-identical, there.

Speed: the per-example draws are vectorized over the batch; the signal work runs
over chunks of 16 rows (batched gathers with linear interpolation for speed,
slices for shifts and noise windows, float32 throughout) so temporaries stay in
cache. About 15,000 clips/s on one core for B=256 with the default config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from distill.core.errors import DistillError
from distill.core.labels import CLIP_SAMPLES, SAMPLE_RATE

# Stored with artefacts so a reader can refuse views made by a different scheme.
AUGMENT_SCHEME_VERSION = 1

# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """What the augmentation does; saved as JSON beside every artefact that used it.

    The waveform part (``augment_waveforms``) makes the teachers' views; the
    SpecAugment part masks features during training only.
    """

    time_shift_ms: float = 100.0
    """Shift by an integer number of samples uniform in [-t, t], zero-filled (the tutorial's default)."""
    noise_probability: float = 0.8
    """Share of clips that get a background-noise window mixed in (the tutorial's 0.8)."""
    noise_snr_db: tuple[float, float] = (0.0, 20.0)
    """SNR range, relative to the clip's RMS after gain; see ``silent_clip_rms`` for near-silent clips."""
    gain_db: tuple[float, float] = (-6.0, 6.0)
    speed_probability: float = 0.5
    speed_range: tuple[float, float] = (0.9, 1.1)
    """Resample-based speed *and* pitch factor (>1 is faster/higher), re-centred and cropped to 1 s."""
    time_masks: int = 2
    time_mask_frames: int = 10
    freq_masks: int = 2
    freq_mask_bins: int = 5
    silent_clip_rms: float = 1e-3
    """A clip quieter than this (-60 dBFS) has no meaningful level to set an SNR against
    (an all-zero ``silence`` clip would get no noise at all, or a division by zero) ..."""
    silent_reference_rms: float = 0.05
    """... so its noise is scaled as if the clip had this RMS (about -26 dBFS, a typical
    utterance), i.e. noise RMS in [0.005, 0.05] for the default SNR range."""
    view_time_masks: int = 0
    """Spans of every view > 0 set to zero in the waveform itself: SpecAugment's time masks moved
    into the view, so teachers label the masked clip the student then sees (consistent masking;
    ``--feature-masks`` masks only the student's input). 0, the default, is off."""
    view_time_mask_ms: float = 100.0
    """Widest span, uniform in [0, this] (SpecAugment's 10 frames at a 10 ms stride)."""
    view_freq_masks: int = 0
    """Frequency bands removed from every view > 0 (zeroed in the clip's 1 s spectrum). 0 is off."""
    view_freq_mask_mel: float = 340.0
    """Widest band in mel, uniform in [0, this], at a uniform start on the mel scale up to 8 kHz:
    about SpecAugment's 5 of the front-end's 40 mel bins."""

    def __post_init__(self) -> None:
        # Configs come from the command line and from JSON: reject nonsense early with a message
        # that names the field, rather than producing NaNs or empty masks deep inside training.
        def bad(field: str, why: str) -> DistillError:
            return DistillError(f"AugmentConfig.{field}={getattr(self, field)!r}: {why}")

        if not (self.time_shift_ms >= 0 and math.isfinite(self.time_shift_ms)):
            raise bad("time_shift_ms", "must be a finite number >= 0")
        if self.time_shift_ms * SAMPLE_RATE / 1000.0 >= CLIP_SAMPLES:
            raise bad("time_shift_ms", "must be shorter than the 1 s clip")
        for field in ("noise_probability", "speed_probability"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise bad(field, "must be a probability in [0, 1]")
        for field in ("noise_snr_db", "gain_db", "speed_range"):
            value = getattr(self, field)
            if len(value) != 2 or not all(math.isfinite(v) for v in value) or value[0] > value[1]:
                raise bad(field, "must be a finite (low, high) pair with low <= high")
        low, high = self.speed_range
        if low <= 0:
            raise bad("speed_range", "factors must be > 0")
        if max(high / low, high, 1 / low) > 4.0:
            raise bad("speed_range", "factors beyond 4x (or 1/4x) leave almost nothing of the word")
        for field in ("time_masks", "time_mask_frames", "freq_masks", "freq_mask_bins", "view_time_masks", "view_freq_masks"):
            if int(getattr(self, field)) != getattr(self, field) or getattr(self, field) < 0:
                raise bad(field, "must be an integer >= 0")
        if not 0 <= self.view_time_mask_ms * SAMPLE_RATE / 1000.0 < CLIP_SAMPLES:
            raise bad("view_time_mask_ms", "must be >= 0 and shorter than the 1 s clip")
        if not 0 <= self.view_freq_mask_mel < _hz_to_mel(SAMPLE_RATE / 2):
            raise bad("view_freq_mask_mel", f"must be >= 0 and below the {_hz_to_mel(SAMPLE_RATE / 2):.0f} mel up to 8 kHz")
        if not self.silent_clip_rms >= 0:
            raise bad("silent_clip_rms", "must be >= 0")
        if not self.silent_reference_rms > 0:
            raise bad("silent_reference_rms", "must be > 0")

    @classmethod
    def none(cls) -> AugmentConfig:
        """A config that changes nothing (every view equals the clean clip, no masks)."""
        return cls(
            time_shift_ms=0.0,
            noise_probability=0.0,
            gain_db=(0.0, 0.0),
            speed_probability=0.0,
            speed_range=(1.0, 1.0),
            time_masks=0,
            freq_masks=0,
        )

    @classmethod
    def with_view_masks(cls, base: AugmentConfig | None = None) -> AugmentConfig:
        """``base`` (default: the default config) with masks in its views, as many as SpecAugment's defaults."""
        from dataclasses import replace

        return replace(base or cls(), view_time_masks=cls.time_masks, view_freq_masks=cls.freq_masks)

    def view_masks_enabled(self) -> bool:
        """Whether views carry masks of their own (``view_time_masks`` / ``view_freq_masks``)."""
        return (self.view_time_masks > 0 and self.view_time_mask_ms > 0) or (self.view_freq_masks > 0 and self.view_freq_mask_mel > 0)

    @property
    def time_shift_samples(self) -> int:
        return int(round(self.time_shift_ms * SAMPLE_RATE / 1000.0))

    @property
    def view_time_mask_samples(self) -> int:
        """Widest view time mask in samples."""
        return int(round(self.view_time_mask_ms * SAMPLE_RATE / 1000.0))

    def waveform_enabled(self) -> bool:
        """Whether ``augment_waveforms`` can change a clip (noise also needs recordings at call time)."""
        return (
            self.time_shift_samples > 0
            or self.noise_probability > 0
            or self.gain_db != (0.0, 0.0)
            or (self.speed_probability > 0 and self.speed_range != (1.0, 1.0))
            or self.view_masks_enabled()
        )

    def spec_enabled(self) -> bool:
        """Whether the SpecAugment masks can mask anything."""
        return (self.time_masks > 0 and self.time_mask_frames > 0) or (self.freq_masks > 0 and self.freq_mask_bins > 0)

    def enabled(self) -> bool:
        """Whether any augmentation is on; ``False`` lets callers skip making views altogether."""
        return self.waveform_enabled() or self.spec_enabled()


# --------------------------------------------------------------------------------------
# Counter-based randomness
# --------------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_TWO_POW_MINUS_53 = 1.0 / (1 << 53)

# Domains keep waveform and SpecAugment streams apart even for the same (seed, view).
_DOMAIN_WAVEFORM = np.uint64(0x5741564546524D31)  # "WAVEFRM1"
_DOMAIN_SPEC = np.uint64(0x5350454341554731)  # "SPECAUG1"
_DOMAIN_VIEW_MASK = np.uint64(0x564945574D534B31)  # "VIEWMSK1": its own stream, so views without masks keep their bits

# Fixed draw indices of the waveform transforms. Append only: reordering changes every stored view.
_DRAW_SPEED_APPLY = 0
_DRAW_SPEED_FACTOR = 1
_DRAW_SHIFT = 2
_DRAW_GAIN = 3
_DRAW_NOISE_APPLY = 4
_DRAW_NOISE_SNR = 5
_DRAW_NOISE_RECORDING = 6
_DRAW_NOISE_OFFSET = 7
_WAVEFORM_DRAWS = 8

# Rows processed together: 16 clips keep each temporary at ~1 MB (cache-resident, malloc-reused);
# whole-batch temporaries of 16 MB are 2-3x slower from page faults and cache misses.
_CHUNK_ROWS = 16


def _hz_to_mel(hz):
    """HTK mel scale, the one the log-mel front-end's filterbank uses."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (np.power(10.0, np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer: a bijection on uint64 with full avalanche (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def _uniforms(seeds: np.ndarray, views: np.ndarray, *, domain: np.uint64, draws: int) -> np.ndarray:
    """``(B, draws)`` float64 uniforms in [0, 1); row ``i`` depends only on ``(seeds[i], views[i], domain)``."""
    with np.errstate(over="ignore"):
        seed_u = seeds.astype(np.int64, copy=False).view(np.uint64)
        view_u = views.astype(np.int64, copy=False).view(np.uint64)
        key = _mix64(seed_u ^ _mix64(view_u * _GOLDEN + domain))
        counters = (np.arange(1, draws + 1, dtype=np.uint64) * _GOLDEN)[None, :]
        bits = _mix64(key[:, None] + counters)
    return (bits >> np.uint64(11)).astype(np.float64) * _TWO_POW_MINUS_53


def _check_seeds_and_views(seeds: Any, view: Any, batch: int) -> tuple[np.ndarray, np.ndarray]:
    seeds_arr = np.asarray(seeds)
    if seeds_arr.shape != (batch,) or not np.issubdtype(seeds_arr.dtype, np.integer):
        raise ValueError(f"seeds: expected an integer array of shape ({batch},), got {seeds_arr.dtype} {seeds_arr.shape}")
    view_arr = np.asarray(view)
    if not np.issubdtype(view_arr.dtype, np.integer):
        raise ValueError(f"view: expected an integer or an integer array of shape ({batch},), got {view_arr.dtype}")
    if view_arr.ndim == 0:
        view_arr = np.full(batch, int(view_arr), dtype=np.int64)
    elif view_arr.shape != (batch,):
        raise ValueError(f"view: expected an integer or an integer array of shape ({batch},), got shape {view_arr.shape}")
    if view_arr.size and view_arr.min() < 0:
        raise ValueError("view: view numbers must be >= 0 (0 is the clean clip)")
    return seeds_arr, view_arr.astype(np.int64, copy=False)


# --------------------------------------------------------------------------------------
# Waveform augmentation
# --------------------------------------------------------------------------------------


def augment_waveforms(
    audio: np.ndarray,
    *,
    seeds: np.ndarray,
    view: int | np.ndarray,
    noise: Sequence[np.ndarray],
    config: AugmentConfig,
) -> np.ndarray:
    """Return view ``view`` of each clip: speed -> shift -> gain -> noise -> view masks -> clip to [-1, 1].

    ``audio`` is ``(B, 16000)``; ``seeds`` ``(B,)`` integers, one per example and
    fixed for the life of the dataset; ``view`` a scalar or ``(B,)``. Rows with
    view 0 come back unchanged. ``noise`` holds 1-D background recordings (the
    ``_background_noise_`` wavs, any dtype and scale: the window is rescaled to
    the drawn SNR, so int16 and float recordings give the same result); an empty
    sequence turns noise mixing off. Pass numpy arrays, not lists, so windows
    are sliced without converting whole recordings on every call.
    """
    audio = np.asarray(audio)
    if audio.ndim != 2 or audio.shape[1] != CLIP_SAMPLES:
        raise ValueError(f"audio: expected shape (batch, {CLIP_SAMPLES}), got {audio.shape}")
    seeds_arr, views = _check_seeds_and_views(seeds, view, audio.shape[0])
    noise = _check_noise(noise)

    active = np.flatnonzero(views != 0)
    if active.size == 0 or not config.waveform_enabled():
        return np.array(audio, dtype=np.float32, copy=True)
    out = np.empty(audio.shape, dtype=np.float32)
    if active.size < audio.shape[0]:
        clean = np.flatnonzero(views == 0)
        out[clean] = audio[clean]

    # Every per-example number is drawn up front from the counter-based hash (vectorized); the
    # signal work below then runs in chunks of rows so its temporaries stay in cache.
    u = _uniforms(seeds_arr[active], views[active], domain=_DOMAIN_WAVEFORM, draws=_WAVEFORM_DRAWS)
    low, high = config.speed_range
    speed = (u[:, _DRAW_SPEED_APPLY] < config.speed_probability) & ((low, high) != (1.0, 1.0))
    factors = low + u[:, _DRAW_SPEED_FACTOR] * (high - low)
    max_shift = config.time_shift_samples
    # Whole-sample shifts, as in the tutorial (a sub-sample shift would only low-pass the clip).
    shifts = np.floor(u[:, _DRAW_SHIFT] * (2 * max_shift + 1)).astype(np.int64) - max_shift
    low, high = config.gain_db
    gains = np.power(10.0, (low + u[:, _DRAW_GAIN] * (high - low)) / 20.0).astype(np.float32)
    mixing = (u[:, _DRAW_NOISE_APPLY] < config.noise_probability) & bool(noise)
    low, high = config.noise_snr_db
    snr_db = low + u[:, _DRAW_NOISE_SNR] * (high - low)
    picks = np.minimum((u[:, _DRAW_NOISE_RECORDING] * max(len(noise), 1)).astype(np.int64), max(len(noise) - 1, 0))
    apply_gain = config.gain_db != (0.0, 0.0)
    time_masks, freq_bands = _view_masks(seeds_arr[active], views[active], config)

    for first in range(0, active.size, _CHUNK_ROWS):
        part = slice(first, first + _CHUNK_ROWS)
        rows = active[part]
        x = audio[rows].astype(np.float32, copy=False)  # fancy indexing copies: the caller's array is never written
        chosen = np.flatnonzero(speed[part])
        if chosen.size:
            x[chosen] = _resample_centred(x[chosen], factors[part][chosen])
        if max_shift > 0:
            x = _shift_rows(x, shifts[part])
        if apply_gain:
            x *= gains[part][:, None]
        chosen = np.flatnonzero(mixing[part])
        if chosen.size:
            _mix_noise(
                x,
                chosen,
                snr_db=snr_db[part][chosen],
                picks=picks[part][chosen],
                offset_draws=u[part][chosen, _DRAW_NOISE_OFFSET],
                noise=noise,
                config=config,
            )
        if freq_bands is not None:  # before the time masks, which then stay exact zeros
            _remove_bands(x, freq_bands[part])
        if time_masks is not None:
            x[_bands_numpy(time_masks[part], config.view_time_mask_samples, CLIP_SAMPLES)] = 0.0
        np.clip(x, -1.0, 1.0, out=x)
        out[rows] = x
    return out


def _view_masks(seeds: np.ndarray, views: np.ndarray, config: AugmentConfig) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per row: the (width, start) uniforms of its time masks, and its removed bands as (lo, hi) Hz pairs.

    Draw layout in the view-mask domain: (width, start) per time mask, then per frequency band, so
    the time masks do not move when ``view_freq_masks`` changes (as in ``spec_augment``).
    """
    if not config.view_masks_enabled():
        return None, None
    k_t, k_f = config.view_time_masks, config.view_freq_masks
    u = _uniforms(seeds, views, domain=_DOMAIN_VIEW_MASK, draws=2 * (k_t + k_f))
    time_masks = u[:, : 2 * k_t] if k_t and config.view_time_mask_samples else None
    freq_bands = None
    if k_f and config.view_freq_mask_mel > 0:
        top = float(_hz_to_mel(SAMPLE_RATE / 2))
        widths = u[:, 2 * k_t :: 2] * config.view_freq_mask_mel
        starts = u[:, 2 * k_t + 1 :: 2] * (top - widths)
        freq_bands = np.stack([_mel_to_hz(starts), _mel_to_hz(starts + widths)], axis=-1)  # (B, k_f, 2)
    return time_masks, freq_bands


def _remove_bands(x: np.ndarray, bands: np.ndarray) -> None:
    """Zero each row's (lo, hi) Hz bands in its 1 s spectrum, in place.

    One row at a time: a batched FFT may take SIMD paths that differ in the last bit between rows,
    and a view must not depend on its batch. The 16,000-point FFT has 1 Hz bins.
    """
    n = x.shape[1]
    hz_per_bin = SAMPLE_RATE / n
    edges = np.ceil(bands / hz_per_bin).astype(np.int64)  # bin k is removed when lo <= k * hz_per_bin < hi
    for row, row_edges in enumerate(edges.tolist()):
        if all(lo >= hi for lo, hi in row_edges):
            continue
        spectrum = np.fft.rfft(x[row].astype(np.float64))
        for lo, hi in row_edges:
            spectrum[lo:hi] = 0.0
        x[row] = np.fft.irfft(spectrum, n=n).astype(np.float32)


def _check_noise(noise: Sequence[np.ndarray] | None) -> list[np.ndarray]:
    if noise is None:
        return []
    recordings = []
    for i, rec in enumerate(noise):
        arr = np.asarray(rec)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"noise[{i}]: expected a non-empty 1-D recording of shape (samples,), got {arr.shape}")
        recordings.append(arr)
    return recordings


def _resample_centred(x: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Play each row ``factor`` times faster (pitch up by ``factor``), keeping the clip centre fixed.

    Output sample ``n`` reads the input at ``c + (n - c) * factor`` (``c`` the
    centre) by linear interpolation: a faster row is zero-padded at both ends, a
    slower one cropped. There is no anti-aliasing filter: at the default 1.1x
    only content above ~7.3 kHz folds back, where speech has little energy and
    linear interpolation already attenuates. Rows are padded with zeros by a
    margin covering the largest factor, so the gather needs no bounds masks.
    """
    rows, n = x.shape
    centre = (n - 1) / 2.0
    margin = int(math.ceil(centre * float(np.max(np.abs(factors - 1.0))))) + 2
    width = n + 2 * margin
    padded = np.zeros((rows, width), dtype=np.float32)
    padded[:, margin : margin + n] = x
    offsets = (np.arange(n, dtype=np.float32) - np.float32(centre))[None, :]
    pos = offsets * factors.astype(np.float32)[:, None]
    # Positions must not depend on the margin (which depends on the other rows' factors), or a row's
    # rounding, hence its output bits, would depend on its batch: add the margin to the integer part.
    pos += np.float32(centre)
    floor = np.floor(pos)
    frac = pos
    frac -= floor  # in place: frac = pos - floor(pos), still float32
    index = floor.astype(np.intp)  # intp: np.take would otherwise convert int32 indices itself
    index += (np.arange(rows, dtype=np.intp) * width + margin)[:, None]  # >= 0 thanks to the margin
    flat = padded.ravel()
    left = np.take(flat, index)
    index += 1
    right = np.take(flat, index)
    right -= left
    right *= frac
    left += right
    return left


def _shift_rows(x: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Row ``i`` moved right by ``shifts[i]`` samples (left if negative), zero-filled."""
    out = np.zeros_like(x)
    n = x.shape[1]
    for i, s in enumerate(shifts.tolist()):
        if s >= 0:
            out[i, s:] = x[i, : n - s]
        else:
            out[i, :s] = x[i, -s:]
    return out


def _row_energies(x: np.ndarray) -> np.ndarray:
    """Sum of squares of each row, bit-identical whatever batch, chunk or memory alignment the row sits in.

    BLAS dot products promise no summation order (OpenBLAS splits long sums across threads, so the
    thread count of the machine would leak into the noise scale) and ``einsum`` may hand off to
    BLAS too; a last-bit change in an energy changes the scale and so most output samples. numpy's
    pairwise ``add.reduce`` over one 1-D row has a fixed summation order (float32, 8 partial sums
    and pairwise blocks: ~1e-7 relative error for 16,000 terms).
    """
    squares = np.square(x)
    return np.array([np.add.reduce(row) for row in squares], dtype=np.float64)


def _mix_noise(
    x: np.ndarray,
    rows: np.ndarray,
    *,
    snr_db: np.ndarray,
    picks: np.ndarray,
    offset_draws: np.ndarray,
    noise: list[np.ndarray],
    config: AugmentConfig,
) -> None:
    """Add a scaled background window to ``x[rows]`` in place so that RMS(clip) / RMS(noise) hits ``snr_db``."""
    n = x.shape[1]
    windows = np.empty((rows.size, n), dtype=np.float32)
    for j, (pick, draw) in enumerate(zip(picks.tolist(), offset_draws.tolist())):
        rec = noise[pick]
        if rec.size >= n:
            start = min(int(draw * (rec.size - n + 1)), rec.size - n)
            windows[j] = rec[start : start + n]  # converts int16 etc. to float32 one window at a time
        else:  # a recording shorter than a clip is looped (rare; the real noise files are ~1 min)
            windows[j] = np.resize(rec, n)
    clip = x[rows]
    clip_rms = np.sqrt(_row_energies(clip) / n)
    noise_rms = np.sqrt(_row_energies(windows) / n)
    reference = np.where(clip_rms < config.silent_clip_rms, config.silent_reference_rms, clip_rms)
    target_rms = reference * np.power(10.0, -snr_db / 20.0)
    # A window of digital silence (noise_rms 0) has no level to scale: add nothing rather than NaN.
    scale = np.divide(target_rms, noise_rms, out=np.zeros_like(target_rms), where=noise_rms > 0)
    windows *= scale.astype(np.float32)[:, None]
    clip += windows
    x[rows] = clip


# --------------------------------------------------------------------------------------
# SpecAugment
# --------------------------------------------------------------------------------------

def spec_augment(features: np.ndarray, *, seeds: np.ndarray, view: int | np.ndarray, config: AugmentConfig) -> np.ndarray:
    """Deterministic SpecAugment on ``(B, T, F)`` features: a masked copy, view-0 rows unchanged.

    Each of ``config.time_masks`` masks zeroes ``w ~ U{0..time_mask_frames}``
    consecutive frames at a uniform start (likewise for frequency bins), as in
    the SpecAugment paper; masks may overlap. The fill value is 0, i.e. the
    mean of normalised features. Use this to mask stored/precomputed features
    keyed by (seed, view); the ``SpecAugment`` layer does the same online (with
    its own Keras RNG, so its masks are not these).

    Draw layout in the spec domain: (width, start) per time mask, then per
    frequency mask, so the time masks do not move when ``freq_masks`` changes.
    """
    features = np.asarray(features)
    if features.ndim != 3:
        raise ValueError(f"features: expected shape (batch, frames, bins), got {features.shape}")
    batch, frames, bins = features.shape
    seeds_arr, views = _check_seeds_and_views(seeds, view, batch)
    out = np.array(features, copy=True)
    active = np.flatnonzero(views != 0)
    if active.size == 0 or not config.spec_enabled():
        return out
    k_t, k_f = config.time_masks, config.freq_masks
    u = _uniforms(seeds_arr[active], views[active], domain=_DOMAIN_SPEC, draws=2 * (k_t + k_f))
    time_mask = _bands_numpy(u[:, : 2 * k_t], min(config.time_mask_frames, frames), frames)
    freq_mask = _bands_numpy(u[:, 2 * k_t :], min(config.freq_mask_bins, bins), bins)
    masked = time_mask[:, :, None] | freq_mask[:, None, :]
    block = out[active]
    block[masked] = 0
    out[active] = block
    return out


def _bands_numpy(u: np.ndarray, max_width: int, length: int) -> np.ndarray:
    """``(B, length)`` bool: union of ``u.shape[1] // 2`` bands of width U{0..max_width} at uniform starts."""
    rows = u.shape[0]
    if u.shape[1] == 0 or max_width == 0:
        return np.zeros((rows, length), dtype=bool)
    widths = np.floor(u[:, 0::2] * (max_width + 1))
    starts = np.floor(u[:, 1::2] * (length - widths + 1))
    pos = np.arange(length)[None, None, :]
    inside = (pos >= starts[:, :, None]) & (pos < (starts + widths)[:, :, None])
    return inside.any(axis=1)


@keras.saving.register_keras_serializable(package="distill")
class SpecAugment(keras.layers.Layer):
    """SpecAugment time/frequency masking as a Keras layer: identity unless ``training=True``.

    Inputs are ``(B, T, F)`` or ``(B, T, F, C)`` (the mask is shared across
    channels). Randomness comes from ``keras.random`` with a ``SeedGenerator``
    built from ``seed``, so two layers with the same seed mask the same way and
    a training run is reproducible; the generator advances on every call, so
    successive batches get fresh masks. Keep this layer out of exported
    inference graphs (it is an identity there anyway).
    """

    def __init__(
        self,
        *,
        time_masks: int = 2,
        time_mask_frames: int = 10,
        freq_masks: int = 2,
        freq_mask_bins: int = 5,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for name, value in (
            ("time_masks", time_masks),
            ("time_mask_frames", time_mask_frames),
            ("freq_masks", freq_masks),
            ("freq_mask_bins", freq_mask_bins),
        ):
            if int(value) != value or value < 0:
                raise ValueError(f"SpecAugment: {name} must be an integer >= 0, got {value!r}")
        self.time_masks = int(time_masks)
        self.time_mask_frames = int(time_mask_frames)
        self.freq_masks = int(freq_masks)
        self.freq_mask_bins = int(freq_mask_bins)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    @classmethod
    def from_augment_config(cls, config: AugmentConfig, *, seed: int | None = None, **kwargs: Any) -> SpecAugment:
        return cls(
            time_masks=config.time_masks,
            time_mask_frames=config.time_mask_frames,
            freq_masks=config.freq_masks,
            freq_mask_bins=config.freq_mask_bins,
            seed=seed,
            **kwargs,
        )

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if len(input_shape) not in (3, 4):
            raise ValueError(f"SpecAugment: expected input shape (batch, frames, bins[, channels]), got {input_shape}")
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training or not (
            (self.time_masks and self.time_mask_frames) or (self.freq_masks and self.freq_mask_bins)
        ):
            return inputs
        shape = ops.shape(inputs)
        batch, frames, bins = shape[0], shape[1], shape[2]
        mask = self._bands(batch, self.time_masks, self.time_mask_frames, frames)[:, :, None]
        mask = ops.logical_or(mask, self._bands(batch, self.freq_masks, self.freq_mask_bins, bins)[:, None, :])
        if len(inputs.shape) == 4:
            mask = mask[:, :, :, None]
        return ops.where(mask, ops.zeros_like(inputs), inputs)

    def _bands(self, batch: Any, count: int, max_width: int, length: Any) -> Any:
        """``(B, length)`` bool union of ``count`` bands of width U{0..max_width} (clamped to ``length``)."""
        if count == 0 or max_width == 0:
            return ops.zeros((batch, length), dtype="bool")
        u = keras.random.uniform((batch, count, 2), seed=self.seed_generator, dtype="float32")
        length_f = ops.cast(length, "float32")
        widths = ops.floor(u[:, :, 0] * (ops.minimum(float(max_width), length_f) + 1.0))
        starts = ops.floor(u[:, :, 1] * (length_f - widths + 1.0))
        pos = ops.cast(ops.arange(length), "float32")[None, None, :]
        inside = ops.logical_and(pos >= starts[:, :, None], pos < (starts + widths)[:, :, None])
        return ops.any(inside, axis=1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            time_masks=self.time_masks,
            time_mask_frames=self.time_mask_frames,
            freq_masks=self.freq_masks,
            freq_mask_bins=self.freq_mask_bins,
            seed=self.seed,
        )
        return config


__all__ = [
    "AUGMENT_SCHEME_VERSION",
    "AugmentConfig",
    "SpecAugment",
    "augment_waveforms",
    "spec_augment",
]
