"""Keras model -> `.tflite` through Larq Compute Engine, and the float reference model.

LCE's converter (`convert_saved_model`, fed a bare SavedModel of the model's inference call)
fuses each binarized convolution into its `LceBconv2d` op. The *float* reference is the same
model with every larq quantizer removed (latent real weights, real activations), converted by
the same converter, so that the size ratio measures binarization alone and not a difference
between converters.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import tempfile
import warnings

from ubnas_tf.errors import UserError
from ubnas_tf.io_utils import atomic_write_bytes

__all__ = [
    "TARGETS",
    "IO_TYPES",
    "ConversionError",
    "convert_model",
    "dequantized_copy",
    "convert_float_model",
    "write_tflite",
    "default_output_path",
    "float_path_for",
]

TARGETS = ("arm", "xcore")
IO_TYPES = ("float32", "int8")


class ConversionError(RuntimeError):
    """The converter failed on a model it was given (a tool or model bug, exit code 1)."""


def _check_options(target: str, io_type: str) -> None:
    if target not in TARGETS:
        raise UserError(f"target {target!r} is not supported by LCE: use one of {TARGETS}")
    if io_type not in IO_TYPES:
        raise UserError(f"io type {io_type!r} is not supported by LCE: use one of {IO_TYPES}")


@contextlib.contextmanager
def _quiet():
    """Keep TensorFlow's SavedModel chatter (Python logging and warnings) off the console."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _input_types(tflite_bytes: bytes) -> list[int]:
    from larq_compute_engine.mlir.python import tflite_schema as schema

    model = schema.Model.GetRootAs(tflite_bytes, 0)
    graph = model.Subgraphs(0)
    return [graph.Tensors(graph.Inputs(i)).Type() for i in range(graph.InputsLength())]


def _serving_saved_model(model, folder) -> bool:
    """Writes `model`'s inference call as a bare SavedModel (its variables and one signature).

    LCE's `convert_keras_model` saves through Keras's SavedModel writer, which traces every
    layer's call for Keras's own metadata: most of a conversion (19.8 s against 5.1 s this way
    for a 5-cell network of the demo data). The converter reads only the signature, so that is
    all this writes; the .tflite is the same (tests/test_convert_ops.py). False for a model without
    symbolic inputs (subclassed, never built on an Input) or with a mixed-precision policy (LCE
    refuses those with its own message): they take Keras's path.
    """
    import tensorflow as tf

    inputs = getattr(model, "inputs", None)
    policy = getattr(getattr(model, "dtype_policy", None), "name", "float32")
    if not inputs or policy != "float32":
        return False
    specs = [tf.TensorSpec(tensor.shape, tensor.dtype) for tensor in inputs]

    @tf.function(input_signature=specs)
    def serve(*tensors):
        return model(tensors[0] if len(tensors) == 1 else list(tensors), training=False)

    module = tf.Module()
    module.model_variables = list(model.variables)  # tracked, so the SavedModel holds them
    tf.saved_model.save(module, str(folder), signatures=serve.get_concrete_function())
    return True


def _convert_keras_model(model, options: dict) -> bytes:
    import larq_compute_engine as lce

    with tempfile.TemporaryDirectory() as folder:
        if _serving_saved_model(model, folder):
            return lce.convert_saved_model(folder, **options)
    return lce.convert_keras_model(model, **options)


def convert_model(source, *, target: str = "arm", io_type: str = "float32") -> bytes:
    """Converts a tf-keras model, or a SavedModel folder, with LCE; returns the flatbuffer.

    io_type int8 gives int8 input and output tensors; LCE allows it only for a model with
    quantization ranges (fake-quant ops). For any other model it is a UserError.
    """
    import larq_compute_engine as lce
    import tensorflow as tf

    _check_options(target, io_type)
    dtype = {"float32": tf.float32, "int8": tf.int8}[io_type]
    options = dict(target=target, inference_input_type=dtype, inference_output_type=dtype)
    try:
        with _quiet():
            if isinstance(source, (str, os.PathLike)):
                tflite_bytes = lce.convert_saved_model(str(source), **options)
            else:
                tflite_bytes = _convert_keras_model(source, options)
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001  (the MLIR converter raises many types)
        message = " ".join(str(error).split())[:400]
        if io_type == "int8":
            raise UserError(f"LCE could not give this model int8 input/output ({message}): "
                            "int8 needs a quantization-aware model; use --io float32") from None
        raise ConversionError(f"LCE conversion failed: {type(error).__name__}: {message}") from None
    if io_type == "int8" and any(kind != 9 for kind in _input_types(tflite_bytes)):  # 9: INT8
        raise UserError("LCE kept float32 input/output: int8 input/output needs a model with "
                        "quantization ranges (fake-quant ops); use --io float32")
    return bytes(tflite_bytes)


def dequantized_copy(model):
    """A copy of `model` with every larq quantizer removed: the float model of the same net.

    The copy holds the latent real weights; activations are no longer binarized.
    """
    import larq as lq
    import tensorflow as tf

    try:
        copy = tf.keras.models.clone_model(model)
    except Exception:  # noqa: BLE001  (subclassed models cannot be cloned)
        copy = model.__class__.from_config(model.get_config())
        copy.build(model.input_shape)
    copy.set_weights(model.get_weights())
    for layer in copy.submodules:
        if isinstance(layer, lq.layers_base.BaseLayer):
            layer.input_quantizer = None
        for weight in getattr(layer, "weights", []):
            if isinstance(weight, lq.quantized_variable.QuantizedVariable):
                weight.quantizer = None
    return copy


def convert_float_model(model, *, target: str = "arm") -> bytes:
    """The float reference `.tflite`: `dequantized_copy(model)` converted by LCE."""
    return convert_model(dequantized_copy(model), target=target, io_type="float32")


def default_output_path(model_path) -> pathlib.Path:
    """`model.tflite` beside the input (`DIR/model.h5` -> `DIR/model.tflite`; a SavedModel
    folder `DIR/sm` -> `DIR/sm.tflite`)."""
    path = pathlib.Path(model_path)
    if path.is_dir():
        return path.parent / f"{path.name}.tflite"
    return path.with_suffix(".tflite")


def float_path_for(tflite_path) -> pathlib.Path:
    """Where the float reference of `X.tflite` is written: `X.float.tflite`."""
    path = pathlib.Path(tflite_path)
    return path.with_name(f"{path.stem}.float.tflite")


def write_tflite(path, tflite_bytes: bytes) -> pathlib.Path:
    """Atomic write (temporary file + rename): an existing file is replaced whole or not at all."""
    path = pathlib.Path(path)
    if path.exists() and path.is_dir():
        raise UserError(f"output {path} is a folder; give a file path ending in .tflite")
    atomic_write_bytes(path, tflite_bytes)
    return path

