"""LiteRT export: a toy TC-ResNet (MFCC front-end) becomes a full-integer model.tflite that LiteRT runs with builtins only
(plus LiteRT's own AudioSpectrogram/Mfcc custom kernels), agreeing with the float Keras student."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distill.core.errors import DistillError

pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def toy_tcresnet_run(tiny_tree, tmp_path_factory):
    """A toy TC-ResNet (the MFCC student) fitted for a few epochs on hard labels."""
    from distill.training.fit import RunConfig, ScheduleConfig, fit

    config = RunConfig(family="student", arch="tcresnet", size="toy", data=str(tiny_tree), schedule=ScheduleConfig(epochs=40, batch_size=8, learning_rate=1e-2, label_smoothing=0.0, checkpoint_every_steps=0), seed=0)
    return fit(config=config, run_dir=tmp_path_factory.mktemp("tflite") / "tcresnet", progress=False).run_dir


@pytest.fixture(scope="module")
def tflite_export(toy_tcresnet_run, tmp_path_factory):
    from distill.core.labels import CLASSES
    from distill.export.tflite import export_student_tflite

    root = tmp_path_factory.mktemp("tflite_export")
    (root / "cal").mkdir()  # calibration offsets, as `distill calibrate` writes them: they go inside the model
    (root / "cal" / "calibration.json").write_text(json.dumps({"classes": list(CLASSES), "offsets": np.linspace(-0.3, 0.3, 12).tolist()}))
    return export_student_tflite(run=toy_tcresnet_run, out=root / "export", calibration=root / "cal", representative=24, check=True)


def test_tflite_export_runs_in_litert_and_agrees_with_keras(toy_tcresnet_run, tflite_export):
    from distill.compliance.litert_check import operator_issues, run_litert
    from distill.compliance.litert_worker import AUDIO_CUSTOM_OPS
    from distill.core.config import load_config
    from distill.data.examples import materialize
    from distill.training.fit import CONFIG_FILE, RunConfig, evaluation_examples, load_run, make_predictor, open_run_dataset

    result = tflite_export
    manifest = json.loads((result.out / "manifest.json").read_text())
    assert result.model_path.name == "model.tflite" and (result.out / "labels.txt").is_file()
    assert manifest["format"] == "tflite" and manifest["quantization"]["representative_clips"] == result.representative == 24
    assert result.bytes < result.float_bytes and manifest["offsets"] == pytest.approx(np.linspace(-0.3, 0.3, 12).tolist())

    config = load_config(RunConfig, toy_tcresnet_run / CONFIG_FILE)
    dataset = open_run_dataset(config, progress=False)
    examples = evaluation_examples(dataset, config, "validation")
    waves = materialize(dataset, examples, np.arange(len(examples))).astype(np.float32)
    out = run_litert(result.model_path, waves, timing_rounds=1)
    assert not bool(out["tensorflow_imported"])  # LiteRT alone ran it
    ops = [str(o) for o in out["ops"]]
    assert not operator_issues(ops, [str(t) for t in out["op_types"]])
    custom = {o for o in ops if not o.isupper()}
    assert custom == set(AUDIO_CUSTOM_OPS)  # the waveform input: LiteRT's own audio kernels, no Flex
    assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(ops)
    _, model = load_run(toy_tcresnet_run)
    keras_top1 = (make_predictor(model)(waves) + np.asarray(manifest["offsets"])).argmax(1)
    agreement = float((out["probs"].argmax(1) == keras_top1).mean())
    assert agreement >= 0.95, agreement
    np.testing.assert_allclose(out["probs"].sum(1), 1.0, atol=0.02)

    lines = {line["name"][:2]: line for line in manifest["checks"]["lines"]}
    assert set(lines) == {"1.", "2.", "3.", "4.", "5."} and lines["2."]["passed"] and lines["1."]["passed"]


def test_empty_representative_set_is_refused():
    from distill.core.registry import STUDENTS
    from distill.export.tflite import convert_int8

    with pytest.raises(DistillError, match="representative set is empty"):
        convert_int8(STUDENTS.get("tcresnet")(size="toy", seed=0), np.zeros((0, 16000), np.float32))


def test_an_op_that_cannot_be_quantized_is_named():
    from distill.core.registry import STUDENTS
    from distill.export.tflite import convert_int8

    # int16 activations: LiteRT's audio custom ops have no 16x8 form, and the error says which op
    with pytest.raises(DistillError, match="cannot quantize.*op: 'CUSTOM'"):
        convert_int8(STUDENTS.get("tcresnet")(size="toy", seed=0), np.zeros((2, 16000), np.float32), activations="int16")


def test_balanced_positions_cycle_through_classes():
    from distill.export.tflite import balanced_positions

    labels = np.array([0] * 50 + [1] * 3 + [2] * 50)
    chosen = balanced_positions(labels, 12)
    assert len(chosen) == 12
    counts = np.bincount(labels[chosen], minlength=3)
    assert counts[1] == 3 and abs(int(counts[0]) - int(counts[2])) <= 1


def test_submit_and_label_wav_take_a_tflite_model(tflite_export, tiny_unlabeled, toy_tcresnet_run, tmp_path):
    from distill.compliance.litert_worker import LiteRTPredictor
    from distill.data.wav import decode_wav
    from distill.submission.label_wav import label_wav
    from distill.submission.predictor import open_predictor
    from distill.submission.writer import write_submission

    predictor = open_predictor(tflite_export.out)
    assert isinstance(predictor, LiteRTPredictor) and predictor.num_classes == 12
    wavs = sorted(tiny_unlabeled.glob("*.wav"))
    clips = np.stack([decode_wav(w) for w in wavs]).astype(np.float32)
    probs = predictor.predict(clips)
    assert probs.shape == (len(wavs), 12)
    result = write_submission(model=tflite_export.out, test_dir=tiny_unlabeled, out=tmp_path / "submission.csv", progress=False)
    rows = (tmp_path / "submission.csv").read_text().splitlines()
    assert rows[0] == "fname,label" and len(rows) == len(wavs) + 1 and result.out == tmp_path / "submission.csv"
    by_name = dict(r.split(",") for r in rows[1:])
    assert [by_name[w.name] for w in wavs] == [predictor.classes[i] for i in probs.argmax(1)]
    labelled = label_wav(model=tflite_export.model_path, wavs=wavs[:2], top_k=3)
    assert labelled[0].top[0][0] == predictor.classes[int(probs[0].argmax())]
    np.testing.assert_allclose(labelled[0].probs, probs[0], atol=1e-6)


def test_float_conversion_with_offsets_equals_keras_in_litert(tmp_path):
    """The converted function (front-end inside, offsets before the softmax) is the Keras student's, before any quantization."""
    import tensorflow as tf

    from distill.compliance.litert_worker import interpreter, predict
    from distill.core.registry import STUDENTS
    from distill.export.tflite import frozen_function

    model = STUDENTS.get("tcresnet")(size="toy", seed=0)
    offsets = np.linspace(-1, 1, 12).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen_function(model, offsets)])
    converter.allow_custom_ops = True
    (tmp_path / "float.tflite").write_bytes(converter.convert())
    x = np.random.default_rng(0).normal(0, 0.2, (3, 16000)).astype(np.float32)
    expected = tf.nn.softmax(model(x, training=False) + offsets).numpy()
    np.testing.assert_allclose(predict(interpreter(str(tmp_path / "float.tflite")), x), expected, atol=1e-4)


def test_cli_export_tflite_check_prints_the_table(toy_tcresnet_run, tmp_path):
    from typer.testing import CliRunner

    from distill.cli import app

    result = CliRunner().invoke(app, ["export", "--run", str(toy_tcresnet_run), "--out", str(tmp_path / "export"), "--format", "tflite", "--representative", "24", "--check"])
    assert result.exit_code == 0, result.output
    assert "model.tflite" in result.output and "all checks passed" in result.output and "no Flex" in result.output
    assert (tmp_path / "export" / "model.tflite").is_file()
    refused = CliRunner().invoke(app, ["export", "--run", str(toy_tcresnet_run), "--out", str(tmp_path / "e2"), "--format", "tflite", "--representative", "0"])
    assert refused.exit_code != 0 and "representative" in str(refused.exception) + refused.output
    assert not (tmp_path / "e2" / "model.tflite").exists()


def test_only_the_front_end_and_input_normalization_stay_float(tflite_export):
    from distill.export.tflite import model_operators

    ops = model_operators(tflite_export.model_path.read_bytes())
    names = [name for name, _, _ in ops]
    first_quantize = names.index("QUANTIZE")
    prefix = [(name, output) for name, output, _ in ops[:first_quantize]]
    # the waveform reaches the audio ops in float; the per-coefficient Mul/Add come next, in float, then one QUANTIZE
    assert [name for name, _ in prefix] == ["AudioSpectrogram", "Mfcc", "MUL", "ADD"], prefix
    assert all("input_norm" in output for name, output in prefix if name.isupper())
    assert names.count("QUANTIZE") == 1
    assert [name for name, _, dtype in ops[first_quantize + 1:] if dtype == "float32"] == [] and names[-1] == "DEQUANTIZE"


def test_operator_rule_allows_float_only_before_the_first_quantize():
    from distill.compliance.litert_check import operator_issues

    ops = ["AudioSpectrogram", "Mfcc", "MUL", "ADD", "QUANTIZE", "CONV_2D", "SOFTMAX", "DEQUANTIZE"]
    assert operator_issues(ops, ["float32"] * 5 + ["int8", "int8", "int8"]) == []
    assert operator_issues(ops, ["float32"] * 6 + ["int8", "int8"]) == ["CONV_2D runs in float (not quantized)"]
    float_model = ["AudioSpectrogram", "Mfcc", "CONV_2D", "SOFTMAX"]
    assert len(operator_issues(float_model, ["float32"] * 4)) == 3  # no QUANTIZE, and both builtins in float
    assert operator_issues(["FlexRFFT", "QUANTIZE"], ["float32", "float32"]) == ["FlexRFFT is a Flex (Select TF) op"]


def test_log_mel_front_end_stays_float_before_the_quantize():
    from distill.core.registry import STUDENTS
    from distill.export.tflite import convert_int8, model_operators

    # BC-ResNet's log-mel front-end is builtins (MatMul, Log): left to the quantizer, the power spectrogram became int8
    model = STUDENTS.get("bcresnet")(size="toy", seed=0)
    ops = model_operators(convert_int8(model, np.random.default_rng(0).normal(0, 0.1, (4, 16000)).astype(np.float32)))
    names = [name for name, _, _ in ops]
    assert names[: names.index("QUANTIZE")] == ["AudioSpectrogram", "FULLY_CONNECTED", "LOG", "MUL", "ADD"]
    assert all(dtype != "float32" for _, _, dtype in ops[names.index("QUANTIZE") + 1:])
