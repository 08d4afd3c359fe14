"""Run a `.tflite` in LCE's interpreter and compare it with the Keras model it came from.

The comparison is on the logits (the model's outputs), per sample: the largest absolute
difference relative to the sample's logit scale `max(1, max |keras logit|)`. The conversion
passes when the *median* sample's relative difference is at most `tolerance` (default 1e-3)
and the top-1 class agrees on at least `min_agreement` of the samples (default 0.9). The
report also gives the worst sample (`max_abs_diff`, `relative_diff`) and the fraction of
samples within the tolerance.

Why the median and not the worst sample: LCE folds BatchNorm into the binary convolution's
integer accumulator, so its floats round differently from TensorFlow's, by ~1e-7 of the
values. Where a pre-sign activation lies within that rounding of zero, its sign flips and the
logits of that sample move by ~1e-2 of their scale. Measured on a network trained on the demo
data (5 cells, C=16): 193 of 200 test images agree within 5e-6 of the scale; each of the other
7 has a pre-sign value within 6e-7 of zero and differs by up to 2.6e-2, with the same top-1
class. Flips grow with depth and with badly conditioned (e.g. untrained) weights; Keras itself
flips some when run in float64 instead of float32. A wrong conversion (padding, a sign
convention, BN folding) moves most samples, so the median catches it; the tests of every op
(`tests/test_convert_ops.py`) hold every sample to the tolerance.
"""
from __future__ import annotations

import platform

import numpy as np

from ubnas_tf.errors import UserError

__all__ = [
    "DEFAULT_TOLERANCE",
    "DEFAULT_MIN_AGREEMENT",
    "VerificationError",
    "interpreter",
    "run_tflite",
    "compare",
    "verify",
    "sample_inputs",
]

DEFAULT_TOLERANCE = 1e-3
DEFAULT_MIN_AGREEMENT = 0.9


class VerificationError(RuntimeError):
    """The `.tflite` disagrees with the Keras model beyond the tolerance (exit code 1)."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


def default_indirect_bgemm() -> bool:
    """LCE's optimised bconv kernels target arm64; on x86 the indirect BGEMM kernel is faster."""
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def interpreter(tflite_bytes: bytes, *, num_threads: int = 1, use_indirect_bgemm=None):
    """LCE's `Interpreter` (XNNPACK off, as on device) over `tflite_bytes`."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    if use_indirect_bgemm is None:
        use_indirect_bgemm = default_indirect_bgemm()
    return Interpreter(tflite_bytes, num_threads=int(num_threads),
                       use_indirect_bgemm=bool(use_indirect_bgemm), use_xnnpack=False)


def _quantize(values: np.ndarray, dtype, scale, zero_point) -> np.ndarray:
    if np.dtype(dtype) == np.float32 or not scale:
        return values.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, scale, zero_point) -> np.ndarray:
    if values.dtype == np.float32 or not scale:
        return values.astype(np.float32)
    return (values.astype(np.float32) - zero_point) * scale


def _run(tflite_bytes: bytes, inputs: np.ndarray, num_threads: int):
    """(float outputs, output quantization step: 0 for float outputs)."""
    lite = interpreter(tflite_bytes, num_threads=num_threads)
    dtype = lite.input_types[0]
    scale, zero_point = lite.input_scales[0], lite.input_zero_points[0]
    outputs = lite.predict(_quantize(np.asarray(inputs, np.float32), dtype, scale, zero_point))
    if isinstance(outputs, list):
        outputs = outputs[0]
    outputs = np.asarray(outputs)
    step = float(lite.output_scales[0] or 0.0) if outputs.dtype != np.float32 else 0.0
    return _dequantize(outputs, lite.output_scales[0], lite.output_zero_points[0]), step


def run_tflite(tflite_bytes: bytes, inputs: np.ndarray, *, num_threads: int = 1) -> np.ndarray:
    """The `.tflite`'s outputs (float, dequantized if int8) for a batch of float inputs."""
    return _run(tflite_bytes, inputs, num_threads)[0]


def compare(keras_logits: np.ndarray, tflite_logits: np.ndarray, *,
            tolerance: float = DEFAULT_TOLERANCE, step: float = 0.0) -> dict:
    """max_abs_diff, logit_scale, relative_diff (worst sample), median_relative_diff,
    within_tolerance (fraction of samples agreeing within `tolerance`), top1_agreement.

    `step`: the output quantization step of an int8 `.tflite`; differences up to one step
    are rounding, not disagreement: not counted in the relative differences, and a top-1
    class within one step of Keras's first agrees with it."""
    keras_logits = np.asarray(keras_logits, np.float64).reshape(len(keras_logits), -1)
    tflite_logits = np.asarray(tflite_logits, np.float64).reshape(len(tflite_logits), -1)
    if keras_logits.shape != tflite_logits.shape:
        raise ValueError(f"output shapes differ: Keras {keras_logits.shape}, "
                         f"tflite {tflite_logits.shape}")
    differences = np.abs(keras_logits - tflite_logits).max(axis=1)
    scales = np.maximum(1.0, np.abs(keras_logits).max(axis=1))
    relative = np.maximum(differences - step, 0.0) / scales
    # The .tflite's class agrees when Keras ranks it first or within one output step of the
    # first: int8 outputs round each logit by up to half a step, so two logits closer than a
    # step may swap (with float outputs, step 0: the same class).
    chosen = keras_logits[np.arange(len(keras_logits)), tflite_logits.argmax(-1)]
    agrees = chosen >= keras_logits.max(axis=1) - step
    return {
        "max_abs_diff": float(differences.max()),
        "logit_scale": float(scales.max()),
        "relative_diff": float(relative.max()),
        "median_relative_diff": float(np.median(relative)),
        "within_tolerance": float(np.mean(relative <= tolerance)),
        "top1_agreement": float(np.mean(agrees)),
        "samples": int(len(keras_logits)),
        "quantization_step": float(step),
    }


def sample_inputs(model, *, dataset: str | None = None, samples: int = 32, seed: int = 0,
                  data_dir: str | None = None, manual_dir: str | None = None):
    """`(inputs, source)`: the first test images of `dataset` (normalised as in training), or
    standard-normal inputs of the model's input shape when no dataset is given."""
    shape = tuple(model.input_shape[1:])
    if None in shape:
        raise UserError(f"the model input shape {shape} is not fixed; give the model a fixed "
                        "input size to convert it")
    if dataset is None:
        rng = np.random.default_rng(seed)
        return rng.standard_normal((samples, *shape)).astype(np.float32), "random normal"
    from ubnas_tf.data import load_dataset

    data = load_dataset(dataset, data_dir=data_dir, manual_dir=manual_dir,
                        input_size=shape[:2], seed=seed)
    images, _ = data.samples(samples, split="test")
    if images.shape[1:] != shape:
        raise UserError(f"dataset {dataset} gives images of shape {images.shape[1:]} but the "
                        f"model takes {shape}; verify with the dataset the model was trained on")
    return images.astype(np.float32), f"{dataset} test split"


def verify(model, tflite_bytes: bytes, inputs: np.ndarray, *,
           tolerance: float = DEFAULT_TOLERANCE, min_agreement: float = DEFAULT_MIN_AGREEMENT,
           num_threads: int = 1) -> dict:
    """Compares Keras and LCE on `inputs`; raises VerificationError when the median sample
    differs by more than `tolerance` of its logit scale, or fewer than `min_agreement` of the
    samples agree on the top-1 class."""
    if not tolerance > 0:
        raise UserError(f"tolerance must be > 0, got {tolerance}")
    if not 0 < min_agreement <= 1:
        raise UserError(f"min_agreement must be in (0, 1], got {min_agreement}")
    keras_logits = np.asarray(model(inputs, training=False))
    tflite_logits, step = _run(tflite_bytes, inputs, num_threads)
    result = compare(keras_logits, tflite_logits, tolerance=tolerance, step=step)
    result.update(tolerance=float(tolerance), min_agreement=float(min_agreement))
    result["passed"] = (result["median_relative_diff"] <= tolerance
                        and result["top1_agreement"] >= min_agreement)
    if not result["passed"]:
        raise VerificationError(
            f"the .tflite disagrees with the Keras model: the median sample's max |logit diff| "
            f"is {result['median_relative_diff']:.3g} of the logit scale (tolerance "
            f"{tolerance:g}; worst {result['relative_diff']:.3g}) and the top-1 class agrees "
            f"on {result['top1_agreement']:.1%} of {result['samples']} samples (at least "
            f"{min_agreement:.0%} needed)",
            result,
        )
    return result
