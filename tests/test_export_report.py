"""The pieces of `lce_convert`: unfused-conv reasons, model loading of untrusted files,
the float reference model, int8 I/O, atomic writes."""
import json
import os
import pathlib

import h5py
import numpy as np
import pytest
import tensorflow as tf

import larq as lq
from ubnas_tf.errors import UserError
from ubnas_tf.export import (
    convert_model,
    dequantized_copy,
    load_model,
    op_counts,
    unfused_binary_convs,
    write_tflite,
)
from ubnas_tf.model_io import lambda_layers
from ubnas_tf.export.report import binary_convs, format_ops_table, unsupported_ops

CLIP = lq.constraints.WeightClip(1.0)


def qconv(filters, name, **kwargs):
    options = dict(padding="same", pad_values=1.0, input_quantizer="ste_sign",
                   kernel_quantizer="ste_sign", kernel_constraint=CLIP, use_bias=False)
    options.update(kwargs)
    return lq.layers.QuantConv2D(filters, 3, name=name, **options)


def mixed_model():
    """Four binary convs: one fusible everywhere, three that LCE cannot fuse on xcore."""
    inputs = tf.keras.Input((8, 8, 32))
    x = qconv(32, "fused")(inputs)
    x = qconv(32, "zero_pad", pad_values=0.0)(x)
    x = qconv(32, "grouped", groups=2)(x)
    x = qconv(32, "heaviside", kernel_quantizer="ste_heaviside")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(4)(x), name="model")


@pytest.fixture(scope="module")
def mixed():
    return mixed_model()


def test_binary_convs_and_their_blockers(mixed):
    blockers = {conv.layer: conv.reason for conv in binary_convs(mixed, target="xcore")}
    assert set(blockers) == {"fused", "zero_pad", "grouped", "heaviside"}
    assert blockers["fused"] is None
    assert "zero 'same' padding" in blockers["zero_pad"]
    assert "16 input channels per group" in blockers["grouped"]
    assert "SteHeaviside" in blockers["heaviside"]
    assert binary_convs(mixed, target="arm")[1].reason is None  # zero padding fuses on arm


@pytest.mark.parametrize("target, unfused", [
    ("arm", {"grouped", "heaviside"}),
    ("xcore", {"zero_pad", "grouped", "heaviside"}),
])
def test_unfused_convs_are_counted_and_explained(mixed, target, unfused):
    tflite_bytes = convert_model(mixed, target=target)
    counts = op_counts(tflite_bytes)
    assert counts["LceBconv2d"] == 4 - len(unfused)
    assert counts["CONV_2D"] == len(unfused)
    report = unfused_binary_convs(mixed, tflite_bytes, target=target)
    assert {entry["layer"] for entry in report} == unfused
    assert all(entry["reason"] for entry in report)
    assert unsupported_ops(counts) == []


def test_unsupported_ops_lists_foreign_custom_ops():
    assert unsupported_ops({"CONV_2D": 1, "LceBconv2d": 2, "LceBMaxPool2d": 1}) == []
    assert unsupported_ops({"FlexConv2D": 1, "MyOp": 1, "ADD": 1}) == ["FlexConv2D", "MyOp"]


def test_op_counts_refuses_non_tflite():
    with pytest.raises(ValueError, match="TFL3"):
        op_counts(b"not a flatbuffer at all")


def test_ops_table_lists_float_counts():
    table = format_ops_table({"LceBconv2d": 2, "ADD": 1}, {"CONV_2D": 2, "ADD": 1})
    assert "LceBconv2d" in table and "CONV_2D" in table and "float" in table.splitlines()[0]


def test_dequantized_copy_computes_with_real_weights_and_activations(mixed):
    copy = dequantized_copy(mixed)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 32)).astype(np.float32)
    reference = tf.keras.Model(mixed.input, mixed.get_layer("fused").output)
    expected = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=1.0),
                            mixed.get_layer("fused").kernel.latent_variable, 1, "VALID")
    got = tf.keras.Model(copy.input, copy.get_layer("fused").output)(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(reference(x), got)  # the original still binarizes
    assert binary_convs(copy) == [] and len(binary_convs(mixed)) == 4


def test_int8_io_of_a_float_model_is_a_user_error(mixed):
    with pytest.raises(UserError, match="int8"):
        convert_model(mixed, io_type="int8")


class FakeQuant(tf.keras.layers.Layer):
    """Quantization ranges, as quantization-aware training leaves them."""

    def call(self, inputs):
        return tf.quantization.fake_quant_with_min_max_args(inputs, -4.0, 4.0)


def test_int8_io_of_a_quantization_aware_model_verifies():
    from ubnas_tf.export.report import io_types
    from ubnas_tf.export.verify import verify

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((8, 8, 32))
    x = qconv(32, "bconv")(FakeQuant()(inputs))
    x = FakeQuant()(tf.keras.layers.BatchNormalization()(x))
    x = FakeQuant()(tf.keras.layers.GlobalAveragePooling2D()(x))
    model = tf.keras.Model(inputs, x)
    tflite_bytes = convert_model(model, io_type="int8")
    assert io_types(tflite_bytes) == {"inputs": ["INT8"], "outputs": ["INT8"]}
    assert op_counts(tflite_bytes)["LceBconv2d"] == 1
    samples = np.random.default_rng(0).uniform(-3, 3, (8, 8, 8, 32)).astype(np.float32)
    result = verify(model, tflite_bytes, samples)
    assert result["passed"] and result["quantization_step"] == pytest.approx(8 / 255, rel=1e-3)


def test_int8_outputs_within_one_step_of_kerass_first_class_agree():
    """Int8 outputs round each logit by up to half a step: classes whose Keras logits are
    closer than a step may swap without any disagreement, farther ones may not."""
    from ubnas_tf.export.verify import compare

    keras = np.array([[1.00, 1.02, -1.0], [1.00, 1.20, -1.0], [0.5, 0.1, 0.0]])
    tflite = np.array([[1.0, 1.0, -1.0], [1.2, 1.2, -1.0], [0.5, 0.1, 0.0]])  # argmax 0, 0, 0
    assert compare(keras, tflite, step=8 / 255)["top1_agreement"] == pytest.approx(2 / 3)
    assert compare(keras, tflite, step=0.0)["top1_agreement"] == pytest.approx(1 / 3)


def test_bad_target_is_a_user_error(mixed):
    with pytest.raises(UserError, match="arm"):
        convert_model(mixed, target="gpu")


# -- loading untrusted files ---------------------------------------------------------------


def lambda_model():
    inputs = tf.keras.Input((4,))
    inner = tf.keras.Sequential([tf.keras.layers.Lambda(lambda t: t * 2.0, name="double")],
                                name="inner")
    return tf.keras.Model(inputs, tf.keras.layers.Dense(2)(inner(inputs)))


def test_lambda_found_in_nested_configs():
    config = json.loads(lambda_model().to_json())
    assert lambda_layers(config) == ["double"]
    assert lambda_layers({"class_name": "Functional", "config": {"layers": []}}) == []


def test_h5_with_nested_lambda_is_refused_unless_allowed(tmp_path):
    path = tmp_path / "lambda.h5"
    lambda_model().save(path)
    with pytest.raises(UserError, match="Lambda layer.*double.*--allow_lambda"):
        load_model(path)
    assert isinstance(load_model(path, allow_lambda=True), tf.keras.Model)


def test_keras_archive_with_lambda_is_refused(tmp_path):
    path = tmp_path / "lambda.keras"
    lambda_model().save(path)
    with pytest.raises(UserError, match="Lambda"):
        load_model(path)


def test_saved_model_with_lambda_is_refused(tmp_path):
    path = tmp_path / "saved"
    lambda_model().save(path, save_format="tf")
    with pytest.raises(UserError, match="Lambda"):
        load_model(path)


@pytest.mark.parametrize("content", [b"hello, I am text\n", b"", b"\x89HDF\r\n\x1a\nbroken"])
def test_a_file_that_is_not_a_model_is_one_user_error(tmp_path, content):
    path = tmp_path / "model.h5"
    path.write_bytes(content)
    with pytest.raises(UserError) as error:
        load_model(path)
    assert "\n" not in str(error.value) and "model" in str(error.value)


def test_weights_only_h5_and_missing_files_are_user_errors(tmp_path):
    path = tmp_path / "weights.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("kernel", data=np.zeros(3))
    with pytest.raises(UserError, match="no model config"):
        load_model(path)
    with pytest.raises(UserError, match="does not exist"):
        load_model(tmp_path / "absent.h5")
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match="saved_model.pb"):
        load_model(tmp_path / "folder")


def test_our_binary_model_round_trips_through_h5(tmp_path, mixed):
    path = tmp_path / "mixed.h5"
    mixed.save(path)
    loaded = load_model(path)
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 32)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), mixed(x), rtol=1e-6, atol=1e-6)


# -- atomic writes ----------------------------------------------------------------------


def test_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"old contents")

    def crash(_descriptor):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_tflite(path, b"new contents that never land")
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in pathlib.Path(tmp_path).iterdir()] == ["model.tflite"]


# -- the verification criterion -------------------------------------------------------------


def fake_verify(monkeypatch, keras_logits, tflite_logits, **options):
    import ubnas_tf.export.verify as verification

    monkeypatch.setattr(verification, "_run", lambda *args, **kwargs: (tflite_logits, 0.0))
    return verification.verify(lambda inputs, training: keras_logits, b"", None, **options)


def test_verify_accepts_a_few_flipped_samples(monkeypatch):
    keras = np.random.default_rng(0).standard_normal((20, 10)) * 5
    lite = keras + 1e-6
    lite[3] += 0.2  # one sample whose sign flipped somewhere: same top-1 here
    lite[3, keras[3].argmax()] += 1.0
    result = fake_verify(monkeypatch, keras, lite)
    assert result["passed"] and result["within_tolerance"] == 0.95
    assert result["relative_diff"] > 1e-2 and result["median_relative_diff"] < 1e-6


def test_verify_refuses_a_systematic_difference(monkeypatch):
    from ubnas_tf.export.verify import VerificationError

    keras = np.random.default_rng(0).standard_normal((20, 10)) * 5
    with pytest.raises(VerificationError, match="median") as error:
        fake_verify(monkeypatch, keras, keras * 1.01)
    assert error.value.result["passed"] is False
    with pytest.raises(VerificationError, match="top-1"):
        fake_verify(monkeypatch, keras, keras[::-1].copy(), tolerance=10.0)
    with pytest.raises(UserError):
        fake_verify(monkeypatch, keras, keras, min_agreement=1.5)
