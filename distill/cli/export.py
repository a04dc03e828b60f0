"""``distill export``: freeze a student into the competition's TF 1.4 GraphDef, optionally proving it."""

from __future__ import annotations

from pathlib import Path

import typer

from distill.cli.options import recipe_option
from distill.cli.root import app, echo_rich


@app.command("export")
def export_command(
    run: Path = typer.Option(..., "--run", help="A student run folder (from `distill student fit`)."),
    out: Path = typer.Option(Path("runs/export"), "--out", help="Folder for model.pb, labels.txt and manifest.json."),
    calibration: Path = typer.Option(None, "--calibration", help="A `distill calibrate` folder: its logit offsets become a bias before labels_softmax."),
    quantize_weights: bool = typer.Option(False, "--quantize-weights", help="Store large weights as 8 bits, one range per output channel (a quarter of the bytes; TF 1.4 folds the dequantization at load)."),
    check_pi: bool = typer.Option(False, "--check-pi", help="Prove the rules: size, TF 1.4 op registry, TF 1.4 runtime, parity, Pi 3 latency; exit 1 if any fails."),
    check_clips: int = typer.Option(16, "--check-clips", min=1, help="Real clips from the run's data used for the parity check."),
    tf14_wheel: Path = typer.Option(None, "--tf14-wheel", envvar="DISTILL_TF14_WHEEL", help="An existing tensorflow==1.4.0 wheel or extracted folder (default: fetched once into ~/.cache/distill/tf14)."),
    export_format: str = typer.Option("pb", "--format", help="pb: the competition's TF 1.4 frozen graph (model.pb); tflite: a full-integer LiteRT model (model.tflite, docs/litert.md)."),
    representative: int = recipe_option("export.representative", "--representative", "tflite: class-balanced training clips that calibrate the int8 activation ranges."),
    check: bool = typer.Option(False, "--check", help="tflite: run it in LiteRT (no TensorFlow in that process): size, operators, agreement with the float student, int8 accuracy, latency; exit 1 if any fails."),
) -> None:
    """Write model.pb (frozen, BN folded, TF 1.4 ops only), labels.txt and manifest.json from a student run (--format tflite: model.tflite)."""
    from distill.core.errors import DistillError
    from distill.export.student_export import export_student

    if export_format not in ("pb", "tflite"):
        raise DistillError(f"--format must be pb or tflite, got {export_format!r}")
    if export_format == "tflite":
        if quantize_weights or check_pi:
            raise DistillError("--quantize-weights and --check-pi are for --format pb; a tflite export is always full integer, and --check checks it")
        from distill.export.tflite import export_student_tflite
        from distill.pipeline.recipe import default_values

        if representative is None:
            representative = default_values()["export.representative"]
        tfl = export_student_tflite(run=run, out=out, calibration=calibration, representative=representative, check=check)
        typer.echo(f"{tfl.model_path}: {tfl.bytes:,} bytes full integer ({100 * tfl.bytes / tfl.float_bytes:.0f}% of the float model's {tfl.float_bytes:,}), "
                   f"calibrated on {tfl.representative} training clips")
        checks = tfl.checks
    else:
        if check:
            raise DistillError("--check is for --format tflite; a pb export is checked with --check-pi")
        checks = None

        result = export_student(run=run, out=out, calibration=calibration, quantize=quantize_weights, check=check_pi, check_clips=check_clips, wheel=tf14_wheel)
        fp = result.footprint
        typer.echo(f"{result.model_path}: {result.bytes:,} bytes, {result.folded_batch_norms} batch norms folded, "
                   f"{result.quantized_constants} constants quantized; estimated Pi 3 {fp['pi3_ms']:.1f} ms (+-{100 * fp['pi3_loo_error']:.0f}%)")
        checks = result.checks
    if checks is not None:
        echo_rich(check_table(checks["lines"]))
        typer.echo("")
        typer.echo("all checks passed" if checks["passed"] else "SOME CHECKS FAILED")
        if not checks["passed"]:
            raise typer.Exit(1)


def check_table(lines: list[dict]):
    """The --check-pi results (``CheckReport.to_dict()["lines"]``) as a rich Table: check, PASS/FAIL, value; a
    check's detail on the line below its value."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("check")
    table.add_column("result")
    table.add_column("value", max_width=100)  # a long detail wraps in its cell rather than widening the table
    for line in lines:
        passed = bool(line["passed"])
        table.add_row(Text(line["name"]), Text("PASS" if passed else "FAIL", style="green" if passed else "bold red"), Text(str(line["value"])))
        if line.get("detail"):
            table.add_row(Text(""), Text(""), Text(str(line["detail"]), style="dim"))
    return table
