"""Convert a Keras model to .tflite with Larq Compute Engine (same CLI as `lce_convert`).

    python tools/convert.py MODEL.h5 [-o OUT.tflite] [--report R.json] [--dataset D] [--no-verify]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ubnas_tf.export.cli import console_main  # noqa: E402

# `bazel run //:TOOL -- ARGS` starts in the runfiles tree: resolve paths from the caller's folder.
os.chdir(os.environ.get("BUILD_WORKING_DIRECTORY", "."))

if __name__ == "__main__":
    console_main()
