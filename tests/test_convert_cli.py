"""`lce_convert` (tools/convert.py) and tools/benchmark.py end to end, on small models.

Each CLI run is a fresh interpreter (TensorFlow start-up plus two LCE conversions, ~10-20 s),
so the runs are few and each checks several things.
"""
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from conftest import randomize_batch_norm
from ubnas_tf.export import export_model, load_model
from ubnas_tf.search_space import get_space

pytestmark = pytest.mark.slow


def demo_shaped_model():
    """Fashion-MNIST input (28x28x1, the shipped demo): float stem, two binary modules."""
    space = get_space("binary")
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((28, 28, 1))
    x = tf.keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = tf.keras.layers.BatchNormalization(name="stem_bn")(x)
    x = space.build_op("bin_conv_3x3", 32, 2, "ebnas_retrain", name="op_a")(x)
    x = space.build_op("bin_dil_conv_3x3", 32, 2, "ebnas_retrain", name="op_b")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10, name="logits")(x))
    randomize_batch_norm(model)
    return model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("convert_cli")
    demo_shaped_model().save(folder / "model.h5")
    inputs = tf.keras.Input((4,))
    lambda_out = tf.keras.layers.Lambda(lambda t: t + 1.0, name="plus_one")(inputs)
    tf.keras.Model(inputs, tf.keras.layers.Dense(3)(lambda_out)).save(folder / "lambda.h5")
    return folder


def stderr_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_convert_writes_tflite_report_and_verifies_on_demo_data(model_dir, tool):
    result = tool("tools/convert.py", str(model_dir / "model.h5"), "--dataset", "demo",
                  "--report", str(model_dir / "report.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((model_dir / "report.json").read_text())
    assert report["ops"]["LceBconv2d"] == 2 and "LceDequantize" not in report["ops"]
    assert report["ops"]["CONV_2D"] == 1  # the float stem only
    assert report["binary_convs"] == 2 and report["unfused_binary_convs"] == []
    assert report["unsupported_ops"] == []
    tflite = model_dir / "model.tflite"
    assert report["tflite_bytes"] == tflite.stat().st_size
    assert report["float_tflite_bytes"] == (model_dir / "model.float.tflite").stat().st_size
    assert report["float_tflite_bytes"] > 3 * report["tflite_bytes"]
    check = report["verify"]
    assert check["passed"] and check["inputs"] == "demo test split" and check["samples"] == 32
    assert check["within_tolerance"] >= 0.9 and check["top1_agreement"] >= 0.9
    assert check["median_relative_diff"] <= 1e-4
    assert "LceBconv2d" in result.stdout and "verify on 32 samples" in result.stdout


def test_benchmark_reports_latency_beside_the_float_model(model_dir, tool):
    if not (model_dir / "model.tflite").exists():
        pytest.skip("needs the conversion test's output")
    result = tool("tools/benchmark.py", str(model_dir / "model.tflite"), "--runs", "5",
                  "--threads", "1", "--json", str(model_dir / "bench.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    bench = json.loads((model_dir / "bench.json").read_text())
    assert 0 < bench["latency"]["min_ms"] <= bench["latency"]["median_ms"] <= bench["latency"]["max_ms"]
    assert bench["float"]["tflite_bytes"] > bench["tflite_bytes"]
    assert "median" in result.stdout and "LceBconv2d" in result.stdout


def test_failed_verification_writes_nothing_over_an_existing_output(model_dir, tool):
    output = model_dir / "kept.tflite"
    output.write_bytes(b"previous conversion")
    result = tool("tools/convert.py", str(model_dir / "model.h5"), "-o", str(output),
                  "--tolerance", "1e-12", "--verify_samples", "4",
                  "--report", str(model_dir / "failed.json"))
    assert result.returncode == 1, result.stderr[-2000:]
    assert len(stderr_lines(result)) == 1 and "disagrees" in stderr_lines(result)[0]
    assert output.read_bytes() == b"previous conversion"
    assert not (model_dir / "kept.float.tflite").exists()
    assert not (model_dir / "failed.json").exists()  # a failed run writes no report either
    assert not list(model_dir.glob(".kept.tflite.*"))  # no temporary left behind


def test_lambda_refused_with_exit_2_and_accepted_when_allowed(model_dir, tool):
    refused = tool("tools/convert.py", str(model_dir / "lambda.h5"))
    assert refused.returncode == 2
    assert len(stderr_lines(refused)) == 1 and "--allow_lambda" in refused.stderr
    assert not (model_dir / "lambda.tflite").exists()
    allowed = tool("tools/convert.py", str(model_dir / "lambda.h5"), "--allow_lambda",
                   "--no-verify", "--nowrite_float")
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert (model_dir / "lambda.tflite").exists()
    assert "verify: skipped" in allowed.stdout


def test_text_file_named_h5_is_one_line_exit_2(tmp_path, tool):
    fake = tmp_path / "notes.h5"
    fake.write_text("these are my notes, not a model\n")
    result = tool("-m", "ubnas_tf.export.cli", str(fake))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()[-1:]) == 1
    assert stderr_lines(result) and "not a model file" in stderr_lines(result)[0]
    assert not (tmp_path / "notes.tflite").exists()


def test_saved_model_and_keras_archive_inputs(model_dir, tmp_path):
    model = load_model(model_dir / "model.h5")
    model.save(tmp_path / "saved", save_format="tf")
    model.save(tmp_path / "model.keras")
    for source, output in ((tmp_path / "saved", tmp_path / "saved.tflite"),
                           (tmp_path / "model.keras", tmp_path / "model.tflite")):
        result = export_model(source, samples=4, write_float=False)
        assert pathlib.Path(result["tflite"]) == output and output.exists()
        assert result["ops"]["LceBconv2d"] == 2 and result["verify"]["passed"]
