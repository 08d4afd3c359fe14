"""Cost profile: parameters by bit width, binary and float MACs, OPs and size, by hand."""
import math

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import ubnas_tf  # noqa: F401
from ubnas_tf.network.cost import op_profile, profile
from ubnas_tf.quantizers import ApproxSign
from ubnas_tf.search_space import BinaryConvModule


def flat_model():
    """8x8x3 -> float conv 3x3 (16) -> BN -> binary conv 3x3 (16, stride 2) -> binary-input
    real-weight conv 1x1 (32) -> depthwise 3x3 -> pool -> Dense(10)."""
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = tf.keras.layers.BatchNormalization(name="bn")(x)
    x = lq.layers.QuantConv2D(16, 3, strides=2, padding="same", pad_values=1.0, use_bias=False,
                              input_quantizer=ApproxSign(), kernel_quantizer="ste_sign",
                              kernel_constraint=lq.constraints.WeightClip(1.0), name="bconv")(x)
    x = lq.layers.QuantConv2D(32, 1, use_bias=False, input_quantizer=ApproxSign(),
                              name="binary_input_real_weights")(x)
    x = tf.keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(10, name="classifier")(x)
    return tf.keras.Model(inputs, outputs)


def test_counts_by_hand():
    cost = profile(flat_model())
    rows = {row.name: row for row in cost.layers}
    assert rows["stem"].params_float == 3 * 9 * 16
    assert rows["stem"].macs_float == 3 * 9 * 16 * 64
    assert rows["bn"].params_float == 32 and rows["bn"].params_non_trainable == 32
    assert (rows["bconv"].params_binary, rows["bconv"].params_float) == (16 * 9 * 16, 0)
    assert rows["bconv"].macs_binary == 16 * 9 * 16 * 16 and rows["bconv"].macs_float == 0
    assert rows["bconv"].output_shape == (4, 4, 16)
    # binary inputs but 32-bit weights: not a BOP (larq: precision = max of the two)
    assert rows["binary_input_real_weights"].input_bits == 1
    assert rows["binary_input_real_weights"].macs_float == 16 * 32 * 16
    assert rows["binary_input_real_weights"].macs_binary == 0
    assert rows["depthwise"].macs_float == 9 * 32 * 16
    assert rows["classifier"].params_float == 32 * 10 + 10
    assert rows["classifier"].macs_float == 32 * 10
    assert cost.params_binary == 2304
    assert cost.params_float == 432 + 32 + 512 + 288 + 330
    assert cost.macs_binary == 36_864
    assert cost.macs_float == 27_648 + 8_192 + 4_608 + 320
    assert cost.ops == cost.macs_float + 36_864 / 64
    # size: 1-bit kernel packed, 32-bit weights 4 bytes, BN folded to 2 floats per channel
    assert cost.model_size_bytes == math.ceil((2304 + 32 * (432 + 512 + 288 + 330 + 32)) / 8)


def test_agrees_with_larq_profiler_on_a_flat_model():
    model = flat_model()
    ours = profile(model)
    larq_profile = lq.models.ModelProfile(model)
    assert ours.params_binary == larq_profile.weight_count(bitwidth=1)
    # larq counts a BN as the 2 folded floats per channel (16 channels here), we as PyTorch:
    # gamma and beta trainable, moving mean and variance not
    assert (ours.params_binary + ours.params_float + ours.params_non_trainable - 2 * 16
            == larq_profile.weight_count())
    assert ours.macs_binary == larq_profile.op_count("mac", 1)
    assert ours.macs_float == larq_profile.op_count("mac", 32)
    # larq's "memory" folds BN the same way
    assert ours.model_size_bytes == math.ceil(larq_profile.memory / 8)


def test_nested_layers_are_counted_where_larq_sees_none():
    inputs = tf.keras.Input((6, 6, 8))
    x = BinaryConvModule(8, 3, structure="ebnas_retrain", name="module")(inputs)
    model = tf.keras.Model(inputs, x)
    cost = profile(model)
    assert cost.params_binary == 9 * 8 * 8
    assert cost.params_float == 16 + 16 + 8  # pre-BN, BN, PReLU
    assert cost.macs_binary == 9 * 8 * 8 * 36
    assert lq.models.ModelProfile(model).op_count("mac", 1) == 0  # why we walk nested layers
    assert [row.name for row in cost.layers if row.params_binary] == ["module/conv"]


def test_auxiliary_layers_are_excluded_by_default():
    inputs = tf.keras.Input((4,))
    main = tf.keras.layers.Dense(3, name="classifier")(inputs)
    aux = tf.keras.layers.Dense(3, name="auxiliary_classifier")(inputs)
    model = tf.keras.Model(inputs, [main, aux])
    assert profile(model).params_float == 15
    assert profile(model, exclude=()).params_float == 30


def test_table_and_dict():
    cost = profile(flat_model())
    data = cost.to_dict()
    assert set(data) >= {"params_binary", "params_float", "binary_macs", "float_macs", "ops",
                         "model_size_bytes"}
    table = cost.table()
    assert "bconv" in table and "QuantConv2D" in table and "OPs = FLOPs + BOPs/64" in table


@pytest.mark.parametrize("groups", [2])
def test_grouped_binary_conv(groups):
    inputs = tf.keras.Input((4, 4, 8))
    x = lq.layers.QuantConv2D(8, 3, padding="same", groups=groups, use_bias=False,
                              input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                              kernel_constraint="weight_clip")(inputs)
    cost = profile(tf.keras.Model(inputs, x))
    assert cost.params_binary == 9 * 8 // groups * 8
    assert cost.macs_binary == 9 * 8 // groups * 8 * 16
    assert np.isclose(cost.ops, cost.macs_binary / 64)


def test_op_profile_costs_the_retrained_op():
    conv = op_profile("binary", "bin_conv_3x3", channels=16, stride=1, input_size=8)
    assert (conv.params_binary, conv.macs_binary) == (9 * 16 * 16, 9 * 16 * 16 * 64)
    assert conv.ops == 9 * 16 * 16 * 64 / 64
    strided = op_profile("binary", "bin_conv_5x5", channels=16, stride=2, input_size=8)
    assert strided.macs_binary == 25 * 16 * 16 * 16
    assert op_profile("binary", "max_pool_3x3", channels=16, input_size=8).ops == 0
    # the supernet's real-weight module costs FLOPs, not BOPs
    search = op_profile("binary", "bin_conv_3x3", channels=16, input_size=8,
                        structure="ebnas_search")
    assert search.macs_binary == 0 and search.macs_float == 9 * 16 * 16 * 64
    sep = op_profile("darts", "sep_conv_3x3", channels=16, input_size=8)
    assert sep.macs_float == 2 * (9 * 16 + 16 * 16) * 64
