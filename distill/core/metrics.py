"""Classification metrics on arrays (pure NumPy, shared by training reports, calibration and the demo)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distill.core.labels import CLASSES, NUM_CLASSES


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    return np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class ClassificationReport:
    accuracy: float
    count: int
    per_class_recall: dict[str, float | None]
    confusion: list[list[int]]

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "count": self.count, "per_class_recall": self.per_class_recall, "confusion": self.confusion}


def classification_report(labels: np.ndarray, scores_or_predictions: np.ndarray, classes: tuple[str, ...] = CLASSES) -> ClassificationReport:
    """Accuracy, recall per class (None for a class with no examples) and the confusion matrix; ``classes``: the
    names in index order (a ``LabelSet``'s ``classes``; the Kaggle twelve by default)."""
    labels = np.asarray(labels)
    predictions = np.asarray(scores_or_predictions)
    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=1)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    cm = confusion_matrix(labels, predictions, num_classes=len(classes))
    support = cm.sum(axis=1)
    recall = {name: (float(cm[i, i] / support[i]) if support[i] else None) for i, name in enumerate(classes)}
    accuracy = float(np.trace(cm) / max(1, cm.sum()))
    return ClassificationReport(accuracy=accuracy, count=int(cm.sum()), per_class_recall=recall, confusion=cm.tolist())


def softmax(logits: np.ndarray, temperature: float = 1.0, axis: int = -1) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)
