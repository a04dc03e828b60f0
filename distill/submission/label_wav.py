"""``distill label-wav``: label wav files like the TensorFlow tutorial's ``label_wav.py`` (a wav file's bytes into ``wav_data:0``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from distill.core.errors import BadAudioError, DistillError
from distill.submission.predictor import GraphPredictor, open_predictor

__all__ = ["LabelWavResult", "label_wav"]


_LABEL_WAV_HINT = "label-wav needs a 16 kHz 16-bit mono PCM RIFF/WAVE file, like the Kaggle clips"


def _tf_error_line(message: str) -> str:
    """The op's own complaint out of a TF graph-execution error (which also lists Python frames)."""
    lines = [line.strip() for line in message.splitlines()]
    useful = [line for line in lines if line and not line.startswith(("[[", "Detected at", "File ", "Graph execution"))]
    return useful[-1] if useful else message.strip()


@dataclass(frozen=True)
class LabelWavResult:
    """Top-k ``(label, score)`` and all 12 probabilities of one wav file."""

    path: Path
    top: list[tuple[str, float]]
    probs: np.ndarray

    def lines(self) -> list[str]:
        """``label (score = 0.xxxxx)`` lines, as the TensorFlow tutorial's ``label_wav.py`` prints them."""
        return [f"{label} (score = {score:.5f})" for label, score in self.top]


def label_wav(*, model: str | os.PathLike | GraphPredictor, wavs: Sequence[str | os.PathLike],
              top_k: int = 3) -> list[LabelWavResult]:
    """Label wav files like the tutorial's ``label_wav.py``: each file goes to ``wav_data:0`` as wav bytes.

    Each file is read by :func:`distill.data.wav.read_wav` (16 kHz, 16-bit, mono PCM), the parser
    ``distill data`` and ``distill submit`` use, which raises BadAudioError with the reason; its samples
    reach the graph's DecodeWav as a plain RIFF/WAVE (:func:`distill.data.wav.encode_wav`), so any wav
    those commands accept is labelled, whatever its chunk order or format tag. Returns one
    :class:`LabelWavResult` per file, in order.
    """
    import tensorflow as tf

    from distill.data.wav import encode_wav, read_wav

    if top_k < 1:
        raise DistillError(f"top_k must be at least 1, got {top_k}")
    if not wavs:
        raise DistillError("no wav files given")
    predictor = model if hasattr(model, "predict_wav_bytes") else open_predictor(model, method="loop", workers=1, verify=False)  # GraphPredictor, or LiteRT for a .tflite
    if top_k > predictor.num_classes:  # the model's K: labels.txt names its classes (12 for the Kaggle words)
        raise DistillError(f"top_k must be in 1..{predictor.num_classes}, got {top_k}")
    results = []
    for wav in wavs:
        path = Path(wav)
        try:
            samples = read_wav(path)  # the one wav parser: the same files, checks and reasons as the data layer
        except BadAudioError as err:
            raise BadAudioError(path, err.reason, hint=_LABEL_WAV_HINT) from err
        try:
            # DecodeWav wants 'fmt ' first and a plain PCM tag, and would refuse a LIST chunk before 'fmt ' or an
            # extensible header that read_wav accepts: it gets the same samples in its own layout
            p = predictor.predict_wav_bytes(encode_wav(samples))
        except tf.errors.InvalidArgumentError as err:
            raise BadAudioError(path, f"the graph's DecodeWav rejected it: {_tf_error_line(err.message)}",
                                hint=_LABEL_WAV_HINT) from err
        top = np.argsort(-p, kind="stable")[:top_k]
        results.append(LabelWavResult(path=path, top=[(predictor.classes[i], float(p[i])) for i in top], probs=p))
    return results
