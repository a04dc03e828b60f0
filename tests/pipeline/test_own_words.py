"""Issue 28: any word list through every stage, on a toy tree of five words (7 classes)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from distill.core.errors import DistillError
from distill.core.labels import KAGGLE, LabelSet, parse_words

WORDS = ("zero", "one", "two", "three", "four")
RENAMED = {"yes": "zero", "no": "one", "up": "two", "down": "three", "left": "four"}


# ---------------------------------------------------------------- the list and its checks


def test_label_set_classes():
    labels = LabelSet(WORDS)
    assert labels.classes == ("silence", "unknown", *WORDS)
    assert labels.num_classes == 7
    assert labels.index["two"] == 4
    assert labels.word_to_class("three") == 5 and labels.word_to_class("yes") == 1
    assert KAGGLE.num_classes == 12 and KAGGLE.classes[2:] == ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
    assert parse_words(" zero, one ,two") == ("zero", "one", "two") and parse_words(None) is None


@pytest.mark.parametrize("text, says", [("", "at least one word"), ("zero,one,zero", "more than once"), ("zero,silence", "class of its own"),
                                        ("zero,unknown", "class of its own"), ("zero,,one", "not a word folder name")])
def test_bad_lists_are_refused(text, says):
    with pytest.raises(DistillError, match=says):
        parse_words(text)


def test_recipe_words():
    from distill.pipeline.recipe import load_recipe

    assert load_recipe("default").data.words == KAGGLE.words
    assert load_recipe("default", ["data.words=['zero','one']"]).data.words == ("zero", "one")
    with pytest.raises(DistillError, match="data.words"):
        load_recipe("default", ["data.words=['zero','zero']"])


# ---------------------------------------------------------------- a toy pipeline on five words


@pytest.fixture(scope="module")
def five_word_tree(tmp_path_factory):
    from tests.conftest import write_tiny_tree

    root = write_tiny_tree(tmp_path_factory.mktemp("five_words"))
    for old, new in RENAMED.items():
        (root / old).rename(root / new)
    return root


def test_a_word_with_no_folder_is_refused(five_word_tree, tmp_path):
    from distill.training.fit import RunConfig, ScheduleConfig, fit

    config = RunConfig(family="teacher", arch="resnet", size="toy", data=str(five_word_tree), schedule=ScheduleConfig(epochs=1, batch_size=8),
                       words=("zero", "five"))
    with pytest.raises(DistillError, match="no word folder for five"):
        fit(config=config, run_dir=tmp_path / "run", progress=False)


@pytest.fixture(scope="module")
def five_word_teachers(five_word_tree, tmp_path_factory):
    from distill.training.fit import ScheduleConfig
    from distill.training.teacher_fit import train_teachers

    out = tmp_path_factory.mktemp("teachers7")
    train_teachers(archs=["resnet", "wavecnn"], data=five_word_tree, out=out, size="toy", schedule=ScheduleConfig(epochs=1, batch_size=8),
                   progress=False, words=WORDS)
    return [out / "resnet", out / "wavecnn"]


@pytest.fixture(scope="module")
def five_word_soft(five_word_teachers, five_word_tree, five_word_unlabeled, tmp_path_factory):
    from distill.training.soft_labels import predict_soft_labels

    out = tmp_path_factory.mktemp("soft7") / "soft"
    predict_soft_labels(teacher_runs=five_word_teachers, data=five_word_tree, out=out, views=2, unlabeled=five_word_unlabeled[0], progress=False)
    return out


@pytest.fixture(scope="module")
def five_word_pseudo(five_word_soft, tmp_path_factory):
    from distill.training.pseudo import select_pseudo_labels

    out = tmp_path_factory.mktemp("pseudo7") / "pseudo.csv"
    select_pseudo_labels(soft_labels=five_word_soft, out=out, threshold=0.0, min_agreement=0.0)
    return out


@pytest.fixture(scope="module")
def five_word_student(five_word_tree, five_word_soft, five_word_pseudo, tmp_path_factory):
    from distill.training.fit import ScheduleConfig
    from distill.training.student_fit import fit_student

    out = tmp_path_factory.mktemp("student7") / "dscnn"
    fit_student(arch="dscnn", size="toy", data=five_word_tree, out=out, soft_labels=five_word_soft, pseudo=five_word_pseudo,
                schedule=ScheduleConfig(epochs=1, batch_size=8, checkpoint_every_steps=0), progress=False)
    return out


def test_teachers_record_their_words(five_word_teachers):
    from distill.core.config import load_config
    from distill.training.fit import RunConfig, load_run

    for run in five_word_teachers:
        config = load_config(RunConfig, run / "config.json")
        assert config.words == WORDS
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["classes"] == ["silence", "unknown", *WORDS]
        assert np.shape(metrics["test"]["confusion"]) == (7, 7)
        assert load_run(run)[1].output_shape[-1] == 7


def test_soft_labels_are_seven_wide(five_word_soft):
    from distill.training.soft_labels import load_soft_labels

    soft = load_soft_labels(five_word_soft, "training")
    assert soft.config.words == WORDS
    assert soft.logits.shape[-1] == 7
    assert soft.examples.labels.max() <= 6 and set(np.unique(soft.examples.labels)) >= {0, 1, 2, 6}


def test_teacher_report_is_seven_way(five_word_soft, tmp_path):
    from distill.training.teacher_report import teacher_report

    report = teacher_report(soft_labels=five_word_soft, out=tmp_path / "report")
    for row in report.rows:
        assert list(row["per_class_recall"]) == ["silence", "unknown", *WORDS] and np.shape(row["confusion"]) == (7, 7)
    assert (tmp_path / "report" / "confusion_ensemble_testing.png").is_file()


def test_pseudo_labels_are_seven_way(five_word_pseudo):
    from distill.training.pseudo import load_pseudo, pseudo_columns, read_review

    header = five_word_pseudo.read_text().splitlines()[0].split(",")
    assert tuple(header) == pseudo_columns(("silence", "unknown", *WORDS)) and len(header) == 4 + 7
    pseudo = load_pseudo(five_word_pseudo)
    assert pseudo.classes == ("silence", "unknown", *WORDS) and pseudo.probs.shape[1] == 7 and len(pseudo)
    assert json.loads(five_word_pseudo.with_suffix(".json").read_text())["words"] == list(WORDS)
    review = five_word_pseudo.with_name("relabel.csv")
    review.write_text(f"fname,decision,label,timestamp\n{pseudo.names[0]},relabel,three,2026-01-01T00:00:00+00:00\n")
    relabelled = load_pseudo(five_word_pseudo, review=review)
    assert relabelled.labels[0] == 5 and relabelled.probs[0].tolist() == [0, 0, 0, 0, 0, 1, 0]
    review.write_text(f"fname,decision,label,timestamp\n{pseudo.names[0]},relabel,yes,2026-01-01T00:00:00+00:00\n")
    with pytest.raises(DistillError, match="unknown label 'yes'"):
        read_review(review, pseudo.classes)


def test_review_speaks_the_lists_classes(five_word_pseudo, five_word_student, tmp_path):
    from distill.review.server import ReviewApp, _RequestError

    app = ReviewApp(pseudo=five_word_pseudo, review=tmp_path / "review.csv", student=five_word_student)
    try:
        payload = app.clips_payload()
        assert payload["classes"] == ["silence", "unknown", *WORDS] and len(payload["keys"]) == 7
        assert all(c["label"] in payload["classes"] and c["student"]["label"] in payload["classes"] for c in payload["clips"])
        name = payload["clips"][0]["fname"]
        assert app.decide({"fname": name, "decision": "relabel", "label": "four"}).status == 200
        with pytest.raises(_RequestError, match="unknown label 'yes'"):
            app.decide({"fname": name, "decision": "relabel", "label": "yes"})
    finally:
        app.close()


def test_student_is_seven_way(five_word_student):
    from distill.core.config import load_config
    from distill.training.fit import RunConfig, load_run

    assert load_config(RunConfig, five_word_student / "config.json").words == WORDS
    assert load_run(five_word_student)[1].output_shape[-1] == 7
    assert json.loads((five_word_student / "metrics.json").read_text())["classes"] == ["silence", "unknown", *WORDS]


def test_mismatched_artefacts_are_refused(five_word_tree, five_word_soft, five_word_teachers, tiny_soft_labels, tiny_tree, tmp_path):
    from distill.training.fit import ScheduleConfig
    from distill.training.soft_labels import predict_soft_labels
    from distill.training.student_fit import fit_student

    schedule = ScheduleConfig(epochs=1, batch_size=8)
    # 12-class soft labels given to a 7-class student
    with pytest.raises(DistillError, match=r"made for 12 classes \(yes,no.*not 7 classes \(zero,one,two,three,four\)"):
        fit_student(arch="dscnn", size="toy", data=tiny_tree, out=tmp_path / "s1", soft_labels=tiny_soft_labels, schedule=schedule, progress=False, words=WORDS)
    # 7-class soft labels given to a 12-class student
    with pytest.raises(DistillError, match=r"made for 7 classes \(zero,one,two,three,four\), not 12 classes"):
        fit_student(arch="dscnn", size="toy", data=five_word_tree, out=tmp_path / "s2", soft_labels=five_word_soft, schedule=schedule, progress=False,
                    words=KAGGLE.words)
    # teachers of a 7-word list asked for another list
    with pytest.raises(DistillError, match=r"made for 7 classes .* not 4 classes \(zero,one\)"):
        predict_soft_labels(teacher_runs=five_word_teachers, data=five_word_tree, out=tmp_path / "soft", views=1, progress=False, words=("zero", "one"))


@pytest.fixture(scope="module")
def five_word_unlabeled(five_word_tree, tmp_path_factory):
    """clip_*.wav from the five-word tree, with its answer key (words outside the list are unknown)."""
    import shutil

    folder = tmp_path_factory.mktemp("test7") / "test"
    folder.mkdir()
    rows = []
    for i, word in enumerate(("zero", "one", "two", "three", "four", "bed", "cat")):
        for j, wav in enumerate(sorted((five_word_tree / word).glob("*.wav"))[:3]):
            name = f"clip_{i:04x}{j:05x}.wav"
            shutil.copy(wav, folder / name)
            rows.append(f"{name},{word if word in WORDS else 'unknown'}\n")
    key = folder.parent / "answers.csv"
    key.write_text("fname,label\n" + "".join(rows))
    return folder, key


@pytest.fixture(scope="module")
def five_word_calibration(five_word_student, five_word_unlabeled, tmp_path_factory):
    from distill.calibration.student_calibration import calibrate_student

    out = tmp_path_factory.mktemp("cal7") / "calibration"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a toy validation split: reduced folds, floored priors
        calibrate_student(run=five_word_student, unlabeled=five_word_unlabeled[0], out=out, cv=2, progress=False)
    return out


def test_calibration_has_seven_offsets(five_word_calibration):
    from distill.calibration.student_calibration import CalibrationConfig
    from distill.core.config import load_config

    summary = json.loads((five_word_calibration / "calibration.json").read_text())
    assert summary["classes"] == ["silence", "unknown", *WORDS] and len(summary["offsets"]) == 7
    assert load_config(CalibrationConfig, five_word_calibration / "config.json").words == WORDS


@pytest.fixture(scope="module")
def five_word_export(five_word_student, five_word_calibration, tmp_path_factory):
    from distill.compliance.tf14 import tf14_unavailable_reason
    from distill.export.student_export import export_student

    out = tmp_path_factory.mktemp("export7") / "export"
    result = export_student(run=five_word_student, calibration=five_word_calibration, out=out, check=tf14_unavailable_reason() is None, check_clips=4)
    return out, result


def test_export_is_seven_way(five_word_export):
    from distill.compliance.tf14 import tf14_unavailable_reason
    from distill.export.freeze import OUTPUT_NODE
    from distill.export.graph_compat import static_shapes
    from distill.submission.predictor import load_graph_def

    out, result = five_word_export
    assert (out / "labels.txt").read_text().split() == ["silence", "unknown", *WORDS]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classes"] == ["silence", "unknown", *WORDS] and manifest["words"] == list(WORDS)
    assert manifest["run_config"]["words"] == list(WORDS) and len(manifest["offsets"]) == 7
    assert manifest["interface"]["output"].endswith("[1,7]")
    assert static_shapes(load_graph_def(out)[0])[OUTPUT_NODE][0] == (1, 7)
    if tf14_unavailable_reason() is None:  # --check-pi: TF 1.4 loads and runs the 7-way graph, matching the student
        lines = {line["name"]: line for line in result.checks["lines"]}
        runs = next(v for k, v in lines.items() if k.startswith("3."))
        assert runs["passed"] and "[1, 7]" in runs["value"], runs
        assert next(v for k, v in lines.items() if k.startswith("4."))["passed"]


def test_a_calibration_of_another_list_is_refused(five_word_student, tmp_path):
    from distill.export.student_export import export_student

    other = tmp_path / "calibration.json"
    other.write_text(json.dumps({"classes": list(KAGGLE.classes), "offsets": [0.0] * 12}))
    with pytest.raises(DistillError, match=r"made for 12 classes \(yes,no.*not 7 classes \(zero,one,two,three,four\)"):
        export_student(run=five_word_student, calibration=other, out=tmp_path / "export")


def test_submission_and_label_wav_speak_the_models_words(five_word_export, five_word_unlabeled, five_word_tree, tmp_path):
    from distill.submission.label_wav import label_wav
    from distill.submission.writer import write_submission

    model, _ = five_word_export
    folder, key = five_word_unlabeled
    result = write_submission(model=model, test_dir=folder, out=tmp_path / "submission.csv", answer_key=key, progress=False, probs=True)
    assert set(result.counts) == {"silence", "unknown", *WORDS}
    labels = {line.split(",")[1] for line in (tmp_path / "submission.csv").read_text().split()[1:]}
    assert labels <= {"silence", "unknown", *WORDS}
    assert np.shape(result.score["confusion"]) == (7, 7)
    probs = np.load(tmp_path / "submission.csv.probs.npz")
    assert list(probs["classes"]) == ["silence", "unknown", *WORDS] and probs["probs"].shape[1] == 7
    [labelled] = label_wav(model=model, wavs=[sorted((five_word_tree / "two").glob("*.wav"))[0]], top_k=7)
    assert {name for name, _ in labelled.top} == {"silence", "unknown", *WORDS} and labelled.probs.shape == (7,)
    with pytest.raises(DistillError, match=r"top_k must be in 1..7"):
        label_wav(model=model, wavs=[sorted((five_word_tree / "two").glob("*.wav"))[0]], top_k=8)


# ---------------------------------------------------------------- the commands


def _said(result) -> str:
    """What a command printed, and the DistillError it ended with (distill's entry point prints that one)."""
    return result.output + ("" if result.exception is None else str(result.exception))


def test_cli_words(five_word_tree, five_word_teachers, five_word_soft, tmp_path):
    from typer.testing import CliRunner

    from distill.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["classes", "--words", "zero,one,two,three,four"])
    assert result.exit_code == 0 and result.output.split() == ["0", "silence", "1", "unknown", "2", "zero", "3", "one", "4", "two", "5", "three", "6", "four"]
    result = runner.invoke(app, ["data", "stats", str(five_word_tree), "--words", ",".join(WORDS), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output[result.output.index("{"):])
    assert list(stats["class_counts"]["training"]) == ["silence", "unknown", *WORDS] and stats["words"] == list(WORDS)
    result = runner.invoke(app, ["data", "stats", str(five_word_tree), "--words", "zero,banana"])
    assert result.exit_code != 0 and "no word folder for banana" in _said(result)
    result = runner.invoke(app, ["teachers", "train", "--data", str(five_word_tree), "--out", str(tmp_path / "t"), "--words", "zero,zero"])
    assert result.exit_code != 0 and "more than once" in _said(result)
    # teachers predict: the recipe's list (the Kaggle ten unless --words) must be the teachers'
    teachers = [arg for t in five_word_teachers for arg in ("--teacher", str(t))]
    result = runner.invoke(app, ["teachers", "predict", *teachers, "--data", str(five_word_tree), "--out", str(tmp_path / "p1"), "--views", "1", "--quiet"])
    assert result.exit_code != 0 and "made for 7 classes (zero,one,two,three,four), not 12 classes" in " ".join(_said(result).split())
    assert "--words zero,one,two,three,four" in _said(result)
    result = runner.invoke(app, ["teachers", "predict", *teachers, "--data", str(five_word_tree), "--out", str(tmp_path / "p2"), "--views", "1", "--quiet",
                                 "--words", ",".join(WORDS)])
    assert result.exit_code == 0, _said(result)
    assert json.loads((tmp_path / "p2" / "config.json").read_text())["config"]["words"] == list(WORDS)
    # a 7-class soft-label folder given to a student asked for the Kaggle words
    result = runner.invoke(app, ["student", "fit", "--data", str(five_word_tree), "--soft-labels", str(five_word_soft), "--out", str(tmp_path / "s"),
                                 "--arch", "dscnn", "--size", "toy", "--epochs", "1", "--words", "yes,no,up,down,left,right,on,off,stop,go"])
    assert result.exit_code != 0 and "made for 7 classes (zero,one,two,three,four), not 12 classes" in " ".join(_said(result).split())


def test_teachers_train_cli_words(five_word_tree, tmp_path):
    from typer.testing import CliRunner

    from distill.cli import app
    from distill.core.config import load_config
    from distill.training.fit import RunConfig

    result = CliRunner().invoke(app, ["teachers", "train", "--data", str(five_word_tree), "--out", str(tmp_path / "t"), "--arch", "wavecnn", "--size", "toy",
                                      "--epochs", "1", "--batch-size", "8", "--folds", "1", "--words", "zero,one,two"])
    assert result.exit_code == 0, result.output
    config = load_config(RunConfig, tmp_path / "t" / "wavecnn" / "config.json")
    assert config.words == ("zero", "one", "two") and "data.words=['zero', 'one', 'two']" in " ".join(config.recipe.overrides).replace('"', "'")


def test_synth_speaks_any_list(tmp_path):
    from distill.data.index import index_dataset
    from distill.data.synth import SynthConfig, synthesize_dataset

    config = SynthConfig.for_words(WORDS, speakers=4, noise_seconds=2.0, test_clips=14, min_speakers_per_split=1)
    assert config.words[:5] == WORDS and "yes" in config.words and config.targets == WORDS
    result = synthesize_dataset(out=tmp_path / "synth", config=config, jobs=2, progress=False)
    index = index_dataset(tmp_path / "synth")
    assert set(WORDS) <= set(index.words)
    answers = [line.split(",")[1] for line in result.answer_key.read_text().split()[1:]]
    assert set(answers) <= {"silence", "unknown", *WORDS} and set(answers) & set(WORDS)


@pytest.mark.slow  # a second whole `distill run`; the toy pipeline test above covers every stage with seven classes
def test_distill_run_follows_data_words(five_word_tree, five_word_unlabeled, tmp_path):
    """``distill run`` with ``data.words``: every stage of the smoke recipe on the five-word list."""
    from distill.core.config import load_config
    from distill.pipeline.recipe import load_recipe
    from distill.pipeline.run import run_recipe
    from distill.training.fit import RunConfig

    folder, key = five_word_unlabeled
    recipe = load_recipe("smoke", ["teachers.batch_size=8", "students.0.batch_size=8", "data.words=" + json.dumps(list(WORDS))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = run_recipe(recipe=recipe, data=five_word_tree, out=tmp_path / "run", kaggle_test=folder, kaggle_labels=key, progress=False, log=lambda m: None)
    out = result.out
    for config in out.glob("**/config.json"):
        payload = json.loads(config.read_text())
        if payload.get("kind") in ("RunConfig", "PredictConfig", "CalibrationConfig"):
            assert tuple(payload["config"]["words"]) == WORDS, config
    assert load_config(RunConfig, next(out.glob("students/*/distilled/config.json"))).words == WORDS
    assert (out / "export" / "labels.txt").read_text().split() == ["silence", "unknown", *WORDS]
    labels = {line.split(",")[1] for line in (out / "submission.csv").read_text().split()[1:]}
    assert labels <= {"silence", "unknown", *WORDS}
    tf14 = json.loads((out / "tf14_eval.json").read_text())
    assert all(np.shape(r["confusion"]) == (7, 7) for r in tf14.values())
    assert np.shape(result.report["submission_agreement_with_labels"]["confusion"]) == (7, 7)
