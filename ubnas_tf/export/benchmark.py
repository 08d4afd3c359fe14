"""Latency of a `.tflite` in Larq Compute Engine's interpreter on this host.

Each run is one inference on a batch of one (the interpreter's fixed input shape), timed with
`time.perf_counter` around the interpreter's invoke; a few warm-up runs come first. On x86
LCE's optimised binary kernels (written for arm64) are not built, so `use_indirect_bgemm`
picks the indirect-BGEMM kernel, the fastest there; the numbers measure this host, not a phone
(docs/android.md measures a phone or a Raspberry Pi).
"""
from __future__ import annotations

import pathlib
import platform
import time

import numpy as np

from ubnas_tf.errors import UserError

__all__ = ["measure_latency", "benchmark_file", "format_benchmark"]


def _random_input(lite, seed: int) -> np.ndarray:
    shape, dtype = lite.input_shapes[0], np.dtype(lite.input_types[0])
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(values * 32), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def measure_latency(tflite_bytes: bytes, *, threads: int = 1, runs: int = 50, warmup: int = 5,
                    use_indirect_bgemm: bool | None = None, seed: int = 0) -> dict:
    """median_ms, min_ms, max_ms, spread_ms (p75 - p25), mean_ms, runs, threads."""
    from ubnas_tf.export.verify import default_indirect_bgemm, interpreter

    if threads < 1 or runs < 1 or warmup < 0:
        raise UserError(f"need threads >= 1, runs >= 1, warmup >= 0; got {threads}, {runs}, "
                        f"{warmup}")
    if use_indirect_bgemm is None:
        use_indirect_bgemm = default_indirect_bgemm()
    lite = interpreter(tflite_bytes, num_threads=threads, use_indirect_bgemm=use_indirect_bgemm)
    batch = [_random_input(lite, seed)]
    invoke = lite.interpreter.predict  # the wrapper's invoke, without per-call batching helpers
    for _ in range(warmup):
        invoke(batch)
    times = np.empty(runs)
    for index in range(runs):
        start = time.perf_counter()
        invoke(batch)
        times[index] = (time.perf_counter() - start) * 1e3
    p25, median, p75 = np.percentile(times, [25, 50, 75])
    return {
        "median_ms": float(median),
        "min_ms": float(times.min()),
        "max_ms": float(times.max()),
        "spread_ms": float(p75 - p25),
        "mean_ms": float(times.mean()),
        "runs": int(runs),
        "threads": int(threads),
        "use_indirect_bgemm": bool(use_indirect_bgemm),
        "host": f"{platform.machine()} {platform.processor() or platform.system()}".strip(),
    }


def _read(path) -> bytes:
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; give a .tflite written by lce_convert")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
    return data


def benchmark_file(path, *, float_path=None, **options) -> dict:
    """Latency, size and op counts of `path` and, when it exists, of its float reference
    (`float_path`, default `X.float.tflite` beside `X.tflite`)."""
    from ubnas_tf.export.convert import float_path_for
    from ubnas_tf.export.report import op_counts

    data = _read(path)
    result = {"tflite": str(path), "tflite_bytes": len(data), "ops": op_counts(data),
              "latency": measure_latency(data, **options), "float": None}
    if float_path is None and float_path_for(path).is_file():
        float_path = float_path_for(path)
    if float_path is not None:
        float_data = _read(float_path)
        result["float"] = {"tflite": str(float_path), "tflite_bytes": len(float_data),
                           "ops": op_counts(float_data),
                           "latency": measure_latency(float_data, **options)}
    return result


def format_benchmark(result: dict) -> str:
    from ubnas_tf.export.report import format_ops_table

    def line(name, entry):
        latency = entry["latency"]
        return (f"{name:<8} {entry['tflite_bytes']:>12,} B  median {latency['median_ms']:8.3f} ms"
                f"  min {latency['min_ms']:8.3f}  max {latency['max_ms']:8.3f}"
                f"  spread (IQR) {latency['spread_ms']:.3f}")

    latency = result["latency"]
    float_entry = result["float"]
    lines = [
        f"LCE interpreter on this host ({latency['host']}), {latency['threads']} thread(s), "
        f"{latency['runs']} runs, use_indirect_bgemm={latency['use_indirect_bgemm']}",
        line("binary", result),
    ]
    if float_entry:
        lines.append(line("float", float_entry))
        lines.append(f"float/binary: size {float_entry['tflite_bytes'] / result['tflite_bytes']:.1f}x, "
                     f"latency {float_entry['latency']['median_ms'] / latency['median_ms']:.2f}x")
    else:
        lines.append("float: no float reference (write one with lce_convert, or --float_tflite)")
    lines += ["", format_ops_table(result["ops"], float_entry["ops"] if float_entry else None)]
    return "\n".join(lines)
