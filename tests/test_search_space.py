"""The op library: shapes, the residual module against its formula, structures, errors, .h5."""
import numpy as np
import pytest
import tensorflow as tf

import larq as lq
from conftest import assert_reloads_in_fresh_process
from ubnas_tf.errors import UserError
from ubnas_tf.search_space import PRESETS, SPACES, BinaryConvModule, ModuleStructure, get_space
from ubnas_tf.search_space import binary, darts
from ubnas_tf.search_space.layers import BatchStatsNorm

RNG = np.random.default_rng(0)


def test_binary_vocabulary_is_ebnas():
    assert binary.PRIMITIVES == (
        "skip_connect", "max_pool_3x3", "avg_pool_3x3", "bin_conv_3x3", "bin_conv_5x5",
        "bin_dil_conv_3x3", "bin_dil_conv_5x5",
    )
    assert "none" in binary.OPS and "none" not in binary.PRIMITIVES
    assert darts.PRIMITIVES == (
        "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
        "dil_conv_3x3", "dil_conv_5x5",
    )


@pytest.mark.parametrize("space_name", sorted(SPACES))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7])
def test_every_op_keeps_channels_and_halves_on_stride_2(space_name, stride, size):
    space = get_space(space_name)
    x = tf.constant(RNG.normal(size=(2, size, size, 8)), tf.float32)
    out = -(-size // stride)
    for structure in (space.search_module, space.network_module):
        for op in space.ops:
            y = space.build_op(op, 8, stride, structure)(x, training=True)
            assert y.shape == (2, out, out, 8), (op, structure)


def _sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def _conv_same_pad_one(x, kernel, dilation):
    """Reference 'same' conv of sign(x) padded with +1, stride 1 (numpy)."""
    k = kernel.shape[0]
    reach = (k - 1) * dilation
    before = reach // 2
    padded = np.pad(_sign(x), [(0, 0), (before, reach - before), (before, reach - before), (0, 0)],
                    constant_values=1.0)
    n, h, w, _ = x.shape
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            patch = padded[:, i * dilation:i * dilation + h, j * dilation:j * dilation + w, :]
            out += np.einsum("nhwc,cd->nhwd", patch, kernel[i, j])
    return out


def _batch_norm(y):
    mean = y.mean(axis=(0, 1, 2))
    var = y.var(axis=(0, 1, 2))
    return (y - mean) / np.sqrt(var + 1e-5)


@pytest.mark.parametrize("kernel_size,dilation", [(3, 1), (5, 1), (3, 2), (5, 2)])
@pytest.mark.parametrize("stride", [1, 2])
def test_search_module_is_x_plus_bn_conv_sign_x(kernel_size, dilation, stride):
    """ebnas_search: y = shortcut(x) + BN(Conv(sign(x))), shortcut AvgPool(2) on stride 2."""
    x = RNG.normal(size=(3, 8, 8, 4)).astype(np.float32)
    module = BinaryConvModule(4, kernel_size, dilation, stride, structure="ebnas_search")
    y = module(x, training=True).numpy()
    kernel = module.conv.kernel.numpy()
    body = _conv_same_pad_one(x, kernel, dilation)
    if stride == 1:
        expected = x + _batch_norm(body)
    else:
        if dilation > 1:
            # The dilated conv read at even pixels (the module samples its input first).
            normalized = _batch_norm(body[:, ::2, ::2, :])
        else:
            # TF 'same' for stride 2 on 8 pixels pads k-2 pixels: (k-2)//2 before, the rest after.
            before, after = (kernel_size - 2) // 2, (kernel_size - 2) - (kernel_size - 2) // 2
            padded = np.pad(_sign(x), [(0, 0), (before, after), (before, after), (0, 0)],
                            constant_values=1.0)
            normalized = _batch_norm(tf.nn.conv2d(padded, kernel, 2, "VALID").numpy())
        pooled = x.reshape(3, 4, 2, 4, 2, 4).mean(axis=(2, 4))
        expected = pooled + normalized
    np.testing.assert_allclose(y, expected, atol=1e-4)


def test_retrain_structure_wiring():
    module = BinaryConvModule(8, 3, structure="ebnas_retrain")
    module(tf.zeros([1, 6, 6, 8]), training=False)
    assert isinstance(module.pre_norm, tf.keras.layers.BatchNormalization)
    assert isinstance(module.norm, tf.keras.layers.BatchNormalization)
    assert isinstance(module.activation, tf.keras.layers.PReLU)
    assert isinstance(module.conv.kernel_quantizer, lq.quantizers.MagnitudeAwareSign)
    assert isinstance(module.conv.kernel_constraint, lq.constraints.WeightClip)
    assert module.conv.pad_values == 1.0
    search = BinaryConvModule(8, 3, structure="ebnas_search")
    search(tf.zeros([1, 6, 6, 8]))
    assert search.pre_norm is None and search.activation is None
    assert search.conv.kernel_quantizer is None
    assert isinstance(search.norm, BatchStatsNorm) and not search.norm.weights


def test_binary_kernel_is_plus_minus_scale_per_output_channel():
    module = BinaryConvModule(6, 3, structure="ebnas_retrain")
    module(tf.zeros([1, 5, 5, 6]))
    kernel = module.conv.kernel_quantizer(tf.convert_to_tensor(module.conv.kernel)).numpy()
    for channel in range(6):
        assert len(np.unique(np.abs(kernel[..., channel]).round(6))) == 1


def test_structure_from_dict_overrides_preset_and_rejects_unknown_keys():
    s = ModuleStructure.from_config({"preset": "ebnas_retrain", "activation": "relu"})
    assert s.activation == "relu" and s.pre_bn and s.weights == "scaled_sign"
    with pytest.raises(UserError, match=r"unknown module key\(s\) \['colour'\]"):
        ModuleStructure.from_config({"colour": "red"})
    with pytest.raises(UserError, match="module.weights='ternary' is not valid"):
        ModuleStructure.from_config({"weights": "ternary"})
    with pytest.raises(UserError, match="unknown module preset 'fast'"):
        ModuleStructure.from_config("fast")
    assert set(PRESETS) >= {"ebnas_search", "ebnas_retrain", "bireal"}


def test_no_shortcut_module_changes_channels():
    module = BinaryConvModule(12, 1, strides=2, structure={"shortcut": False})
    assert module(tf.zeros([2, 8, 8, 5])).shape == (2, 4, 4, 12)
    with pytest.raises(ValueError, match="as many input as output channels"):
        BinaryConvModule(12, 3)(tf.zeros([1, 4, 4, 5]))


@pytest.mark.parametrize("inputs,channels,stride", [(24, 8, 1), (24, 16, 2), (12, 8, 1)])
def test_projection_shortcut_adds_the_group_means_of_the_input(inputs, channels, stride):
    """projection_shortcut: the cell-input projection is y = BN(Conv1x1(sign(x))) + the mean of
    each group of input channels (AvgPool(2) first on stride 2); a channel split between two
    groups counts in each by its share (12 -> 8: output 0 = (x0 + x0 + x1) / 3)."""
    from ubnas_tf.search_space.module import channel_group_mean

    x = RNG.normal(size=(3, 8, 8, inputs)).astype(np.float32)
    plain = BinaryConvModule(channels, 1, strides=stride, structure={"shortcut": False})
    projection = binary.preprocess(channels, stride == 2,
                                   ModuleStructure(projection_shortcut=True), name="pre")
    plain(x), projection(x)  # built
    projection.conv.kernel.assign(plain.conv.kernel)
    pooled = x if stride == 1 else x.reshape(3, 4, 2, 4, 2, inputs).mean(axis=(2, 4))
    # Hand-made weights: share of input channel i in output channel j, where output j covers
    # the input interval [j * inputs / channels, (j + 1) * inputs / channels).
    share = np.zeros((inputs, channels))
    for j in range(channels):
        low, high = j * inputs / channels, (j + 1) * inputs / channels
        for i in range(inputs):
            share[i, j] = max(0.0, min(high, i + 1) - max(low, i))
    means = pooled @ (share / share.sum(axis=0))
    np.testing.assert_allclose(channel_group_mean(tf.constant(pooled), channels), means,
                               atol=1e-6)
    y = projection(x, training=True).numpy()
    np.testing.assert_allclose(y, plain(x, training=True).numpy() + means, atol=1e-5)
    # Without the flag the projection is the plain binary conv, as in DARTS and EBNAS.
    default = binary.preprocess(channels, stride == 2, ModuleStructure(), name="pre")
    default(x)
    default.conv.kernel.assign(plain.conv.kernel)
    np.testing.assert_allclose(default(x, training=True), plain(x, training=True), atol=1e-6)


def test_unknown_op_and_space_name_the_fix():
    with pytest.raises(UserError, match=r"unknown op 'bin_conv_7x7'.*did you mean.*bin_conv_3x3"):
        get_space("binary").build_op("bin_conv_7x7", 8, 1)
    with pytest.raises(UserError, match="unknown search space 'ternary': use one of binary, darts"):
        get_space("ternary")


def test_model_of_every_op_reloads_from_h5_with_only_import_ubnas_tf(tmp_path, tool):
    inputs = tf.keras.Input((8, 8, 8))
    outputs = []
    # Every binary op at both strides; the float space's layer classes at stride 2.
    ops = [("binary", op, stride) for op in binary.OPS for stride in (1, 2)]
    ops += [("darts", op, 2) for op in ("sep_conv_3x3", "dil_conv_5x5", "skip_connect")]
    for space_name, op, stride in ops:
        y = get_space(space_name).build_op(op, 8, stride)(inputs)
        outputs.append(tf.keras.layers.GlobalAveragePooling2D()(y))
    model = tf.keras.Model(inputs, tf.keras.layers.Concatenate()(outputs))
    x = RNG.normal(size=(2, 8, 8, 8)).astype(np.float32)
    model(x, training=True)  # move BN statistics so the reload check is not trivial
    model.save(tmp_path / "ops.h5")
    assert_reloads_in_fresh_process(tool, tmp_path / "ops.h5", x, model.predict(x, verbose=0))


@pytest.mark.parametrize("n", [1, 2, 3, 6])  # 5, 8, 11, 20 cells
def test_reductions_sit_at_one_and_two_thirds_as_in_darts(n):
    """3n+2 cells: n normal cells, a reduction, n normal, a reduction, n normal (DARTS's
    layout: [2, 5] for its 8-cell search, [6, 13] for its 20-cell network)."""
    from ubnas_tf.search_space import reduction_cells

    cells = 3 * n + 2
    layout = ["N"] * n + ["R"] + ["N"] * n + ["R"] + ["N"] * n
    assert reduction_cells(cells) == tuple(i for i, kind in enumerate(layout) if kind == "R")
    assert {8: (2, 5), 20: (6, 13)}.get(cells, reduction_cells(cells)) == reduction_cells(cells)


def test_every_count_from_five_keeps_balanced_stages_and_smaller_ones_are_refused():
    from ubnas_tf.network.genotype_network import NetworkSpec
    from ubnas_tf.search.ops_budget import NetworkCostModel
    from ubnas_tf.search.supernet import SupernetConfig
    from ubnas_tf.search_space import reduction_cells

    for cells in range(5, 41):
        first, second = reduction_cells(cells)
        stages = (first, second - first - 1, cells - second - 1)  # normal cells per stage
        assert min(stages) >= 1 and max(stages) - min(stages) <= 1, (cells, stages)
        assert (first, second) == (cells // 3, 2 * cells // 3)  # DARTS's rule itself
    # The supernet follows the same rule (it builds no layer for this).
    plan = SupernetConfig(num_classes=10, input_shape=(8, 8, 1), channels=8, cells=8).cell_plan()
    assert [index for index, (reduction, _) in enumerate(plan) if reduction] == [2, 5]
    for cells in (1, 3, 4):
        for build in (lambda: reduction_cells(cells), lambda: NetworkSpec(cells=cells),
                      lambda: SupernetConfig(num_classes=10, input_shape=(8, 8, 1), cells=cells),
                      lambda: NetworkCostModel("binary", primitives=("skip_connect",), nodes=2,
                                               multiplier=2, cells=cells, channels=8,
                                               input_shape=(8, 8, 1), num_classes=10)):
            with pytest.raises(UserError, match="set cells to 5 or more"):
                build()
