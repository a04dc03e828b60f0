"""Fitting a student: distilled from stored teacher views, online, or on hard labels only.

``fit_student`` builds a RunConfig (family ``student``) and runs the shared fit
loop with a batch source that serves, for every example, one of the stored
augmented views and the teachers' ensemble probabilities for that very view
(consistent teaching). Pseudo-labelled clips from the unlabeled test folder
join each epoch with their own view-aligned soft labels. ``soft_labels=None``
is the no-teacher twin: same architecture, same data, hard labels.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from distill.core.config import RecipeSource, load_config, refuse_other_config
from distill.core.errors import DistillError
from distill.core.io import check_output, read_json, write_json
from distill.core.labels import SILENCE_INDEX, TARGET_WORDS, UNKNOWN_INDEX, refuse_other_words
from distill.core.metrics import softmax
from distill.data.augment import AugmentConfig, augment_waveforms
from distill.data.cache import DecodedDataset, data_difference, open_dataset
from distill.data.examples import MixConfig, materialize
from distill.data.unlabeled import open_unlabeled
from distill.layers.frontend import FrontendConfig
from distill.training.fit import AugmentedSource, Batch, DistillConfig, FitResult, METRICS_FILE, RunConfig, ScheduleConfig, build_model, epoch_seed, fit, is_finished, kept_checkpoint, score_run
from distill.training.soft_labels import UNLABELED, SoftLabels, load_soft_labels, name_seeds


class DistillationSource:
    """Batches of stored teacher views: (augmented waveform, hard label, ensemble probabilities at T)."""

    def __init__(self, dataset: DecodedDataset, config: RunConfig, soft: SoftLabels, pseudo=None):
        distill = config.distill
        self.dataset = dataset
        self.config = config
        self.batch_size = config.schedule.batch_size
        self.examples = soft.examples
        probs = soft.ensemble(temperature=distill.temperature)  # (views, N, 12)
        if distill.max_views:
            probs = probs[: distill.max_views]
        self.probs = probs
        self.views = probs.shape[0]
        labels = self.examples.labels
        self.fixed = np.flatnonzero((labels != UNKNOWN_INDEX) | (self.examples.rows < 0))  # targets + silence
        self.unknown = np.flatnonzero((labels == UNKNOWN_INDEX) & (self.examples.rows >= 0))
        n_target = int(np.sum((labels != UNKNOWN_INDEX) & (labels != SILENCE_INDEX)))
        self.unknown_per_epoch = min(len(self.unknown), math.ceil(n_target * config.mix.unknown_percentage / 100))
        self.pseudo = pseudo
        self.pseudo_probs = None
        if pseudo is not None:
            self.unlabeled, self.pseudo_rows, self.pseudo_seeds, self.pseudo_probs = pseudo
        size = len(self.fixed) + self.unknown_per_epoch + (len(self.pseudo_rows) if pseudo is not None else 0)
        self.steps_per_epoch = max(1, size // self.batch_size)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        rng = np.random.default_rng(epoch_seed(self.config.seed + 2, epoch))
        unknown = rng.choice(self.unknown, size=self.unknown_per_epoch, replace=False) if self.unknown_per_epoch else np.zeros(0, np.int64)
        labelled = np.concatenate([self.fixed, unknown])
        n_pseudo = len(self.pseudo_rows) if self.pseudo is not None else 0
        # items >= len(labelled) are pseudo-labelled clips
        order = rng.permutation(len(labelled) + n_pseudo)
        views = rng.integers(0, self.views, size=len(order))
        for step in range(start, self.steps_per_epoch):
            chosen = order[step * self.batch_size : (step + 1) * self.batch_size]
            view = views[step * self.batch_size : (step + 1) * self.batch_size]
            is_pseudo = chosen >= len(labelled)
            audio = np.empty((len(chosen), 16000), np.float32)
            seeds = np.empty(len(chosen), np.int64)
            hard = np.empty(len(chosen), np.int64)
            soft = np.empty((len(chosen), self.probs.shape[-1]), np.float32)
            lab = labelled[chosen[~is_pseudo]]
            if len(lab):
                subset = self.examples.subset(lab)
                audio[~is_pseudo] = materialize(self.dataset, subset)
                seeds[~is_pseudo] = subset.seeds
                hard[~is_pseudo] = subset.labels
                soft[~is_pseudo] = self.probs[view[~is_pseudo], lab]
            if is_pseudo.any():
                p = chosen[is_pseudo] - len(labelled)
                audio[is_pseudo] = self.unlabeled.waveforms(self.pseudo_rows[p])
                seeds[is_pseudo] = self.pseudo_seeds[p]
                probs = self.pseudo_probs[view[is_pseudo], p]
                soft[is_pseudo] = probs
                hard[is_pseudo] = probs.argmax(-1)
            # config.augment is the soft-label folder's augmentation (fit_student sets it), so view v is
            # the very waveform the teachers labelled
            audio = augment_waveforms(audio, seeds=seeds, view=view, noise=self.dataset.noise, config=self.config.augment)
            yield Batch(audio, hard, soft)


class OnlineSource:
    """Fresh augmentation every epoch, labelled on the fly by the teachers (slower, unlimited views)."""

    def __init__(self, dataset: DecodedDataset, config: RunConfig, teacher_runs: list[Path]):
        from distill.training.crossfit import fold_runs
        from distill.training.fit import load_run, make_predictor

        for run in teacher_runs:
            if fold_runs(Path(run)) is not None:
                raise DistillError(f"{run} is a fold group: online teaching cannot tell which fold held a fresh view's speaker out; drop --online to learn from its stored out-of-fold views")
        self.inner = AugmentedSource(dataset, config)
        self.steps_per_epoch = self.inner.steps_per_epoch
        self.temperature = config.distill.temperature
        self.predictors = [make_predictor(load_run(Path(r))[1]) for r in teacher_runs]

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        for batch in self.inner.batches(epoch, start):
            probs = np.mean([softmax(p(batch.waveforms), temperature=self.temperature) for p in self.predictors], axis=0)
            yield Batch(batch.waveforms, batch.labels, probs.astype(np.float32))


def _pseudo_inputs(pseudo_path: Path, soft_dir: Path, temperature: float, max_views: int, cache_dir: Path | None, progress: bool):
    """(unlabeled folder, rows, view seeds, per-view probs) of the accepted pseudo-labelled clips."""
    from distill.training.pseudo import load_pseudo

    pseudo = load_pseudo(pseudo_path)
    unl = load_soft_labels(soft_dir, UNLABELED)
    refuse_other_words(f"pseudo-labels {pseudo_path}", pseudo.classes[2:], unl.config.words, fix=f"select them from {soft_dir}")
    position = {n: i for i, n in enumerate(unl.names)}
    missing = [n for n in pseudo.names if n not in position]
    if missing:
        raise DistillError(f"{pseudo_path}: {len(missing)} clips (e.g. {missing[0]}) have no soft labels in {soft_dir}/{UNLABELED}; select them from the same soft-label folder")
    idx = np.array([position[n] for n in pseudo.names], dtype=np.int64)
    probs = unl.ensemble(temperature=temperature)[:, idx]  # (views, P, 12)
    if max_views:
        probs = probs[:max_views]
    if pseudo.relabelled.any():  # a person's relabel overrides the teachers
        probs[:, pseudo.relabelled] = np.eye(probs.shape[-1], dtype=np.float32)[pseudo.labels[pseudo.relabelled]]
    folder = open_unlabeled(Path(unl.config.unlabeled), cache_dir=cache_dir, progress=progress)
    folder_rows = {n: i for i, n in enumerate(folder.names)}
    rows = np.array([folder_rows[n] for n in pseudo.names], dtype=np.int64)
    seeds = name_seeds(list(pseudo.names), unl.config.seed)
    return folder, rows, seeds, probs


def check_budget(model, *, max_mb: float | None, max_ms: float | None, name: str, weight_bits: int = 32) -> dict:
    """The student's footprint; refuses, before any training, one whose weights or estimated Pi 3 latency are over budget.

    ``weight_bits=8`` counts one byte per weight, for a student that will ship through
    ``distill export --quantize-weights`` (8-bit storage; the Pi still computes in float32,
    so the latency estimate is the same either way).
    """
    from distill.compliance.footprint import model_footprint

    if weight_bits not in (8, 32):
        raise DistillError(f"--weight-bits must be 8 (exported with --quantize-weights) or 32, got {weight_bits}")
    fp = model_footprint(model)
    stored_mb = (fp.int8_bytes if weight_bits == 8 else fp.float32_bytes) / 1e6
    if max_mb is not None and stored_mb > max_mb:
        hint = "choose a smaller --size" if weight_bits == 8 else "choose a smaller --size, or --weight-bits 8 and export with --quantize-weights"
        raise DistillError(f"{name}: {stored_mb:.2f} MB of {'8-bit' if weight_bits == 8 else 'float32'} weights is over --max-mb {max_mb:g}; {hint}")
    shipped_ms = None
    if max_ms is not None and fp.pi3_ms > max_ms:
        from distill.compliance.pi_estimate import estimate_pi3_ms
        from distill.export.student_export import shipped_graph

        # over budget as frozen here, BatchNorm unfolded: decide on the graph export will write (folded), whose
        # estimate is lower (BC-ResNet-1-stride2 9.0 against 16.1 ms), so a rung whose shipped file fits is not refused
        shipped_ms = float(estimate_pi3_ms(shipped_graph(model, quantize=weight_bits == 8)[0]).ms)
        if shipped_ms > max_ms:
            raise DistillError(f"{name}: estimated {shipped_ms:.1f} ms on a Raspberry Pi 3 as exported (method error +-{100 * fp.pi3_loo_error:.0f}%) "
                               f"is over --max-ms {max_ms:g}; choose a smaller --size or a cheaper --frontend (docs/frontends.md)")
    return {**fp.to_dict(), "weight_bits": weight_bits, "pi3_ms_exported": shipped_ms}


def fit_student(
    *,
    arch: str,
    data: Path,
    out: Path,
    soft_labels: Path | None,
    size: str = "default",
    alpha: float = 0.3,
    temperature: float = 4.0,
    max_views: int = 0,
    online: bool = False,
    pseudo: Path | None = None,
    max_mb: float | None = None,
    max_ms: float | None = None,
    weight_bits: int = 32,
    schedule: ScheduleConfig = ScheduleConfig(),
    mix: MixConfig = MixConfig(),
    augment: AugmentConfig = AugmentConfig(),
    frontend: FrontendConfig | None = None,
    feature_masks: bool = False,
    seed: int = 0,
    skip_bad: bool = False,
    cache_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    recipe: RecipeSource | None = None,
    words: tuple[str, ...] | None = None,
) -> FitResult:
    """Train a student into ``out``; ``soft_labels=None`` trains the no-teacher twin on hard labels.

    ``words``: the word list (None: the soft labels', or the Kaggle ten for a twin); soft labels made
    for another list are refused, naming both.

    ``feature_masks`` masks the student's features with SpecAugment while it trains (the teachers'
    labels stay those of the unmasked view), the noisy-student recipe; the exported graph is unchanged.
    """
    if soft_labels is None and (online or pseudo):
        raise DistillError("--online and --pseudo need teachers: pass --soft-labels (or drop --no-teachers)")
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise DistillError(f"need 0 <= --alpha <= 1 and --temperature > 0 (got {alpha}, {temperature})")
    check_output(out, kind="folder", inputs=(data, soft_labels, pseudo))  # before any work: a file there, a read-only folder, an input
    data = Path(data).resolve()
    distill = None
    soft = None
    if soft_labels is not None:
        soft = load_soft_labels(Path(soft_labels), "training")
        if words is not None:
            refuse_other_words(f"soft labels {soft_labels}", soft.config.words, tuple(words),
                               fix=f"fit the student on the teachers' list (--words {','.join(soft.config.words)}), or predict soft labels from teachers of this one")
        words = soft.config.words
        if augment.view_masks_enabled() and not soft.config.augment.view_masks_enabled():
            raise DistillError(f"--view-masks: the views in {soft_labels} carry no masks, and a distilled student trains on the views its "
                               "teachers labelled; write them with `distill teachers predict --view-masks`")
        augment = soft.config.augment  # views must be the ones the teachers labelled
        distill = DistillConfig(soft_labels=str(Path(soft_labels).resolve()), alpha=alpha, temperature=temperature,
                                pseudo=str(Path(pseudo).resolve()) if pseudo else None, max_views=max_views, online=online)
    config = RunConfig(family="student", arch=arch, data=str(data), size=size, frontend=frontend, mix=mix, augment=augment,
                       schedule=schedule, distill=distill, seed=seed, skip_bad=skip_bad, cache_dir=str(cache_dir) if cache_dir else None,
                       feature_masks=True if feature_masks else None, recipe=recipe, words=tuple(words) if words is not None else TARGET_WORDS)
    footprint = check_budget(build_model(config), max_mb=max_mb, max_ms=max_ms, name=f"student {arch}/{size}", weight_bits=weight_bits)
    dataset = open_dataset(data, cache_dir=cache_dir, skip_bad=skip_bad, progress=progress)
    # the soft labels' data by content: made from a copy of this tree (or this tree moved) they are as good
    difference = data_difference(soft.config.data, soft.config.data_content, dataset, cache_dir=cache_dir) if soft is not None else None
    if difference:
        raise DistillError(f"{soft_labels} was {difference}; predict soft labels on the student's --data")
    if soft is None:
        source = AugmentedSource(dataset, config)
    elif online:
        source = OnlineSource(dataset, config, [Path(t) for t in soft.config.teachers])
    else:
        extra = _pseudo_inputs(Path(pseudo), Path(soft_labels), temperature, max_views, cache_dir, progress) if pseudo else None
        source = DistillationSource(dataset, config, soft, extra)
    result = fit(config=config, run_dir=Path(out), resume=resume, source=source, dataset=dataset, progress=progress)
    if result.finished_before and "footprint" in result.metrics:
        return result
    # every student run reports what it would cost on the target (params, bytes, MACs, Pi 3 estimate)
    metrics = {**result.metrics, "footprint": footprint}
    write_json(Path(out) / METRICS_FILE, metrics)
    return dataclasses.replace(result, metrics=metrics)


def fit_students_side_by_side(runs: list[dict], *, jobs: int) -> Iterator[tuple[Path, float | None]]:
    """Fit every ``runs`` entry (``fit_student``'s keyword arguments) in worker processes, ``jobs`` at a time.

    Yields (its ``out``, the fit's seconds) as each one finishes; the seconds are None for a ``resume``
    entry whose run was finished by another process after the list was made (its metrics.json is checked
    when a worker takes it up, not when the list is made, so a run fit by hand meanwhile is not fit twice).
    The cores are shared out evenly (TensorFlow's pools are sized in each worker before it runs
    anything), so on 2 cores two students fit at once on one thread each: one fit alone leaves the cores
    partly idle (24% for TC-ResNet-14-w2 under ``vmstat``), and ``scripts/bench_side_by_side.py``
    measures what two at once gain.
    """
    from joblib import Parallel, delayed

    from distill.training.fit import threads_per_worker

    if jobs < 1:
        raise DistillError(f"jobs must be at least 1, got {jobs}")
    threads = threads_per_worker(jobs, len(runs))
    calls = [delayed(_fit_student_in_worker)(threads, {**run, "progress": False}) for run in runs]
    yield from Parallel(n_jobs=max(1, min(jobs, len(runs))), backend="loky", return_as="generator_unordered")(calls)


def _fit_student_in_worker(threads: int, arguments: dict) -> tuple[Path, float | None]:
    from distill.training.fit import configure_threads

    out = Path(arguments["out"])
    if arguments.get("resume") and is_finished(out):
        return out, None
    configure_threads(threads)
    return out, fit_student(**arguments).seconds


@dataclass(frozen=True)
class StudentRunSpec:
    """One ``distill student fit`` as the benchmark drivers launch it, in its own process.

    A separate process per run lets drivers fit several at once (each with the threads TensorFlow
    gives it) and keeps one crashed run from taking the others down. ``soft_labels=None`` is the
    no-teacher twin; ``alpha``/``temperature`` only apply to distilled runs. ``words`` and ``precision``
    are always passed on, so the run never falls back on a recipe's values.
    """

    data: Path
    arch: str
    size: str
    epochs: int
    seed: int
    soft_labels: Path | None
    alpha: float = DistillConfig.alpha
    temperature: float = DistillConfig.temperature
    feature_masks: bool = False
    view_masks: bool = False
    mixup: float = 0.0
    keep: str = "last"
    weight_bits: int = 8
    max_mb: float = 1.0
    max_ms: float = 30.0
    words: tuple[str, ...] = TARGET_WORDS
    precision: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "words", tuple(self.words))

    def command(self, run: Path) -> list[str]:
        command = [sys.executable, "-m", "distill", "student", "fit", "--arch", self.arch, "--size", self.size, "--data", str(self.data),
                   "--epochs", str(self.epochs), "--seed", str(self.seed), "--weight-bits", str(self.weight_bits),
                   "--words", ",".join(self.words), "--precision", self.precision,
                   "--max-mb", f"{self.max_mb:g}", "--max-ms", f"{self.max_ms:g}", "--keep", self.keep, "--mixup", f"{self.mixup:g}",
                   "--quiet", "--out", str(run)]
        if self.soft_labels is None:
            command.append("--no-teachers")
        else:
            command += ["--soft-labels", str(self.soft_labels), "--alpha", f"{self.alpha:g}", "--temperature", f"{self.temperature:g}"]
        # both switches spelled out: a flag left out would take the recipe's value, not this spec's
        command.append("--feature-masks" if self.feature_masks else "--no-feature-masks")
        command.append("--view-masks" if self.view_masks else "--no-view-masks")
        if (run / "config.json").exists():
            command.append("--resume")
        return command

    def refuse_other(self, run: Path, *, finished: bool) -> None:
        """Refuse a folder trained with other settings, so a stale or mislinked run is never read back as this one.

        A finished run that kept the other checkpoint is accepted (both are on disk and the one asked
        for is scored); an unfinished one must match, since resuming it would train on its own settings.
        """
        teachers = self.soft_labels is not None
        expected = {"arch": self.arch, "size": self.size, "epochs": self.epochs, "seed": self.seed, "feature_masks": self.feature_masks,
                    "view_masks": self.view_masks, "mixup": self.mixup, "soft_labels": str(Path(self.soft_labels).resolve()) if teachers else None,
                    "alpha": self.alpha if teachers else None, "temperature": self.temperature if teachers else None,
                    "words": ",".join(self.words), "precision": self.precision}
        if not finished:
            expected["keep"] = self.keep
        refuse_other_run(run, expected=expected)


def saved_run_settings(run: Path) -> dict:
    """The settings a student folder was trained with, flattened to the keys drivers compare on.

    Teacher-side keys are None for a no-teacher run, so one comparison tells a twin from a distilled run.
    """
    saved = load_config(RunConfig, Path(run) / "config.json")
    taught = saved.distill
    return {"arch": saved.arch, "size": saved.size, "epochs": saved.schedule.epochs, "seed": saved.seed,
            "feature_masks": bool(saved.feature_masks), "view_masks": saved.augment.view_masks_enabled(), "mixup": saved.schedule.mixup_alpha, "keep": saved.schedule.keep,
            "teachers": taught is not None, "soft_labels": str(Path(taught.soft_labels).resolve()) if taught else None,
            "alpha": taught.alpha if taught else None, "temperature": taught.temperature if taught else None,
            "max_views": taught.max_views if taught else None, "pseudo": bool(taught and taught.pseudo),
            "words": ",".join(saved.words), "precision": saved.schedule.precision}


def refuse_other_run(run: Path, *, expected: dict) -> None:
    """Raise unless the student in ``run`` was trained with ``expected`` (any subset of ``saved_run_settings``' keys)."""
    found = saved_run_settings(run)
    unknown = set(expected) - set(found)
    if unknown:
        raise ValueError(f"cannot compare {sorted(unknown)}: a student folder records {sorted(found)}")
    refuse_other_config(run, expected=expected, found={key: found[key] for key in expected})


def fit_or_read_student(run: Path, *, spec: StudentRunSpec, log: Path) -> dict:
    """Fit ``spec`` into ``run`` unless it has finished there, and return its scores at ``spec.keep``.

    An interrupted run resumes from its checkpoint; its output is appended to ``log``. Returns
    ``best_epoch``, ``checkpoint``, ``validation`` and ``test`` accuracy.
    """
    run, log = Path(run), Path(log)
    finished = is_finished(run)
    if (run / "config.json").exists():
        spec.refuse_other(run, finished=finished)
    if not finished:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as sink:
            done = subprocess.run(spec.command(run), stdout=sink, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise DistillError(f"{run}: distill student fit failed (exit {done.returncode}); see {log}")
    metrics = read_json(run / METRICS_FILE)
    if kept_checkpoint(run) == spec.keep:
        validation, test = metrics["validation"]["accuracy"], metrics["test"]["accuracy"]
    else:  # an adopted run keeping the other checkpoint: metrics.json holds only the one it keeps
        measured = score_run(run, checkpoint=spec.keep)
        validation, test = measured["validation"], measured["testing"]
    return {"best_epoch": metrics["best_epoch"], "checkpoint": spec.keep, "validation": validation, "test": test}
