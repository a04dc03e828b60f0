"""One fit loop for teachers and students.

A run folder holds everything needed to reproduce or continue the run::

    config.json            RunConfig (frozen dataclass -> JSON)
    checkpoints/last.npz   model weights + optimizer state + step, written atomically
    checkpoints/best.npz   model weights of the best validation epoch
    history.json           per-epoch loss, learning rate and validation accuracy
    metrics.json           validation and test metrics of the kept checkpoint (schedule.keep: best or last)
    tensorboard/           scalars for TensorBoard

Every epoch's example order, unknown subsample and augmentation are pure
functions of (seed, epoch), so ``resume=True`` continues an interrupted run
exactly: it restores weights, optimizer slots and the step, and skips the
batches of the current epoch that were already used. A Ctrl-C waits for the
step or epoch end in progress (``interrupt_deferred``), so the checkpoint it
leaves never holds an update its step counter has not counted.
"""

from __future__ import annotations

import math
import os
import queue
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np

from distill.core.config import RecipeSource, load_config, save_config, to_dict
from distill.core.errors import DamagedFileError, DistillError
from distill.core.io import atomic_path, load_archive, read_json, write_json
from distill.core.labels import TARGET_WORDS, LabelSet
from distill.core.metrics import classification_report
from distill.core.registry import STUDENTS, TEACHERS
from distill.data.augment import AugmentConfig, augment_waveforms
from distill.data.cache import DecodedDataset, data_difference, open_dataset
from distill.data.examples import ExampleSet, MixConfig, make_examples, materialize
from distill.layers.frontend import FrontendConfig
from distill.training.crossfit import HoldoutConfig, without_fold

FAMILIES = {"teacher": TEACHERS, "student": STUDENTS}
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"  # written last, so its presence is what "this run has finished" means
LAST = Path("checkpoints") / "last.npz"
BEST = Path("checkpoints") / "best.npz"
CHECKPOINTS = {"best": BEST, "last": LAST}  # what ScheduleConfig.keep (and load_run's checkpoint) may name
KEEP_CHOICES = tuple(CHECKPOINTS)
# "mixed": float16 compute on a GPU, bfloat16 on CPUs; variables, the front-end, the loss and the soft
# labels stay float32 either way (see ``precision_policy`` and ``build_model``)
PRECISIONS = ("float32", "mixed")


@dataclass(frozen=True)
class ScheduleConfig:
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 3e-3
    warmup_epochs: float = 1.0
    final_lr_ratio: float = 0.01
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    checkpoint_every_steps: int = 200
    mixup_alpha: float = 0.0  # mix each batch with a shuffled copy at weight ~ Beta(a, a); 0 = off
    # the checkpoint a run stands for (metrics, export, teaching): "best" = the epoch that scored best on
    # validation, "last" = the end of the schedule. Over long schedules the best of many epochs on a few
    # hundred validation clips is mostly noise picked as signal, and its validation score is flattered
    keep: str = "best"
    # the compute precision while training; runs saved before the key existed load as float32, which is
    # what they trained in. Prediction, evaluation and export always build the model in float32
    precision: str = "float32"

    def __post_init__(self) -> None:
        # every fit (teachers, students, library callers) passes here before its run folder is made
        if self.keep not in KEEP_CHOICES:
            raise DistillError(f"keep must be one of {KEEP_CHOICES}, got {self.keep!r}")
        if self.precision not in PRECISIONS:
            raise DistillError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name, low in (("epochs", 1), ("batch_size", 1), ("warmup_epochs", 0), ("weight_decay", 0), ("checkpoint_every_steps", 0), ("mixup_alpha", 0)):
            if not getattr(self, name) >= low:
                raise DistillError(f"schedule {name} must be >= {low}, got {getattr(self, name)}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise DistillError(f"schedule learning_rate must be > 0, got {self.learning_rate}")
        for name in ("label_smoothing", "final_lr_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise DistillError(f"schedule {name} must be between 0 and 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class DistillConfig:
    """How a student learns from its teachers (``alpha`` = weight of the hard-label term)."""

    soft_labels: str
    alpha: float = 0.3
    temperature: float = 4.0
    pseudo: str | None = None
    max_views: int = 0  # use only the first N stored views (0 = all); 1 = clean clips only (ablation)
    online: bool = False  # run the teachers on every batch instead of reading stored views


@dataclass(frozen=True)
class RunConfig:
    family: str
    arch: str
    data: str
    size: str = "default"
    frontend: FrontendConfig | None = None  # None: the architecture's own default front-end
    mix: MixConfig = field(default_factory=MixConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    distill: DistillConfig | None = None
    seed: int = 0
    skip_bad: bool = False
    cache_dir: str | None = None
    feature_masks: bool | None = None  # SpecAugment while training; None: the family's default (teachers on, students off)
    holdout: HoldoutConfig | None = None  # cross-fitting: leave one fold of training speakers out
    recipe: RecipeSource | None = None  # the recipe and overrides the settings came from (None: set by hand)
    # the content fingerprint of the tree trained on (DecodedDataset.content_fingerprint), set by fit: what a
    # resume or a later stage compares, so a copied or moved tree is the same data; ``data`` keeps the path
    data_content: str | None = None
    # the target words: classes are ("silence", "unknown", *words), K = len(words) + 2 logits (the Kaggle ten by default)
    words: tuple[str, ...] = TARGET_WORDS

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise DistillError(f"family must be one of {sorted(FAMILIES)}, got {self.family!r}")
        object.__setattr__(self, "words", tuple(self.words))
        LabelSet(self.words)  # refuses an empty list, repeats and the reserved names

    @property
    def labels(self) -> LabelSet:
        return LabelSet(self.words)


@dataclass
class Batch:
    waveforms: np.ndarray  # (B, 16000) float32
    labels: np.ndarray  # (B,) int64 hard labels
    soft: np.ndarray | None = None  # (B, K) teacher probabilities at temperature T


class BatchSource(Protocol):
    steps_per_epoch: int

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]: ...


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class AugmentedSource:
    """Hard-label batches: each epoch a fresh unknown subsample, order and augmentation view."""

    def __init__(self, dataset: DecodedDataset, config: RunConfig):
        self.dataset = dataset
        self.config = config
        self.batch_size = config.schedule.batch_size
        size = len(self._examples(0))
        if size == 0:
            raise DistillError(f"{config.data}: the training split has no examples")
        self.steps_per_epoch = max(1, size // self.batch_size)

    def _examples(self, epoch: int) -> ExampleSet:
        examples = make_examples(self.dataset, split="training", mix=self.config.mix, seed=epoch_seed(self.config.seed, epoch), labels=self.config.labels)
        return without_fold(self.dataset, examples, self.config.holdout)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        examples = self._examples(epoch)
        order = np.random.default_rng(epoch_seed(self.config.seed + 1, epoch)).permutation(len(examples))
        for step in range(start, self.steps_per_epoch):
            positions = _cycle(order, step * self.batch_size, self.batch_size)
            chosen = examples.subset(positions)
            audio = materialize(self.dataset, chosen)
            audio = augment_waveforms(audio, seeds=chosen.seeds, view=epoch + 1, noise=self.dataset.noise, config=self.config.augment)
            yield Batch(audio, chosen.labels)


def _cycle(order: np.ndarray, start: int, size: int) -> np.ndarray:
    return order[np.arange(start, start + size) % len(order)]


def prefetch(iterator: Iterator, depth: int = 2) -> Iterator:
    """Produce the next batches on a background thread while the model trains (NumPy releases the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker():
        try:
            for item in iterator:
                if stop.is_set():
                    return
                q.put(item)
        except BaseException as err:  # surfaced in the consumer
            errors.append(err)
        finally:
            q.put(done)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                if errors:
                    raise errors[0]
                return
            yield item
    finally:
        stop.set()


def mixup_pairs(*, seed: int, step: int, batch: int, alpha: float) -> tuple[np.ndarray, float]:
    """Partner index and weight (>= 0.5, so each mixed clip keeps its own label's majority) for one step.

    Seeded by the step, so a resumed run mixes exactly as an uninterrupted one.
    """
    rng = np.random.default_rng(epoch_seed(seed + 3, step))
    weight = float(rng.beta(alpha, alpha))
    return rng.permutation(batch), max(weight, 1.0 - weight)


def learning_rate_at(step: int, *, total_steps: int, steps_per_epoch: int, schedule: ScheduleConfig) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_ratio`` of the peak."""
    warmup = max(1, int(schedule.warmup_epochs * steps_per_epoch)) if schedule.warmup_epochs > 0 else 0
    peak = schedule.learning_rate
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    floor = peak * schedule.final_lr_ratio
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))


def configure_threads(threads: int) -> None:
    """Limit TensorFlow's thread pools (must run before TensorFlow executes anything)."""
    if threads <= 0:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    except RuntimeError:
        pass  # already initialised in this process; keep its setting


def policy_name(precision: str) -> str:
    """The Keras dtype policy that ``precision`` stands for on this machine."""
    if precision not in PRECISIONS:
        raise DistillError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "float32":
        return "float32"
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


@contextmanager
def precision_policy(precision: str) -> Iterator[str]:
    """Build (and train) models under ``precision``'s dtype policy for the block; yields the policy's name.

    Keras reads its global policy when a layer is made, so models built inside the block compute in half
    precision and keep float32 variables, and models built after it (export, prediction, the next test)
    are float32 again: the previous policy comes back however the block ends. Keras keeps the policy per
    thread, so runs trained at once on threads do not see each other's.
    """
    import keras

    name = policy_name(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield name
    finally:
        keras.config.set_dtype_policy(previous)


def build_model(config: RunConfig):
    """The run's model under the current dtype policy, its logits float32 whatever the policy.

    The architectures end in a plain Dense layer, which under a mixed policy yields half-precision
    logits; the loss, the temperature-scaled soft term and the stored soft labels need float32, so a
    weightless float32 cast is added after it. It holds no variables, so checkpoints of mixed runs load
    into the float32 model (built without it) as they are.
    """
    model = _build_architecture(config)
    if model.outputs[0].dtype == "float32":
        return model
    import keras

    logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(model.outputs[0])
    return keras.Model(model.inputs, logits, name=model.name)


def _build_architecture(config: RunConfig):
    builder = FAMILIES[config.family].get(config.arch)
    extra = {}
    masks = config.feature_masks if config.feature_masks is not None else config.family == "teacher"
    if masks and config.augment.spec_enabled():
        # masking is an identity at inference, so the exported graph is unchanged; students default to
        # plain training, and opt in (noisy-student style: masked student, teachers' clean-view labels)
        from distill.data.augment import SpecAugment

        extra["feature_augment"] = SpecAugment.from_augment_config(config.augment, seed=config.seed)
    try:
        return builder(size=config.size, num_classes=config.labels.num_classes, frontend=config.frontend, seed=config.seed, **extra)
    except ValueError as err:
        raise DistillError(f"{config.family} '{config.arch}': {err}") from err


def make_optimizer(schedule: ScheduleConfig, policy: str):
    """AdamW at the schedule's peak rate (the loop sets each step's rate), loss-scaled under float16."""
    import keras

    optimizer = keras.optimizers.AdamW(learning_rate=schedule.learning_rate, weight_decay=schedule.weight_decay)
    if policy == "mixed_float16":
        # float16's range would flush small gradients to zero: scale the loss up, and skip the steps whose
        # scaled gradients overflow (the scale then halves). bfloat16 has float32's range and needs none
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


# ---------------------------------------------------------------- checkpoints


@contextmanager
def interrupt_deferred() -> Iterator[None]:
    """Hold Ctrl-C back while the block runs and deliver it when the block has finished.

    A training step is one unit: the weights and optimizer slots (updated together by the compiled step),
    the step counter, the epoch's losses and the checkpoint. A KeyboardInterrupt between two of them, say
    after the step and before the count, would save a counter one behind the weights, and the resumed run
    would apply that batch twice. A SIGINT that arrives inside the block is recorded, and at its end
    re-raised to the handler that was in place (Python's own raises KeyboardInterrupt there). If the block
    raises, a held Ctrl-C is dropped: the error ends the fit anyway. Signals are handled only on the main
    thread, and a handler installed outside Python cannot be restored, so there the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        signal.raise_signal(signal.SIGINT)


def _save_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    # model.variables, not get_weights(): it also holds the SpecAugment seed-generator state, which an
    # exact resume needs
    arrays = {f"model_{i:04d}": v.numpy() for i, v in enumerate(model.variables)}
    if optimizer is not None:
        arrays.update({f"optim_{i:04d}": v.numpy() for i, v in enumerate(optimizer.variables)})
    arrays["state"] = np.frombuffer(__import__("json").dumps(state).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_checkpoint(path: Path, model, optimizer=None) -> dict:
    """Restore weights (and optimizer slots) in place; returns the saved training state."""
    import json

    npz = load_archive(path, fix=_checkpoint_fix(path))
    if "state" not in npz:
        raise DamagedFileError(f"{path}: not a distill checkpoint (no training state); {_checkpoint_fix(path)}")
    model_keys = sorted(k for k in npz if k.startswith("model_"))
    weights = [npz[k] for k in model_keys]
    variables = model.variables
    if len(weights) != len(variables) or any(tuple(a.shape) != tuple(v.shape) for a, v in zip(weights, variables)):
        raise DistillError(f"{path}: checkpoint does not fit this architecture/size (was config.json edited?)")
    for variable, value in zip(variables, weights):
        variable.assign(value)
    if optimizer is not None:
        optim_keys = sorted(k for k in npz if k.startswith("optim_"))
        for var, key in zip(optimizer.variables, optim_keys):
            var.assign(npz[key])
    return json.loads(npz["state"].tobytes().decode())


def _checkpoint_fix(path: Path) -> str:
    """What to do about a damaged checkpoint (load_checkpoint's error says it)."""
    if Path(path).name == LAST.name:
        return "delete it and run the same training command with --resume (the run starts again from its first step), or retrain into a fresh --out"
    return "retrain the run into a fresh --out (the weights of its best epoch are not kept anywhere else)"


# ---------------------------------------------------------------- prediction


def make_predictor(model, batch_size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """A compiled ``waveforms (N, 16000) -> logits (N, K)`` function, batched."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 16000], tf.float32)], reduce_retracing=True)
    def forward(x):
        return model(x, training=False)

    def predict(waveforms: np.ndarray) -> np.ndarray:
        out = [forward(np.ascontiguousarray(waveforms[i : i + batch_size], np.float32)).numpy() for i in range(0, len(waveforms), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, int(model.output_shape[-1])), np.float32)

    return predict


EVALUATION_SEED = 0  # every model is scored on the same unknown subsample and silence clips


def open_run_dataset(config: RunConfig, *, progress: bool) -> DecodedDataset:
    """The decoded tree a run trained on, opened with the run's own cache and bad-file settings."""
    return open_dataset(Path(config.data), cache_dir=Path(config.cache_dir) if config.cache_dir else None, skip_bad=config.skip_bad, progress=progress)


def evaluation_examples(dataset: DecodedDataset, config: RunConfig, split: str) -> ExampleSet:
    """The tutorial's composition (every target clip, unknown and silence at the mix shares), clean and fixed."""
    return make_examples(dataset, split=split, mix=config.mix, seed=EVALUATION_SEED, labels=config.labels)


def evaluate(predict: Callable[[np.ndarray], np.ndarray], dataset: DecodedDataset, examples: ExampleSet, batch_size: int = 512,
             labels: LabelSet | None = None) -> dict:
    labels = labels or LabelSet(TARGET_WORDS)
    logits = [predict(materialize(dataset, examples, np.arange(i, min(i + batch_size, len(examples))))) for i in range(0, len(examples), batch_size)]
    logits = np.concatenate(logits) if logits else np.zeros((0, labels.num_classes), np.float32)
    return classification_report(examples.labels, logits, classes=labels.classes).to_dict()


# ---------------------------------------------------------------- the loop


@dataclass(frozen=True)
class FitResult:
    run_dir: Path
    metrics: dict
    seconds: float
    resumed_from_step: int
    finished_before: bool = False  # resumed a run that had already finished: nothing was trained or scored


def fit(
    *,
    config: RunConfig,
    run_dir: Path,
    resume: bool = False,
    source: BatchSource | None = None,
    dataset: DecodedDataset | None = None,
    progress: bool = True,
    threads: int = 0,
) -> FitResult:
    """Train ``config`` into ``run_dir``; with ``resume`` continue from ``checkpoints/last.npz``.

    Resuming a finished run (same config) returns its metrics.json as it stands, without training or
    scoring anything, so a rerun of a finished command is quick; ``score_run`` scores a checkpoint again.
    Refuses a folder another process is training (two writers would interleave checkpoints).
    """
    from distill.core.io import exclusive_folder

    with exclusive_folder(run_dir, doing="trained"):
        return _fit_in_held_folder(config=config, run_dir=Path(run_dir), resume=resume, source=source, dataset=dataset,
                                   progress=progress, threads=threads)


def _fit_in_held_folder(*, config: RunConfig, run_dir: Path, resume: bool, source: BatchSource | None, dataset: DecodedDataset | None,
                        progress: bool, threads: int) -> FitResult:
    import keras
    import tensorflow as tf

    from distill.training.loss import distillation_loss

    configure_threads(threads)
    dataset = dataset or open_run_dataset(config, progress=progress)
    config = replace(config, data_content=dataset.content_fingerprint)
    _claim_run_dir(run_dir, config, resume, dataset)
    if resume and is_finished(run_dir):
        metrics = read_json(run_dir / METRICS_FILE)
        return FitResult(run_dir=run_dir, metrics=metrics, seconds=0.0, resumed_from_step=metrics["steps"], finished_before=True)
    keras.utils.set_random_seed(config.seed)
    source = source or AugmentedSource(dataset, config)
    schedule = config.schedule
    alpha = 1.0 if config.distill is None else config.distill.alpha
    temperature = 1.0 if config.distill is None else config.distill.temperature

    # the policy holds while the model is built and trained; the kept checkpoint is scored below in float32,
    # as `teachers predict` and export will run it
    with precision_policy(schedule.precision) as policy:
        model = build_model(config)
        optimizer = make_optimizer(schedule, policy)
        optimizer.build(model.trainable_variables)
        steps_per_epoch = source.steps_per_epoch
        total_steps = schedule.epochs * steps_per_epoch
        state = {"step": 0, "best_accuracy": -1.0, "best_epoch": -1, "history": [], "epoch_losses": []}
        if resume and (run_dir / LAST).exists():
            state = load_checkpoint(run_dir / LAST, model, optimizer)
            # the step is the number of updates the weights hold, which the optimizer counts with them: checkpoints
            # written before steps were atomic can hold a counter one behind (a Ctrl-C between step and count)
            if int(optimizer.iterations.numpy()) == state["step"] + 1:
                state["step"] += 1
        resumed_from = state["step"]

        def loss_on(logits, y, soft):
            return distillation_loss(logits, y, soft, alpha=alpha, temperature=temperature, label_smoothing=schedule.label_smoothing)

        @tf.function(reduce_retracing=True)
        def train_step(x, y, soft, partner, weight):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = loss_on(logits, y, soft)
                if schedule.mixup_alpha > 0:
                    # each term is linear in its target (KL up to a constant), so this is the loss on the mixed targets
                    loss = weight * loss + (1.0 - weight) * loss_on(logits, tf.gather(y, partner), tf.gather(soft, partner))
                scaled = optimizer.scale_loss(loss)  # the loss itself unless loss scaling is on; apply_gradients unscales
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        predict = make_predictor(model)
        validation = evaluation_examples(dataset, config, "validation")
        writer = tf.summary.create_file_writer(str(run_dir / "tensorboard"))
        started = time.time()
        empty_soft = np.zeros((schedule.batch_size, config.labels.num_classes), np.float32)
        from distill.core.progress import track

        try:
            # an epoch is done once validated: a run stopped during validation resumes by validating that epoch
            for epoch in range(len(state["history"]), schedule.epochs):
                start = state["step"] - epoch * steps_per_epoch
                losses = state.setdefault("epoch_losses", [])  # this epoch's losses, kept in the checkpoint across a resume
                batches = prefetch(source.batches(epoch, start))
                for batch in track(batches, total=steps_per_epoch - start, description=f"{config.arch} epoch {epoch + 1}/{schedule.epochs}", disable=not progress):
                    lr = learning_rate_at(state["step"], total_steps=total_steps, steps_per_epoch=steps_per_epoch, schedule=schedule)
                    optimizer.learning_rate.assign(lr)
                    soft = batch.soft if batch.soft is not None else empty_soft[: len(batch.labels)]
                    x, partner, weight = batch.waveforms, np.arange(len(batch.labels)), 1.0
                    if schedule.mixup_alpha > 0:
                        partner, weight = mixup_pairs(seed=config.seed, step=state["step"], batch=len(batch.labels), alpha=schedule.mixup_alpha)
                        x = weight * x + (1.0 - weight) * x[partner]
                    with interrupt_deferred():  # the update, its count and its checkpoint happen together or not at all
                        loss = float(train_step(x, batch.labels, soft, partner, tf.constant(weight, tf.float32)))
                        if not np.isfinite(loss):
                            raise DistillError(f"training diverged at step {state['step']} (loss {loss}); lower --lr")
                        losses.append(loss)
                        state["step"] += 1
                        if state["step"] % 20 == 0:
                            with writer.as_default():
                                tf.summary.scalar("train/loss", loss, step=state["step"])
                                tf.summary.scalar("train/learning_rate", lr, step=state["step"])
                        if schedule.checkpoint_every_steps and state["step"] % schedule.checkpoint_every_steps == 0:
                            _save_checkpoint(run_dir / LAST, model, optimizer, state)
                val = evaluate(predict, dataset, validation, labels=config.labels)
                with interrupt_deferred():  # the epoch's record, best checkpoint and last checkpoint: all or none
                    state["history"].append({"epoch": epoch + 1, "step": state["step"], "loss": float(np.mean(losses)) if losses else None, "val_accuracy": val["accuracy"]})
                    state["epoch_losses"] = []
                    with writer.as_default():
                        tf.summary.scalar("validation/accuracy", val["accuracy"], step=state["step"])
                    if val["accuracy"] > state["best_accuracy"]:
                        state["best_accuracy"], state["best_epoch"] = val["accuracy"], epoch + 1
                        _save_checkpoint(run_dir / BEST, model, None, {"epoch": epoch + 1, "val_accuracy": val["accuracy"]})
                    _save_checkpoint(run_dir / LAST, model, optimizer, state)
                    write_json(run_dir / "history.json", state["history"])
        except KeyboardInterrupt:
            # the state is consistent here (every step and epoch end is one unit); a second Ctrl-C must not cut this save
            with interrupt_deferred():
                _save_checkpoint(run_dir / LAST, model, optimizer, state)
            raise
        finally:
            writer.close()

    if policy != "float32":
        model = build_model(config)  # float32 again: the model that predicts soft labels and is exported
        predict = make_predictor(model)
    load_checkpoint(run_dir / CHECKPOINTS[schedule.keep], model)
    metrics = {
        "family": config.family,
        "arch": config.arch,
        "size": config.size,
        "params": int(model.count_params()),
        "checkpoint": schedule.keep,
        "best_epoch": state["best_epoch"],
        "steps": state["step"],
        "validation": evaluate(predict, dataset, validation, labels=config.labels),
        "test": evaluate(predict, dataset, evaluation_examples(dataset, config, "testing"), labels=config.labels),
        "classes": list(config.labels.classes),
        "precision": schedule.precision,
        "policy": policy,  # the dtype policy the training steps ran under (mixed: mixed_bfloat16 on CPU, mixed_float16 on GPU)
    }
    write_json(run_dir / METRICS_FILE, metrics)
    return FitResult(run_dir=run_dir, metrics=metrics, seconds=time.time() - started, resumed_from_step=resumed_from)


def is_finished(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` has finished (scored and written its metrics)."""
    return (Path(run_dir) / METRICS_FILE).exists()


def _claim_run_dir(run_dir: Path, config: RunConfig, resume: bool, dataset: DecodedDataset) -> None:
    config_path = run_dir / CONFIG_FILE
    if config_path.exists():
        if not resume:
            raise DistillError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        saved = load_config(RunConfig, config_path)
        old, new = to_dict(saved), to_dict(config)
        # the data is compared by content, so a run resumes on a copy of its tree; runs saved before content
        # was recorded can only be compared by path
        for key in ("data", "data_content") if saved.data_content is not None else ("data_content",):
            old.pop(key), new.pop(key)
        changed = sorted([k for k in new if old.get(k) != new.get(k)] + (["data"] if saved.data_content not in (None, config.data_content) else []))
        if changed:
            detail = data_difference(saved.data, saved.data_content, dataset, cache_dir=Path(config.cache_dir) if config.cache_dir else None) if "data" in changed else None
            raise DistillError(f"{run_dir}: --resume with a different config (changed: {', '.join(changed)}){'; the run was ' + detail if detail else ''}; "
                               "use the saved options or a new --out")
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, config_path)


def load_run(run_dir: Path, *, checkpoint: str | None = None):
    """(config, model) of a finished or partial run, with the weights of ``checkpoint``: "best", "last",
    or None for the one the run keeps (its ``schedule.keep``)."""
    run_dir = Path(run_dir)
    config = load_config(RunConfig, run_dir / CONFIG_FILE)
    checkpoint = checkpoint or config.schedule.keep
    if checkpoint not in KEEP_CHOICES:
        raise DistillError(f"checkpoint must be one of {KEEP_CHOICES}, got {checkpoint!r}")
    path = run_dir / CHECKPOINTS[checkpoint]
    if not path.exists():
        raise DistillError(f"{run_dir}: no {checkpoint} checkpoint yet (has training finished an epoch?)")
    model = build_model(config)
    load_checkpoint(path, model)
    return config, model


def kept_checkpoint(run_dir: Path) -> str:
    """The checkpoint a run stands for ("best" or "last"), read from its config: runs saved before
    ``schedule.keep`` existed load with its default, which is what they kept."""
    return load_config(RunConfig, Path(run_dir) / CONFIG_FILE).schedule.keep


def score_run(run_dir: Path, *, checkpoint: str | None = None, splits: tuple[str, ...] = ("validation", "testing"),
              datasets: dict[str, DecodedDataset] | None = None) -> dict[str, float]:
    """Accuracy of one checkpoint of a run on each split, measured now rather than read from metrics.json,
    which holds only the checkpoint the run keeps. ``datasets`` caches decoded trees across calls."""
    config, model = load_run(run_dir, checkpoint=checkpoint)
    datasets = {} if datasets is None else datasets
    if config.data not in datasets:
        datasets[config.data] = open_run_dataset(config, progress=False)
    dataset = datasets[config.data]
    predict = make_predictor(model)
    return {split: evaluate(predict, dataset, evaluation_examples(dataset, config, split), labels=config.labels)["accuracy"] for split in splits}


# ---------------------------------------------------------------- several runs in parallel


def threads_per_worker(jobs: int, tasks: int) -> int:
    """TensorFlow threads for each of ``min(jobs, tasks)`` worker processes sharing this machine's cores evenly."""
    return max(1, (os.cpu_count() or 1) // max(1, min(jobs, tasks)))


def _fit_in_worker(config: RunConfig, run_dir: str, resume: bool, threads: int) -> dict:
    # runs in a joblib worker process; its TensorFlow log level comes from the environment distill._entry set
    result = fit(config=config, run_dir=Path(run_dir), resume=resume, progress=False, threads=threads)
    return {"run_dir": str(result.run_dir), "metrics": result.metrics, "seconds": result.seconds}


def fit_parallel(
    *,
    configs: list[RunConfig],
    run_dirs: list[Path],
    jobs: int = 1,
    backend: str = "loky",
    resume: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Train several runs at once through joblib.

    ``backend="loky"`` uses local processes; ``backend="dask"`` sends each run
    to the ``dask.distributed`` cluster of the current ``Client`` (create one
    first, e.g. ``Client("tcp://scheduler:8786")``), so the same call scales
    from a laptop to a cluster. The decoded cache is built once up front so
    workers only memory-map it.
    """
    from joblib import Parallel, delayed, parallel_config

    if len(configs) != len(run_dirs):
        raise ValueError("configs and run_dirs must have the same length")
    for config in {(c.data, c.cache_dir, c.skip_bad): c for c in configs}.values():  # one per distinct tree and its settings
        open_run_dataset(config, progress=progress)
    if jobs == 1 and backend != "dask":
        return [
            {"run_dir": str(r.run_dir), "metrics": r.metrics, "seconds": r.seconds}
            for r in (fit(config=c, run_dir=d, resume=resume, progress=progress) for c, d in zip(configs, run_dirs))
        ]
    threads = threads_per_worker(jobs, len(configs))
    with parallel_config(backend=backend, n_jobs=jobs):
        return Parallel(verbose=10 if progress else 0)(
            delayed(_fit_in_worker)(c, str(d), resume, threads) for c, d in zip(configs, run_dirs)
        )
