"""Synthetic demo data in exactly the Speech Commands v0.01 layout, spoken by eSpeak NG.

Why: the toolkit's whole pipeline (index, training, distillation, calibration,
export, submission) must be runnable and testable without the 2.3 GB real data
set. The synthesizer writes a tree that every loader treats like the real one::

    out/<word>/<speaker>_nohash_<n>.wav     30 word folders, 1 s, 16 kHz, int16 mono
    out/_background_noise_/*.wav            long noise recordings (white, pink, brown, hum, tap, babble)
    out/validation_list.txt                 word/file.wav lines, from distill.data.splits.which_set
    out/testing_list.txt
    out/synth_config.json                   the SynthConfig (distill.core.config.save_config)
    out/synth_manifest.json                 every speaker's id, split and voice settings

and optionally an unlabeled Kaggle-style test folder of ``clip_<9 hex>.wav`` from
speakers that are not in the training tree, whose class mix (by default 45%
unknown, 15% silence) differs from training as the real test set's does, with
its ``fname,label`` answer key written outside that folder.

Determinism. eSpeak NG's output is not repeatable inside one process but is
bit-identical in a fresh process that makes the same sequence of calls. The work
is therefore cut into fixed chunks (one speaker, one noise recording, ...) whose
content depends only on the config, and every chunk runs in its own fresh process
(``max_tasks_per_child=1``) with its own seeded random generator. The number of
jobs only changes which chunks run at the same time, never what they write.
Processes come from a fork server that has already imported numpy and scipy
(``import scipy.signal`` alone costs about 0.8 s) but has never touched eSpeak,
so a chunk's process starts in milliseconds yet holds a pristine eSpeak state.

Speaker ids and splits. Ids are 8 hex characters derived from (seed, speaker
number), like the real data's hashes, and the split of a speaker is decided by
the real rule (``which_set``: about 10% validation, 10% testing). With a few
dozen speakers that rule can leave a split empty, so ids are redrawn (next
attempt number) until every split is guaranteed ``min_speakers_per_split``
speakers (capped at a third of the speakers); beyond the minimum the hash rule
decides alone.

This module and its workers import only numpy, scipy, the standard library and
small distill helpers; never TensorFlow, so a worker process stays cheap.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import math
import multiprocessing
import os
import re
import time
import wave
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.signal import butter, resample_poly, sosfilt

from distill.core.config import save_config
from distill.core.errors import DistillError
from distill.core.io import atomic_folder, check_output, read_json, write_bytes, write_json, write_text
from distill.core.labels import (
    BACKGROUND_NOISE_DIR,
    CLIP_SAMPLES,
    SAMPLE_RATE,
    SILENCE,
    TARGET_WORDS,
    UNKNOWN,
    V001_WORDS,
    V002_EXTRA_WORDS,
)
from distill.data.splits import SPLITS, TESTING, VALIDATION, which_set
from distill.data.wav import int16_to_float32

__all__ = ["SynthConfig", "SynthResult", "synthesize_dataset", "EXTRA_UNKNOWN_WORDS", "NOISE_TYPES"]

ESPEAK_RATE = 22_050
# 22,050 -> 16,000 Hz is exactly 320/441.
_UP, _DOWN = 320, 441
# A word longer than this is sped up (or, if far too long, cropped) so a little
# margin always remains for the random offset.
_MAX_WORD_SAMPLES = 15_360

# Words that are never training folders: test-set unknowns the model has not seen,
# as the real Kaggle test set has. The v0.02 extras are real Speech Commands words;
# the rest are short English words, some close to a target ("bag", "dig", "tea"),
# and two phrases that start with a target word.
EXTRA_UNKNOWN_WORDS: tuple[str, ...] = (
    *V002_EXTRA_WORDS, "bag", "dig", "wall", "tea", "cup", "high", "go ahead", "stop it",
)

# Filler for babble: everyday words, none of them a target word.
_BABBLE_WORDS: tuple[str, ...] = (
    "the", "and", "what", "about", "because", "people", "really", "think", "little", "morning",
    "water", "coffee", "window", "table", "after", "never", "maybe", "probably", "weekend", "money",
    "number", "friday", "kitchen", "garden", "yesterday", "tomorrow", "something", "nothing", "listen", "moment",
    "paper", "bring", "later", "seven o'clock", "have you seen", "I told you", "over there", "just a minute",
)

# Base voices (file names; en-gb itself is refused, see the platform notes) and
# variants; every combination was checked to be accepted. Weights keep most
# speakers on the common accents.
_BASES: tuple[str, ...] = (
    "en", "en-us", "en-us-nyc", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)
_BASE_WEIGHTS = (0.24, 0.30, 0.08, 0.10, 0.08, 0.07, 0.07, 0.06)
# Variants that set ``breath`` (f2, f3, f5, Alicia, whisper, ...) are left out on
# purpose: measured here, their output differs between fresh processes making the
# same calls (two or more outcomes at random, even after srand), which would break
# bit-identical re-runs. Every variant below gave one outcome in 8 fresh processes.
# Klatt variants use a different synthesis method and add timbre diversity, so
# they get a small share; female variants about a third of the speakers.
_MALE_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7")
_FEMALE_VARIANTS = ("+f1", "+f4", "+linda", "+belinda", "+aunty", "+steph", "+Annie", "+Andrea")
_KLATT_VARIANTS = ("+klatt", "+klatt2", "+klatt3")
_VARIANTS: tuple[str, ...] = (*_MALE_VARIANTS, *_FEMALE_VARIANTS, *_KLATT_VARIANTS)
_VARIANT_RAW_WEIGHTS = (6.0,) * len(_MALE_VARIANTS) + (3.5,) * len(_FEMALE_VARIANTS) + (2.0,) * len(_KLATT_VARIANTS)
_VARIANT_WEIGHTS = tuple(w / sum(_VARIANT_RAW_WEIGHTS) for w in _VARIANT_RAW_WEIGHTS)

# Long recordings in _background_noise_ (babble needs eSpeak; the others are numpy).
NOISE_TYPES: tuple[str, ...] = ("white_noise", "pink_noise", "brown_noise", "mains_hum", "running_tap", "babble")
# RMS level of each long recording, dBFS: babble is kept low, as asked of it.
_NOISE_RMS_DB = {
    "white_noise": -22.0, "pink_noise": -20.0, "brown_noise": -20.0,
    "mains_hum": -24.0, "running_tap": -22.0, "babble": -30.0,
}
# What a test "silence" clip is made of ("digital" is all zeros), and how often.
_SILENCE_KINDS: tuple[str, ...] = ("digital", "white_noise", "pink_noise", "brown_noise", "mains_hum", "running_tap")
_SILENCE_WEIGHTS = (0.12, 0.18, 0.2, 0.2, 0.15, 0.15)

_TEST_CLIPS_PER_SPEAKER = 10
TEST_MARKER = ".distill_synth_test"  # marks a test folder this module wrote (replaced only with overwrite, like the tree)
_WORD_RE = re.compile(r"[a-z][a-z0-9]*")


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesize. Same config (seed included) => bit-identical files.

    ``snr_db`` bounds each speaker's own signal-to-noise ratio (a speaker keeps one
    noise colour and SNR, the way a real contributor keeps one room and microphone).
    ``min_speakers_per_split`` guarantees validation and testing speakers even for
    small demos (see the module docstring); it is capped at ``speakers // 3``.
    ``test_clips`` > 0 also writes the unlabeled test folder and its answer key.
    ``targets`` are the target words of that test folder's mix (its answer key's labels are
    silence, unknown and these); every other word is an unknown there. The Kaggle ten by default;
    ``for_words`` makes the config of another word list.
    """

    speakers: int = 40
    takes: int = 1
    words: tuple[str, ...] = V001_WORDS
    seed: int = 0
    noise_seconds: float = 20.0
    test_clips: int = 0
    test_unknown_share: float = 0.45
    test_silence_share: float = 0.15
    snr_db: tuple[float, float] = (12.0, 40.0)
    min_speakers_per_split: int = 4
    targets: tuple[str, ...] = TARGET_WORDS

    @classmethod
    def for_words(cls, targets: Sequence[str], **options) -> "SynthConfig":
        """A config whose targets are ``targets``: they are word folders, and so are the v0.01 words that are not
        targets (the unknown words)."""
        from distill.core.labels import check_words

        targets = tuple(targets)
        check_words(targets)
        return cls(words=(*targets, *(w for w in V001_WORDS if w not in targets)), targets=targets, **options)

    def __post_init__(self) -> None:
        # lists arrive from JSON and the CLI; tuples keep the config hashable and comparable
        object.__setattr__(self, "words", tuple(self.words))
        object.__setattr__(self, "targets", tuple(self.targets))
        for word in self.targets:
            if not _WORD_RE.fullmatch(word):
                raise DistillError(f"SynthConfig.targets: {word!r} is not a lowercase word usable as a folder name")
        if not self.targets or len(set(self.targets)) != len(self.targets) or set(self.targets) & {SILENCE, UNKNOWN}:
            raise DistillError(f"SynthConfig.targets must be distinct words other than silence and unknown, got {self.targets}")
        object.__setattr__(self, "snr_db", tuple(float(v) for v in self.snr_db))
        if self.speakers < 1:
            raise DistillError(f"SynthConfig.speakers must be >= 1, got {self.speakers}")
        if self.seed < 0:
            raise DistillError(f"SynthConfig.seed must be >= 0, got {self.seed}")
        if self.takes < 1:
            raise DistillError(f"SynthConfig.takes must be >= 1, got {self.takes}")
        if not self.words:
            raise DistillError("SynthConfig.words is empty: give at least one word")
        if len(set(self.words)) != len(self.words):
            raise DistillError(f"SynthConfig.words has duplicates: {self.words}")
        for word in self.words:
            # a word is a folder name: lowercase letters/digits only (no '_background_noise_', no paths)
            if not _WORD_RE.fullmatch(word):
                raise DistillError(f"SynthConfig.words: {word!r} is not a lowercase word usable as a folder name")
        if not self.noise_seconds > 0:
            raise DistillError(f"SynthConfig.noise_seconds must be > 0, got {self.noise_seconds}")
        if self.test_clips < 0:
            raise DistillError(f"SynthConfig.test_clips must be >= 0, got {self.test_clips}")
        shares = (self.test_unknown_share, self.test_silence_share)
        if any(not 0.0 <= s <= 1.0 for s in shares) or sum(shares) > 1.0 + 1e-9:
            raise DistillError(
                f"test_unknown_share ({self.test_unknown_share}) and test_silence_share "
                f"({self.test_silence_share}) must be in [0, 1] and sum to at most 1"
            )
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise DistillError(f"SynthConfig.snr_db must be (low, high) with low <= high, got {self.snr_db}")
        if self.min_speakers_per_split < 0:
            raise DistillError(f"SynthConfig.min_speakers_per_split must be >= 0, got {self.min_speakers_per_split}")


@dataclass(frozen=True)
class SynthResult:
    out: Path
    clips: int  # word clips in the training tree (not noise, not test clips)
    speakers: int
    split_speakers: dict[str, int]
    test_dir: Path | None
    answer_key: Path | None
    seconds: float


# ---------------------------------------------------------------------------
# The plan: pure data, computed in the parent from the config alone.


@dataclass(frozen=True)
class _Voice:
    name: str
    rate: int
    pitch: int
    pitch_range: int
    down: int  # resample as 320/down: 441 +- 6% also nudges speed and formants
    highpass_hz: float
    lowpass_hz: float
    peak_hz: float
    peak_q: float
    peak_db: float
    level_db: float  # peak level of a take, dBFS
    snr_db: float
    noise: str  # colour of this speaker's room noise


@dataclass(frozen=True)
class _Item:
    text: str  # the words to speak, or the noise kind for a silence clip
    path: str


@dataclass(frozen=True)
class _Chunk:
    kind: str  # "speech" | "noise" | "silence"
    entropy: tuple[int, ...]
    voice: _Voice | None = None
    items: tuple[_Item, ...] = ()
    noise: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class _Speaker:
    id: str
    split: str
    voice: _Voice


def _hex_id(*parts: object, length: int) -> str:
    return hashlib.sha1("/".join(str(p) for p in ("distill-synth", *parts)).encode()).hexdigest()[:length]


def _draw_speaker_ids(seed: int, n: int, min_per_split: int) -> list[tuple[str, str]]:
    """(id, split) for n training speakers, every split holding at least min(min_per_split, n // 3)."""
    need = min(min_per_split, n // 3)
    counts = {s: 0 for s in SPLITS}
    chosen: list[tuple[str, str]] = []
    seen: set[str] = set()
    for k in range(n):
        for attempt in range(100_000):
            cand = _hex_id(seed, "speaker", k, attempt, length=8)
            if cand in seen:
                continue
            split = which_set(f"{cand}_nohash_0.wav")
            after = dict(counts, **{split: counts[split] + 1})
            deficit = sum(max(0, need - c) for c in after.values())
            # accept unless the remaining speakers could no longer fill every split's minimum
            if n - (k + 1) >= deficit:
                break
        else:  # pragma: no cover - each split has ~10% odds per draw
            raise DistillError("could not draw speaker ids for every split")
        seen.add(cand)
        counts[split] += 1
        chosen.append((cand, split))
    return chosen


def _draw_voice(rng: np.random.Generator, snr_db: tuple[float, float]) -> _Voice:
    base = _BASES[rng.choice(len(_BASES), p=_BASE_WEIGHTS)]
    variant = _VARIANTS[rng.choice(len(_VARIANTS), p=_VARIANT_WEIGHTS)]
    return _Voice(
        name=base + variant,
        rate=int(rng.integers(120, 211)),
        pitch=int(rng.integers(25, 76)),
        pitch_range=int(rng.integers(20, 91)),
        down=int(round(_DOWN * rng.uniform(0.94, 1.06))),
        highpass_hz=float(rng.uniform(60.0, 300.0)),
        lowpass_hz=float(rng.uniform(3_500.0, 7_600.0)),
        peak_hz=float(rng.uniform(400.0, 3_500.0)),
        peak_q=float(rng.uniform(0.7, 3.0)),
        peak_db=float(rng.uniform(-6.0, 6.0)),
        level_db=float(rng.uniform(-18.0, -3.0)),
        snr_db=float(rng.uniform(*snr_db)),
        noise=str(rng.choice(["white_noise", "pink_noise", "brown_noise"])),
    )


def _training_speakers(config: SynthConfig) -> list[_Speaker]:
    ids = _draw_speaker_ids(config.seed, config.speakers, config.min_speakers_per_split)
    return [
        _Speaker(sid, split, _draw_voice(np.random.default_rng([config.seed, 1, k]), config.snr_db))
        for k, (sid, split) in enumerate(ids)
    ]


def _test_mix(config: SynthConfig, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(text, label) for every test clip, in random order; text is a noise kind for silence."""
    n = config.test_clips
    n_sil = round(n * config.test_silence_share)
    n_unk = min(round(n * config.test_unknown_share), n - n_sil)
    n_tgt = n - n_sil - n_unk
    order = list(rng.permutation(len(config.targets)))
    # whole rounds over the target words, then a random few for the remainder: as even as counts allow
    targets = [config.targets[order[i % len(order)]] for i in range(n_tgt)]
    seen = [w for w in config.words if w not in config.targets]
    unseen = [w for w in EXTRA_UNKNOWN_WORDS if w not in config.words]
    unknowns = []
    for i in range(n_unk):
        # half the unknowns are words the model never trained on, like the real test set
        pool = seen if (i % 2 == 0 and seen) or not unseen else unseen
        unknowns.append(pool[rng.integers(len(pool))])
    silences = [_SILENCE_KINDS[rng.choice(len(_SILENCE_KINDS), p=_SILENCE_WEIGHTS)] for _ in range(n_sil)]
    mix = (
        [(w, w) for w in targets]
        + [(w, UNKNOWN) for w in unknowns]
        + [(k, SILENCE) for k in silences]
    )
    return [mix[i] for i in rng.permutation(len(mix))]


@dataclass(frozen=True)
class _Plan:
    speakers: list[_Speaker]
    test_speakers: list[_Speaker]
    chunks: list[_Chunk]
    train_files: list[str]  # word/file.wav
    answers: dict[str, str]  # test clip file name -> label


def _make_plan(config: SynthConfig, out: Path, test_dir: Path | None) -> _Plan:
    seed = config.seed
    speakers = _training_speakers(config)
    chunks: list[_Chunk] = []
    train_files: list[str] = []
    for k, spk in enumerate(speakers):
        items = []
        for word in config.words:
            for take in range(config.takes):
                rel = f"{word}/{spk.id}_nohash_{take}.wav"
                train_files.append(rel)
                items.append(_Item(word, str(out / rel)))
        chunks.append(_Chunk("speech", (seed, 2, k), voice=spk.voice, items=tuple(items)))
    for i, noise in enumerate(NOISE_TYPES):
        path = str(out / BACKGROUND_NOISE_DIR / f"{noise}.wav")
        chunks.append(
            _Chunk("noise", (seed, 3, i), items=(_Item(noise, path),), noise=noise, seconds=config.noise_seconds)
        )

    test_speakers: list[_Speaker] = []
    answers: dict[str, str] = {}
    if config.test_clips > 0 and test_dir is not None:
        rng = np.random.default_rng([seed, 4])
        mix = _test_mix(config, rng)
        names: list[str] = []
        taken: set[str] = set()
        attempt = 0
        while len(names) < len(mix):
            name = f"clip_{_hex_id(seed, 'clip', attempt, length=9)}.wav"
            attempt += 1
            if name not in taken:
                taken.add(name)
                names.append(name)
        answers = {name: label for name, (_, label) in zip(names, mix)}
        speech = [(text, name) for name, (text, label) in zip(names, mix) if label != SILENCE]
        silence = [(text, name) for name, (text, label) in zip(names, mix) if label == SILENCE]
        train_ids = {s.id for s in speakers}
        n_test_speakers = math.ceil(len(speech) / _TEST_CLIPS_PER_SPEAKER)
        draw = 0
        while len(test_speakers) < n_test_speakers:
            sid = _hex_id(seed, "test-speaker", draw, length=8)
            draw += 1
            if sid in train_ids:
                continue  # a test speaker is never a training speaker, not even by name
            voice = _draw_voice(np.random.default_rng([seed, 5, len(test_speakers)]), config.snr_db)
            test_speakers.append(_Speaker(sid, "kaggle_test", voice))
        for j, spk in enumerate(test_speakers):
            part = speech[j * _TEST_CLIPS_PER_SPEAKER:(j + 1) * _TEST_CLIPS_PER_SPEAKER]
            items = tuple(_Item(text, str(test_dir / name)) for text, name in part)
            chunks.append(_Chunk("speech", (seed, 6, j), voice=spk.voice, items=items))
        per = 100
        for c in range(math.ceil(len(silence) / per)):
            items = tuple(_Item(text, str(test_dir / name)) for text, name in silence[c * per:(c + 1) * per])
            chunks.append(_Chunk("silence", (seed, 7, c), items=items))
    return _Plan(speakers, test_speakers, chunks, train_files, answers)


# ---------------------------------------------------------------------------
# Workers: run in a fresh process per chunk.


def _run_chunk(chunk: _Chunk) -> int:
    """Write one chunk's wav files; returns how many. The call sequence depends only on the chunk."""
    rng = np.random.default_rng(list(chunk.entropy))
    if chunk.kind == "speech":
        return _speech_chunk(chunk, rng)
    if chunk.kind == "noise":
        audio = _long_noise(chunk.noise, int(round(chunk.seconds * SAMPLE_RATE)), rng)
        write_bytes(chunk.items[0].path, _wav_bytes(audio))
        return 1
    if chunk.kind == "silence":
        for item in chunk.items:
            write_bytes(item.path, _wav_bytes(_silence_clip(item.text, rng)))
        return len(chunk.items)
    raise ValueError(f"unknown chunk kind {chunk.kind!r}")


def _speech_chunk(chunk: _Chunk, rng: np.random.Generator) -> int:
    from distill.data import _espeak

    voice = chunk.voice
    assert voice is not None
    tts = _espeak.engine()
    if tts.sample_rate != ESPEAK_RATE:  # the 320/441 resampling assumes eSpeak's 22,050 Hz
        raise DistillError(f"eSpeak NG runs at {tts.sample_rate} Hz; synth expects {ESPEAK_RATE} Hz")
    tts.set_voice(voice.name, rate=voice.rate, pitch=voice.pitch, pitch_range=voice.pitch_range)
    channel = _channel_sos(voice)
    for item in chunk.items:
        # takes differ a little in tempo and intonation, as repeated real takes do
        tts.set_parameter(_espeak.RATE, int(round(voice.rate * rng.uniform(0.9, 1.1))))
        tts.set_parameter(_espeak.PITCH, int(np.clip(voice.pitch + rng.integers(-4, 5), 0, 99)))
        raw = int16_to_float32(tts.synth(item.text)).astype(np.float64)
        word = _fit_length(_trim(resample_poly(raw, _UP, voice.down)))
        clip = np.zeros(CLIP_SAMPLES)
        offset = int(rng.integers(0, CLIP_SAMPLES - len(word) + 1))
        clip[offset:offset + len(word)] = word
        speech_rms = _rms(word)
        snr = voice.snr_db + rng.uniform(-2.0, 2.0)
        clip += _noise(voice.noise, CLIP_SAMPLES, rng) * speech_rms / 10 ** (snr / 20)
        clip = sosfilt(channel, clip)
        level = 10 ** ((voice.level_db + rng.uniform(-3.0, 3.0)) / 20)
        clip *= level / max(np.max(np.abs(clip)), 1e-9)
        write_bytes(item.path, _wav_bytes(clip))
    return len(chunk.items)


def _channel_sos(voice: _Voice) -> np.ndarray:
    """Microphone/room colouring: a band limit plus one peaking resonance (RBJ biquad)."""
    band = butter(2, [voice.highpass_hz, voice.lowpass_hz], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    a_gain = 10 ** (voice.peak_db / 40)
    w0 = 2 * np.pi * voice.peak_hz / SAMPLE_RATE
    alpha = np.sin(w0) / (2 * voice.peak_q)
    b = np.array([1 + alpha * a_gain, -2 * np.cos(w0), 1 - alpha * a_gain])
    a = np.array([1 + alpha / a_gain, -2 * np.cos(w0), 1 - alpha / a_gain])
    peak = np.concatenate([b / a[0], a / a[0]])[None, :]
    return np.vstack([band, peak])


def _trim(x: np.ndarray, frame: int = 160, floor_db: float = -40.0) -> np.ndarray:
    """Drop leading/trailing near-silence (eSpeak pads both ends), keeping one 10 ms frame of margin."""
    if len(x) < frame:
        return x
    n = len(x) // frame
    env = np.abs(x[: n * frame]).reshape(n, frame).max(axis=1)
    loud = np.nonzero(env > env.max() * 10 ** (floor_db / 20))[0]
    if len(loud) == 0:
        return x
    start = max(loud[0] - 1, 0) * frame
    stop = min((loud[-1] + 2) * frame, len(x))
    return x[start:stop]


def _fit_length(x: np.ndarray) -> np.ndarray:
    """Make a word fit in 1 s: speed it up when moderately long, crop what still does not fit."""
    if len(x) > _MAX_WORD_SAMPLES:
        if len(x) <= 1.5 * _MAX_WORD_SAMPLES:
            x = resample_poly(x, 100, math.ceil(100 * len(x) / _MAX_WORD_SAMPLES))
        x = x[:_MAX_WORD_SAMPLES]
    return x


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(_rms(x), 1e-12)


def _coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    # below 20 Hz the 1/f rise is inaudible and would only make the waveform drift
    spectrum *= np.maximum(freqs, 20.0) ** (-exponent / 2)
    spectrum[0] = 0.0
    return _unit(np.fft.irfft(spectrum, n))


def _hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum: 50 or 60 Hz with decaying harmonics, a slow wobble and a faint hiss."""
    f0 = float(rng.choice([50.0, 60.0]))
    t = np.arange(n) / SAMPLE_RATE
    wobble = 1 + 0.002 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * f0 * np.cumsum(wobble) / SAMPLE_RATE
    x = np.zeros(n)
    for k in range(1, 13):
        # odd harmonics dominate the buzz of a transformer
        amp = (1.0 if k % 2 else 0.45) / k ** 1.1
        x += amp * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return _unit(_unit(x) + 0.03 * rng.standard_normal(n))


def _tap(n: int, rng: np.random.Generator) -> np.ndarray:
    """Running tap: band noise with a slowly fluttering level and a few droplet pings."""
    band = sosfilt(butter(4, [rng.uniform(500, 1_000), rng.uniform(4_500, 7_000)], btype="bandpass",
                          fs=SAMPLE_RATE, output="sos"), rng.standard_normal(n))
    steps = max(n // 800 + 2, 2)
    env = np.interp(np.arange(n), np.linspace(0, n, steps), 1 + 0.35 * rng.standard_normal(steps))
    x = _unit(band * np.clip(env, 0.2, None))
    ping_len = 600
    tt = np.arange(ping_len) / SAMPLE_RATE
    for _ in range(int(n / SAMPLE_RATE * 4)):
        at = int(rng.integers(0, max(n - ping_len, 1)))
        ping = np.sin(2 * np.pi * rng.uniform(900, 2_800) * tt) * np.exp(-tt * rng.uniform(60, 150))
        x[at:at + ping_len] += rng.uniform(0.5, 2.0) * ping[: len(x[at:at + ping_len])]
    return _unit(x)


def _noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "white_noise":
        return _unit(rng.standard_normal(n))
    if kind == "pink_noise":
        return _coloured(n, rng, 1.0)
    if kind == "brown_noise":
        return _coloured(n, rng, 2.0)
    if kind == "mains_hum":
        return _hum(n, rng)
    if kind == "running_tap":
        return _tap(n, rng)
    raise ValueError(f"unknown noise kind {kind!r}")


def _babble(n: int, rng: np.random.Generator) -> np.ndarray:
    """Several overlapping streams of eSpeak chatter from random voices, none saying a target word."""
    from distill.data import _espeak

    tts = _espeak.engine()
    x = np.zeros(n)
    for _ in range(6):
        pos = int(rng.integers(0, SAMPLE_RATE))
        while pos < n:
            voice = _BASES[rng.integers(len(_BASES))] + _VARIANTS[rng.integers(len(_VARIANTS))]
            tts.set_voice(voice, rate=int(rng.integers(150, 260)), pitch=int(rng.integers(15, 85)),
                          pitch_range=int(rng.integers(30, 90)))
            words = " ".join(_BABBLE_WORDS[i] for i in rng.integers(len(_BABBLE_WORDS), size=int(rng.integers(1, 5))))
            utt = _trim(resample_poly(int16_to_float32(tts.synth(words)).astype(np.float64), _UP, _DOWN))
            utt = utt[: n - pos] * rng.uniform(0.4, 1.0) / max(np.max(np.abs(utt)), 1e-9)
            x[pos:pos + len(utt)] += utt
            pos += len(utt) + int(rng.integers(0, SAMPLE_RATE // 3))
    return _unit(x + 1e-3 * rng.standard_normal(n))


def _long_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    x = _babble(n, rng) if kind == "babble" else _noise(kind, n, rng)
    x = x * 10 ** (_NOISE_RMS_DB[kind] / 20)
    peak = np.max(np.abs(x))
    return x * (0.95 / peak) if peak > 0.95 else x


def _silence_clip(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A test 'silence' clip: 1 s of one background kind at a random low level, or digital zeros."""
    if kind == "digital":
        return np.zeros(CLIP_SAMPLES)
    x = _noise(kind, CLIP_SAMPLES, rng) * 10 ** (rng.uniform(-60.0, -30.0) / 20)
    # tap droplets have a high crest factor; a silence clip must stay quiet at its peaks too
    return x * min(1.0, 0.08 / max(float(np.max(np.abs(x))), 1e-12))


def _wav_bytes(x: np.ndarray) -> bytes:
    pcm = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32767.0), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


# ---------------------------------------------------------------------------
# Orchestration.


def _executor(jobs: int) -> concurrent.futures.ProcessPoolExecutor:
    """A pool whose every task gets a fresh process (eSpeak is only repeatable in a fresh process)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        # The server imports numpy/scipy once; each task's process is a fork of it, so
        # it starts in milliseconds instead of ~1 s. The server never loads eSpeak.
        # (If another part of the process already started the fork server, this is a
        # no-op and the workers import the module themselves: slower, same output.)
        ctx.set_forkserver_preload([__name__])
    else:  # pragma: no cover - Windows
        ctx = multiprocessing.get_context("spawn")
    return concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, max_tasks_per_child=1)


def _is_synth_output(path: Path) -> bool:
    try:
        return read_json(path / "synth_config.json").get("kind") == SynthConfig.__name__
    except (OSError, ValueError, AttributeError):
        return False


def _check_replaceable(path: Path, what: str, ours: bool, overwrite: bool) -> None:
    if path.exists() and not path.is_dir():
        raise DistillError(f"{path}: {what} must be a folder, but a file is there")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        if ours:
            raise DistillError(f"{path}: {what} already holds the output of an earlier synth run; "
                               "pass --overwrite (overwrite=True) to replace it, or choose another path")
        raise DistillError(
            f"{path}: {what} is a non-empty folder that synth did not write; "
            "choose another path or pass overwrite=True (--overwrite) to replace it"
        )


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def synthesize_dataset(
    *,
    out: Path,
    config: SynthConfig = SynthConfig(),
    jobs: int = 2,
    test_dir: Path | None = None,
    answer_key: Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> SynthResult:
    """Write a synthetic Speech Commands v0.01 tree at ``out`` (and a Kaggle-style test folder).

    The whole tree is built in a hidden temporary folder beside ``out`` and renamed
    into place at the end, so an interrupted run leaves ``out`` as it was. A
    non-empty ``out`` or test folder, or an existing answer key (an earlier synth
    run's included), is refused before anything is written unless ``overwrite``. With ``config.test_clips`` > 0
    the test clips go to ``test_dir`` (default ``<out>_test``) and the ``fname,label``
    key to ``answer_key`` (default ``<out>_test_answers.csv``), never inside the clip
    folder, so a model under test cannot read it by accident.
    """
    start = time.perf_counter()
    if jobs < 1:
        raise DistillError(f"jobs must be >= 1, got {jobs}")
    out = Path(out).absolute()
    if config.test_clips > 0:
        test_dir = Path(test_dir if test_dir is not None else out.parent / f"{out.name}_test").absolute()
        answer_key = Path(answer_key if answer_key is not None else out.parent / f"{out.name}_test_answers.csv").absolute()
    else:  # nothing to write there; an old test folder is left alone
        test_dir = answer_key = None

    # before any work: a file where a folder goes (or the reverse), a path under a file, a read-only folder
    check_output(out)
    if test_dir is not None and answer_key is not None:
        check_output(test_dir, option="--test-dir")
        check_output(answer_key, kind="file", option="--answer-key")
    _check_replaceable(out, "the output folder", _is_synth_output(out), overwrite)
    if test_dir is not None and answer_key is not None:
        if _inside(test_dir, out) or _inside(out, test_dir):
            raise DistillError(f"the test folder {test_dir} and the output folder {out} must not contain each other")
        if _inside(answer_key, test_dir) or _inside(answer_key, out):
            raise DistillError(
                f"the answer key {answer_key} must be outside the test folder {test_dir} and the output folder {out}"
            )
        _check_replaceable(test_dir, "the test folder", (test_dir / TEST_MARKER).exists(), overwrite)
        if answer_key.is_dir():
            raise DistillError(f"{answer_key}: the answer key path is a folder; give a .csv file path")
        if answer_key.exists() and not overwrite:
            if _looks_like_answer_key(answer_key):
                raise DistillError(f"{answer_key}: the answer key of an earlier synth run is there; "
                                   "pass --overwrite (overwrite=True) to replace it, or choose another --answer-key")
            raise DistillError(f"{answer_key}: exists and is not a synth answer key; pass --overwrite (overwrite=True) to replace it")

    # Each folder is built beside its target and renamed into place (atomic_folder): the test
    # folder first, then its answer key, then the tree, so an interrupted run leaves the old ones.
    with atomic_folder(out) as tmp_out:
        with atomic_folder(test_dir) if test_dir is not None else nullcontext() as tmp_test:
            plan = _make_plan(config, tmp_out, tmp_test)
            for word in config.words:
                (tmp_out / word).mkdir()
            (tmp_out / BACKGROUND_NOISE_DIR).mkdir()

            written = _run_all(plan.chunks, jobs, progress)
            expected = sum(len(c.items) for c in plan.chunks)
            if written != expected:  # pragma: no cover - a worker that returns means it wrote
                raise DistillError(f"synth wrote {written} files, expected {expected}")

            lists = {VALIDATION: [], TESTING: []}
            for rel in sorted(plan.train_files):
                split = which_set(rel)
                if split in lists:
                    lists[split].append(rel)
            write_text(tmp_out / "validation_list.txt", "".join(f"{r}\n" for r in lists[VALIDATION]))
            write_text(tmp_out / "testing_list.txt", "".join(f"{r}\n" for r in lists[TESTING]))
            write_json(tmp_out / "synth_manifest.json", _manifest(config, plan, out, test_dir, answer_key))
            save_config(config, tmp_out / "synth_config.json")
            if tmp_test is not None:
                write_text(tmp_test / TEST_MARKER, "written by distill.data.synth; a run with --overwrite replaces this folder\n")
        if answer_key is not None:
            write_text(answer_key, "fname,label\n" + "".join(f"{n},{l}\n" for n, l in sorted(plan.answers.items())))

    split_speakers = {s: sum(1 for spk in plan.speakers if spk.split == s) for s in SPLITS}
    return SynthResult(
        out=out,
        clips=len(plan.train_files),
        speakers=len(plan.speakers),
        split_speakers=split_speakers,
        test_dir=test_dir,
        answer_key=answer_key,
        seconds=time.perf_counter() - start,
    )


def _looks_like_answer_key(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().strip() == "fname,label"
    except (OSError, UnicodeDecodeError):
        return False


def _run_all(chunks: Sequence[_Chunk], jobs: int, progress: bool) -> int:
    from distill.core.progress import track  # rich is only needed in the parent

    written = 0
    # biggest chunks first, so the last chunk to finish is a short one
    order = sorted(range(len(chunks)), key=lambda i: -_cost(chunks[i]))
    with _executor(jobs) as pool:
        futures = [pool.submit(_run_chunk, chunks[i]) for i in order]
        try:
            for fut in track(concurrent.futures.as_completed(futures), total=len(futures),
                             description="synth", disable=not progress):
                written += fut.result()
        except concurrent.futures.process.BrokenProcessPool as exc:
            raise DistillError(f"a synth worker process died ({exc}); rerun with jobs=1 to see its error") from exc
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return written


def _cost(chunk: _Chunk) -> float:
    if chunk.kind == "noise":
        return chunk.seconds * (20.0 if chunk.noise == "babble" else 0.5)
    return float(len(chunk.items)) * (1.0 if chunk.kind == "speech" else 0.05)


def _manifest(config: SynthConfig, plan: _Plan, out: Path, test_dir: Path | None, answer_key: Path | None) -> dict:
    def speaker(s: _Speaker) -> dict:
        return {"id": s.id, "split": s.split, "voice": dataclasses.asdict(s.voice)}

    def relative(path: Path | None) -> str | None:
        # relative to the output folder, so the same config writes the same bytes wherever it goes
        return os.path.relpath(path, out) if path is not None else None

    return {
        "speakers": [speaker(s) for s in plan.speakers],
        "test_speakers": [speaker(s) for s in plan.test_speakers],
        "noise_files": [f"{BACKGROUND_NOISE_DIR}/{n}.wav" for n in NOISE_TYPES],
        "clips": len(plan.train_files),
        "test_dir": relative(test_dir),
        "answer_key": relative(answer_key),
        "test_label_counts": {c: sum(1 for l in plan.answers.values() if l == c) for c in (SILENCE, UNKNOWN, *config.targets)},
        "extra_unknown_words": [w for w in EXTRA_UNKNOWN_WORDS if w not in config.words],
    }
