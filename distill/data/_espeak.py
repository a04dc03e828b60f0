"""A minimal ctypes binding to eSpeak NG, as shipped by the ``espeakng-loader`` wheel.

Why ctypes and not a wrapper package: the only PyPI wrapper shells out to an
``espeak-ng`` binary that is not installed, while ``espeakng-loader`` ships the
shared library and its data folder, which is all we need.

Traps this module exists to contain (measured, see the platform notes):

* A missing or wrong data path makes the library call ``exit(1)``: the Python
  process would vanish without an exception. We always pass the data path and
  ``espeakINITIALIZE_DONT_EXIT`` and treat a return value <= 0 as an error.
* The library is one global state per process and not thread-safe, so there is
  one engine per process (:func:`engine`) and every synthesis holds a lock.
* Output is not repeatable inside one process (the same call twice differs
  slightly), but a fresh process making the same call sequence is bit-identical.
  Callers that need determinism must run a fixed call sequence in a fresh
  process; this module cannot hide that.

Importing this module loads nothing; the library is opened on first use, so a
process can import it cheaply (and a fork server can preload it) before any
eSpeak state exists.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from distill.core.errors import DistillError

# espeak_AUDIO_OUTPUT: samples are handed to our callback, synth calls block until done.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0
RATE, VOLUME, PITCH, RANGE, WORDGAP = 1, 2, 3, 4, 7

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Espeak:
    """The process's eSpeak NG engine: set a voice, synthesize text to int16 samples."""

    def __init__(self, library_path: str | None = None, data_path: str | None = None) -> None:
        if library_path is None or data_path is None:
            try:
                import espeakng_loader
            except ImportError as exc:
                raise DistillError(
                    "eSpeak NG is not available: the package 'espeakng-loader' is not installed "
                    "(pip install espeakng-loader)"
                ) from exc
            library_path = library_path or espeakng_loader.get_library_path()
            data_path = data_path or espeakng_loader.get_data_path()
        try:
            lib = ctypes.CDLL(str(library_path))
        except OSError as exc:
            raise DistillError(f"cannot load the eSpeak NG library {library_path}: {exc}") from exc
        self._lib = lib
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]

        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path).encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise DistillError(
                f"eSpeak NG failed to initialise (returned {rate}) with data path {data_path}: "
                "reinstall espeakng-loader"
            )
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._lock = threading.Lock()
        # ctypes does not keep the callback alive; if it were collected the library
        # would call freed memory.
        self._callback = _CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n, _events) -> int:  # noqa: ANN001 (ctypes types)
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = keep going

    def set_voice(
        self, name: str, *, rate: int | None = None, pitch: int | None = None, pitch_range: int | None = None
    ) -> None:
        """Select a voice file (``en``, ``en-us``, ``en+m3``, ...) and optional prosody parameters.

        The voice is set before the parameters because selecting a voice resets them.
        """
        with self._lock:
            err = self._lib.espeak_SetVoiceByName(name.encode())
            if err != _EE_OK:
                raise DistillError(f"eSpeak NG does not accept the voice {name!r} (error {err})")
            for param, value in ((RATE, rate), (PITCH, pitch), (RANGE, pitch_range)):
                if value is not None:
                    self._set(param, int(value))

    def set_parameter(self, param: int, value: int) -> None:
        with self._lock:
            self._set(param, value)

    def _set(self, param: int, value: int) -> None:
        err = self._lib.espeak_SetParameter(param, value, 0)
        if err != _EE_OK:
            raise DistillError(f"eSpeak NG refused parameter {param}={value} (error {err})")

    def synth(self, text: str) -> np.ndarray:
        """Speak ``text`` with the current voice; int16 samples at :attr:`sample_rate`."""
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data, len(data))
        with self._lock:
            self._chunks = []
            err = self._lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            chunks, self._chunks = self._chunks, []
        if err != _EE_OK:
            raise DistillError(f"eSpeak NG failed to synthesize {text!r} (error {err})")
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks).astype(np.int16, copy=False)


_ENGINE: Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def engine() -> Espeak:
    """The process's engine, created on first use (the library holds one global state per process)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = Espeak()
        return _ENGINE
