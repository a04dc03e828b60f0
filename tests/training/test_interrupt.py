"""Ctrl-C at any point of a fit, then --resume: the same weights, bit for bit, as a run never stopped.

The SIGINT is delivered for real (``signal.raise_signal``) from hooks placed at chosen points of the loop:
right after a training step returns (the point where the counter used to lag the weights), between steps,
during an epoch's validation, and inside a checkpoint save.
"""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

import distill.training.fit as fit_module
from distill.training.fit import BEST, LAST, RunConfig, ScheduleConfig, fit, load_run


@pytest.fixture(autouse=True)
def _sigint_raises_keyboard_interrupt():
    # a shell starts background jobs with SIGINT ignored, and Python then leaves it ignored: put its handler back
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _config(tree) -> RunConfig:
    schedule = ScheduleConfig(epochs=3, batch_size=8, learning_rate=3e-3, warmup_epochs=0.5, checkpoint_every_steps=3)
    return RunConfig(family="teacher", arch="resnet", size="toy", data=str(tree), schedule=schedule, seed=3)


def _ctrl_c() -> None:
    signal.raise_signal(signal.SIGINT)


def _after_train_step(monkeypatch, nth: int) -> None:
    """Ctrl-C as the ``nth`` compiled training step of the next fit returns (its update applied, not yet counted)."""
    import tensorflow as tf

    real = tf.function

    def function(fn=None, **options):
        if fn is None:
            return lambda f: function(f, **options)
        compiled = real(fn, **options)
        if fn.__name__ != "train_step":
            return compiled
        calls = []

        def step(*args):
            out = compiled(*args)
            calls.append(1)
            if len(calls) == nth:
                _ctrl_c()
            return out

        return step

    monkeypatch.setattr(tf, "function", function)


def _before_step(monkeypatch, nth: int) -> None:
    """Ctrl-C between two steps: as the ``nth`` step of the next fit asks for its learning rate."""
    real = fit_module.learning_rate_at
    calls = []

    def learning_rate_at(*args, **kwargs):
        calls.append(1)
        if len(calls) == nth:
            _ctrl_c()
        return real(*args, **kwargs)

    monkeypatch.setattr(fit_module, "learning_rate_at", learning_rate_at)


def _during_validation(monkeypatch) -> None:
    """Ctrl-C while the next fit validates its first epoch."""
    real = fit_module.evaluate

    def evaluate(*args, **kwargs):
        _ctrl_c()
        return real(*args, **kwargs)

    monkeypatch.setattr(fit_module, "evaluate", evaluate)


def _during_checkpoint(monkeypatch, step: int) -> None:
    """Ctrl-C in the middle of writing the periodic checkpoint of ``step``."""
    real = fit_module._save_checkpoint

    def save(path, model, optimizer, state):
        if path.name == LAST.name and state.get("step") == step:
            _ctrl_c()
        return real(path, model, optimizer, state)

    monkeypatch.setattr(fit_module, "_save_checkpoint", save)


def _saved(run) -> dict:
    with np.load(run / LAST) as npz:
        return json.loads(npz["state"].tobytes().decode())


def _assert_same_weights(a, b, checkpoint: str) -> None:
    (_, ma), (_, mb) = load_run(a, checkpoint=checkpoint), load_run(b, checkpoint=checkpoint)
    for wa, wb in zip(ma.get_weights(), mb.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_ctrl_c_anywhere_then_resume_equals_an_uninterrupted_run(tiny_tree, tmp_path, monkeypatch):
    straight = fit(config=_config(tiny_tree), run_dir=tmp_path / "straight", progress=False)
    steps_per_epoch = straight.metrics["steps"] // 3
    assert steps_per_epoch >= 4  # the points below need 4 steps an epoch
    run = tmp_path / "stopped"
    # (hook, the step the checkpoint left by the Ctrl-C must hold, validated epochs in it)
    stops = [
        (lambda patch: _after_train_step(patch, 2), 2, 0),  # two updates applied: the checkpoint must say 2, not 1
        (lambda patch: _before_step(patch, 2), 3, 0),  # resumed at 2: one more step, then Ctrl-C before the next
        (_during_validation, steps_per_epoch, 0),  # epoch 1 trained, not yet validated
        (lambda patch: _during_checkpoint(patch, 6), 6, 1),  # held until the save is complete
        (lambda patch: _after_train_step(patch, 2 * steps_per_epoch - 6), 2 * steps_per_epoch, 1),  # the epoch's last step
    ]
    for i, (hook, step, epochs) in enumerate(stops):
        with monkeypatch.context() as patch:
            hook(patch)
            with pytest.raises(KeyboardInterrupt):
                fit(config=_config(tiny_tree), run_dir=run, resume=i > 0, progress=False)
        state = _saved(run)
        assert (state["step"], len(state["history"])) == (step, epochs), f"stop {i}"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # every fit put Python's handler back

    resumed = fit(config=_config(tiny_tree), run_dir=run, resume=True, progress=False)
    assert resumed.resumed_from_step == 2 * steps_per_epoch
    _assert_same_weights(tmp_path / "straight", run, "last")
    _assert_same_weights(tmp_path / "straight", run, "best")
    assert json.loads((run / "history.json").read_text()) == json.loads((tmp_path / "straight" / "history.json").read_text())
    assert resumed.metrics == straight.metrics
    assert (run / BEST).exists()


def test_ctrl_c_inside_a_held_block_arrives_at_its_end():
    from distill.training.fit import interrupt_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt_deferred():
            _ctrl_c()
            done.append("rest of the block")  # runs: the interrupt waits for the block's end
    assert done == ["rest of the block"]
    with pytest.raises(KeyboardInterrupt):
        _ctrl_c()  # Python's handler is back
