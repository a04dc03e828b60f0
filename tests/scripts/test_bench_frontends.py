"""scripts/bench_frontends.py: each front-end under each student, frozen as export does, the Pi 3 estimate split in two."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_frontends.py"


def _run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    return capsys.readouterr().out


def test_bench_splits_the_estimate_and_reports_the_exported_graph(monkeypatch, capsys):
    from distill.compliance.pi_estimate import estimate_pi3_ms
    from distill.export.freeze import freeze_waveform_model
    from distill.export.student_export import fold_batch_norms, quantize_weights
    from distill.layers.frontend import frontend_preset
    from students.tcresnet import build_tcresnet

    # toy size, in this process; the default front-end (98x40 MFCC) and the cheapest preset
    report = json.loads(_run(monkeypatch, capsys, "--model", "tcresnet:toy", "--frontend", "default", "--frontend", "logmel20-w16-hop20",
                             "--budget-ms", "9", "--budget-bytes", "60000"))
    assert report["quantized"] and report["budget"] == {"ms": 9.0, "bytes": 60000} and 0 < report["pi3_loo_error"] < 0.5
    default, cheap = report["results"]
    assert (default["frontend"], default["features"], cheap["frontend"], cheap["features"]) == ("default", [98, 40], "logmel20-w16-hop20", [50, 20])
    for row in (default, cheap):
        assert row["frontend_ms"] + row["network_ms"] == pytest.approx(row["pi3_ms"], abs=2e-3)
        assert sum(row["breakdown_ms"].values()) == pytest.approx(row["pi3_ms"], abs=0.02)
        assert row["fit_pi3_ms"] >= row["pi3_ms"]  # model_footprint's graph keeps its batch norms unfolded
        assert row["fits"] == (row["pi3_ms"] <= 9 and row["bytes"] <= 60000)
    # the default front-end's two serial ops are most of a toy's time; the cheap one has no Mfcc and half the frames
    assert default["frontend_ms"] == pytest.approx(default["breakdown_ms"]["AudioSpectrogram"] + default["breakdown_ms"]["Mfcc"], abs=0.05)
    assert "Mfcc" not in cheap["breakdown_ms"] and cheap["frontend_ms"] < default["frontend_ms"] / 3
    assert not default["fits"] and cheap["fits"]

    # the row is the graph export --quantize-weights writes (less the calibration offsets), not a model of it
    model = build_tcresnet(size="toy", frontend=frontend_preset("logmel20-w16-hop20"), seed=0)
    graph_def, _ = fold_batch_norms(freeze_waveform_model(lambda x: model(x, training=False)))
    graph_def, _ = quantize_weights(graph_def)
    assert cheap["bytes"] == len(graph_def.SerializeToString()) and cheap["params"] == model.count_params()
    assert cheap["pi3_ms"] == pytest.approx(estimate_pi3_ms(graph_def).ms, abs=1e-3)

    table = _run(monkeypatch, capsys, "--model", "tcresnet:toy", "--frontend", "logmel20-w16-hop20", "--float32", "--markdown")
    lines = table.strip().splitlines()
    assert len(lines) == 3 and lines[2].startswith("| tcresnet toy | logmel20-w16-hop20 | 50x20 |")


@pytest.mark.parametrize("args,message", [(["--frontend", "cqt"], "unknown --frontend cqt"),
                                          (["--model", "resnet:toy"], "unknown --model resnet:toy"),
                                          (["--model", "tcresnet:huge"], "valid sizes")])
def test_bench_refuses_unknown_names(monkeypatch, capsys, args, message):
    with pytest.raises(SystemExit) as done:
        _run(monkeypatch, capsys, *args)
    assert done.value.code == 2 and message in capsys.readouterr().err
