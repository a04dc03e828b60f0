"""No user error ends in a traceback (issue 27): every command, fed a damaged artefact, a bad option value or an
--out it cannot or must not write, exits 2 with one ``error:`` line naming the file or option and what to do,
and leaves nothing behind. Ctrl-C ends with exit 130 and a line saying how to go on.

Every command runs in this process through ``distill.cli.main`` (a subprocess pays seconds for TensorFlow's import).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from distill.core.errors import DistillError


@pytest.fixture(autouse=True)
def _one_tensorflow_thread(monkeypatch):
    # `distill submit` sets TensorFlow's thread pools; the tests keep the one thread conftest gave them
    from distill.submission import predictor

    monkeypatch.setattr(predictor, "configure_threads", lambda intra, inter: True)


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    """(exit status, stdout + stderr) of ``distill ARGS``."""
    from distill.cli import main

    monkeypatch.setattr(sys, "argv", ["distill", *map(str, args)])
    with pytest.raises(SystemExit) as done:
        main()
    captured = capsys.readouterr()
    return done.value.code, captured.out + captured.err


def listing(folder: Path) -> dict[str, int]:
    """Every file and folder under ``folder`` with its size: what a refused command must leave as it was
    (a run folder's ``.lock``, which a command takes before it reads the run, aside)."""
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1) for p in sorted(folder.rglob("*")) if p.name != ".lock"}


def assert_refused(code: int, output: str, *named: str) -> str:
    """Exit 2, no traceback, one ``error:`` line naming each of ``named``; returns that line."""
    assert code == 2, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    for name in named:
        assert str(name) in errors[0], (name, errors[0])
    return errors[0]


def assert_bad_option(code: int, output: str, option: str) -> None:
    """typer's refusal of an out-of-range value: exit 2, the option named, no traceback."""
    assert code == 2, output
    assert "Traceback" not in output, output
    assert option in output, output


def cut_short(path: Path) -> Path:
    """Truncate a file to half its length, as a full disk or a killed copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def break_json(path: Path) -> Path:
    path.write_text(path.read_text()[:-20])
    return path


@pytest.fixture
def copies(tmp_path, tiny_soft_labels, toy_student_run):
    """Copies of the soft labels and the student run under tmp_path, to damage."""
    soft, run = tmp_path / "soft", tmp_path / "student"
    shutil.copytree(tiny_soft_labels, soft)
    shutil.copytree(toy_student_run, run, ignore=shutil.ignore_patterns(".lock"))
    return soft, run


STUDENT = ("--arch", "dscnn", "--size", "toy", "--epochs", "1", "--batch-size", "8", "--quiet")


@pytest.fixture(scope="module")
def cli_student_run(tiny_tree, tmp_path_factory):
    """A no-teacher toy student fitted by the command line, so that the same command can --resume it."""
    from distill.cli import main

    out = tmp_path_factory.mktemp("cli_student") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["distill", "student", "fit", "--data", str(tiny_tree), "--no-teachers", "--out", str(out), *STUDENT])
        with pytest.raises(SystemExit) as done:
            main()
    assert done.value.code == 0
    return out


# ---------------------------------------------------------------- damaged artefacts: truncated .npy, truncated .npz, bad JSON


@pytest.mark.parametrize("command, damaged", [
    ("student fit", "training/logits_resnet.npy"),
    ("teachers report", "testing/logits_wavecnn.npy"),  # the second split: nothing of the first may be written either
    ("teachers report", "validation/examples.npz"),
    ("pseudo select", "unlabeled/logits_resnet.npy"),
])
def test_damaged_soft_labels_are_named_with_the_fix(command, damaged, copies, tiny_tree, tmp_path, monkeypatch, capsys):
    soft, _ = copies
    cut_short(soft / damaged)
    args = {"student fit": ["student", "fit", "--data", tiny_tree, "--soft-labels", soft, "--out", tmp_path / "out", *STUDENT],
            "teachers report": ["teachers", "report", soft, "--out", tmp_path / "out"],
            "pseudo select": ["pseudo", "select", soft, "--out", tmp_path / "out.csv"]}[command]
    before = listing(tmp_path)
    line = assert_refused(*run_cli(monkeypatch, capsys, *args), soft / damaged)
    assert "cut short" in line and ("teachers predict" in line or "re-run" in line), line
    assert listing(tmp_path) == before


@pytest.mark.parametrize("command", ["export", "calibrate"])
def test_a_truncated_checkpoint_is_named_with_the_fix(command, copies, tiny_unlabeled, tmp_path, monkeypatch, capsys):
    _, run = copies
    cut_short(run / "checkpoints" / "best.npz")
    args = {"export": ["export", "--run", run, "--out", tmp_path / "out"],
            "calibrate": ["calibrate", "--run", run, "--unlabeled", tiny_unlabeled, "--out", tmp_path / "out", "--quiet"]}[command]
    before = listing(tmp_path)
    line = assert_refused(*run_cli(monkeypatch, capsys, *args), run / "checkpoints" / "best.npz")
    assert "retrain" in line
    assert listing(tmp_path) == before


@pytest.mark.parametrize("command", ["export", "calibrate", "pseudo select"])
def test_a_config_that_is_not_json_is_named(command, copies, tiny_unlabeled, tmp_path, monkeypatch, capsys):
    soft, run = copies
    folder = soft if command == "pseudo select" else run
    break_json(folder / "config.json")
    args = {"export": ["export", "--run", run, "--out", tmp_path / "out"],
            "calibrate": ["calibrate", "--run", run, "--unlabeled", tiny_unlabeled, "--out", tmp_path / "out", "--quiet"],
            "pseudo select": ["pseudo", "select", soft, "--out", tmp_path / "out.csv"]}[command]
    before = listing(tmp_path)
    line = assert_refused(*run_cli(monkeypatch, capsys, *args), folder / "config.json")
    assert "not valid JSON" in line
    assert listing(tmp_path) == before


@pytest.mark.parametrize("damage", ["last.npz", "config.json"])
def test_student_fit_resume_names_a_damaged_checkpoint_or_config(damage, cli_student_run, tiny_tree, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    # an interrupted run (no metrics.json yet): a finished one is not trained again, so its checkpoint is not read
    shutil.copytree(cli_student_run, run, ignore=shutil.ignore_patterns(".lock", "metrics.json"))
    damaged = cut_short(run / "checkpoints" / "last.npz") if damage == "last.npz" else break_json(run / "config.json")
    before = listing(tmp_path)
    line = assert_refused(*run_cli(monkeypatch, capsys, "student", "fit", "--data", tiny_tree, "--no-teachers", "--out", run, "--resume", *STUDENT), damaged)
    assert ("--resume" in line) if damage == "last.npz" else ("not valid JSON" in line)
    assert listing(tmp_path) == before


def test_student_fit_resume_of_a_finished_run_trains_nothing_and_says_so(cli_student_run, tiny_tree, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(cli_student_run, run, ignore=shutil.ignore_patterns(".lock"))
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    code, out = run_cli(monkeypatch, capsys, "student", "fit", "--data", tiny_tree, "--no-teachers", "--out", run, "--resume", *STUDENT)
    assert code == 0, out
    assert f"{run} had already finished: nothing trained" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"test {100 * metrics['test']['accuracy']:.2f}%" in out
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != ".lock"} == stamps


# ---------------------------------------------------------------- bad option values


@pytest.mark.parametrize("args, option", [
    (["--epochs", "0"], "--epochs"), (["--epochs", "-2"], "--epochs"), (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-8"], "--batch-size"), (["--lr", "-1"], "--lr"), (["--seed", "-1"], "--seed"),
])
@pytest.mark.parametrize("command", ["student fit", "teachers train"])
def test_impossible_training_options_are_refused_before_any_folder(command, args, option, tiny_tree, tmp_path, monkeypatch, capsys):
    base = ["student", "fit", "--no-teachers"] if command == "student fit" else ["teachers", "train"]
    assert_refused(*run_cli(monkeypatch, capsys, *base, "--data", tiny_tree, "--out", tmp_path / "out", *args), option)
    assert listing(tmp_path) == {}


@pytest.mark.parametrize("args, option", [
    (["teachers", "train", "--jobs", "0"], "--jobs"), (["student", "fit", "--no-teachers", "--warmup-epochs", "-1"], "--warmup-epochs"),
    (["student", "fit", "--no-teachers", "--mixup", "-0.5"], "--mixup"), (["teachers", "train", "--weight-decay", "-1"], "--weight-decay"),
    (["submit", "--model", "m", "--test-dir", "t", "--batch-size", "0"], "--batch-size"), (["submit", "--model", "m", "--test-dir", "t", "--chunk", "0"], "--chunk"),
    (["calibrate", "--run", "r", "--unlabeled", "u", "--prior-strength", "-1"], "--prior-strength"),
    (["export", "--run", "r", "--check-clips", "0"], "--check-clips"), (["demo", "--teacher-epochs", "0"], "--teacher-epochs"),
    (["run", "smoke", "--data", "d", "--jobs", "0"], "--jobs"),
])
def test_out_of_range_options_are_refused_where_declared(args, option, tmp_path, monkeypatch, capsys):
    needs_data = args[0] in ("teachers", "student")
    assert_bad_option(*run_cli(monkeypatch, capsys, *args, *(["--data", tmp_path] if needs_data else []), "--out", tmp_path / "out"), option)
    assert listing(tmp_path) == {}


def test_library_fits_refuse_an_impossible_schedule_or_job_count(tiny_tree, tmp_path):
    from distill.training.fit import ScheduleConfig
    from distill.training.teacher_fit import train_teachers

    for bad in ({"epochs": 0}, {"epochs": -1}, {"batch_size": 0}, {"learning_rate": -1.0}, {"warmup_epochs": -1.0}, {"mixup_alpha": -0.1}):
        with pytest.raises(DistillError, match=next(iter(bad))):
            ScheduleConfig(**bad)
    with pytest.raises(DistillError, match="--jobs"):
        train_teachers(archs=["resnet"], data=tiny_tree, out=tmp_path / "out", size="toy", jobs=0)
    assert listing(tmp_path) == {}


# ---------------------------------------------------------------- an --out that cannot or must not be written


@pytest.fixture
def model_dir(tmp_path):
    """Enough of an exported model for the checks that come before the graph is read."""
    from distill.core.labels import CLASSES

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.pb").write_bytes(b"not read before the checks")
    (folder / "labels.txt").write_text("".join(c + "\n" for c in CLASSES))
    return folder


def _out_commands(out: Path, *, tree, unlabeled, teachers, soft, run, model) -> dict[str, list]:
    return {
        "submit": ["submit", "--model", model, "--test-dir", unlabeled, "--out", out.with_suffix(".csv") if out.suffix == "" else out, "--quiet"],
        "student fit": ["student", "fit", "--data", tree, "--no-teachers", "--out", out, *STUDENT],
        "export": ["export", "--run", run, "--out", out],
        "calibrate": ["calibrate", "--run", run, "--unlabeled", unlabeled, "--out", out, "--quiet"],
        "data synth": ["data", "synth", "--out", out],
        "run": ["run", "smoke", "--data", tree, "--out", out],
        "teachers train": ["teachers", "train", "--data", tree, "--out", out],
        "teachers predict": ["teachers", "predict", *[a for t in teachers for a in ("--teacher", t)], "--data", tree, "--out", out, "--quiet"],
        "teachers report": ["teachers", "report", soft, "--out", out],
        "pseudo select": ["pseudo", "select", soft, "--out", out.with_suffix(".csv") if out.suffix == "" else out],
    }


FILE_OUTPUTS = ("submit", "pseudo select")


@pytest.mark.parametrize("where", ["existing file or folder", "under a file", "read-only"])
def test_an_unwritable_out_is_refused_before_any_work(where, tiny_tree, tiny_unlabeled, teacher_runs, tiny_soft_labels, toy_student_run, model_dir,
                                                      tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file in the way\n")
    if where == "read-only":
        # permission bits do not stop root, so the check's answer is simulated; access(2) itself says EROFS even to root
        import distill.core.io

        monkeypatch.setattr(distill.core.io, "_writable", lambda folder: Path(folder) != tmp_path)
    for command in _out_commands(tmp_path, tree=tiny_tree, unlabeled=tiny_unlabeled, teachers=teacher_runs, soft=tiny_soft_labels, run=toy_student_run, model=model_dir):
        if where == "existing file or folder":
            out = (tmp_path / "a_folder.csv") if command in FILE_OUTPUTS else blocker
            out.mkdir(exist_ok=True) if command in FILE_OUTPUTS else None
        else:
            out = (blocker if where == "under a file" else tmp_path / "new") / ("x.csv" if command in FILE_OUTPUTS else "x")
        args = _out_commands(out, tree=tiny_tree, unlabeled=tiny_unlabeled, teachers=teacher_runs, soft=tiny_soft_labels, run=toy_student_run, model=model_dir)[command]
        before = listing(tmp_path)
        line = assert_refused(*run_cli(monkeypatch, capsys, *args), out)
        assert {"existing file or folder": "not a folder" if command not in FILE_OUTPUTS else "is a folder", "under a file": f"{blocker} is a file",
                "read-only": "read-only"}[where] in line, (command, line)
        assert listing(tmp_path) == before, command


def test_a_read_only_file_system_is_refused_for_real_where_there_is_one():
    from distill.core.io import check_output

    if not Path("/proc/sys").is_dir() or os.access("/proc/sys", os.W_OK):
        pytest.skip("no read-only file system at /proc/sys here")
    with pytest.raises(DistillError, match="read-only"):
        check_output("/proc/sys/distill-out")


def test_an_out_that_is_one_of_the_inputs_is_refused(model_dir, toy_student_run, tiny_unlabeled, tmp_path, monkeypatch, capsys):
    model = (model_dir / "model.pb").read_bytes()
    key = tmp_path / "key.csv"
    key.write_text("fname,label\n" + "".join(f"{p.name},unknown\n" for p in sorted(tiny_unlabeled.glob("clip_*.wav"))))
    run = tmp_path / "student"
    shutil.copytree(toy_student_run, run, ignore=shutil.ignore_patterns(".lock"))
    before = listing(tmp_path)
    for args, out in (
        (["submit", "--model", model_dir, "--test-dir", tiny_unlabeled, "--out", model_dir / "model.pb"], model_dir / "model.pb"),
        (["submit", "--model", model_dir / "model.pb", "--test-dir", tiny_unlabeled, "--out", model_dir / "labels.txt"], model_dir / "labels.txt"),
        (["submit", "--model", model_dir, "--test-dir", tiny_unlabeled, "--out", key, "--answer-key", key], key),
        (["export", "--run", run, "--out", run], run),
        (["calibrate", "--run", run, "--unlabeled", tiny_unlabeled, "--out", run], run),
    ):
        line = assert_refused(*run_cli(monkeypatch, capsys, *args, *(["--quiet"] if args[0] != "export" else [])), out)
        assert "inputs" in line
    assert listing(tmp_path) == before and (model_dir / "model.pb").read_bytes() == model


# ---------------------------------------------------------------- saying what happened: skipped files, a missing key, Ctrl-C


def test_a_missing_answer_key_is_reported_before_any_prediction(model_dir, tiny_unlabeled, tmp_path, monkeypatch, capsys):
    import distill.submission.writer

    def never(*args, **kwargs):
        raise AssertionError("the graph was loaded before the answer key was checked")

    monkeypatch.setattr(distill.submission.writer, "open_predictor", never)
    before = listing(tmp_path)
    assert_refused(*run_cli(monkeypatch, capsys, "submit", "--model", model_dir, "--test-dir", tiny_unlabeled, "--out", tmp_path / "sub.csv",
                            "--answer-key", tmp_path / "missing.csv", "--quiet"), tmp_path / "missing.csv")
    assert listing(tmp_path) == before


def test_skip_bad_says_how_many_and_where_and_ctrl_c_says_how_to_resume(tiny_tree, tmp_path, monkeypatch, capsys):
    import distill.training.student_fit

    tree = tmp_path / "tree"
    shutil.copytree(tiny_tree, tree)
    (tree / "yes" / "ffffffff_nohash_0.wav").write_bytes(b"RIFF not a wav")

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(distill.training.student_fit, "fit", interrupted)
    code, output = run_cli(monkeypatch, capsys, "student", "fit", "--data", tree, "--no-teachers", "--skip-bad", "--out", tmp_path / "out", *STUDENT)
    assert code == 130 and "Traceback" not in output, output
    skipped = [line for line in output.splitlines() if "--skip-bad" in line]
    assert len(skipped) == 1 and "1 bad file" in skipped[0] and "bad_files.tsv" in skipped[0], output
    assert Path(skipped[0].rsplit(" ", 1)[-1]).read_text().startswith("yes/ffffffff_nohash_0.wav\t"), skipped[0]
    assert output.strip().splitlines()[-1] == "interrupted; run the same command with --resume to continue from the last checkpoint", output


def test_ctrl_c_in_submit_and_teachers_train_ends_with_exit_130_and_how_to_go_on(model_dir, tiny_unlabeled, tiny_tree, tmp_path, monkeypatch, capsys):
    import distill.submission.writer
    import distill.training.teacher_fit

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(distill.submission.writer, "open_predictor", interrupted)
    monkeypatch.setattr(distill.training.teacher_fit, "train_teachers", interrupted)
    for args, hint in (
        (["submit", "--model", model_dir, "--test-dir", tiny_unlabeled, "--out", tmp_path / "sub.csv", "--quiet"], "run the same command again to resume from the rows already written"),
        (["teachers", "train", "--data", tiny_tree, "--out", tmp_path / "t", "--resume"], "run the same command again to continue from the last checkpoint"),
    ):
        code, output = run_cli(monkeypatch, capsys, *args)
        assert code == 130 and "Traceback" not in output, output
        assert output.strip().splitlines()[-1] == f"interrupted; {hint}", output


def test_the_interrupt_hint_is_true_for_each_command():
    from distill.cli import interrupt_hint

    assert interrupt_hint(["student", "fit", "--data", "d"]).endswith("with --resume to continue from the last checkpoint")
    assert interrupt_hint(["--verbose", "teachers", "train", "--resume"]).endswith("again to continue from the last checkpoint")
    assert interrupt_hint(["submit", "--no-resume"]).endswith("without --no-resume to resume from the rows already written")
    assert interrupt_hint(["teachers", "predict"]) == interrupt_hint(["run", "smoke"]) == "interrupted; run the same command again to resume"
    assert interrupt_hint(["data", "fetch"]).endswith("resume the download")
    assert interrupt_hint(["export", "--run", "r"]) == "interrupted; run the same command again to redo it"
