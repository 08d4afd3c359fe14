"""Latency of a .tflite in Larq Compute Engine's interpreter on this host, beside its float model.

    python tools/benchmark.py MODEL.tflite [--threads N] [--runs N] [--float_tflite F]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ubnas_tf  # noqa: E402,F401  (Keras 2 before TensorFlow)
from absl import flags  # noqa: E402

from ubnas_tf import cli  # noqa: E402

# `bazel run //:TOOL -- ARGS` starts in the runfiles tree: resolve paths from the caller's folder.
os.chdir(os.environ.get("BUILD_WORKING_DIRECTORY", "."))

FLAGS = flags.FLAGS
flags.DEFINE_integer("threads", 1, "Interpreter threads.", lower_bound=1)
flags.DEFINE_integer("runs", 50, "Timed runs (after the warm-up runs).", lower_bound=1)
flags.DEFINE_integer("warmup", 5, "Untimed warm-up runs.", lower_bound=0)
flags.DEFINE_string("float_tflite", None,
                    "The float model's .tflite (default: MODEL.float.tflite when it exists).")
flags.DEFINE_enum("indirect_bgemm", "auto", ["auto", "true", "false"],
                  "LceBconv2d kernel: indirect BGEMM (auto: on for x86 hosts).")
flags.DEFINE_string("json", None, "Also write the results as JSON to this file.")


def main(argv):
    from ubnas_tf.export.benchmark import benchmark_file, format_benchmark
    from ubnas_tf.io_utils import atomic_write_json

    if len(argv) != 2:
        cli.fail("usage: tools/benchmark.py MODEL.tflite [--threads N] [--runs N]")
    if FLAGS.json:
        cli.check_output(FLAGS.json, folder=False, flag="--json")
    indirect = {"auto": None, "true": True, "false": False}[FLAGS.indirect_bgemm]
    result = benchmark_file(argv[1], float_path=FLAGS.float_tflite, threads=FLAGS.threads,
                            runs=FLAGS.runs, warmup=FLAGS.warmup, use_indirect_bgemm=indirect)
    print(format_benchmark(result))
    if FLAGS.json:
        atomic_write_json(FLAGS.json, result)


if __name__ == "__main__":
    cli.run(main)
