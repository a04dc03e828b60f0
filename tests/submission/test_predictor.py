"""GraphPredictor: batch prediction with a frozen single-clip graph, its fallbacks, and model loading."""

from __future__ import annotations

import numpy as np
import pytest

from distill.core.errors import DistillError
from distill.core.labels import CLASSES, NUM_CLASSES
from distill.export.freeze import run_frozen_tf2
from distill.submission.predictor import GraphPredictor

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


@pytest.mark.parametrize("method", ["auto", "vectorized", "map_fn", "loop"])
def test_batch_equals_single_clip_runs(graph, make_clip, method):
    clips = np.stack([make_clip(i) for i in range(7)]).astype(np.float32)
    clips[3] = 0.0  # digital silence too
    with GraphPredictor(graph, method=method, chunk=3, workers=2) as p:
        assert not p.notes  # no fallback: every method passed its probe
        if method == "auto":
            assert set(p.timings) == {"vectorized", "map_fn"} and p.method == max(p.timings, key=p.timings.get)
        else:
            assert p.method == method and p.timings == {}
        got = p.predict(clips)
    single = np.stack([run_frozen_tf2(graph, c).reshape(NUM_CLASSES) for c in clips])
    assert got.shape == (7, NUM_CLASSES) and got.dtype == np.float32
    np.testing.assert_allclose(got, single, rtol=0, atol=1e-5)
    assert np.ptp(single, axis=1).min() > 1e-3  # the toy is not trivially uniform


def test_fast_path_failures_fall_back_to_map_fn(graph, monkeypatch):
    real_build, real_run = GraphPredictor._build, GraphPredictor._run_with

    def broken_build(self, method):
        if method == "vectorized":
            raise RuntimeError("no converter")
        return real_build(self, method)

    monkeypatch.setattr(GraphPredictor, "_build", broken_build)
    for method in ("auto", "vectorized"):
        p = GraphPredictor(graph, method=method)
        assert p.method == "map_fn" and "cannot run this graph (RuntimeError: no converter)" in p.notes[0]
    monkeypatch.setattr(GraphPredictor, "_build", real_build)

    def off_by_a_bit(self, method, waveforms):
        out = real_run(self, method, waveforms)
        return out + 1e-3 if method == "vectorized" else out

    monkeypatch.setattr(GraphPredictor, "_run_with", off_by_a_bit)
    p = GraphPredictor(graph, method="vectorized")
    assert p.method == "map_fn" and "rejected on the probe batch (max difference 1.00e-03" in p.notes[0]


def test_pfor_converters_are_scoped(graph):
    from tensorflow.python.ops.parallel_for import pfor

    before = dict(pfor._pfor_converter_registry)
    GraphPredictor(graph, method="vectorized")
    assert "AudioSpectrogram" not in pfor._pfor_converter_registry
    assert pfor._pfor_converter_registry == before


def test_model_folder_and_labels_file(tmp_path, graph, predictor):
    assert predictor.path.name == "model.pb"
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(DistillError, match="no model.pb"):
        GraphPredictor(folder)
    (folder / "model.pb").write_bytes(graph.SerializeToString())
    (folder / "labels.txt").write_text("\n".join(["_silence_", "_unknown_", *CLASSES[2:]]) + "\n")  # tutorial spelling
    GraphPredictor(folder, method="loop", verify=False)
    swapped = list(CLASSES)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    (folder / "labels.txt").write_text("\n".join(swapped) + "\n")
    with pytest.raises(DistillError, match=r"labels.txt: labels do not match.*line 3 is 'no', expected 'yes'"):
        GraphPredictor(folder)
    (tmp_path / "junk.pb").write_bytes(b"not a graph")
    with pytest.raises(DistillError, match="not a frozen GraphDef"):
        GraphPredictor(tmp_path / "junk.pb")
