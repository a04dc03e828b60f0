"""What a model costs on the target: parameters, weight bytes, MACs and the Raspberry Pi 3 estimate.

The numbers come from the same frozen graph that export writes (front-end
included), so a budget checked before training is the budget the shipped
file meets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Footprint:
    params: int
    float32_bytes: int
    int8_bytes: int
    macs: float
    pi3_ms: float
    pi3_loo_error: float
    method: str

    @property
    def megabytes(self) -> float:
        return self.float32_bytes / 1e6

    def to_dict(self) -> dict:
        return {**asdict(self), "megabytes": self.megabytes}


def model_footprint(model) -> Footprint:
    """Footprint of a waveform-in Keras model, measured on its frozen TF 1.4 graph.

    Recurrent layers are counted unrolled: a Keras RNN freezes into a While loop over
    TensorList ops that TF 1.4 lacks and whose body the MAC count cannot see, while
    the unrolled copy (same weights, same outputs) is plain MatMuls, as a graph
    shipped to TF 1.4 would have to be.
    """
    from distill.compliance.pi_estimate import estimate_pi3_ms
    from distill.export.freeze import freeze_waveform_model

    frozen = with_unrolled_rnns(model)
    graph_def = freeze_waveform_model(lambda x: frozen(x, training=False), num_classes=int(model.output_shape[-1]))  # K logits of the model's word list
    estimate = estimate_pi3_ms(graph_def)
    params = int(model.count_params())
    return Footprint(
        params=params, float32_bytes=4 * params, int8_bytes=params, macs=float(estimate.macs), pi3_ms=float(estimate.ms),
        pi3_loo_error=float(estimate.loo_error), method=estimate.method,
    )


def run_footprint(run: str | Path) -> Footprint:
    """Footprint of a run's architecture, read from its saved config (weights do not change it);
    a fold group's folds share one."""
    from distill.core.config import load_config
    from distill.training.crossfit import fold_runs
    from distill.training.fit import CONFIG_FILE, RunConfig, build_model

    first = (fold_runs(Path(run)) or [Path(run)])[0]
    return model_footprint(build_model(load_config(RunConfig, first / CONFIG_FILE)))


def with_unrolled_rnns(model):
    """``model`` itself, or, if it has recurrent layers, a clone with each one unrolled and the same weights."""
    import keras

    recurrent = (keras.layers.RNN, keras.layers.Bidirectional)
    if not any(isinstance(layer, recurrent) for layer in model.layers):
        return model

    def unroll(config):
        if isinstance(config, dict):
            if "unroll" in config:
                config["unroll"] = True
            for value in config.values():
                unroll(value)
        elif isinstance(config, list):
            for value in config:
                unroll(value)

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, recurrent):
            unroll(config)  # Bidirectional nests both directions' configs
        return layer.__class__.from_config(config)

    unrolled = keras.models.clone_model(model, clone_function=clone)
    unrolled.set_weights(model.get_weights())
    return unrolled
