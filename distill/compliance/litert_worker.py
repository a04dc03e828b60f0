"""Run a ``model.tflite`` in LiteRT's own interpreter (``ai-edge-litert``), in a process that never imports TensorFlow.

``python -m distill.compliance.litert_worker REQUEST.npz RESULT.npz``: the request holds ``model_path`` (str),
``waveforms`` (N, 16000) float32 and optionally ``timing_rounds``; the result holds ``probs`` (N, 12),
``ops`` (each operator's name), ``op_types`` (dtype of each operator's first input), ``median_ms``
(single-thread latency per clip) and ``tensorflow_imported`` (it must stay False). Only NumPy and
``ai_edge_litert`` are imported here, so what it measures is what a device with LiteRT alone runs.
"""

from __future__ import annotations

import sys
import time

import numpy as np

# LiteRT's own custom kernels (registered by its interpreter); every other operator must be a builtin
AUDIO_CUSTOM_OPS = ("AudioSpectrogram", "Mfcc")


def interpreter(model_path: str, *, threads: int = 1):
    """An allocated LiteRT interpreter of ``model_path`` (the audio custom ops are LiteRT's own kernels)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_path), num_threads=threads)
    interp.allocate_tensors()
    return interp


def predict(interp, waveforms: np.ndarray) -> np.ndarray:
    """Softmax (N, 12) of ``waveforms`` (N, 16000), one invoke per clip (the model is built for one clip)."""
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    shape = tuple(int(d) for d in inp["shape"])
    rows = []
    for w in np.asarray(waveforms, np.float32):
        interp.set_tensor(inp["index"], w.reshape(shape).astype(inp["dtype"]))
        interp.invoke()
        y = interp.get_tensor(out["index"]).astype(np.float32)
        scale, zero = out.get("quantization", (0.0, 0))
        if out["dtype"] != np.float32 and scale:
            y = (y - zero) * scale
        rows.append(y.reshape(-1))
    return np.stack(rows) if rows else np.zeros((0, 12), np.float32)


def operator_rows(interp) -> list[tuple[str, str, str]]:
    """(op name, its first output tensor's name, its first input's dtype) of every operator, in execution order."""
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    rows = []
    for op in interp._get_ops_details():  # the only public listing of a model's operators in ai-edge-litert 2.3
        first_in = next((i for i in op["inputs"] if i >= 0 and i in tensors), None)
        first_out = next((i for i in op["outputs"] if i >= 0 and i in tensors), None)
        rows.append((str(op["op_name"]), tensors[first_out]["name"] if first_out is not None else "",
                     np.dtype(tensors[first_in]["dtype"]).name if first_in is not None else ""))
    return rows


def operators(interp) -> tuple[list[str], list[str]]:
    """Each operator's name and the dtype of its first input tensor."""
    rows = operator_rows(interp)
    return [name for name, _, _ in rows], [dtype for _, _, dtype in rows]


def latency_ms(interp, waveform: np.ndarray, *, rounds: int = 5, repeats: int = 20) -> float:
    """Median over ``rounds`` of the mean time of ``repeats`` single-clip invokes, in ms."""
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.asarray(waveform, np.float32).reshape(tuple(int(d) for d in inp["shape"])))
    interp.invoke()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            interp.invoke()
        times.append((time.perf_counter() - start) / repeats * 1000.0)
    return float(np.median(times))


def main(argv: list[str]) -> int:
    request = np.load(argv[0], allow_pickle=False)
    interp = interpreter(str(request["model_path"]))
    waveforms = request["waveforms"].astype(np.float32)
    names, types = operators(interp)
    probs = predict(interp, waveforms)
    rounds = int(request["timing_rounds"]) if "timing_rounds" in request else 5
    ms = latency_ms(interp, waveforms[0], rounds=rounds) if len(waveforms) and rounds > 0 else float("nan")
    np.savez(argv[1], probs=probs, ops=np.asarray(names), op_types=np.asarray(types), median_ms=np.float64(ms),
             tensorflow_imported=np.bool_("tensorflow" in sys.modules))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


class LiteRTPredictor:
    """Prediction with a ``model.tflite`` in LiteRT (``distill submit`` / ``label-wav``), the same surface as ``GraphPredictor``.

    ``predict(waveforms)`` maps float32 (B, 16000) to probabilities (B, K), one single-thread invoke per
    clip per worker interpreter; ``labels`` is the model's LabelSet (from labels.txt) or None for Kaggle's.
    """

    def __init__(self, path, *, labels=None, workers: int = 1):
        from pathlib import Path

        from distill.core.errors import DistillError
        from distill.core.labels import CLASSES

        self.path = Path(path)
        try:
            self._interps = [interpreter(str(self.path)) for _ in range(max(1, int(workers)))]
        except (ValueError, RuntimeError) as err:
            raise DistillError(f"{self.path}: LiteRT cannot load this model ({err})") from err
        except ImportError as err:
            raise DistillError(f"{self.path}: a .tflite model needs ai-edge-litert (pip install ai-edge-litert): {err}") from err
        self.labels = labels
        self.classes = tuple(labels.classes) if labels is not None else tuple(CLASSES)
        out = self._interps[0].get_output_details()[0]
        self.num_classes = int(np.prod(out["shape"]))
        if self.num_classes != len(self.classes):
            raise DistillError(f"{self.path}: the model gives {self.num_classes} probabilities, but its labels name {len(self.classes)} classes")
        self.method = "litert"
        self.timings: dict[str, float] = {}
        self.notes: list[str] = []
        self._pool = None

    def predict(self, waveforms: np.ndarray) -> np.ndarray:
        from distill.core.errors import DistillError

        x = np.asarray(waveforms, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != 16000:
            raise DistillError(f"waveforms must have shape (B, 16000), got {x.shape}")
        if len(x) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        if len(self._interps) == 1 or len(x) < 2 * len(self._interps):
            return predict(self._interps[0], x)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(len(self._interps), thread_name_prefix="distill-litert")
        parts = np.array_split(x, len(self._interps))
        return np.concatenate(list(self._pool.map(predict, self._interps, parts)))

    def predict_single(self, waveform: np.ndarray) -> np.ndarray:
        return self.predict(np.asarray(waveform, np.float32).reshape(1, -1))[0]

    def predict_wav_bytes(self, data: bytes) -> np.ndarray:
        """Probabilities of a 16-bit PCM wav file's bytes (padded or cut to 16000 samples, as DecodeWav does)."""
        from distill.data.wav import parse_wav, to_clip  # NumPy only, like this module

        return self.predict_single(to_clip(parse_wav(data)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "LiteRTPredictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
