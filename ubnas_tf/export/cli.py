"""`lce_convert MODEL [-o OUT.tflite] [--report R.json] [--dataset D] [--no-verify] ...`

Converts a Keras model (`.h5`, `.keras`, SavedModel folder) to `.tflite` with Larq Compute
Engine, prints the op counts, the binary convolutions left unfused and why, the sizes beside
the float model, and the comparison with the Keras model. Models built with another package's
layers load after `--import MODULE` (e.g. `--import larq_zoo`). Exit codes: 0 success; 2 bad
input (one line on stderr); 1 conversion or verification failure (one line on stderr; nothing
is written, an earlier output and report stay as they were).
"""
from __future__ import annotations

import sys

from absl import flags

from ubnas_tf import cli

FLAGS = flags.FLAGS
EXIT_FAILURE = 1
_USAGE = "usage: lce_convert MODEL [-o OUT.tflite] [--report R.json] [--dataset D] [--no-verify]"
# Spellings users type, mapped to absl's boolean forms.
_ALIASES = {"--no-verify": "--noverify", "--no_verify": "--noverify",
            "--allow-lambda": "--allow_lambda"}


def define_flags() -> None:
    """Defines the flags once per process (tests import this module more than once)."""
    if "target" in FLAGS:
        return
    import ubnas_tf.export.verify as verify
    from ubnas_tf.export import convert

    flags.DEFINE_string("output", None, "Output .tflite (default: MODEL with .tflite).",
                        short_name="o")
    flags.DEFINE_string("report", None, "Write the report as JSON to this file.")
    flags.DEFINE_boolean("verify", True, "Compare the .tflite with the Keras model "
                         "(--no-verify skips it).")
    flags.DEFINE_enum("target", "arm", convert.TARGETS, "LCE target hardware.")
    flags.DEFINE_enum("io", "float32", convert.IO_TYPES,
                      "Input/output type (int8 needs a quantization-aware model).")
    flags.DEFINE_float("tolerance", verify.DEFAULT_TOLERANCE, "Largest accepted max |logit "
                       "diff| of the median sample, relative to max(1, max |Keras logit|).")
    flags.DEFINE_float("min_agreement", verify.DEFAULT_MIN_AGREEMENT, "Smallest accepted "
                       "fraction of samples with the same top-1 class in Keras and the .tflite.")
    flags.DEFINE_integer("verify_samples", 32, "Samples compared in verification.",
                         lower_bound=1)
    flags.DEFINE_boolean("write_float", True, "Also write the float reference model "
                         "OUT.float.tflite (for tools/benchmark.py).")
    flags.DEFINE_integer("threads", 1, "Interpreter threads for verification.", lower_bound=1)
    cli.define_model_loading_flags()
    if "dataset" not in FLAGS:
        cli.define_data_flags(required=False)


def _fail(message: str, code: int) -> None:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(code)


def main(argv) -> None:
    import ubnas_tf.export.verify as verify
    from ubnas_tf.export import convert, pipeline

    if len(argv) != 2:
        cli.fail(f"give exactly one MODEL ({_USAGE}), got {len(argv) - 1}")
    cli.import_modules_from_flags()
    try:
        result = pipeline.export_model(
            argv[1], output=FLAGS.output, report_path=FLAGS.report, dataset=FLAGS.dataset,
            verify=FLAGS.verify, target=FLAGS.target, io_type=FLAGS.io,
            allow_lambda=FLAGS.allow_lambda, tolerance=FLAGS.tolerance,
            min_agreement=FLAGS.min_agreement,
            samples=FLAGS.verify_samples, write_float=FLAGS.write_float,
            data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir, num_threads=FLAGS.threads)
    except verify.VerificationError as error:
        _fail(f"{error}; nothing written. {verification_fixes(FLAGS.dataset)}", EXIT_FAILURE)
    except convert.ConversionError as error:
        _fail(f"{error}; nothing written", EXIT_FAILURE)
    print(pipeline.format_summary(result))


def verification_fixes(dataset) -> str:
    """What to try when the .tflite and the Keras model disagree (one sentence)."""
    inputs = ("" if dataset else "verify on real inputs with --dataset D (random inputs "
              "put more pre-sign values near 0), ")
    return (f"Fixes: {inputs}loosen --tolerance / --min_agreement, or skip the check with "
            "--no-verify. Untrained or briefly trained binary networks (larq-zoo's BiRealNet "
            "too) put many sign inputs at or within rounding of 0, where LCE's folded "
            "arithmetic and Keras's can take different signs: train the model, then verify")


def console_main() -> None:
    """Entry point of the `lce_convert` console script and of tools/convert.py."""
    import ubnas_tf  # noqa: F401  (Keras 2 before TensorFlow; registers custom objects)

    sys.argv = [_ALIASES.get(arg, arg) for arg in sys.argv]
    define_flags()
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    console_main()
