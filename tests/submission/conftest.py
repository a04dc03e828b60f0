"""Shared fixtures of the submission tests: a toy frozen student, its model folder, a Kaggle-style test folder, a reference run."""

from __future__ import annotations

import numpy as np
import pytest

from distill.core.labels import CLASSES, NUM_CLASSES

N_CLIPS = 20


def _clip(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    t = np.arange(16000) / 16000.0
    f0 = 150.0 + 90.0 * (i % 17)
    return 0.4 * np.sin(2 * np.pi * f0 * t) * np.exp(-((t - 0.4 - 0.02 * (i % 5)) ** 2) / 0.02) + 0.02 * rng.standard_normal(16000)


def _toy_graph():
    """A tiny student with the real front-end ops (AudioSpectrogram, Mfcc), a conv, a depthwise conv, a dense layer."""
    keras = pytest.importorskip("keras")
    from distill.export.freeze import freeze_waveform_model
    from distill.layers.frontend import FrontendConfig, frontend_tf

    mfcc = FrontendConfig(kind="mfcc", window_ms=40.0, stride_ms=20.0, num_mfcc=10)
    keras.utils.set_random_seed(3)
    inp = keras.Input((16000,))
    x = keras.layers.Lambda(lambda w: frontend_tf(w, mfcc), output_shape=mfcc.output_shape)(inp)
    x = keras.layers.Reshape((*mfcc.output_shape, 1))(x)
    x = keras.layers.Conv2D(4, (5, 3), strides=2, activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    bn = keras.layers.BatchNormalization()
    out = keras.layers.Dense(NUM_CLASSES, kernel_initializer=keras.initializers.RandomNormal(stddev=2.0))(bn(pooled))
    model = keras.Model(inp, out)
    # "train" the batch norm on the test clips so that their labels differ (a random net predicts one class)
    h = keras.Model(inp, pooled)(np.stack([_clip(i) for i in range(N_CLIPS)]).astype(np.float32)).numpy()
    bn.moving_mean.assign(h.mean(axis=0))
    bn.moving_variance.assign(h.var(axis=0) + 1e-6)
    return freeze_waveform_model(lambda w: model(w, training=False), name_prefix="student")


@pytest.fixture(scope="session")
def n_clips():
    """How many clips the test folder holds."""
    return N_CLIPS


@pytest.fixture(scope="session")
def make_clip():
    """``make_clip(i)``: float64 (16000,) test clip ``i`` (a tone burst in noise), as written to the test folder."""
    return _clip


@pytest.fixture(scope="session")
def graph():
    pytest.importorskip("tensorflow")
    return _toy_graph()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, graph):
    folder = tmp_path_factory.mktemp("model")
    (folder / "model.pb").write_bytes(graph.SerializeToString())
    (folder / "labels.txt").write_text("".join(c + "\n" for c in CLASSES))
    return folder


@pytest.fixture(scope="session")
def test_dir(tmp_path_factory):
    from distill.export.freeze import wav_bytes

    folder = tmp_path_factory.mktemp("kaggle_test")
    for i in range(N_CLIPS):
        (folder / f"clip_{(i * 7919) % 10**9:09d}.wav").write_bytes(wav_bytes(_clip(i)))
    return folder


@pytest.fixture(scope="session")
def predictor(model_dir):
    from distill.submission.predictor import GraphPredictor

    with GraphPredictor(model_dir, chunk=3, workers=2) as p:
        yield p


@pytest.fixture(scope="session")
def reference(model_dir, test_dir, tmp_path_factory):
    """An uninterrupted run with probabilities."""
    from distill.submission.writer import write_submission

    out = tmp_path_factory.mktemp("reference") / "submission.csv"
    result = write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=4, progress=False, probs=True)
    return result


@pytest.fixture
def on_prediction(monkeypatch):
    """``on_prediction(hook)``: ``hook()`` runs each time ``write_submission`` collects a batch's probabilities
    (to interrupt or hold a run at that point); ``on_prediction(None)`` removes it."""
    from distill.submission.predictor import GraphPredictor

    real = GraphPredictor.submit

    class Hooked:
        def __init__(self, pending, hook):
            self.pending, self.hook = pending, hook

        def result(self):
            self.hook()
            return self.pending.result()

        def cancel(self):
            self.pending.cancel()

    def install(hook):
        if hook is None:
            monkeypatch.setattr(GraphPredictor, "submit", real)
        else:
            monkeypatch.setattr(GraphPredictor, "submit", lambda self, waveforms: Hooked(real(self, waveforms), hook))

    return install
