"""Hand-designed baselines: pinned sizes, the float version of a genotype, bad input."""
import numpy as np
import pytest
import tensorflow as tf

import ubnas_tf  # noqa: F401
from ubnas_tf.network import baselines
from ubnas_tf import config as config_lib
from ubnas_tf.network.cost import profile
from ubnas_tf.data.info import DatasetInfo
from ubnas_tf.errors import UserError
from ubnas_tf.network.genotype_network import build_network
from ubnas_tf.search_space import BinaryConvModule

from test_network import BINARY_GENOTYPE, binary_split_by_hand

CIFAR = DatasetInfo("cifar-like", 10, (32, 32, 3), 10, 10, tuple("abcdefghij"), (0,) * 3, (1,) * 3)


def test_bireal_by_hand():
    model = baselines.bireal(CIFAR, width=16, blocks=(2, 2))
    cost = profile(model)
    # binary: 2 + 1 3x3 convs at 16->16, one 16->32 stride 2, one 32->32
    assert cost.params_binary == 9 * 16 * 16 * 2 + 9 * 16 * 32 + 9 * 32 * 32
    # float: stem conv + BN, a BN per binary conv, downsample 1x1 conv + BN, classifier
    assert cost.params_float == (27 * 16 + 32) + (32 * 2 + 64 * 2) + (16 * 32 + 64) + (32 * 10 + 10)
    assert model.output.shape[1:] == (10,)
    assert model.get_layer("stage1_block0_add").output.shape[1:] == (16, 16, 32)
    assert all(row.macs_float == 0 for row in cost.layers if "bconv" in row.name)
    # every binary conv is the op the genotypes use, with Bi-Real's structure
    module = model.get_layer("stage0_block1_bconv")
    assert module.structure.weights == "scaled_sign" and module.structure.shortcut


def test_quicknet_by_hand():
    model = baselines.quicknet(CIFAR, filters=(16, 32), blocks=(1, 1))
    cost = profile(model)
    assert cost.params_binary == 9 * 16 * 16 + 9 * 32 * 32
    stem = 27 * 4 + 8 + 9 * 4 + 4 * 16 + 32  # conv, BN, depthwise, (BN without affine), 1x1, BN
    transition = 16 * 32 + 64  # the blur pool is frozen
    assert cost.params_float == stem + 32 + transition + 64 + (32 * 10 + 10)
    blur = model.get_layer("section1_block0_transition_blur")
    assert not blur.trainable
    np.testing.assert_allclose(blur.get_weights()[0][:, :, 0, 0],
                               np.outer([1, 2, 1], [1, 2, 1]) / 16.0)
    # 32 -> max pool 2 (stride 1) 31 -> blur stride 2 -> 16
    assert model.get_layer("section1_block0_add").output.shape[1:] == (16, 16, 32)


def _randomized(model, seed=0):
    """`model` with random weights (BN statistics positive), the frozen blur kept."""
    rng = np.random.default_rng(seed)
    model.set_weights([value if "blur" in weight.name else
                       (rng.uniform(0.5, 1.5, value.shape) if "variance" in weight.name
                        else rng.normal(0.0, 0.5, value.shape)).astype(np.float32)
                       for weight, value in zip(model.weights, model.get_weights())])
    return model


def test_quicknet_with_its_own_block_as_ops_computes_quicknet():
    """The binary space's bin_conv_3x3 under the `quicknet` module is QuickNet's block: a
    network of it at every block is QuickNet, weight for weight."""
    info = DatasetInfo("x", 4, (12, 12, 1), 10, 10, tuple("abcd"), (0.0,), (1.0,))
    quicknet = _randomized(baselines.quicknet(info, filters=(8, 16), blocks=(1, 2)))
    as_ops = baselines.quicknet(info, filters=(8, 16), blocks=(1, 2), ops=["bin_conv_3x3"] * 3)
    as_ops.set_weights(quicknet.get_weights())
    x = np.random.default_rng(1).normal(size=(4, 12, 12, 1)).astype(np.float32)
    for training in (False, True):
        np.testing.assert_allclose(as_ops(x, training=training).numpy(),
                                   quicknet(x, training=training).numpy(), atol=1e-5)


def test_quicknet_ops_cost_their_binary_macs_by_hand():
    ops = ["bin_conv_5x5", "bin_dil_conv_3x3", "avg_pool_3x3", "skip_connect", "max_pool_3x3",
           "bin_dil_conv_5x5"]
    model = baselines.quicknet(CIFAR, filters=(8, 16, 32), blocks=(2, 2, 2), ops=ops)
    # Blocks at 32x32x8, 32x32x8, 16x16x16 (two parameter-free), 8x8x32, 8x8x32; a dilated
    # conv has the MACs of its kernel size.
    macs = 32 * 32 * (25 + 9) * 8 * 8 + 8 * 8 * 25 * 32 * 32
    assert profile(model).macs_binary == macs
    assert profile(model).params_binary == (25 + 9) * 8 * 8 + 25 * 32 * 32
    assert model.get_layer("section1_block0_avg_pool_3x3").pool_size == (3, 3)
    module = model.get_layer("section2_block1_bin_dil_conv_5x5")
    assert module.structure.conv_activation == "relu" and module.conv.dilation_rate == (2, 2)


@pytest.mark.parametrize("ops, message", [
    (["bin_conv_3x3"], "a list of 2 op names"),
    ("bin_conv_3x3", "a list of 2 op names"),
    (["bin_conv_3x3", "none"], "'none' is not a block op"),
    (["bin_conv_3x3", "sep_conv_3x3"], "'sep_conv_3x3' is not a block op; use skip_connect"),
])
def test_bad_quicknet_ops_are_one_line_errors(ops, message):
    with pytest.raises(UserError, match=message):
        baselines.quicknet(CIFAR, filters=(8, 16), blocks=(1, 1), ops=ops)


def test_float_version_keeps_the_genotype_and_makes_every_conv_float():
    space = baselines.float_space("binary")
    model = build_network(BINARY_GENOTYPE, input_shape=(32, 32, 3), num_classes=10, cells=5,
                          channels=16, space=space)
    cost = profile(model)
    binary, floating = binary_split_by_hand()
    assert cost.params_binary == 0 and cost.macs_binary == 0
    assert cost.params_float == binary + floating  # same shapes, every weight 32-bit
    module = model.get_layer("cell0_edge0_bin_conv_3x3")
    assert isinstance(module, baselines.FloatConvModule)
    # A float Keras conv (ours runs dilated ones directly), with no quantizer.
    assert isinstance(module.conv, tf.keras.layers.Conv2D)
    assert not hasattr(module.conv, "input_quantizer")
    assert baselines.float_space("darts").name == "darts"


def test_baselines_reload_from_h5(tmp_path):
    info = DatasetInfo("x", 4, (12, 12, 1), 10, 10, tuple("abcd"), (0.0,), (1.0,))
    config = config_lib.load("train",
                             overrides=["cells=5", "channels=4", "auxiliary.enabled=false"])
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 1)).astype(np.float32)
    for model in (baselines.bireal(info, width=8, blocks=(1, 1)),
                  baselines.quicknet(info, filters=(8, 16), blocks=(1, 1)),
                  baselines.build_baseline("quicknet", info, {"baselines": {"quicknet": {
                      "filters": [8, 16], "blocks": [1, 1],
                      "ops": ["bin_dil_conv_5x5", "avg_pool_3x3"]}}}),
                  baselines.build_baseline("float", info, config, BINARY_GENOTYPE)):
        path = tmp_path / f"{model.name}.h5"
        model.save(path)
        again = tf.keras.models.load_model(path, compile=False)
        np.testing.assert_allclose(again(x).numpy(), model(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda info: baselines.bireal(info, blocks=(1, 1, 1, 1)), "too small for bireal"),
    (lambda info: baselines.quicknet(info, filters=(8, 16, 32, 64)), "too small for quicknet"),
    (lambda info: baselines.quicknet(info, filters=(6, 12), blocks=(1, 1)), "multiple of 4"),
    (lambda info: baselines.build_baseline("float", info, config_lib.load("train")),
     "pass --genotype"),
    (lambda info: baselines.build_baseline("resnet", info, config_lib.load("train")),
     "unknown model 'resnet'"),
])
def test_bad_input(call, message):
    tiny = DatasetInfo("tiny", 10, (6, 6, 1), 10, 10, tuple("abcdefghij"), (0.0,), (1.0,))
    with pytest.raises(UserError, match=message):
        call(tiny)


def _reference_conv(x, kernel, stride, dilation, pad_value):
    """The module's conv computed from its definition with tf.nn.conv2d on explicitly padded
    input (VALID), independently of the Keras layers.

    Undilated: Keras 'same' (the form LCE fuses): `max((ceil(H/s) - 1) s + k - H, 0)` padded
    rows, the odd one after. Dilated and strided (Keras has no such conv): DARTS's/PyTorch's
    Conv2d(padding=d(k-1)/2, dilation=d, stride=s), i.e. every s-th output of the stride-1 conv.
    """
    k, size = kernel.shape[0], x.shape[1]
    reach = (k - 1) * dilation
    if dilation == 1:
        total = max((-(-size // stride) - 1) * stride + k - size, 0)
        before, conv_stride = total // 2, stride
    else:
        total, before, conv_stride = reach, reach // 2, 1
    padded = np.pad(x, [(0, 0), (before, total - before), (before, total - before), (0, 0)],
                    constant_values=pad_value)
    y = tf.nn.conv2d(padded, kernel, conv_stride, "VALID", dilations=dilation).numpy()
    return y if conv_stride == stride else y[:, ::stride, ::stride, :]


def _batch_norm(y):
    return (y - y.mean(axis=(0, 1, 2))) / np.sqrt(y.var(axis=(0, 1, 2)) + 1e-5)


@pytest.mark.parametrize("module_class", [BinaryConvModule, baselines.FloatConvModule],
                         ids=["binary", "float"])
@pytest.mark.parametrize("kernel_size,dilation", [(3, 1), (5, 1), (3, 2), (5, 2)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7])
def test_binary_module_and_float_twin_compute_the_reference_conv(module_class, kernel_size,
                                                                  dilation, stride, size):
    """BN(conv(q(x))) of both modules against the reference convolution: q = sign and +1
    padding for the binary module, identity and zero padding for its float twin, the same
    dilation and stride (the float twin once sampled the input *and* dilated: dilation 4)."""
    rng = np.random.default_rng(kernel_size * 100 + dilation * 10 + stride + size)
    x = rng.normal(size=(3, size, size, 4)).astype(np.float32)
    structure = {"preset": "ebnas_search", "shortcut": False}  # conv + BN (batch statistics)
    module = module_class(4, kernel_size, dilation, stride, structure=structure)
    y = module(x, training=True).numpy()
    kernel = module.conv.kernel.numpy()
    binary = module_class is BinaryConvModule
    source = np.where(x >= 0, 1.0, -1.0).astype(np.float32) if binary else x
    expected = _batch_norm(_reference_conv(source, kernel, stride, dilation, 1.0 if binary else 0.0))
    assert y.shape == expected.shape == (3, -(-size // stride), -(-size // stride), 4)
    np.testing.assert_allclose(y, expected, atol=1e-4)
