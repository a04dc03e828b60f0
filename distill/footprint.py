"""What a model costs on the target: parameters, weight bytes, MACs and the Raspberry Pi 3 estimate.

The numbers come from the same frozen graph that export writes (front-end
included), so a budget checked before training is the budget the shipped
file meets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    """Footprint of a waveform-in Keras model, measured on its frozen TF 1.4 graph."""
    from .freeze import freeze_waveform_model
    from .pi_estimate import estimate_pi3_ms

    graph_def = freeze_waveform_model(lambda x: model(x, training=False))
    estimate = estimate_pi3_ms(graph_def)
    params = int(model.count_params())
    return Footprint(
        params=params, float32_bytes=4 * params, int8_bytes=params, macs=float(estimate.macs), pi3_ms=float(estimate.ms),
        pi3_loo_error=float(estimate.loo_error), method=estimate.method,
    )
