"""Teacher soft labels: shapes, alignment to the example set, views, resume, ensemble math, report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distill.core.errors import DistillError
from distill.core.metrics import softmax
from distill.data.augment import AugmentConfig, augment_waveforms
from distill.data.cache import open_dataset
from distill.data.examples import materialize
from distill.training.fit import load_run, make_predictor
from distill.training.soft_labels import ensemble_probabilities, load_soft_labels, predict_config, predict_soft_labels, refuse_other_predictions
from distill.training.teacher_report import teacher_report


def test_ensemble_is_weighted_mean_of_tempered_softmax():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 2, 5, 12))
    weights = np.array([1.0, 2.0, 1.0])
    expected = sum(w * softmax(l, temperature=2.0) for w, l in zip(weights, logits)) / weights.sum()
    np.testing.assert_allclose(ensemble_probabilities(logits, temperature=2.0, weights=weights), expected, rtol=1e-5)
    with pytest.raises(DistillError, match="weights"):
        ensemble_probabilities(logits, weights=np.array([1.0, -1.0, 1.0]))


def test_predict_shapes_alignment_and_resume(teacher_runs, tiny_tree, tmp_path):
    out = tmp_path / "soft"
    result = predict_soft_labels(teacher_runs=teacher_runs, data=tiny_tree, out=out, views=3, unlabeled=None, chunk=16, progress=False)
    assert result.teachers == ("resnet", "wavecnn")
    soft = load_soft_labels(out, "validation")
    n = len(soft.examples)
    assert soft.logits.shape == (2, 3, n, 12) and soft.logits.dtype == np.float16

    # aligned: recomputing teacher 0 on view 2 of the stored examples gives the stored logits
    dataset = open_dataset(tiny_tree, progress=False)
    _, model = load_run(teacher_runs[0])
    audio = augment_waveforms(materialize(dataset, soft.examples), seeds=soft.examples.seeds, view=2, noise=dataset.noise, config=AugmentConfig())
    np.testing.assert_allclose(make_predictor(model)(audio), soft.logits[0, 2].astype(np.float32), atol=2e-2, rtol=1e-2)
    assert not np.allclose(soft.logits[0, 0], soft.logits[0, 2])  # views differ from the clean clip

    # training pool keeps every unknown clip
    train = load_soft_labels(out, "training")
    words = np.array(dataset.index.words)[train.examples.rows[train.examples.rows >= 0]]
    assert {"bed", "cat"} <= set(words)

    # re-running with the same options is a no-op resume; other options are refused
    before = (out / "validation" / "logits_resnet.npy").stat().st_mtime_ns
    predict_soft_labels(teacher_runs=teacher_runs, data=tiny_tree, out=out, views=3, chunk=16, progress=False)
    assert (out / "validation" / "logits_resnet.npy").stat().st_mtime_ns == before
    with pytest.raises(DistillError, match="made with other views;"):
        predict_soft_labels(teacher_runs=teacher_runs, data=tiny_tree, out=out, views=2, chunk=16, progress=False)
    # the check a driver runs before skipping a finished folder names nested fields too
    asked = predict_config(teacher_runs=teacher_runs, data=tiny_tree, views=3, chunk=16, augment=AugmentConfig.with_view_masks())
    with pytest.raises(DistillError, match=r"other augment\.view_time_masks, augment\.view_freq_masks;"):
        refuse_other_predictions(out, asked)
    refuse_other_predictions(out, predict_config(teacher_runs=teacher_runs, data=tiny_tree, views=3, chunk=16))
    refuse_other_predictions(tmp_path / "nothing_yet", asked)


def test_predict_resumes_from_saved_chunks(teacher_runs, tiny_tree, tmp_path, monkeypatch):
    import distill.training.soft_labels as predict_module

    out = tmp_path / "soft"
    calls = {"n": 0}
    real = predict_module.augment_waveforms

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_module, "augment_waveforms", flaky)
    with pytest.raises(KeyboardInterrupt):
        predict_soft_labels(teacher_runs=teacher_runs[:1], data=tiny_tree, out=out, views=2, splits=("training",), chunk=8, progress=False)
    parts = list((out / "training" / ".parts_resnet").glob("*.npy"))
    assert len(parts) == 2  # the two finished chunks survived
    monkeypatch.setattr(predict_module, "augment_waveforms", real)
    predict_soft_labels(teacher_runs=teacher_runs[:1], data=tiny_tree, out=out, views=2, splits=("training",), chunk=8, progress=False)
    fresh = tmp_path / "fresh"
    predict_soft_labels(teacher_runs=teacher_runs[:1], data=tiny_tree, out=fresh, views=2, splits=("training",), chunk=8, progress=False)
    np.testing.assert_array_equal(np.load(out / "training" / "logits_resnet.npy"), np.load(fresh / "training" / "logits_resnet.npy"))


def test_unlabeled_folder_and_report(teacher_runs, tiny_tree, tmp_path):
    import shutil

    folder = tmp_path / "kaggle"
    folder.mkdir()
    for i, wav in enumerate(sorted(tiny_tree.glob("yes/*.wav"))[:5]):
        shutil.copy(wav, folder / f"clip_{i:09x}.wav")
    out = tmp_path / "soft"
    predict_soft_labels(teacher_runs=teacher_runs, data=tiny_tree, out=out, views=1, unlabeled=folder, progress=False)
    unl = load_soft_labels(out, "unlabeled")
    assert unl.names == sorted(p.name for p in folder.iterdir()) and unl.logits.shape == (2, 1, 5, 12)
    report = teacher_report(soft_labels=out)
    saved = json.loads((out / "report.json").read_text())
    models = {r["model"] for r in saved["rows"]}
    assert models == {"resnet", "wavecnn", "ensemble"} and all(f.exists() for f in report.files)
    assert "ensemble" in report.to_table()
    # one member's ensemble is that member; the training split is scored too, and the confidence is a probability
    alone = teacher_report(soft_labels=out, out=tmp_path / "alone", splits=("training", "validation"), members=("wavecnn",))
    by_model = {(r["model"], r["split"]): r for r in alone.rows}
    assert {m for m, _ in by_model} == {"wavecnn", "ensemble"}
    for split in ("training", "validation"):
        assert by_model["ensemble", split]["accuracy"] == by_model["wavecnn", split]["accuracy"]
        assert by_model["ensemble", split]["mean_top_probability"] == pytest.approx(by_model["wavecnn", split]["mean_top_probability"], abs=1e-6)
        assert 1 / 12 <= by_model["wavecnn", split]["mean_top_probability"] <= 1
    assert json.loads((tmp_path / "alone" / "report.json").read_text())["members"] == ["wavecnn"]
    with pytest.raises(DistillError, match="no teacher named crnn; its teachers are resnet, wavecnn"):
        teacher_report(soft_labels=out, out=tmp_path / "alone", members=("crnn",))
    with pytest.raises(DistillError, match="'unlabeled' split has no labels"):
        teacher_report(soft_labels=out, out=tmp_path / "alone", splits=("unlabeled",))


def test_reuse_adds_a_member_for_the_cost_of_one(teacher_runs, tiny_tree, tiny_unlabeled, tmp_path):
    options = dict(data=tiny_tree, views=2, splits=("training", "validation"), unlabeled=tiny_unlabeled, chunk=16, progress=False)
    one = tmp_path / "one"
    predict_soft_labels(teacher_runs=teacher_runs[:1], out=one, **options)
    both = tmp_path / "both"
    result = predict_soft_labels(teacher_runs=teacher_runs, out=both, reuse=one, **options)
    assert result.teachers == ("resnet", "wavecnn")
    for part in ("training", "validation", "unlabeled"):
        # resnet's logits are the same file, linked in; only wavecnn's were predicted
        assert (both / part / "logits_resnet.npy").stat().st_ino == (one / part / "logits_resnet.npy").stat().st_ino
        assert not (one / part / "logits_wavecnn.npy").exists()
    fresh = tmp_path / "fresh"
    predict_soft_labels(teacher_runs=teacher_runs, out=fresh, **options)
    for part in ("training", "validation"):
        reused, made = load_soft_labels(both, part), load_soft_labels(fresh, part)
        np.testing.assert_array_equal(reused.logits, made.logits)
        np.testing.assert_array_equal(reused.examples.seeds, made.examples.seeds)
    with pytest.raises(DistillError, match="made with other views"):
        predict_soft_labels(teacher_runs=teacher_runs, out=tmp_path / "other", reuse=one, **{**options, "views": 3})
    assert not (tmp_path / "other").exists()  # refused before anything was written
    with pytest.raises(DistillError, match="no soft labels there"):
        predict_soft_labels(teacher_runs=teacher_runs, out=tmp_path / "missing", reuse=tmp_path / "nowhere", **options)
