"""`export_model`: load, convert, inspect, verify and write; what `lce_convert` runs."""
from __future__ import annotations

import pathlib

from ubnas_tf.errors import UserError
import ubnas_tf.export.verify as verification
from ubnas_tf import model_io
from ubnas_tf.export import convert, report
from ubnas_tf.io_utils import atomic_write_json, check_writable

__all__ = ["export_model", "format_summary"]


def _same_file(first: pathlib.Path, second: pathlib.Path) -> bool:
    return first.resolve() == second.resolve()


def export_model(model_path, *, output=None, report_path=None, dataset=None, verify=True,
                 target="arm", io_type="float32", allow_lambda=False,
                 tolerance=verification.DEFAULT_TOLERANCE,
                 min_agreement=verification.DEFAULT_MIN_AGREEMENT, samples=32, write_float=True,
                 data_dir=None, manual_dir=None, num_threads=1) -> dict:
    """Converts the model at `model_path` to `.tflite` with LCE and returns the report.

    Writes `output` (default: `model.tflite` beside the model), its float reference
    `X.float.tflite` (unless `write_float` is False) and, when given, `report_path` (JSON).
    Nothing is written (an earlier output and report stay as they were, still describing each
    other) unless conversion succeeds, the `.tflite` holds only ops LCE's runtime registers,
    and (with `verify`) it matches the Keras model; the error carries the figures.

    Raises:
      UserError: bad input (file, flags, dataset). verification.VerificationError: mismatch.
      convert.ConversionError: the converter failed or produced ops LCE cannot run.
    """
    model_path = pathlib.Path(model_path)
    output = pathlib.Path(output) if output else convert.default_output_path(model_path)
    if model_path.exists() and _same_file(output, model_path):
        raise UserError(f"output {output} is the input model; give another -o path")
    check_writable(output, folder=False, what="output (-o)")  # before minutes of work
    if report_path:
        check_writable(report_path, folder=False, what="report (--report)")
    if samples < 1:
        raise UserError(f"verify samples must be >= 1, got {samples}")
    if verify and not (tolerance > 0 and 0 < min_agreement <= 1):
        raise UserError(f"need tolerance > 0 and 0 < min_agreement <= 1, got {tolerance} and "
                        f"{min_agreement}")
    model = model_io.load_model(model_path, allow_lambda=allow_lambda)
    inputs = source = None
    if verify:  # bad dataset input fails before the slow conversions
        inputs, source = verification.sample_inputs(
            model, dataset=dataset, samples=samples, data_dir=data_dir, manual_dir=manual_dir)

    converter_source = model_path if model_path.is_dir() else model
    tflite_bytes = convert.convert_model(converter_source, target=target, io_type=io_type)
    counts = report.op_counts(tflite_bytes)
    result = {
        "model": str(model_path),
        "tflite": str(output),
        "target": target,
        "io": report.io_types(tflite_bytes),
        "ops": counts,
        "unsupported_ops": report.unsupported_ops(counts),
        "binary_convs": len(report.binary_convs(model, target=target)),
        "fused_binary_convs": counts.get("LceBconv2d", 0),
        "unfused_binary_convs": report.unfused_binary_convs(model, tflite_bytes, target=target),
        "tflite_bytes": len(tflite_bytes),
        "float_tflite": None,
        "float_tflite_bytes": None,
        "float_ops": None,
        "size_ratio": None,
        "verify": None,
    }
    if result["unsupported_ops"]:
        raise convert.ConversionError(
            f"the .tflite holds ops LCE's runtime does not register: "
            f"{', '.join(result['unsupported_ops'])}")
    if verify:
        result["verify"] = {"inputs": source}
        result["verify"].update(verification.verify(
            model, tflite_bytes, inputs, tolerance=tolerance, min_agreement=min_agreement,
            num_threads=num_threads))
    float_bytes = convert.convert_float_model(model, target=target)
    result.update({
        "float_tflite": str(convert.float_path_for(output)) if write_float else None,
        "float_tflite_bytes": len(float_bytes),
        "float_ops": report.op_counts(float_bytes),
        "size_ratio": len(float_bytes) / len(tflite_bytes),
    })
    convert.write_tflite(output, tflite_bytes)
    if write_float:
        convert.write_tflite(convert.float_path_for(output), float_bytes)
    if report_path:
        atomic_write_json(report_path, result)
    return result


def format_summary(result: dict) -> str:
    """The console summary: op table, fusion, sizes and verification."""
    io = result["io"]
    lines = [
        f"{result['model']} -> {result['tflite']} (target {result['target']}, input "
        f"{'/'.join(io['inputs'])}, output {'/'.join(io['outputs'])})",
        "",
        report.format_ops_table(result["ops"], result.get("float_ops")),
        "",
        f"binary convolutions: {result['binary_convs']}, fused into LceBconv2d: "
        f"{result['fused_binary_convs']}, not fused: {len(result['unfused_binary_convs'])}",
    ]
    for conv in result["unfused_binary_convs"]:
        lines.append(f"  - {conv['layer']} ({conv['kind']}): {conv['reason']}")
    if result["unsupported_ops"]:
        lines.append(f"ops LCE's runtime lacks: {', '.join(result['unsupported_ops'])}")
    float_where = f" ({result['float_tflite']})" if result.get("float_tflite") else ""
    lines.append(
        f"size: {result['tflite_bytes']:,} bytes; float model {result['float_tflite_bytes']:,} "
        f"bytes{float_where}; float/binary {result['size_ratio']:.1f}x")
    check = result.get("verify")
    if check is None:
        lines.append("verify: skipped (--no-verify)")
    elif "max_abs_diff" in check:
        lines.append(
            f"verify on {check['samples']} samples ({check['inputs']}): max |logit diff| "
            f"{check['max_abs_diff']:.3g}; relative to the logit scale: median "
            f"{check['median_relative_diff']:.2g}, worst {check['relative_diff']:.2g}, "
            f"{check['within_tolerance']:.0%} of samples within {check['tolerance']:g}; top-1 "
            f"agreement {check['top1_agreement']:.1%}: {'passed' if check['passed'] else 'FAILED'}")
    return "\n".join(lines)
