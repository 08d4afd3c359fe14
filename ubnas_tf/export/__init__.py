"""Deployment: Keras model -> `.tflite` through Larq Compute Engine, checked and measured.

Modules, in the order the data flows:
- `model_io`: `load_model` of an untrusted file (Lambda layers refused unless allowed);
- `convert`: LCE conversion (target arm|xcore, float32|int8 I/O), the float reference model,
  atomic writes;
- `report`: op counts of a `.tflite`, ops LCE's runtime lacks, binary convs left unfused and why;
- `verify`: the `.tflite` in LCE's interpreter against the Keras model;
- `pipeline`: `export_model`, all of the above, as `lce_convert` runs it (`cli`).
"""
from ubnas_tf.export.convert import (
    ConversionError,
    convert_float_model,
    convert_model,
    dequantized_copy,
    write_tflite,
)
from ubnas_tf.model_io import load_model
from ubnas_tf.export.pipeline import export_model
from ubnas_tf.export.report import (
    LCE_CUSTOM_OPS,
    binary_convs,
    op_counts,
    unfused_binary_convs,
    unsupported_ops,
)
from ubnas_tf.export.verify import (
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_TOLERANCE,
    VerificationError,
    compare,
)
from ubnas_tf.export.verify import verify as verify_tflite

__all__ = [
    "ConversionError",
    "DEFAULT_MIN_AGREEMENT",
    "DEFAULT_TOLERANCE",
    "LCE_CUSTOM_OPS",
    "VerificationError",
    "binary_convs",
    "compare",
    "convert_float_model",
    "convert_model",
    "dequantized_copy",
    "export_model",
    "load_model",
    "op_counts",
    "unfused_binary_convs",
    "unsupported_ops",
    "verify_tflite",
    "write_tflite",
]
