"""Export a student run as a full-integer LiteRT model (``model.tflite``), the ``--format tflite`` of ``distill export``.

The model reads the float waveform as ``decoded_sample_data:0`` does, [16000, 1] in [-1, 1], and returns the
K-way softmax [1, K] (float). Inside:

    AudioSpectrogram -> Mfcc -> the student's per-coefficient input normalization (float)
      -> QUANTIZE -> the student's other layers in int8 (weights per channel, activations per tensor)
      -> + calibration offsets -> SOFTMAX (int8) -> DEQUANTIZE

The front-end stays inside (one file, the same input as the competition graph) because LiteRT runs
``AudioSpectrogram`` and ``Mfcc`` itself, without Flex/Select-TF ops; the waveform feeds
``AudioSpectrogram`` directly (no Reshape before it, which the quantizer would otherwise turn into an
8-bit waveform). The input normalization (one Mul and one Add per coefficient) is kept in float so
that QUANTIZE sees normalized features: raw MFCCs span about -250..30 in c0 but +-20 in the others, and
one per-tensor int8 scale over that range left the higher coefficients about 37 levels (on the real
subset's TC-ResNet-14 it cost 0.6 points of test accuracy; docs/litert.md). Activation ranges are
calibrated on a class-balanced sample of the run's training clips (``representative``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.compliance.litert_check import float_after_quantize
from distill.compliance.litert_worker import AUDIO_CUSTOM_OPS, operator_rows
from distill.core.errors import DistillError
from distill.core.io import check_output, write_bytes, write_json, write_text
from distill.core.labels import CLASSES, CLIP_SAMPLES

MODEL_FILE = "model.tflite"
INPUT_SHAPE = (CLIP_SAMPLES, 1)


def split_frontend(model):
    """(FrontendConfig, the Keras model from the front-end's output to the logits) of a waveform student."""
    import keras

    from distill.layers.frontend import Frontend

    frontends = [layer for layer in model.layers if isinstance(layer, Frontend)]
    if len(frontends) != 1:
        raise DistillError(f"{model.name}: expected one Frontend layer in the student, found {len(frontends)}; tflite export needs the front-end as its own layer")
    layer = frontends[0]
    return layer.frontend, keras.Model(layer.output, model.output, name=f"{model.name}_after_frontend")


def frozen_function(model, offsets: np.ndarray | None = None):
    """A frozen concrete function: waveform [16000, 1] -> softmax(student logits + offsets) [1, 12]."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from distill.core.labels import SAMPLE_RATE

    config, body = split_frontend(model)
    bias = None if offsets is None else np.asarray(offsets, np.float32).reshape(1, -1)

    @tf.function(input_signature=[tf.TensorSpec(INPUT_SHAPE, tf.float32, name="decoded_sample_data")], autograph=False)
    def serve(audio):
        spectrogram = tf.raw_ops.AudioSpectrogram(input=audio, window_size=config.window_samples, stride=config.stride_samples, magnitude_squared=True)
        if config.kind == "mfcc":
            features = tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=tf.constant(SAMPLE_RATE, tf.int32), upper_frequency_limit=config.upper_hz,
                                       lower_frequency_limit=config.lower_hz, filterbank_channel_count=config.num_mel_bins, dct_coefficient_count=config.num_mfcc)
        else:  # log-mel: MatMul and Log are builtins, but the quantizer makes them int8 (see docs/litert.md)
            from distill.layers.frontend import mel_matrix

            num_bins = config.fft_length // 2 + 1
            mel = tf.matmul(tf.reshape(spectrogram, [-1, num_bins]), tf.constant(mel_matrix(config)))
            features = tf.math.log(tf.reshape(mel, [1, config.num_frames, config.num_mel_bins]) + config.log_offset)
        logits = body(features, training=False)
        if offsets is not None:
            logits = logits + tf.constant(bias)
        return tf.nn.softmax(logits, name="labels_softmax")

    return convert_variables_to_constants_v2(serve.get_concrete_function())


def representative_clips(run: Path, count: int, *, seed: int = 0) -> np.ndarray:
    """``count`` clean training clips of ``run``'s data, as even across the 12 classes as the split allows."""
    from distill.core.config import load_config
    from distill.data.examples import materialize
    from distill.training.fit import CONFIG_FILE, RunConfig, evaluation_examples, open_run_dataset

    if count < 1:
        raise DistillError(f"--representative must be at least 1 clip, got {count}: full-integer quantization needs activation ranges")
    config = load_config(RunConfig, Path(run) / CONFIG_FILE)
    dataset = open_run_dataset(config, progress=False)
    examples = evaluation_examples(dataset, config, "training")
    if len(examples) == 0:
        raise DistillError(f"{run}: its data has no training clips, so the representative set for int8 calibration is empty")
    return materialize(dataset, examples, balanced_positions(examples.labels, count, seed=seed)).astype(np.float32)


def balanced_positions(labels: np.ndarray, count: int, *, seed: int = 0) -> np.ndarray:
    """Up to ``count`` positions of ``labels``, round-robin over the classes present (each class shuffled)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    chosen: list[int] = []
    while len(chosen) < count and any(pools):
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(int(pool.pop()))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def convert_float(model, offsets: np.ndarray | None = None) -> bytes:
    """The float ``.tflite`` bytes of a waveform student (the reference the int8 model is measured against)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen_function(model, offsets)])
    converter.allow_custom_ops = True  # AudioSpectrogram and Mfcc: LiteRT's own kernels, never Flex
    return converter.convert()


def model_operators(data: bytes) -> list[tuple[str, str, str]]:
    """(op name, first output tensor's name, first input's dtype) of every operator of ``data``, in execution order."""
    from ai_edge_litert.interpreter import Interpreter

    return operator_rows(Interpreter(model_content=data))


def float_prefix_nodes(float_model: bytes) -> list[str]:
    """Output names of the builtin ops from the input up to the student's input normalization (its last op).

    These stay in float: the front-end's own builtins (log-mel's MatMul and Log) and the per-coefficient
    Mul/Add that bring the features to a common range, so the single QUANTIZE after them spends its 256
    levels on normalized features. Empty when the student has no input normalization layer.
    """
    from distill.layers.blocks import INPUT_NORM_NAME

    ops = model_operators(float_model)
    marked = [i for i, (_, output, _) in enumerate(ops) if f"/{INPUT_NORM_NAME}" in output]
    if not marked:
        return []
    return [output for name, output, _ in ops[: marked[-1] + 1] if name.isupper() and output]


def convert_int8(model, representative: np.ndarray, offsets: np.ndarray | None = None, *, activations: str = "int8",
                 float_normalization: bool = True, float_model: bytes | None = None) -> bytes:
    """The full-integer ``.tflite`` bytes of a waveform student, calibrated on ``representative`` (N, 16000).

    ``activations`` "int8" (default) or "int16" (int16 activations with int8 weights, for measuring).
    ``float_normalization`` keeps the front-end and the input normalization in float (``float_prefix_nodes``);
    False quantizes right after the audio custom ops (measured in docs/litert.md); ``float_model`` is
    ``convert_float(model, offsets)`` when the caller has it already. An empty representative set
    is refused; a layer LiteRT cannot quantize is named in the error.
    """
    import tensorflow as tf

    representative = np.asarray(representative, np.float32).reshape(-1, CLIP_SAMPLES) if np.size(representative) else np.zeros((0, CLIP_SAMPLES), np.float32)
    if len(representative) == 0:
        raise DistillError("the representative set is empty: full-integer quantization needs clips to calibrate activation ranges")
    frozen = frozen_function(model, offsets)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    converter.allow_custom_ops = True  # AudioSpectrogram and Mfcc: LiteRT's own kernels, never Flex
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    calibration_clips = lambda: ([w.reshape(INPUT_SHAPE)] for w in representative)  # noqa: E731
    converter.representative_dataset = calibration_clips
    ops = tf.lite.OpsSet
    if activations == "int8" and float_normalization:
        prefix = float_prefix_nodes(float_model if float_model is not None else convert_float(model, offsets))
    else:
        prefix = []
    try:
        if activations == "int16":
            converter.target_spec.supported_ops = [ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            data = converter.convert()
        elif not prefix:
            converter.target_spec.supported_ops = [ops.TFLITE_BUILTINS_INT8]
            data = converter.convert()
        else:
            # float builtins are allowed only so the denylisted prefix can stay float; any other op left in
            # float is refused below, by name, as the int8-only converter would refuse it
            converter.target_spec.supported_ops = [ops.TFLITE_BUILTINS_INT8, ops.TFLITE_BUILTINS]
            with warnings.catch_warnings():  # the debugger builds a tf.lite.Interpreter, which warns that it is deprecated
                warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
                debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_dataset=calibration_clips,
                    debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=prefix))
                data = debugger.get_nondebug_quantized_model()
    except Exception as err:  # the converter's error names the op it could not quantize; keep those lines
        text = str(err)
        lines = [ln.strip() for ln in text.splitlines() if "op" in ln.lower() and ("quantiz" in ln.lower() or "tf." in ln or "tfl." in ln or "not supported" in ln.lower())]
        raise DistillError("LiteRT cannot quantize this student to full integer: " + ("; ".join(lines[:6]) or text[:800])) from err
    if prefix:
        rows = model_operators(data)
        left_float = [rows[i] for i in float_after_quantize([name for name, _, _ in rows], [dtype for _, _, dtype in rows])]
        if left_float:
            raise DistillError("LiteRT cannot quantize this student to full integer: these ops stay float after the input was quantized: "
                               + "; ".join(f"{name} ({output})" for name, output, _ in left_float[:6]))
    return data


@dataclass(frozen=True)
class TfliteExportResult:
    out: Path
    model_path: Path
    bytes: int
    float_bytes: int
    representative: int
    offsets: list[float] | None
    checks: dict | None


def export_student_tflite(*, run: Path, out: Path, calibration: Path | None = None, representative: int, check: bool = False,
                          seed: int = 0) -> TfliteExportResult:
    """Write ``out/model.tflite`` (full integer), ``labels.txt`` and ``manifest.json`` from a student run."""
    from distill.core.config import to_dict
    from distill.export.student_export import load_offsets
    from distill.training.fit import load_run

    check_output(out, kind="folder", inputs=(run, calibration))
    if representative < 1:  # before any work
        raise DistillError(f"--representative must be at least 1 clip, got {representative}: full-integer quantization needs activation ranges")
    config, model = load_run(Path(run))
    if config.family != "student":
        raise DistillError(f"{run} is a {config.family} run; export ships students")
    offsets = load_offsets(calibration, config.labels) if calibration else None  # refused unless calibrated for the run's classes
    clips = representative_clips(Path(run), representative, seed=seed)
    float_model = convert_float(model, offsets)
    data = convert_int8(model, clips, offsets, float_model=float_model)
    float_bytes = len(float_model)
    out = Path(out)
    model_path = write_bytes(out / MODEL_FILE, data)
    classes = tuple(config.labels.classes) if hasattr(config, "labels") else CLASSES  # the run's word list (Kaggle's 12 by default)
    write_text(out / "labels.txt", "".join(c + "\n" for c in classes))
    checks = None
    if check:
        from distill.compliance.litert_check import check_tflite

        checks = check_tflite(model_path=model_path, run=Path(run), calibration_offsets=offsets).to_dict()
    manifest = {
        "format": "tflite", "source_run": str(Path(run).resolve()), "run_config": to_dict(config),
        "calibration": str(Path(calibration).resolve()) if calibration else None, "offsets": None if offsets is None else offsets.tolist(),
        "quantization": {"weights": "int8 per channel", "activations": "int8 per tensor", "float": "front-end and input normalization",
                         "representative_clips": int(len(clips)),
                         "representative_source": "training split, class-balanced", "seed": seed},
        "bytes": len(data), "float_bytes": float_bytes, "checks": checks, "classes": list(classes),
        "interface": {"input": "decoded_sample_data [16000, 1] float32 in [-1, 1]", "output": f"labels_softmax [1, {len(classes)}] float32",
                      "custom_ops": list(AUDIO_CUSTOM_OPS), "runtime": "ai-edge-litert"},
    }
    write_json(out / "manifest.json", manifest)
    return TfliteExportResult(out=out, model_path=model_path, bytes=len(data), float_bytes=float_bytes, representative=int(len(clips)),
                              offsets=None if offsets is None else offsets.tolist(), checks=checks)


def _features_models(model, representative: np.ndarray, *, activations: str = "int8") -> tuple[bytes, bytes]:
    """The other input choice: (float front-end model waveform -> features, int8 body model int8 features -> softmax)."""
    import tensorflow as tf

    from distill.core.labels import SAMPLE_RATE

    config, body = split_frontend(model)

    @tf.function(input_signature=[tf.TensorSpec(INPUT_SHAPE, tf.float32)], autograph=False)
    def frontend(audio):
        spectrogram = tf.raw_ops.AudioSpectrogram(input=audio, window_size=config.window_samples, stride=config.stride_samples, magnitude_squared=True)
        return tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=tf.constant(SAMPLE_RATE, tf.int32), upper_frequency_limit=config.upper_hz,
                               lower_frequency_limit=config.lower_hz, filterbank_channel_count=config.num_mel_bins, dct_coefficient_count=config.num_mfcc)

    if config.kind != "mfcc":
        raise DistillError("the features-input measurement covers the MFCC front-end only")
    conv = tf.lite.TFLiteConverter.from_concrete_functions([frontend.get_concrete_function()])
    conv.allow_custom_ops = True
    frontend_bytes = conv.convert()
    features = [frontend(tf.constant(w.reshape(INPUT_SHAPE))).numpy() for w in representative]

    @tf.function(input_signature=[tf.TensorSpec((1, *config.output_shape), tf.float32)], autograph=False)
    def head(x):
        return tf.nn.softmax(body(x, training=False))

    conv = tf.lite.TFLiteConverter.from_concrete_functions([head.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([f] for f in features)
    if activations == "int16":  # the audio custom ops have no 16x8 form, so int16 activations need the features input
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    else:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
    return frontend_bytes, conv.convert()


def measure_quantization(run: Path, *, sizes: tuple[int, ...] = (8, 24, 100, 300), seed: int = 0, features_input: bool = True) -> list[dict]:
    """Where the int8 loss comes from on ``run``: each variant's bytes, top-1 agreement with float Keras and accuracy
    on validation and test, and LiteRT single-thread ms. Variants: float, int8 at each representative size, int16
    activations (int8 weights), and the features-input pair (float front-end model + int8 body). Runs LiteRT in process."""
    import tempfile
    import time

    import tensorflow as tf

    from distill.compliance.litert_worker import interpreter, latency_ms, predict
    from distill.core.config import load_config
    from distill.data.examples import materialize
    from distill.training.fit import CONFIG_FILE, RunConfig, evaluation_examples, load_run, make_predictor, open_run_dataset

    config = load_config(RunConfig, Path(run) / CONFIG_FILE)
    dataset = open_run_dataset(config, progress=False)
    _, model = load_run(Path(run))
    splits = {}
    for split in ("validation", "testing"):
        ex = evaluation_examples(dataset, config, split)
        splits[split] = (materialize(dataset, ex, np.arange(len(ex))).astype(np.float32), ex.labels)
    reference = {s: make_predictor(model)(w).argmax(1) for s, (w, _) in splits.items()}
    rows: list[dict] = []

    def score(name: str, data: bytes, probs_fn, ms: float, extra: dict) -> None:
        row = {"variant": name, "bytes": len(data), "litert_ms": round(ms, 3), **extra}
        for s, (w, labels) in splits.items():
            top = probs_fn(w).argmax(1)
            row[f"{s}_agreement"] = round(float((top == reference[s]).mean()), 4)
            row[f"{s}_accuracy"] = round(float((top == labels).mean()), 4)
        row["float_validation_accuracy"] = round(float((reference["validation"] == splits["validation"][1]).mean()), 4)
        rows.append(row)

    with tempfile.TemporaryDirectory(prefix="distill-litert-measure-") as tmp:
        def run_bytes(name: str, data: bytes, extra: dict) -> None:
            path = Path(tmp) / f"{name}.tflite"
            path.write_bytes(data)
            interp = interpreter(str(path))
            score(name, data, lambda w: predict(interp, w), latency_ms(interp, splits["validation"][0][0]), extra)

        float_model = convert_float(model)
        run_bytes("float", float_model, {"representative": 0})
        for n in sizes:
            clips = representative_clips(Path(run), n, seed=seed)
            run_bytes(f"int8_rep{len(clips)}", convert_int8(model, clips, float_model=float_model), {"representative": int(len(clips))})
        clips = representative_clips(Path(run), max(sizes), seed=seed)
        run_bytes(f"int8_quantized_norm_rep{len(clips)}", convert_int8(model, clips, float_normalization=False), {"representative": int(len(clips))})
        try:
            run_bytes(f"int16act_rep{len(clips)}", convert_int8(model, clips, activations="int16"), {"representative": int(len(clips))})
        except DistillError as err:
            rows.append({"variant": "int16act", "error": str(err)[:300]})
        for activations in ("int8", "int16") if features_input else ():
            front, body = _features_models(model, clips, activations=activations)
            (Path(tmp) / "front.tflite").write_bytes(front)
            (Path(tmp) / "body.tflite").write_bytes(body)
            fi, bi = interpreter(str(Path(tmp) / "front.tflite")), interpreter(str(Path(tmp) / "body.tflite"))
            b_in, b_out = bi.get_input_details()[0], bi.get_output_details()[0]
            scale, zero = b_in["quantization"]

            def pair(w: np.ndarray) -> np.ndarray:
                out = []
                for clip in w:
                    fi.set_tensor(fi.get_input_details()[0]["index"], clip.reshape(INPUT_SHAPE))
                    fi.invoke()
                    feats = fi.get_tensor(fi.get_output_details()[0]["index"])
                    if b_in["dtype"] == np.int8:
                        feats = np.clip(np.round(feats / scale + zero), -128, 127).astype(np.int8)
                    bi.set_tensor(b_in["index"], feats.reshape(b_in["shape"]).astype(b_in["dtype"]))
                    bi.invoke()
                    y = bi.get_tensor(b_out["index"]).astype(np.float32)
                    if b_out["dtype"] != np.float32:
                        y = (y - b_out["quantization"][1]) * b_out["quantization"][0]
                    out.append(y.reshape(-1))
                return np.stack(out)

            one = splits["validation"][0][:1]
            pair(one)
            start = time.perf_counter()
            for _ in range(50):
                pair(one)
            score(f"features_{activations}_rep{len(clips)}", front + body, pair, (time.perf_counter() - start) / 50 * 1000,
                  {"representative": int(len(clips)), "frontend_bytes": len(front), "body_bytes": len(body)})
    return rows
