"""Student fitting: consistent teaching, teachers untouched, the no-teacher twin, budgets."""

from __future__ import annotations

import numpy as np
import pytest

from distill.core.errors import DistillError
from distill.data.cache import open_dataset
from distill.training.fit import DistillConfig, RunConfig, ScheduleConfig, build_model, load_run
from distill.training.soft_labels import load_soft_labels
from distill.training.student_fit import DistillationSource, fit_student, fit_students_side_by_side

SCHEDULE = ScheduleConfig(epochs=1, batch_size=8, checkpoint_every_steps=0)


def _weights(run):
    _, model = load_run(run)
    return [w.copy() for w in model.get_weights()]


def test_distillation_batches_carry_the_stored_view_soft_labels(tiny_tree, tiny_soft_labels):
    soft = load_soft_labels(tiny_soft_labels, "training")
    config = RunConfig(family="student", arch="dscnn", data=str(tiny_tree), size="toy", schedule=SCHEDULE,
                       distill=DistillConfig(soft_labels=str(tiny_soft_labels), temperature=2.0), augment=soft.config.augment)
    source = DistillationSource(open_dataset(tiny_tree, progress=False), config, soft)
    expected = soft.ensemble(temperature=2.0)  # (views, N, 12)
    batch = next(source.batches(0))
    # every row's soft target is the ensemble of one stored view of one pool example with the same hard label
    for label, target in zip(batch.labels, batch.soft):
        matches = np.argwhere(np.isclose(expected, target, atol=1e-6).all(axis=-1))
        assert len(matches) and any(soft.examples.labels[n] == label for _, n in matches)
    assert source.steps_per_epoch >= 1


def test_student_step_changes_student_not_teachers(tiny_tree, tiny_soft_labels, teacher_runs, tmp_path):
    before = [_weights(r) for r in teacher_runs]
    result = fit_student(arch="dscnn", size="toy", data=tiny_tree, out=tmp_path / "student", soft_labels=tiny_soft_labels,
                         alpha=0.5, temperature=2.0, schedule=SCHEDULE, progress=False)
    assert result.metrics["family"] == "student" and result.metrics["steps"] > 0
    for run, old in zip(teacher_runs, before):
        for a, b in zip(old, _weights(run)):
            np.testing.assert_array_equal(a, b)
    config, trained = load_run(tmp_path / "student")
    fresh = build_model(config)
    assert any(not np.allclose(a, b) for a, b in zip(fresh.get_weights(), trained.get_weights()))
    assert config.distill.soft_labels.endswith("soft")


def test_no_teacher_twin_and_option_checks(tiny_tree, tiny_soft_labels, tmp_path):
    result = fit_student(arch="dscnn", size="toy", data=tiny_tree, out=tmp_path / "twin", soft_labels=None, schedule=SCHEDULE, progress=False)
    assert load_run(tmp_path / "twin")[0].distill is None and result.metrics["test"]["count"] > 0
    with pytest.raises(DistillError, match="need teachers"):
        fit_student(arch="dscnn", size="toy", data=tiny_tree, out=tmp_path / "x", soft_labels=None, online=True, progress=False)
    with pytest.raises(DistillError, match="alpha"):
        fit_student(arch="dscnn", size="toy", data=tiny_tree, out=tmp_path / "x", soft_labels=tiny_soft_labels, alpha=1.5, progress=False)


def test_side_by_side_skips_a_run_finished_after_the_list_was_made_and_fits_the_rest(tiny_tree, tmp_path):
    # the first run is finished by another process before a worker takes it up: fitting it again would
    # cost a dataset load and rewrite its metrics (here it would fail, as its data does not exist)
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "metrics.json").write_text("{}")
    runs = [dict(out=finished, resume=True, arch="dscnn", size="toy", data=tmp_path / "no-such-data", soft_labels=None),
            dict(out=tmp_path / "fresh", resume=True, arch="dscnn", size="toy", data=tiny_tree, soft_labels=None, schedule=SCHEDULE)]
    done = dict(fit_students_side_by_side(runs, jobs=1))
    assert done[finished] is None and done[tmp_path / "fresh"] > 0
    assert (tmp_path / "fresh" / "metrics.json").exists() and (finished / "metrics.json").read_text() == "{}"
    with pytest.raises(DistillError, match="jobs must be at least 1"):
        list(fit_students_side_by_side(runs, jobs=0))


def test_view_masks_reach_teachers_and_student_alike_and_are_refused_where_missing(tiny_tree, tiny_soft_labels, teacher_runs, tmp_path):
    from distill.data.augment import AugmentConfig, augment_waveforms
    from distill.data.examples import materialize
    from distill.training.soft_labels import predict_soft_labels

    masked = AugmentConfig.with_view_masks()
    with pytest.raises(DistillError, match="teachers predict --view-masks"):  # refused before any training
        fit_student(arch="dscnn", size="toy", data=tiny_tree, out=tmp_path / "x", soft_labels=tiny_soft_labels, augment=masked, progress=False)
    assert not (tmp_path / "x").exists()
    soft_dir = tmp_path / "soft_masked"
    predict_soft_labels(teacher_runs=teacher_runs, data=tiny_tree, out=soft_dir, views=2, splits=("training",), augment=masked, progress=False)
    soft = load_soft_labels(soft_dir, "training")
    assert soft.config.augment == masked
    fit_student(arch="dscnn", size="toy", data=tiny_tree, out=tmp_path / "student", soft_labels=soft_dir, schedule=SCHEDULE, progress=False)
    config, _ = load_run(tmp_path / "student")
    assert config.augment.view_masks_enabled()  # the student trained on the masked views its teachers labelled
    # and those views carry masks: view 1 of every clip has a silent span the plain view does not
    dataset = open_dataset(tiny_tree, progress=False)
    clips = materialize(dataset, soft.examples)
    with_masks = augment_waveforms(clips, seeds=soft.examples.seeds, view=1, noise=dataset.noise, config=masked)
    plain = augment_waveforms(clips, seeds=soft.examples.seeds, view=1, noise=dataset.noise, config=AugmentConfig())
    assert ((with_masks == 0).sum(axis=1) > (plain == 0).sum(axis=1)).mean() > 0.8
    twin = fit_student(arch="dscnn", size="toy", data=tiny_tree, out=tmp_path / "twin", soft_labels=None, augment=masked, schedule=SCHEDULE, progress=False)
    assert load_run(twin.run_dir)[0].augment == masked


def test_online_mode_runs_the_teachers(tiny_tree, tiny_soft_labels, tmp_path):
    result = fit_student(arch="dscnn", size="toy", data=tiny_tree, out=tmp_path / "online", soft_labels=tiny_soft_labels,
                         online=True, schedule=SCHEDULE, progress=False)
    assert result.metrics["steps"] > 0 and load_run(tmp_path / "online")[0].distill.online


def test_budget_refusal_happens_before_training(tiny_tree, tmp_path):
    with pytest.raises(DistillError, match="over --max-mb"):
        fit_student(arch="dscnn", size="default", data=tiny_tree, out=tmp_path / "big", soft_labels=None, max_mb=0.01, progress=False)
    with pytest.raises(DistillError, match="over --max-ms"):
        fit_student(arch="dscnn", size="toy", data=tiny_tree, out=tmp_path / "slow", soft_labels=None, max_ms=0.5, progress=False)
    assert not (tmp_path / "big").exists() and not (tmp_path / "slow").exists()
    ok = fit_student(arch="dscnn", size="toy", data=tiny_tree, out=tmp_path / "ok", soft_labels=None, max_mb=1, max_ms=200, schedule=SCHEDULE, progress=False)
    assert ok.metrics["footprint"]["pi3_ms"] < 200 and ok.metrics["footprint"]["params"] == ok.metrics["params"]


def test_eight_bit_budget_counts_a_byte_per_weight(tiny_tree):
    from distill.training.student_fit import check_budget

    model = build_model(RunConfig(family="student", arch="dscnn", data=str(tiny_tree), size="toy"))
    float_mb = check_budget(model, max_mb=None, max_ms=None, name="toy")["float32_bytes"] / 1e6
    with pytest.raises(DistillError, match="--weight-bits 8"):
        check_budget(model, max_mb=0.5 * float_mb, max_ms=None, name="toy")
    assert check_budget(model, max_mb=0.5 * float_mb, max_ms=None, name="toy", weight_bits=8)["weight_bits"] == 8
    with pytest.raises(DistillError, match="must be 8"):
        check_budget(model, max_mb=None, max_ms=None, name="toy", weight_bits=16)


def test_pseudo_labels_join_training_and_review_decisions_apply(tiny_tree, tiny_soft_labels, tmp_path):
    from distill.training.pseudo import load_pseudo, select_pseudo_labels
    from distill.training.student_fit import _pseudo_inputs

    selection = select_pseudo_labels(soft_labels=tiny_soft_labels, out=tmp_path / "pseudo.csv", threshold=0.0, min_agreement=0.0)
    pseudo = load_pseudo(selection.path)
    assert len(pseudo.names) == selection.selected > 2
    # a person rejects one clip and relabels another as "go"
    (tmp_path / "pseudo.review.csv").write_text(
        "fname,decision,label,timestamp\n"
        f"{pseudo.names[0]},reject,{'unknown'},2026-01-01T00:00:00Z\n"
        f"{pseudo.names[1]},relabel,go,2026-01-01T00:00:00Z\n"
    )
    folder, rows, seeds, probs = _pseudo_inputs(selection.path, tiny_soft_labels, 2.0, 0, None, False)
    assert len(rows) == len(pseudo.names) - 1 and probs.shape == (2, len(rows), 12)
    go = 0  # the relabelled clip comes first once the rejected one is dropped
    np.testing.assert_array_equal(probs[:, go].argmax(-1), [11, 11])
    result = fit_student(arch="dscnn", size="toy", data=tiny_tree, out=tmp_path / "with_pseudo", soft_labels=tiny_soft_labels,
                         pseudo=selection.path, schedule=SCHEDULE, progress=False)
    assert load_run(tmp_path / "with_pseudo")[0].distill.pseudo == str(selection.path.resolve())
    assert result.metrics["steps"] >= 1


def test_feature_masks_mask_while_training_and_freeze_to_the_plain_function(tiny_tree, tiny_soft_labels, tmp_path):
    from distill.data.augment import SpecAugment
    from distill.export.freeze import freeze_waveform_model, run_frozen_tf2

    fit_student(arch="tcresnet", size="toy", data=tiny_tree, out=tmp_path / "masked", soft_labels=tiny_soft_labels,
                schedule=SCHEDULE, feature_masks=True, progress=False)
    config, model = load_run(tmp_path / "masked")
    assert config.feature_masks is True
    masks = [layer for layer in model.layers if isinstance(layer, SpecAugment)]
    assert len(masks) == 1
    features = np.random.default_rng(0).normal(size=(2, 98, 40)).astype(np.float32)
    assert not np.allclose(masks[0](features, training=True), features)  # masks something while training
    np.testing.assert_array_equal(masks[0](features, training=False), features)
    graph = freeze_waveform_model(lambda x: model(x, training=False))
    assert not [n.op for n in graph.node if "Random" in n.op]  # nothing of the masking reaches the export
    import tensorflow as tf

    x = np.random.default_rng(1).normal(0, 0.2, 16000).astype(np.float32)
    np.testing.assert_allclose(run_frozen_tf2(graph, x).reshape(-1), tf.nn.softmax(model(x[None], training=False)).numpy().reshape(-1), atol=1e-5)
    # the default student stays unmasked
    plain = fit_student(arch="tcresnet", size="toy", data=tiny_tree, out=tmp_path / "plain", soft_labels=tiny_soft_labels, schedule=SCHEDULE, progress=False)
    assert not any(isinstance(layer, SpecAugment) for layer in load_run(plain.run_dir)[1].layers)


def test_run_spec_refuses_a_folder_of_other_settings_but_adopts_the_other_checkpoint(tmp_path):
    from distill.core.config import save_config
    from distill.training.student_fit import StudentRunSpec

    soft = tmp_path / "soft_labels"
    run = tmp_path / "run"
    run.mkdir()
    save_config(RunConfig(family="student", arch="tcresnet", data="/x", size="14-w2", seed=1, schedule=ScheduleConfig(epochs=160, keep="best"),
                          distill=DistillConfig(soft_labels=str(soft), alpha=0.3, temperature=4.0), feature_masks=True), run / "config.json")
    spec = StudentRunSpec(data=tmp_path, arch="tcresnet", size="14-w2", epochs=160, seed=1, soft_labels=soft, feature_masks=True, keep="last")
    spec.refuse_other(run, finished=True)  # both checkpoints are on disk; the one asked for is scored
    with pytest.raises(DistillError, match="keep: best there, last asked"):
        spec.refuse_other(run, finished=False)  # resuming would train on the folder's own settings
    from dataclasses import replace

    with pytest.raises(DistillError, match="temperature: 4.0 there, 2.0 asked"):
        replace(spec, temperature=2.0).refuse_other(run, finished=True)
    with pytest.raises(DistillError, match="soft_labels: .* there, None asked"):
        replace(spec, soft_labels=None).refuse_other(run, finished=True)
    with pytest.raises(DistillError, match="mixup: 0.0 there, 0.2 asked"):
        replace(spec, mixup=0.2).refuse_other(run, finished=True)
    with pytest.raises(DistillError, match="view_masks: False there, True asked"):
        replace(spec, view_masks=True).refuse_other(run, finished=True)
    assert "--view-masks" in replace(spec, view_masks=True).command(run) and "--view-masks" not in spec.command(run)
    from distill.training.student_fit import refuse_other_run

    with pytest.raises(ValueError, match=r"cannot compare \['width'\]"):  # a typo must not pass as "no difference"
        refuse_other_run(run, expected={"width": 2})
    command = spec.command(run)
    assert command[command.index("--soft-labels") + 1] == str(soft) and "--resume" in command and "--feature-masks" in command
    assert "--no-teachers" in replace(spec, soft_labels=None).command(tmp_path / "fresh") and "--resume" not in replace(spec).command(tmp_path / "fresh")


def test_latency_budget_is_checked_on_the_graph_export_ships():
    from distill.core.registry import STUDENTS
    from distill.layers.frontend import frontend_preset
    from distill.training.student_fit import check_budget

    # the ladder's 10k rung: 9.0 ms as exported (BatchNorm folded), 16.1 ms with its batch norms as separate Mul/Add
    model = STUDENTS.get("bcresnet")(size="1-stride2", frontend=frontend_preset("logmel32-w16-hop20"), seed=0)
    footprint = check_budget(model, max_mb=1.0, max_ms=10.0, name="bcresnet/1-stride2", weight_bits=8)
    assert footprint["pi3_ms_exported"] <= 10.0 < footprint["pi3_ms"]
    toy = STUDENTS.get("dscnn")(size="toy", seed=0)
    with pytest.raises(DistillError, match="as exported.*cheaper --frontend"):
        check_budget(toy, max_mb=1.0, max_ms=0.01, name="dscnn/toy", weight_bits=8)
