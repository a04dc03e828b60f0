"""Reports on soft labels: per-teacher and ensemble accuracy, agreement, confusion matrices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.core.errors import DistillError
from distill.core.io import atomic_path, check_output, write_json, write_text
from distill.core.labels import CLASSES
from distill.core.metrics import classification_report, confusion_matrix, softmax
from distill.core.tables import plain_text
from distill.training.soft_labels import ensemble_probabilities, load_soft_labels


def save_confusion_png(path: Path, labels: np.ndarray, predictions: np.ndarray, *, title: str, classes: tuple[str, ...] = CLASSES) -> Path:
    """A row-normalised confusion matrix with counts, as a PNG (written atomically); ``classes`` name its rows (K of them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion_matrix(labels, predictions, num_classes=len(classes))
    rows = np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=110)
    ax.imshow(cm / rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
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
        """The report as plain aligned text (what report.txt holds); ``to_rich`` for a rich Console."""
        return plain_text(self.to_rich()).rstrip("\n")

    def to_rich(self):
        """Accuracy and mean top probability tables (a row per model, a column per split) and the agreement line."""
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        splits = sorted({r["split"] for r in self.rows})
        parts = []
        for title, key, cell in (("accuracy, clean view", "accuracy", lambda v: f"{100 * v:.2f}%"),
                                 ("mean top probability, all views", "mean_top_probability", lambda v: f"{v:.3f}")):
            table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
            table.add_column("model")
            for split in splits:
                table.add_column(split, justify="right")
            for model in dict.fromkeys(r["model"] for r in self.rows):
                value = {r["split"]: r[key] for r in self.rows if r["model"] == model}
                table.add_row(Text(model), *(Text(cell(value[s]) if s in value else "-") for s in splits))
            parts += [Text(title, style="bold"), table, Text("")]
        parts.append(Text("teacher agreement (all teachers' argmax equal): " + ", ".join(f"{s} {100 * a:.1f}%" for s, a in self.agreement.items())))
        return Group(*parts)


def teacher_report(*, soft_labels: Path, out: Path | None = None, splits: tuple[str, ...] = ("validation", "testing"), temperature: float = 1.0,
                   members: tuple[str, ...] | None = None) -> TeacherReport:
    """Accuracy (clean view) of each teacher and of their ensemble, per-class recall and agreement; saves JSON, text and PNGs.

    ``members`` restricts the report (and the ensemble) to those teachers of the folder, so candidate
    ensembles can be compared from one prediction. The mean top probability, over every stored view,
    says how sure a teacher is: on the training split, near the label-smoothing ceiling it has memorised
    the clips it would teach from."""
    out = check_output(out or soft_labels, kind="folder")  # before any work: a file there, a read-only folder
    rows, agreement, files, used = [], {}, [], []
    softs = [load_soft_labels(Path(soft_labels), split) for split in splits]  # every split read (a damaged one refused) before anything is written
    for split, soft in zip(splits, softs):
        if soft.examples is None:
            raise DistillError(f"{soft_labels}: the {split!r} split has no labels to score; choose from training, validation, testing")
    for split, soft in zip(splits, softs):
        chosen = _member_positions(soft.teachers, members, soft_labels)
        used = [soft.teachers[i] for i in chosen]
        labels = soft.examples.labels
        classes = soft.config.labels.classes  # the teachers' word list: K classes
        logits = np.asarray(soft.logits[chosen], dtype=np.float32)  # (teachers, views, N, K)
        clean = logits[:, 0]
        for name, teacher_logits in zip(used, logits):
            rows.append({"model": name, "split": split, **classification_report(labels, teacher_logits[0], classes=classes).to_dict(),
                         "mean_top_probability": float(softmax(teacher_logits, temperature=temperature).max(-1).mean())})
        ensemble = ensemble_probabilities(logits, temperature=temperature)  # (views, N, K)
        report = classification_report(labels, ensemble[0], classes=classes)
        rows.append({"model": "ensemble", "split": split, **report.to_dict(), "mean_top_probability": float(ensemble.max(-1).mean())})
        agreement[split] = float((clean.argmax(-1) == clean.argmax(-1)[0]).all(axis=0).mean())
        files.append(save_confusion_png(out / f"confusion_ensemble_{split}.png", labels, ensemble[0].argmax(-1), title=f"teacher ensemble, {split} ({100 * report.accuracy:.2f}%)",
                                       classes=classes))
    result = TeacherReport(rows=rows, agreement=agreement, files=files)
    write_json(out / "report.json", {"rows": rows, "agreement": agreement, "members": used})
    write_text(out / "report.txt", result.to_table() + "\n")
    return result


def _member_positions(teachers: tuple[str, ...], members: tuple[str, ...] | None, folder: Path) -> list[int]:
    if not members:
        return list(range(len(teachers)))
    unknown = [m for m in members if m not in teachers]
    if unknown:
        raise DistillError(f"{folder}: no teacher named {', '.join(unknown)}; its teachers are {', '.join(teachers)}")
    return [teachers.index(m) for m in dict.fromkeys(members)]
