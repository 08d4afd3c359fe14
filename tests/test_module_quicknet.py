"""`module: quicknet`: QuickNet's block, x + BN(ReLU(Conv_b(sign(x)))), as a module of the space."""
import types

import numpy as np
import pytest
import tensorflow as tf

from test_baselines import _batch_norm, _reference_conv
from test_quantizers import gradient
from ubnas_tf.errors import UserError
from ubnas_tf.network import baselines
from ubnas_tf.search_space import BinaryConvModule, ModuleStructure

POINTS = np.concatenate([np.linspace(-2.0, 2.0, 401),
                         [0.0, 1.0, -1.0, 1.25, -1.25, 1.2501, -1.2501]]).astype(np.float32)


def _sign(x):
    return np.where(x >= 0, 1.0, -1.0).astype(np.float32)


def _randomize(bn, rng):
    channels = bn.gamma.shape[0]
    bn.gamma.assign(rng.normal(1, 0.5, channels))
    bn.beta.assign(rng.normal(0, 0.3, channels))
    bn.moving_mean.assign(rng.normal(0, 0.5, channels))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, channels))


@pytest.mark.parametrize("training", [False, True])
def test_the_preset_computes_the_residual_block_of_the_quicknet_baseline(training):
    """Given the kernel and BN of a block of `baselines.quicknet` (larq's QuantConv2D with
    QuickNet's settings), the module computes what that block computes."""
    rng = np.random.default_rng(0)
    net = baselines.quicknet(types.SimpleNamespace(input_shape=(8, 8, 3), num_classes=10),
                             filters=(16,), blocks=(2,))
    conv, bn = net.get_layer("section0_block1_bconv"), net.get_layer("section0_block1_bn")
    _randomize(bn, rng)
    x = rng.normal(size=(4, 8, 8, 16)).astype(np.float32)
    expected = x + bn(conv(x), training=training).numpy()
    module = BinaryConvModule(16, 3, structure="quicknet")
    module(x)
    module.conv.kernel.assign(conv.kernel)
    for ours, theirs in zip(module.norm.weights, bn.weights):
        ours.assign(theirs)
    np.testing.assert_allclose(module(x, training=training).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("module_class", [BinaryConvModule, baselines.FloatConvModule],
                         ids=["binary", "float"])
@pytest.mark.parametrize("stride", [1, 2])
def test_the_block_by_formula(module_class, stride):
    """x + BN(ReLU(conv(q(x), q(w)))), BN on batch statistics: q = sign with +1 padding for the
    binary module, identity with zero padding for its float twin (which keeps the ReLU); the
    shortcut is AvgPool(2) on stride 2."""
    rng = np.random.default_rng(stride)
    x = rng.normal(size=(3, 8, 8, 4)).astype(np.float32)
    module = module_class(4, 3, strides=stride, structure="quicknet")
    y = module(x, training=True).numpy()
    kernel = module.conv.kernel.numpy()
    binary = module_class is BinaryConvModule
    conv = _reference_conv(_sign(x) if binary else x, _sign(kernel) if binary else kernel,
                           stride, 1, 1.0 if binary else 0.0)
    shortcut = x if stride == 1 else x.reshape(3, 4, 2, 4, 2, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(y, shortcut + _batch_norm(np.maximum(conv, 0.0)), atol=1e-4)


@pytest.mark.parametrize("structure,window", [
    ("quicknet", 1.25),
    # Sign weights without QuickNet's clip keep larq's ste_sign (window 1).
    ({"preset": "ebnas_retrain", "weights": "sign"}, 1.0),
])
def test_sign_weights_pass_gradients_inside_the_weight_clip(structure, window):
    module = BinaryConvModule(4, 3, structure=structure)
    module(tf.zeros([1, 5, 5, 4]))
    forward, grad = gradient(module.conv.kernel_quantizer, POINTS)
    np.testing.assert_array_equal(forward, _sign(POINTS))
    np.testing.assert_array_equal(grad, (np.abs(POINTS) <= window).astype(np.float32))
    clipped = module.conv.kernel_constraint(tf.constant(POINTS)).numpy()
    np.testing.assert_array_equal(clipped, np.clip(POINTS, -window, window))


def test_quicknet_activations_pass_gradients_inside_1_25():
    module = BinaryConvModule(4, 3, structure="quicknet")
    module(tf.zeros([1, 5, 5, 4]))
    forward, grad = gradient(module.conv.input_quantizer, POINTS)
    np.testing.assert_array_equal(forward, _sign(POINTS))
    np.testing.assert_array_equal(grad, (np.abs(POINTS) <= 1.25).astype(np.float32))


def test_unknown_conv_activation_is_a_user_error():
    with pytest.raises(UserError, match="module.conv_activation='prelu'.*relu"):
        ModuleStructure(conv_activation="prelu")
