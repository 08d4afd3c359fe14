"""Every op of the binary space converts through LCE, each binary conv fused into LceBconv2d.

For each op, structure (`ebnas_retrain`, `bireal`) and stride (1, 2): a tiny functional model
Input(8x8x32) -> op -> GlobalAveragePooling -> Dense, with random BatchNorm statistics, PReLU
slopes and weights so that the comparison is not trivial, converted by LCE (target arm) and
run in LCE's interpreter. Tolerance: max |logit diff| <= 1e-3 * max(1, max |Keras logit|);
measured differences are ~1e-6 of the scale (float rounding of LCE's BN folding).
"""
import numpy as np
import pytest
import tensorflow as tf

import larq as lq
from ubnas_tf.export import convert_model, op_counts, unfused_binary_convs
from ubnas_tf.export.report import binary_convs, operators, unsupported_ops
from ubnas_tf.export.verify import compare, run_tflite
from ubnas_tf.search_space import get_space

TOLERANCE = 1e-3
SPACE = get_space("binary")
BINARY_OPS = sorted(op for op in SPACE.ops if op.startswith("bin_"))
PARAMETER_FREE_OPS = sorted(op for op in SPACE.ops if not op.startswith("bin_"))
STRUCTURES = ("ebnas_retrain", "bireal", "quicknet")


def randomize(model, seed=0):
    """Random BN statistics and affine terms, PReLU slopes and kernels (all non-trivial)."""
    rng = np.random.default_rng(seed)
    for layer in model.submodules:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, channels))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels))
            if layer.gamma is not None:
                layer.gamma.assign(rng.normal(1, 0.5, channels))
                layer.beta.assign(rng.normal(0, 0.3, channels))
        elif isinstance(layer, tf.keras.layers.PReLU):
            layer.alpha.assign(rng.uniform(0.05, 0.5, layer.alpha.shape))
        elif isinstance(layer, (lq.layers.QuantConv2D, tf.keras.layers.Dense)):
            layer.kernel.assign(rng.normal(0, 0.5, layer.kernel.shape))
    return model


def op_model(op, structure, stride, size=8, channels=32):
    inputs = tf.keras.Input((size, size, channels))
    x = SPACE.build_op(op, channels, stride, structure, name="op")(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(10, name="logits")(x)
    return randomize(tf.keras.Model(inputs, outputs, name="model"))


def check_against_keras(model, tflite_bytes, samples=8, seed=1):
    inputs = np.random.default_rng(seed).standard_normal((samples, *model.input_shape[1:]))
    inputs = inputs.astype(np.float32)
    result = compare(model(inputs, training=False), run_tflite(tflite_bytes, inputs))
    assert result["relative_diff"] <= TOLERANCE, result
    assert result["top1_agreement"] == 1.0, result
    return result


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("op", BINARY_OPS)
def test_binary_op_fuses_into_one_bconv_and_matches_keras(op, structure, stride):
    model = op_model(op, structure, stride)
    tflite_bytes = convert_model(model)
    counts = op_counts(tflite_bytes)
    assert len(binary_convs(model)) == 1
    assert counts.get("LceBconv2d") == 1, counts
    assert counts.get("LceQuantize") == 1, counts
    for float_conv in ("CONV_2D", "DEPTHWISE_CONV_2D", "LceDequantize", "PAD", "PADV2"):
        assert float_conv not in counts, counts
    assert unfused_binary_convs(model, tflite_bytes) == []
    assert unsupported_ops(counts) == []
    bconv = [o for o in operators(tflite_bytes) if o["op"] == "LceBconv2d"]
    assert any("model/op/" in name for name in bconv[0]["inputs"] + bconv[0]["outputs"])
    check_against_keras(model, tflite_bytes)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("op", PARAMETER_FREE_OPS)
def test_parameter_free_op_converts_without_binary_ops(op, stride):
    model = op_model(op, "ebnas_retrain", stride)
    tflite_bytes = convert_model(model)
    counts = op_counts(tflite_bytes)
    assert not any(name.startswith("Lce") for name in counts), counts
    assert "CONV_2D" not in counts and unsupported_ops(counts) == []
    check_against_keras(model, tflite_bytes)


@pytest.mark.parametrize("reduction_prev", [False, True])
def test_preprocess_1x1_binary_conv_fuses(reduction_prev):
    inputs = tf.keras.Input((8, 8, 32))
    x = SPACE.build_preprocess(32, reduction_prev, "ebnas_retrain", name="pre")(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = randomize(tf.keras.Model(inputs, tf.keras.layers.Dense(10)(x), name="model"))
    tflite_bytes = convert_model(model)
    counts = op_counts(tflite_bytes)
    assert counts.get("LceBconv2d") == 1 and "CONV_2D" not in counts, counts
    check_against_keras(model, tflite_bytes)


def test_strided_dilated_conv_on_odd_input_fuses_and_matches():
    """Stride-2 dilation is a stride-1 dilated conv + Subsample: odd sizes must line up too."""
    model = op_model("bin_dil_conv_3x3", "ebnas_retrain", 2, size=7)
    tflite_bytes = convert_model(model)
    assert op_counts(tflite_bytes).get("LceBconv2d") == 1
    check_against_keras(model, tflite_bytes)


def test_xcore_target_fuses_the_ones_padded_ops():
    model = op_model("bin_conv_5x5", "ebnas_retrain", 1)
    tflite_bytes = convert_model(model, target="xcore")
    assert op_counts(tflite_bytes).get("LceBconv2d") == 1
    assert unfused_binary_convs(model, tflite_bytes, target="xcore") == []


@pytest.mark.parametrize("structure", STRUCTURES)
def test_bare_saved_model_converts_like_lce_keras_path(structure):
    """convert_model writes only the inference signature (not Keras's SavedModel, whose per-layer
    tracing was most of a conversion's time): the same ops and the same logits as LCE's own
    `convert_keras_model` on the same model."""
    import larq_compute_engine as lce

    model = op_model("bin_dil_conv_5x5", structure, 2)
    ours, lces = convert_model(model), bytes(lce.convert_keras_model(model))
    assert op_counts(ours) == op_counts(lces)  # (their order in the flatbuffer may differ)
    assert op_counts(ours)["LceBconv2d"] == 1
    inputs = np.random.default_rng(2).standard_normal((4, 8, 8, 32)).astype(np.float32)
    np.testing.assert_array_equal(run_tflite(ours, inputs), run_tflite(lces, inputs))


def test_subclassed_model_without_inputs_takes_keras_path():
    """A model never built on an Input has no signature to write: LCE's Keras path converts it."""

    class Head(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf.keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = Head()
    inputs = np.ones((2, 4), np.float32)
    model.predict(inputs, verbose=0)  # sets the save spec LCE's Keras path needs
    assert not model.inputs
    np.testing.assert_allclose(run_tflite(convert_model(model), inputs), model(inputs).numpy(),
                               rtol=1e-5, atol=1e-6)
