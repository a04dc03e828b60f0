"""Reports on soft labels: per-teacher and ensemble accuracy, agreement, confusion matrices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import atomic_path, write_json, write_text
from .labels import CLASSES
from .metrics import classification_report, confusion_matrix
from .predict import load_soft_labels


def save_confusion_png(path: Path, labels: np.ndarray, predictions: np.ndarray, *, title: str) -> Path:
    """A row-normalised confusion matrix with counts, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion_matrix(labels, predictions)
    rows = np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=110)
    ax.imshow(cm / rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=60, ha="right")
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color="white" if cm[i, j] / rows[i, 0] > 0.5 else "black")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


@dataclass(frozen=True)
class TeacherReport:
    rows: list[dict]  # one per teacher + the ensemble, per split
    agreement: dict[str, float]
    files: list[Path]

    def to_table(self) -> str:
        splits = sorted({r["split"] for r in self.rows})
        header = f"{'model':<24}" + "".join(f"{s:>12}" for s in splits)
        lines = [header, "-" * len(header)]
        for model in dict.fromkeys(r["model"] for r in self.rows):
            acc = {r["split"]: r["accuracy"] for r in self.rows if r["model"] == model}
            lines.append(f"{model:<24}" + "".join(f"{100 * acc[s]:>11.2f}%" if s in acc else f"{'-':>12}" for s in splits))
        lines.append("")
        lines.append("teacher agreement (all teachers' argmax equal): " + ", ".join(f"{s} {100 * a:.1f}%" for s, a in self.agreement.items()))
        return "\n".join(lines)


def teacher_report(*, soft_labels: Path, out: Path | None = None, splits: tuple[str, ...] = ("validation", "testing"), temperature: float = 1.0) -> TeacherReport:
    """Accuracy (clean view) of each teacher and of their ensemble, per-class recall and agreement; saves JSON, text and PNGs."""
    out = Path(out or soft_labels)
    rows, agreement, files = [], {}, []
    for split in splits:
        soft = load_soft_labels(Path(soft_labels), split)
        labels = soft.examples.labels
        clean = np.asarray(soft.logits[:, 0], dtype=np.float32)  # (teachers, N, 12)
        for name, logits in zip(soft.teachers, clean):
            rows.append({"model": name, "split": split, **classification_report(labels, logits).to_dict()})
        ensemble = soft.ensemble(temperature=temperature)[0]
        report = classification_report(labels, ensemble)
        rows.append({"model": "ensemble", "split": split, **report.to_dict()})
        agreement[split] = float((clean.argmax(-1) == clean.argmax(-1)[0]).all(axis=0).mean())
        files.append(save_confusion_png(out / f"confusion_ensemble_{split}.png", labels, ensemble.argmax(-1), title=f"teacher ensemble, {split} ({100 * report.accuracy:.2f}%)"))
    result = TeacherReport(rows=rows, agreement=agreement, files=files)
    write_json(out / "report.json", {"rows": rows, "agreement": agreement})
    write_text(out / "report.txt", result.to_table() + "\n")
    return result
