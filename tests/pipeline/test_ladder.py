"""The student ladder: seeds per student, per-stage reuse of an OUT, the recipes an OUT has seen, and ladder.json/md/png.

The smoke-sized ladder run itself is in test_run.py, where it reuses the smoke run's teachers and soft labels.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from distill.core.errors import DistillError
from distill.pipeline.recipe import load_recipe, recipe_text, to_toml
from distill.pipeline.run import is_ladder, ladder_rows, plan_students, record_recipe, refuse_other_recipe, student_settings, write_ladder


def _ladder(base: str = "smoke", seeds: int = 2, *overrides: str):
    """``base`` with a second toy student; both at ``seeds`` seeds."""
    recipe = load_recipe(base, list(overrides))
    first = dataclasses.replace(recipe.students[0], seeds=seeds)
    return dataclasses.replace(recipe, students=(first, dataclasses.replace(first, arch="dscnn", size="toy"))).check()


def test_the_shipped_ladder_shares_the_default_recipes_shared_stages_and_first_student():
    ladder, default = load_recipe("ladder"), load_recipe("default")
    for table in ("data", "teachers", "predict", "pseudo", "calibrate", "export"):
        assert getattr(ladder, table) == getattr(default, table), table
    assert dataclasses.replace(ladder.students[0], seeds=1) == default.students[0]  # its seed-0 runs, export and calibration are reused
    assert not any(dataclasses.asdict(ladder.ablations).values())
    assert [s.label for s in ladder.students] == ["tcresnet-14-w2", "bcresnet-1-stride2-logmel32-w16-hop20", "tcresnet-8-w0.5-logmel32-w16-hop20",
                                                  "dscnn-s-mfcc10-w16-hop20", "tcresnet-8-mfcc10-w16-hop20", "tcresnet-8-mfcc40-hop20", "tcresnet-8",
                                                  "tcresnet-14"]
    assert {s.frontend for s in ladder.students[1:6]} == {"logmel32-w16-hop20", "mfcc10-w16-hop20", "mfcc40-hop20"}  # the small rungs' front-ends
    assert ladder.students[6].frontend == ""  # TC-ResNet-8 at its own front-end too: what the cheaper ones cost in accuracy
    assert all(s.seeds == 3 for s in ladder.students) and is_ladder(ladder) and not is_ladder(default)
    assert "docs/experiments/student-ladder.md" in recipe_text("ladder")[1]  # the header quotes measured numbers and names their file


def test_seeds_plan_seed_zero_of_every_student_first_under_todays_folder_names():
    recipe = _ladder(seeds=2)
    plans = [p for p in plan_students(recipe, with_pseudo=False) if not p.ablation]
    assert [p.name for p in plans] == ["tcresnet-toy/distilled", "tcresnet-toy/twin", "dscnn-toy/distilled", "dscnn-toy/twin",
                                       "tcresnet-toy/distilled-s1", "tcresnet-toy/twin-s1", "dscnn-toy/distilled-s1", "dscnn-toy/twin-s1"]
    seed = recipe.data.seed
    assert [student_settings(recipe, p)["seed"] for p in plans] == [seed] * 4 + [seed + 1] * 4
    assert student_settings(recipe) == student_settings(load_recipe("smoke"))  # seed 0 fits exactly what it did before seeds existed


def test_bad_seeds_and_a_repeated_student_are_refused_by_key():
    with pytest.raises(DistillError, match=r"^students\.0\.seeds: must be >= 1"):
        load_recipe("smoke", ["students.0.seeds=0"])
    recipe = load_recipe("smoke")
    with pytest.raises(DistillError, match=r"^students\.1: the same arch, size and front-end as students\.0 \(both would train into students/tcresnet-toy\)"):
        dataclasses.replace(recipe, students=recipe.students * 2).check()
    # the same net at another front-end is another rung, in its own folder
    cheap = dataclasses.replace(recipe.students[0], frontend="mfcc10-w16-hop20")
    assert [s.label for s in dataclasses.replace(recipe, students=(recipe.students[0], cheap)).check().students] == [
        "tcresnet-toy", "tcresnet-toy-mfcc10-w16-hop20"]


def _out(tmp_path, recipe, *folders):
    out = tmp_path / "out"
    out.mkdir()
    (out / "recipe.toml").write_text(to_toml(recipe))
    for folder in folders:
        (out / folder).mkdir(parents=True)
    return out


def test_more_students_seeds_ablations_or_export_keys_only_add_work(tmp_path):
    smoke = load_recipe("smoke")
    out = _out(tmp_path, smoke, "teachers", "soft_labels", "students/tcresnet-toy")
    more = dataclasses.replace(_ladder("smoke", 3, "export.check_clips=4", "ablations.flipped_masks=true", "calibrate.prior_strength=5"),
                               name="more")
    refuse_other_recipe(out, more)  # no calibration/ yet, so calibrate.* shaped nothing


def test_keys_behind_what_is_in_out_are_refused_each_by_name(tmp_path):
    smoke = load_recipe("smoke")
    out = _out(tmp_path, smoke, "teachers", "soft_labels", "students/tcresnet-toy", "calibration")
    with pytest.raises(DistillError) as err:
        refuse_other_recipe(out, load_recipe("smoke", ["teachers.epochs=2", "students.0.epochs=3", "calibrate.prior_strength=5"]))
    message = str(err.value)
    assert "another recipe (teachers.epochs: 1 there, 2 asked; calibrate.prior_strength: 500.0 there, 5.0 asked; students.0.epochs: 1 there, 3 asked)" in message
    assert "teachers, soft_labels, calibration, students/tcresnet-toy" in message and "choose another --out" in message
    # a student is matched by its folder, not its index: moved to index 1 it is still compared
    moved = _ladder("smoke", 1, "students.0.epochs=3")
    moved = dataclasses.replace(moved, students=moved.students[::-1])
    with pytest.raises(DistillError, match=r"students\.0\.arch: 'tcresnet' there, 'dscnn' asked; students\.1\.epochs: 1 there, 3 asked"):
        refuse_other_recipe(out, moved)  # and calibration/ belongs to the first student


def test_a_student_dropped_by_the_latest_recipe_is_compared_with_the_recipe_that_had_it(tmp_path):
    ladder = _ladder(seeds=1)
    out = tmp_path / "out"
    out.mkdir()
    record_recipe(out, ladder)
    record_recipe(out, load_recipe("smoke"))  # the latest no longer has dscnn-toy
    (out / "students" / "dscnn-toy").mkdir(parents=True)
    changed = dataclasses.replace(ladder, students=(ladder.students[0], dataclasses.replace(ladder.students[1], epochs=2)))
    with pytest.raises(DistillError, match=r"students\.1\.epochs: 1 there, 2 asked"):
        refuse_other_recipe(out, changed)


def test_out_keeps_every_distinct_recipe_it_ran(tmp_path):
    a, b = load_recipe("smoke"), _ladder()
    out = tmp_path / "out"
    out.mkdir()
    (out / "recipe.toml").write_text(to_toml(a))  # an OUT from before recipes/ was kept
    record_recipe(out, b)
    record_recipe(out, dataclasses.replace(a, name="same values, another name"))
    record_recipe(out, b)
    assert sorted(p.name for p in (out / "recipes").iterdir()) == ["1.toml", "2.toml"]
    assert load_recipe(out / "recipes" / "1.toml") == a and load_recipe(out / "recipes" / "2.toml") == b
    assert load_recipe(out / "recipe.toml") == b


def _metrics(folder, validation, test, params=100):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"params": params, "validation": {"accuracy": validation}, "test": {"accuracy": test},
                                                     "footprint": {"macs": 1.0, "pi3_ms": 99.0}}))


def _manifest(folder, pi3_ms, graph_bytes):
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"footprint": {"graph_bytes": graph_bytes, "macs": 2e6, "pi3_ms": pi3_ms}}))


def test_ladder_rows_average_seeds_pair_twins_and_mark_the_front(tmp_path):
    recipe = dataclasses.replace(_ladder(seeds=2), students=_ladder(seeds=2).students + (dataclasses.replace(load_recipe("smoke").students[0], arch="bcresnet", seeds=2),))
    scores = {  # (validation, test) per kind and seed: dscnn-toy is faster and better than tcresnet-toy, bcresnet-toy slowest and best
        "tcresnet-toy": {"distilled": [(0.5, 0.6), (0.7, 0.8)], "twin": [(0.4, 0.5), (0.6, 0.5)]},
        "dscnn-toy": {"distilled": [(0.8, 0.9), (0.8, 0.9)], "twin": [(0.3, 0.4), (0.5, 0.6)]},
        "bcresnet-toy": {"distilled": [(0.9, 0.95), (0.9, 0.97)], "twin": [(0.9, 0.7), (0.9, 0.7)]},
    }
    for label, kinds in scores.items():
        for kind, seeds in kinds.items():
            for k, (val, test) in enumerate(seeds):
                _metrics(tmp_path / "students" / label / (kind if k == 0 else f"{kind}-s{k}"), val, test)
    _manifest(tmp_path / "export", 20.0, 1000)  # no calibration: the first student's graph is the shipped one
    _manifest(tmp_path / "students" / "dscnn-toy" / "export", 10.0, 500)
    _manifest(tmp_path / "students" / "bcresnet-toy" / "export", 40.0, 2000)
    exports = ["export", "students/dscnn-toy/export", "students/bcresnet-toy/export"]
    tf14 = {"export/testing": {"accuracy": 0.75}}
    rows = ladder_rows(out=tmp_path, recipe=recipe, exports=exports, tf14=tf14)
    assert [r["label"] for r in rows] == ["dscnn-toy", "tcresnet-toy", "bcresnet-toy"]  # by Pi 3 ms
    tc = rows[1]
    assert (tc["pi3_ms"], tc["graph_bytes"], tc["export"], tc["export_test_tf14"]) == (20.0, 1000, "export", 0.75)
    assert tc["distilled"]["test"]["mean"] == pytest.approx(0.7) and tc["distilled"]["test"]["sd"] == pytest.approx(math.sqrt(0.02))
    assert tc["twin"]["test"]["mean"] == pytest.approx(0.5) and tc["twin"]["test"]["sd"] == pytest.approx(0.0)
    assert tc["distilled_minus_twin"]["test"]["runs"] == pytest.approx([0.1, 0.3]) and tc["distilled_minus_twin"]["test"]["mean"] == pytest.approx(0.2)
    assert [r["pareto"]["distilled"] for r in rows] == [True, False, True]
    assert [r["pareto"]["twin"] for r in rows] == [True, False, True]
    ladder = write_ladder(out=tmp_path, recipe=recipe, exports=exports, tf14=tf14)
    assert json.loads((tmp_path / "ladder.json").read_text()) == json.loads(json.dumps(ladder))
    assert (tmp_path / "ladder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "ladder.md").read_text()
    assert "| tcresnet-toy | 100 | 1,000 | 2.00 M | 20.0 | 2 | 60.00 ± 14.14 | 70.00 ± 14.14 | 50.00 ± 14.14 | 50.00 ± 0.00 | +20.00 ± 14.14 | no/no | 75.00 |" in md
    assert "Kaggle winners' Raspberry Pi model: 90.8%, 58 ms on a Pi 3" in md and "BC-ResNet-1: 96.6%, 9,200 params" in md
    (tmp_path / "students" / "bcresnet-toy" / "distilled-s1" / "metrics.json").unlink()  # a seed still to fit: the row counts what it averages
    assert [r["seeds"] for r in ladder_rows(out=tmp_path, recipe=recipe, exports=exports, tf14=tf14)] == [2, 2, 1]


def test_rung_labels_near_one_another_are_placed_apart_inside_the_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from distill.pipeline.run import _place_labels

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    # the shipped ladder's rungs (docs/experiments/student-ladder.md): three within 8% of each other in ms at 9.2-9.9 ms,
    # two of them 0.2 points apart, and three more at 18-25 ms; in plot order a fixed offset printed them over each other
    rungs = [("tcresnet-8-w0.5-logmel32-w16-hop20", 3.6, 85.78), ("tcresnet-8-mfcc10-w16-hop20", 5.4, 88.55),
             ("bcresnet-1-stride2-logmel32-w16-hop20", 9.2, 88.62), ("tcresnet-8-mfcc40-hop20", 9.5, 91.13), ("dscnn-s-mfcc10-w16-hop20", 9.9, 88.81),
             ("tcresnet-8", 18.4, 92.50), ("tcresnet-14", 20.4, 93.23), ("tcresnet-14-w2", 25.3, 94.16)]
    ax.plot([x for _, x, _ in rungs], [y for _, _, y in rungs], "o")
    ax.set_xscale("log")
    ax.set_ylim(84, 97)
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    notes = _place_labels(ax, rungs, [(x, y) for _, x, y in rungs])
    boxes = [n.get_window_extent(renderer) for n in notes]
    frame = ax.get_window_extent(renderer)
    assert [n.get_text() for n in notes] == [r[0] for r in rungs]
    for i, box in enumerate(boxes):
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), rungs[i][0]
        assert not any(box.overlaps(other) for other in boxes[:i]), rungs[i][0]
    plt.close(fig)
