"""The TF 1.4 runtime in a subprocess: wheel lookup, running graphs, errors instead of crashes."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from distill.compliance import tf14
from distill.core.errors import DistillError


@functools.lru_cache(maxsize=1)
def _unavailable() -> str | None:
    return tf14.tf14_unavailable_reason(fetch=True)


needs_tf14 = pytest.mark.skipif(_unavailable() is not None,
                                reason=f"TF 1.4 wheel not available and could not be fetched: {_unavailable()}")


def _toy_graph_bytes() -> bytes:
    tf = pytest.importorskip("tensorflow")
    from distill.export.graph_compat import make_tf14_compatible

    @tf.function(input_signature=[tf.TensorSpec([2, 3], tf.float32, name="x"),
                                  tf.TensorSpec([], tf.string, name="s")], autograph=False)
    def f(x, s):
        y = tf.nn.relu(tf.matmul(x, tf.constant(np.arange(12, dtype=np.float32).reshape(3, 4) - 5.0)) + 1.0)
        return tf.identity(y, name="y"), tf.identity(s, name="s_out")

    return make_tf14_compatible(f.get_concrete_function().graph.as_graph_def()).SerializeToString()


def test_config_proto_encodes_thread_counts():
    from distill.compliance.tf14_worker import config_proto

    assert config_proto(1) == b"\x10\x01\x28\x01"
    assert config_proto(300) == b"\x10\xac\x02\x28\xac\x02"
    assert config_proto(0) == b""


def test_wheel_option_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv(tf14.WHEEL_ENV, str(tmp_path / "nope.whl"))
    with pytest.raises(DistillError, match="DISTILL_TF14_WHEEL"):
        tf14.find_tf14_wheel()
    monkeypatch.delenv(tf14.WHEEL_ENV)
    with pytest.raises(DistillError, match="no TensorFlow 1.4 wheel"):
        tf14.find_tf14_wheel(cache_dir=tmp_path, fetch=False)


@needs_tf14
def test_extracted_folder_is_accepted_as_the_wheel(monkeypatch):
    runtime = tf14.tf14_runtime_dir()
    monkeypatch.setenv(tf14.WHEEL_ENV, str(runtime.parent))
    assert tf14.find_tf14_wheel() == runtime.parent
    assert tf14.tf14_runtime_dir() == runtime


@needs_tf14
def test_runs_a_graph_with_float_and_string_feeds():
    graph = _toy_graph_bytes()
    x = np.array([[1, 2, 3], [-1, 0, 1]], np.float32)
    result = tf14.run_graph(graph, feeds={"x:0": x, "s:0": b"hello\x00world\x00"}, fetches=["y:0", "s_out"],
                            repeats=3)
    want = np.maximum(x @ (np.arange(12, dtype=np.float32).reshape(3, 4) - 5.0) + 1.0, 0.0)
    np.testing.assert_allclose(result.outputs["y:0"], want, rtol=1e-6)
    assert result.outputs["s_out"].item() == b"hello\x00world\x00"   # trailing NULs survive the round trip
    assert result.version == "1.4.0"
    assert len(result.timings_ms) == 3 and all(t > 0 for t in result.timings_ms)


@needs_tf14
def test_unknown_names_are_errors_not_crashes():
    graph = _toy_graph_bytes()
    feeds = {"x:0": np.zeros((2, 3), np.float32), "s:0": b""}
    with pytest.raises(DistillError, match="no operation named 'labels_softmax'"):
        tf14.run_graph(graph, feeds=feeds, fetches=["labels_softmax:0"])
    with pytest.raises(DistillError, match="no output 5"):
        tf14.run_graph(graph, feeds=feeds, fetches=["y:5"])
    with pytest.raises(DistillError, match="no operation named 'nope'"):
        tf14.run_graph(graph, feeds={"nope:0": np.zeros(1, np.float32)}, fetches=["y:0"])
    with pytest.raises(DistillError, match="string tensor"):
        tf14.run_graph(graph, feeds={"x:0": np.zeros((2, 3), np.float32), "s:0": np.zeros(1, np.float32)},
                       fetches=["y:0"])


@needs_tf14
def test_import_errors_carry_tf14s_message():
    tf = pytest.importorskip("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([2], tf.float32, name="x")], autograph=False)
    def f(x):
        return x + x   # AddV2: unknown to TF 1.4 when not made compatible

    raw = f.get_concrete_function().graph.as_graph_def()
    with pytest.raises(DistillError, match="AddV2"):
        tf14.run_graph(raw, feeds={"x:0": np.ones(2, np.float32)}, fetches=["Identity:0"])
    with pytest.raises(DistillError, match="Invalid GraphDef"):
        tf14.run_graph(b"not a graph", feeds={}, fetches=["y:0"])


@pytest.mark.skipif(not tf14.tf14_available(), reason="TF 1.4 runtime unavailable")
def test_run_graph_batch_equals_single_runs():
    from distill.compliance.reference_graphs import reference_graph
    from distill.compliance.tf14 import run_graph, run_graph_batch

    graph = reference_graph("tutorial_conv").SerializeToString()
    clips = np.random.default_rng(5).normal(0, 0.1, (3, 16000, 1)).astype(np.float32)
    stacked = run_graph_batch(graph, batch_feed="decoded_sample_data:0", batch=clips, feeds={"decoded_sample_data:1": np.int32(16000)},
                              fetches=["labels_softmax:0"])["labels_softmax:0"]
    assert stacked.shape[0] == 3
    for clip, row in zip(clips, stacked):
        single = run_graph(graph, feeds={"decoded_sample_data:0": clip, "decoded_sample_data:1": np.int32(16000)}, fetches=["labels_softmax:0"])
        np.testing.assert_allclose(row, single.outputs["labels_softmax:0"], atol=1e-7)
