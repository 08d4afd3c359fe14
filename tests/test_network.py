"""The network builder against published tables, hand counts and bad input."""
import json

import numpy as np
import pytest
import tensorflow as tf

import ubnas_tf  # noqa: F401
from ubnas_tf import config as config_lib
from ubnas_tf.network.cost import profile
from ubnas_tf.data.info import DatasetInfo
from ubnas_tf.errors import UserError
from ubnas_tf.search_space.genotype import Genotype, published
from ubnas_tf.network.genotype_network import (DropPath, build_from_config, build_network, inference_model,
                              reduction_cells, set_drop_path_rate)
from ubnas_tf.network.transition import quicknet_transition, set_blur_kernels

# A binary genotype using every op of the binary space, strided dilated convs included.
BINARY_GENOTYPE = Genotype.from_dict({
    "space": "binary",
    "normal": [["bin_conv_3x3", 0], ["bin_dil_conv_3x3", 1], ["skip_connect", 0],
               ["bin_conv_5x5", 2], ["max_pool_3x3", 1], ["avg_pool_3x3", 3],
               ["bin_dil_conv_5x5", 4], ["skip_connect", 2]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [["bin_conv_3x3", 0], ["max_pool_3x3", 1], ["skip_connect", 0],
               ["bin_conv_5x5", 2], ["avg_pool_3x3", 1], ["bin_dil_conv_3x3", 0],
               ["bin_dil_conv_5x5", 3], ["skip_connect", 4]],
    "reduce_concat": [2, 3, 4, 5],
})


def pytorch_darts_parameters(genotype, C=36, layers=20, classes=10, in_channels=3):
    """Trainable parameters of quark0/darts `NetworkCIFAR` (auxiliary head excluded), counted
    from its module definitions the way `utils.count_parameters_in_MB` does; independent of
    our Keras code."""
    def op(name, c, stride):
        if name in ("max_pool_3x3", "avg_pool_3x3"):
            return 0
        if name == "skip_connect":  # Identity, or FactorizedReduce(c, c) on stride 2
            return 0 if stride == 1 else c * (c // 2) * 2 + 2 * c
        k = int(name[-1])
        dil_conv = c * k * k + c * c + 2 * c  # ReLU, depthwise, pointwise, BN
        return 2 * dil_conv if name.startswith("sep_conv") else dil_conv

    stem = 3 * C
    total = in_channels * stem * 9 + 2 * stem
    c_pp, c_p, c = stem, stem, C
    reduction_prev = False
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        c = c * 2 if reduction else c
        total += (c_pp * (c // 2) * 2 + 2 * c) if reduction_prev else (c_pp * c + 2 * c)
        total += c_p * c + 2 * c
        edges = genotype.reduce if reduction else genotype.normal
        total += sum(op(name, c, 2 if reduction and j < 2 else 1) for name, j in edges)
        c_pp, c_p = c_p, len(genotype.concat(reduction)) * c
        reduction_prev = reduction
    return total + c_p * classes + classes


@pytest.fixture(scope="module")
def darts_v2():
    return build_network(published("DARTS_V2"), input_shape=(32, 32, 3), num_classes=10,
                         cells=20, channels=36, auxiliary=True, drop_path=0.2)


def test_darts_v2_has_the_published_3_3m_parameters(darts_v2):
    # DARTS's own log of this model: "param size = 3.349342MB" (count_parameters_in_MB, which
    # leaves out the auxiliary head); the paper's table rounds it to 3.3M.
    cost = profile(darts_v2)
    assert pytorch_darts_parameters(published("DARTS_V2")) == 3_349_342
    assert cost.params_float == 3_349_342
    assert cost.params_binary == 0 and cost.macs_binary == 0
    # The auxiliary head is there (and DARTS's: 8x8 -> pool 2x2 -> conv 2x2), just not counted.
    aux = 576 * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * 10 + 10
    assert profile(darts_v2, exclude=()).params_float == 3_349_342 + aux
    assert [tuple(o.shape) for o in darts_v2.outputs] == [(None, 10), (None, 10)]
    first, second = reduction_cells(20)
    assert (first, second) == (6, 13)
    assert darts_v2.get_layer("cell5_out").output.shape[1:] == (32, 32, 144)
    assert darts_v2.get_layer("cell6_out").output.shape[1:] == (16, 16, 288)
    assert darts_v2.get_layer("cell19_out").output.shape[1:] == (8, 8, 576)
    assert darts_v2.get_layer("auxiliary_conv2").output.shape[1:] == (1, 1, 768)
    # Multiply-accumulates of convs and classifier (depthwise included), pinned as ours.
    assert cost.macs_float == 528_359_040


def test_pc_darts_has_the_published_3_6m_parameters():
    # PC-DARTS, Table 1: 3.6M.
    model = build_network(published("PC_DARTS"), input_shape=(32, 32, 3), num_classes=10,
                          cells=20, channels=36)
    assert pytorch_darts_parameters(published("PC_DARTS")) == 3_634_678
    cost = profile(model)
    assert cost.params_float == 3_634_678
    # Pinned as ours; an independent counter (hanser, configs of PC_DARTS_cifar) notes
    # "558M, 3.63M": the parameters agree exactly, the MACs within 0.3%.
    assert cost.macs_float == 556_670_592
    assert model.output.shape[1:] == (10,)


def five_cells_by_hand(C=16, size=32):
    """(C_prev_prev, C_prev, C, input side, output side) of the cells of a 5-cell network,
    [N, R, N, R, N] (DARTS: reductions at 5//3 = 1 and 10//3 = 3); every cell concatenates 4
    nodes, so a cell of C channels outputs 4 C."""
    stem = 3 * C
    return ((stem, stem, C, size, size),
            (stem, 4 * C, 2 * C, size, size // 2),
            (4 * C, 8 * C, 2 * C, size // 2, size // 2),
            (8 * C, 8 * C, 4 * C, size // 2, size // 4),
            (8 * C, 16 * C, 4 * C, size // 4, size // 4))


def binary_split_by_hand(C=16, in_channels=3, classes=10):
    """1-bit and 32-bit parameters of BINARY_GENOTYPE at cells=5, with the ebnas_retrain
    module: pre-BN(2 Cin) -> binary conv -> BN(2 C) -> PReLU(C)."""
    def module(c_in, c, k):
        return k * k * c_in * c, 2 * c_in + 2 * c + c

    stem = 3 * C
    binary, floating = 0, in_channels * stem * 9 + 2 * stem
    for c_pp, c_p, c, _, _ in five_cells_by_hand(C):
        # two 1x1 preprocess modules, then bin_conv_3x3, bin_conv_5x5, the two dilated convs
        for b, f in (module(c_pp, c, 1), module(c_p, c, 1), module(c, c, 3), module(c, c, 5),
                     module(c, c, 3), module(c, c, 5)):
            binary, floating = binary + b, floating + f
    return binary, floating + 16 * C * classes + classes


def binary_macs_by_hand(C=16, size=32):
    """Binary MACs (BOPs) of BINARY_GENOTYPE at cells=5 on size x size images: the two 1x1
    preprocess convs at the cell's input side (the first strided after a reduction), and the
    3x3, 5x5, dilated 3x3 and dilated 5x5 convs at its output side (stride-2 ones compute only
    the outputs they keep: the dilated one samples its input first)."""
    return sum(side_in ** 2 * (c_pp + c_p) * c + side_out ** 2 * (9 + 25 + 9 + 25) * c * c
               for c_pp, c_p, c, side_in, side_out in five_cells_by_hand(C, size))


def test_binary_network_parameter_split_matches_a_hand_count():
    model = build_network(BINARY_GENOTYPE, input_shape=(32, 32, 3), num_classes=10, cells=5,
                          channels=16)
    cost = profile(model)
    binary, floating = binary_split_by_hand()
    assert (cost.params_binary, cost.params_float) == (binary, floating)
    # BN moving statistics (mean and variance): the stem BN, and in each cell the pre-BN (on
    # C_in) and BN (on C) of six binary modules: the 1x1 preprocess of C_pp and of C_p, and
    # four convs of C. (3,136 at the 3 cells this test once used: the same formula.)
    moving = 2 * 3 * 16 + sum(2 * (c_pp + c) + 2 * (c_p + c) + 4 * 2 * (c + c)
                              for c_pp, c_p, c, _, _ in five_cells_by_hand())
    assert cost.params_non_trainable == moving
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == binary + floating
    # every 3x3/5x5/1x1 binary conv really is binary in and out (a BOP), the stem and the
    # classifier are float: stem 32*32*27*48, classifier 256*10.
    assert (cost.macs_binary, cost.macs_float) == (binary_macs_by_hand(),
                                                   32 * 32 * 27 * 48 + 256 * 10)
    # The stride-2 bin_dil_conv_3x3 of each reduction cell samples its input first, so it
    # costs out_H*out_W*9*C*C (at stride 1 and subsampled after, it would cost four times that).
    assert cost.ops == cost.macs_float + cost.macs_binary / 64
    assert model.output.shape[1:] == (10,)
    for index, (_, _, c, _, side) in enumerate(five_cells_by_hand()):
        assert model.get_layer(f"cell{index}_out").output.shape[1:] == (side, side, 4 * c)
    # a stride-2 dilated op lands on the reduced grid
    assert model.get_layer("cell1_edge5_bin_dil_conv_3x3").output.shape[1:] == (16, 16, 32)


def test_projection_shortcuts_cost_nothing_and_carry_real_values_across_cell_boundaries():
    from ubnas_tf.search_space import BinaryConvModule

    def model(**module):
        return build_network(BINARY_GENOTYPE, input_shape=(32, 32, 3), num_classes=10, cells=5,
                             channels=16, module={"preset": "ebnas_retrain", **module})

    plain, shortcut = model(), model(projection_shortcut=True)
    costs = [profile(m) for m in (plain, shortcut)]
    assert [(c.params_binary, c.params_float, c.macs_binary, c.macs_float) for c in costs] == \
        [binary_split_by_hand() + (binary_macs_by_hand(), 32 * 32 * 27 * 48 + 256 * 10)] * 2
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    for network in (plain, shortcut):
        # Every binary branch silenced (its BN's scale and offset 0): what still reaches the
        # classifier went through real-valued paths only.
        for layer in network.layers:
            if isinstance(layer, BinaryConvModule):
                layer.norm.gamma.assign(tf.zeros_like(layer.norm.gamma))
                layer.norm.beta.assign(tf.zeros_like(layer.norm.beta))
    first, second = plain(images, training=False).numpy()
    np.testing.assert_allclose(first, second)  # each cell boundary cut the image off
    first, second = shortcut(images, training=False).numpy()
    assert np.abs(first - second).max() > 1e-3  # the group means carried it through


def test_sizes_come_from_the_data_not_constants():
    info = DatasetInfo("x", 7, (20, 24, 2), 10, 10, tuple("abcdefg"), (0.0, 0.0), (1.0, 1.0))
    config = config_lib.load("train", overrides=["cells=5", "channels=8"])
    model = build_from_config(BINARY_GENOTYPE, info, config)
    assert model.input.shape[1:] == (20, 24, 2)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 7), (None, 7)]  # auxiliary head
    exported = inference_model(model)
    assert exported.output.shape[1:] == (7,)
    assert model.get_layer("cell0_pre0").structure.weights == "scaled_sign"  # ebnas_retrain


def test_genotype_from_another_space_is_refused():
    info = DatasetInfo("x", 10, (32, 32, 3), 10, 10, tuple("abcdefghij"), (0,) * 3, (1,) * 3)
    config = config_lib.load("train")  # space: binary
    with pytest.raises(UserError, match="--set space=darts"):
        build_from_config(published("DARTS_V2"), info, config)
    with pytest.raises(UserError, match="unknown op 'sep_conv_3x3' in search space 'binary'"):
        build_network(published("DARTS_V2"), input_shape=(32, 32, 3), num_classes=10,
                      space="binary")


@pytest.mark.parametrize("shape, auxiliary, message", [
    ((3, 3, 1), False, "too small for the network's two stride-2 reductions"),
    ((16, 16, 3), True, "auxiliary head needs at least 5x5"),
    ((None, None, 3), False, "one fixed size"),
])
def test_data_the_network_cannot_take_is_refused(shape, auxiliary, message):
    with pytest.raises(UserError, match=message):
        build_network(BINARY_GENOTYPE, input_shape=shape, num_classes=10, cells=5, channels=8,
                      auxiliary=auxiliary)


def _cell_layers(model, index):
    return sorted(layer.name for layer in model.layers if layer.name.startswith(f"cell{index}_"))


def test_quicknet_reduction_puts_float_transitions_where_the_reduction_cells_were():
    size = dict(input_shape=(28, 28, 1), num_classes=10, cells=5, channels=8)
    searched = build_network(BINARY_GENOTYPE, **size)
    template = build_network(BINARY_GENOTYPE, reduction="quicknet", **size)
    assert reduction_cells(5) == (1, 3)
    for index in (0, 2, 4):  # the normal cells are the genotype's, as before
        assert _cell_layers(template, index) == _cell_layers(searched, index)
    for index, (side, channels) in ((1, (14, 16)), (3, (7, 32))):
        assert _cell_layers(template, index) == sorted(
            f"cell{index}_transition_{part}" for part in ("relu", "pool", "blur", "conv", "bn"))
        assert template.get_layer(f"cell{index}_transition_bn").output.shape[1:] == (
            side, side, channels)
        blur = template.get_layer(f"cell{index}_transition_blur")
        np.testing.assert_allclose(blur.get_weights()[0][:, :, 0, 0],
                                   np.outer([1, 2, 1], [1, 2, 1]) / 16.0)
        assert not blur.trainable
    # The cell after a transition takes the full-resolution cell before it at stride 2 (its
    # 4 nodes x C channels) and the transition's C channels.
    assert template.get_layer("cell2_pre0").input.shape[1:] == (28, 28, 32)
    assert template.get_layer("cell2_pre1").input.shape[1:] == (14, 14, 16)
    # Float MACs by hand: blur 9 x channels in x output pixels, 1x1 conv in x out x pixels
    # (cell 2 concatenates 4 nodes of 16 channels).
    rows = {row.name: row for row in profile(template).layers}
    assert rows["cell1_transition_blur"].macs_float == 9 * 32 * 14 * 14
    assert rows["cell1_transition_conv"].macs_float == 32 * 16 * 14 * 14
    assert rows["cell3_transition_blur"].macs_float == 9 * 64 * 7 * 7
    assert rows["cell3_transition_conv"].macs_float == 64 * 32 * 7 * 7
    assert rows["cell1_transition_conv"].macs_binary == 0


def test_the_quicknet_transition_is_relu_maxpool_blur_conv_bn():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 9, 3)).astype(np.float32)
    inputs = tf.keras.Input((9, 9, 3))
    y, blur = quicknet_transition(inputs, 4, "t")
    model = tf.keras.Model(inputs, y)
    set_blur_kernels([blur])
    kernel = rng.standard_normal((1, 1, 3, 4)).astype(np.float32)
    gamma, beta, mean = (rng.standard_normal(4).astype(np.float32) for _ in range(3))
    variance = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    model.get_layer("t_conv").set_weights([kernel])
    model.get_layer("t_bn").set_weights([gamma, beta, mean, variance])
    relu = np.maximum(x, 0)
    pooled = np.max([relu[:, i:i + 8, j:j + 8] for i in (0, 1) for j in (0, 1)], axis=0)  # 8x8
    # 'same' padding of 8 pixels for a 3x3 kernel at stride 2: 4 outputs, one zero row and
    # column after the image, none before.
    padded = np.pad(pooled, ((0, 0), (0, 1), (0, 1), (0, 0)))
    weights = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
    blurred = sum(weights[u, v] * padded[:, u:u + 8:2, v:v + 8:2]
                  for u in range(3) for v in range(3))
    conv = blurred @ kernel[0, 0]
    expected = (conv - mean) / np.sqrt(variance + 1e-5) * gamma + beta
    np.testing.assert_allclose(model(x, training=False), expected, rtol=1e-5, atol=1e-5)


def test_an_unknown_reduction_is_refused_naming_the_choices():
    info = DatasetInfo("x", 10, (28, 28, 1), 10, 10, tuple("abcdefghij"), (0.0,), (1.0,))
    config = config_lib.load("train", overrides=["cells=5", "channels=8", "reduction=cells"])
    with pytest.raises(UserError, match="reduction must be one of searched, quicknet, got 'cells'"):
        build_from_config(BINARY_GENOTYPE, info, config)


def test_drop_path_drops_whole_examples_and_is_not_a_weight():
    layer = DropPath(0.5)
    model = tf.keras.Sequential([tf.keras.Input((2, 2, 3)), layer])
    x = tf.ones((400, 2, 2, 3))
    assert np.array_equal(model(x, training=True), x)  # rate starts at 0
    set_drop_path_rate(model, 1.0)
    assert float(layer.rate.numpy()) == 0.5
    y = model(x, training=True).numpy()
    per_example = y.reshape(400, -1)
    assert set(np.unique(per_example)) <= {0.0, 2.0}  # kept examples scaled by 1 / (1 - p)
    assert np.all(per_example.min(1) == per_example.max(1))  # all or nothing per example
    assert 120 < (per_example[:, 0] == 0).sum() < 280
    assert np.array_equal(model(x, training=False), x)
    graph = tf.function(lambda images, training: layer(images, training=training))
    assert (graph(x, tf.constant(True)).numpy().reshape(400, -1)[:, 0] == 0).any()
    assert np.array_equal(graph(x, tf.constant(False)), x)
    assert model.weights == []
    assert DropPath.from_config(layer.get_config()).max_rate == 0.5


def test_network_round_trips_through_h5(tmp_path):
    model = build_network(BINARY_GENOTYPE, input_shape=(12, 12, 1), num_classes=3, cells=5,
                          channels=4)
    path = tmp_path / "net.h5"
    model.save(path)
    again = tf.keras.models.load_model(path, compile=False)
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 1)).astype(np.float32)
    np.testing.assert_allclose(again(x).numpy(), model(x).numpy(), atol=1e-5)
    assert profile(again).to_dict() == profile(model).to_dict()
    assert json.loads(again.to_json())["config"]["name"] == "network"
