"""ImageNet scale (issue 17): the stride-8 stems, their wiring, and the published counts.

The counts are checked against `network_imagenet_reference`, a count of quark0/darts's and
sscckk/EBNAS's PyTorch `NetworkImageNet` read off their module definitions (independent of our
Keras code), and against the papers' tables.
"""
import random
import types
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

import ubnas_tf  # noqa: F401
from ubnas_tf import config as config_lib
from ubnas_tf.errors import UserError
from ubnas_tf.network.cost import profile
from ubnas_tf.network.genotype_network import build_from_config, build_network
from ubnas_tf.search.config import check_config
from ubnas_tf.search.ops_budget import NetworkCostModel
from ubnas_tf.search.supernet import ArchWeights, Supernet, SupernetConfig, edge_count
from ubnas_tf.search_space import get_space
from ubnas_tf.search_space.genotype import Genotype, published
from ubnas_tf.search_space.stems import AUTO_IMAGENET_MIN_SIDE, Stem, resolve_stem

EBNAS_PAPER_OPS = 1.72e8      # EBNAS, ImageNet table (README of sscckk/EBNAS): OPs(1e8) 1.72
DARTS_PAPER_PARAMS = 4.7e6    # DARTS, Table 3 (ImageNet, mobile setting): 4.7M params
DARTS_PAPER_MACS = 574e6      # ... and 574M multiply-adds


# --- the reference count -------------------------------------------------------------------

def _conv(c_in, c_out, k, out_side, groups=1):
    return c_out * (c_in // groups) * k * k, c_out * (c_in // groups) * k * k * out_side ** 2


def ebnas_parts(groups=1):
    """Costs of sscckk/EBNAS operations_eval.py / model.py modules: params, flops, bops.

    BinReLUConvBN / BinDilConv: BN(C) -> sign -> myConv2d(groups) -> BN(C) -> PReLU(C);
    ReLUConvBN (1x1 preprocess): the same, ungrouped; FactorizedReduce: BN, two 1x1 convs to
    C/2 each, BN, PReLU. myConv2d holds real latent weights that the forward binarises: every
    conv of a cell is binary (BOPs); stems and classifier are float."""
    def binary(c_in, c_out, k, out_side, g=1):
        weights, macs = _conv(c_in, c_out, k, out_side, g)
        return Counter(params=2 * c_in + weights + 3 * c_out, bops=macs)

    def op(name, c, stride, out_side):
        if name in ("max_pool_3x3", "avg_pool_3x3") or (name == "skip_connect" and stride == 1):
            return Counter()
        if name == "skip_connect":
            return binary(c, c, 1, out_side)
        return binary(c, c, int(name[-1]), out_side, groups)

    def stem(C, side):  # NetworkImageNet: stem0 conv(3, C/2, s2), conv(C/2, C, s2, groups 4);
        parts = Counter()  # stem1 conv(C, C, s2, groups 2); each + BN (+ ReLU)
        for c_in, c_out, g, out in ((3, C // 2, 1, side // 2), (C // 2, C, 4, side // 4),
                                    (C, C, 2, side // 8)):
            weights, macs = _conv(c_in, c_out, 3, out, g)
            parts += Counter(params=weights + 2 * c_out, flops=macs)
        return parts

    return types.SimpleNamespace(op=op, stem=stem,
                                 preprocess=lambda c_in, c, side: binary(c_in, c, 1, side),
                                 reduce_preprocess=lambda c_in, c, side: binary(c_in, c, 1, side))


def darts_parts():
    """Costs of quark0/darts operations.py / model.py modules (all float)."""
    def op(name, c, stride, out_side):
        if name in ("max_pool_3x3", "avg_pool_3x3") or (name == "skip_connect" and stride == 1):
            return Counter()
        if name == "skip_connect":  # FactorizedReduce(c, c): two 1x1 convs to c/2, BN
            return Counter(params=c * c + 2 * c, flops=c * c * out_side ** 2)
        k = int(name[-1])  # DilConv: ReLU, depthwise kxk, pointwise 1x1, BN; SepConv: twice
        one = Counter(params=c * k * k + c * c + 2 * c, flops=(c * k * k + c * c) * out_side ** 2)
        return one + one if name.startswith("sep_conv") else one

    def stem(C, side):  # stem0: conv(3, C/2, s2)+BN+ReLU+conv(C/2, C, s2)+BN; stem1: conv(C, C)
        parts = Counter()
        for c_in, c_out, out in ((3, C // 2, side // 2), (C // 2, C, side // 4), (C, C, side // 8)):
            weights, macs = _conv(c_in, c_out, 3, out)
            parts += Counter(params=weights + 2 * c_out, flops=macs)
        return parts

    def preprocess(c_in, c, side):  # ReLUConvBN 1x1, or FactorizedReduce: the same counts
        return Counter(params=c_in * c + 2 * c, flops=c_in * c * side ** 2)

    return types.SimpleNamespace(op=op, stem=stem, preprocess=preprocess,
                                 reduce_preprocess=preprocess)


def network_imagenet_reference(genotype, parts, *, C, layers, side=224, classes=1000):
    """params / flops / bops of PyTorch `NetworkImageNet(C, classes, layers, genotype)` (the
    auxiliary head left out, as `utils.count_parameters_in_MB`): stride-8 stems, the first
    cell with reduction_prev=True, reductions at layers//3 and 2*layers//3."""
    total = parts.stem(C, side)
    at = side // 8  # s1's side; s0 has twice it before the first cell
    c_pp = c_p = c_curr = C
    reduction_prev = True
    for index in range(layers):
        reduction = index in (layers // 3, 2 * layers // 3)
        c_curr *= 2 if reduction else 1
        total += (parts.reduce_preprocess if reduction_prev else parts.preprocess)(c_pp, c_curr, at)
        total += parts.preprocess(c_p, c_curr, at)
        out = at // 2 if reduction else at
        for name, source in genotype.cell(reduction):
            total += parts.op(name, c_curr, 2 if reduction and source < 2 else 1, out)
        c_pp, c_p = c_p, len(genotype.concat(reduction)) * c_curr
        reduction_prev, at = reduction, out
    return total + Counter(params=c_p * classes + classes, flops=c_p * classes)


# --- the published networks ---------------------------------------------------------------

@pytest.fixture(scope="module")
def ebnas_profile():
    config = config_lib.load("train", files=[config_lib.CONFIG_DIR / "train_imagenet.yaml"])
    info = types.SimpleNamespace(input_shape=(224, 224, 3), num_classes=1000)
    return profile(build_from_config(published("EBNAS"), info, config))


@pytest.mark.slow  # builds the 14-cell, 72M-parameter network (~1 min on 2 cores)
def test_ebnas_imagenet_network_counts_as_its_code(ebnas_profile):
    """configs/train_imagenet.yaml + configs/genotypes/EBNAS.json: EBNAS's NetworkImageNet
    (14 cells, C=96, grouped float stems, ungrouped binary convs) parameter for parameter and
    MAC for MAC."""
    reference = network_imagenet_reference(published("EBNAS"), ebnas_parts(), C=96, layers=14)
    assert ebnas_profile.params == reference["params"] == 71_870_680
    assert ebnas_profile.macs_float == reference["flops"] == 82_821_120
    assert ebnas_profile.macs_binary == reference["bops"] == 7_174_766_592
    # OPs = FLOPs + BOPs/64 = 1.949e8: 13% above the paper's 1.72e8 (see the next test).
    assert ebnas_profile.ops == pytest.approx(1.9492685e8, rel=1e-6)


def test_no_grouping_of_ebnas_binary_convs_gives_the_papers_ops():
    """Why the paper's 1.72e8 is not reproduced: EBNAS's operations_eval.py groups its binary
    convs by 14, which divides none of the ImageNet network's 96/192/384 channels (PyTorch
    refuses such a conv), and no grouping that divides them lands within 5% of 1.72e8: the
    count falls from 1.95e8 (1 group) to 1.45e8 (2 groups). The choice that reproduces the
    published figure is not in the released code."""
    genotype = published("EBNAS")
    ops = {}
    for groups in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 96):
        count = network_imagenet_reference(genotype, ebnas_parts(groups), C=96, layers=14)
        ops[groups] = count["flops"] + count["bops"] / 64
    assert all(abs(value / EBNAS_PAPER_OPS - 1) > 0.05 for value in ops.values()), ops
    assert ops[1] > EBNAS_PAPER_OPS > ops[2]


@pytest.mark.slow
def test_ebnas_imagenet_binary_convs_all_fuse_in_lce(ebnas_profile):
    """Every binary conv of the shipped ImageNet config has input channels a multiple of 32
    (LCE's condition for grouped and ungrouped LceBconv2d alike) and one group."""
    config = config_lib.load("train", files=[config_lib.CONFIG_DIR / "train_imagenet.yaml"])
    assert (config["module"], config["channels"]) == ("ebnas_retrain", 96)
    binary_rows = [row for row in ebnas_profile.layers if row.macs_binary]
    assert binary_rows and all(row.input_bits == row.weight_bits == 1 for row in binary_rows)
    for row in binary_rows:
        assert row.output_shape[-1] in (96, 192, 384)
        assert row.params_binary % 32 == 0


@pytest.mark.slow  # builds DARTS's 14-cell ImageNet network (~30 s)
def test_darts_v2_at_imagenet_size_has_the_published_parameters():
    """DARTS_V2 in the float space, 14 cells, C=48, 224x224: 4,718,752 parameters (DARTS's
    4.7M) and 529.9M multiply-adds, both as the reference count of DARTS's NetworkImageNet.
    The paper's 574M is 7.7% more than any conv + fc count: quark0/darts issue #46 reports 523M
    (conv and fc layers) and 544.6M (ptflops, which adds BN and ReLU) for the same network."""
    genotype = published("DARTS_V2")
    model = build_network(genotype, input_shape=(224, 224, 3), num_classes=1000, cells=14,
                          channels=48, stem="imagenet")
    cost = profile(model)
    reference = network_imagenet_reference(genotype, darts_parts(), C=48, layers=14)
    assert cost.params == reference["params"] == 4_718_752
    assert round(cost.params / 1e5) / 10 == DARTS_PAPER_PARAMS / 1e6
    assert cost.macs_float == reference["flops"] and cost.macs_binary == 0
    assert 0.90 < cost.macs_float / DARTS_PAPER_MACS < 0.93


# --- the stems and their wiring -----------------------------------------------------------

@pytest.mark.parametrize("kind", ["imagenet", "ebnas_imagenet"])
def test_stem_matches_the_published_layer_sequence(kind):
    """DARTS: s0 = BN(conv(ReLU(BN(conv(x))))), s1 = BN(conv(ReLU(s0))); EBNAS: ReLUs close each
    stem and the two later convs have 4 and 2 groups. Recomputed from tf.nn ops (BN in
    inference mode with random moving statistics)."""
    rng = np.random.default_rng(0)
    stem = Stem(kind, 16, name="stem")
    x = tf.constant(rng.normal(size=(2, 40, 40, 3)), tf.float32)
    stem(x)
    for layer in stem.sequence0 + stem.sequence1:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 2, w.shape) for w in layer.get_weights()])
    s0, s1 = stem(x, training=False)

    def bn(layer, h):
        gamma, beta, mean, var = layer.get_weights()
        return (h - mean) / np.sqrt(var + layer.epsilon) * gamma + beta

    layers = {layer.name: layer for layer in stem.sequence0 + stem.sequence1}
    groups = (4, 2) if kind == "ebnas_imagenet" else (1, 1)

    def conv(name, h, g):
        kernel = layers[name].kernel
        return tf.concat([tf.nn.conv2d(hi, ki, 2, "SAME") for hi, ki in
                          zip(tf.split(h, g, axis=-1), tf.split(kernel, g, axis=-1))], axis=-1)

    h = tf.nn.relu(bn(layers["stem0_bn1"], conv("stem0_conv1", x, 1)))
    ref0 = bn(layers["stem0_bn2"], conv("stem0_conv2", h, groups[0]))
    if kind == "ebnas_imagenet":
        ref0 = tf.nn.relu(ref0)
        ref1 = tf.nn.relu(bn(layers["stem1_bn"], conv("stem1_conv", ref0, groups[1])))
    else:
        ref1 = bn(layers["stem1_bn"], conv("stem1_conv", tf.nn.relu(ref0), 1))
    assert s0.shape == (2, 10, 10, 16) and s1.shape == (2, 5, 5, 16)
    np.testing.assert_allclose(s0, ref0, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s1, ref1, rtol=1e-4, atol=1e-4)


def test_auto_stem_threshold_and_bad_kinds():
    assert AUTO_IMAGENET_MIN_SIDE == 128
    assert resolve_stem("auto", (127, 300, 3)) == "cifar"
    assert resolve_stem("auto", (128, 128, 3)) == "imagenet"
    assert resolve_stem("auto", (32, 32, 3)) == "cifar"
    assert resolve_stem("cifar", (224, 224, 3)) == "cifar"
    with pytest.raises(UserError, match="stem 'resnet' is not valid"):
        resolve_stem("resnet", (224, 224, 3))
    with pytest.raises(UserError, match="config key 'stem'"):
        check_config(config_lib.load("search", overrides=["stem=resnet"]))


def test_first_cell_after_the_large_stem_halves_s0():
    """NetworkImageNet: s0 (stem0, 1/4) reaches the first cell at twice s1's (stem1, 1/8)
    resolution; the cell's preprocess0 is strided, and the cells run at 1/8, 1/16, 1/32."""
    model = build_network(published("EBNAS"), input_shape=(64, 64, 3), num_classes=10, cells=5,
                          channels=16, stem="imagenet")
    stem = model.get_layer("stem")
    assert [tuple(s.shape) for s in stem.output] == [(None, 16, 16, 16), (None, 8, 8, 16)]
    assert model.get_layer("cell0_pre0").strides == 2
    assert model.get_layer("cell0_pre0").input.shape[1] == 16
    assert model.get_layer("cell0_pre1").strides == 1
    sides = [model.get_layer(f"cell{i}_out").output.shape[1] for i in range(5)]
    assert sides == [8, 4, 4, 2, 2]  # reductions at cells 1 and 3
    cifar = build_network(published("EBNAS"), input_shape=(64, 64, 3), num_classes=10, cells=5,
                          channels=16, stem="cifar")
    assert cifar.get_layer("cell0_pre0").strides == 1
    assert cifar.get_layer("cell0_out").output.shape[1] == 64


def test_large_stem_refuses_images_it_cannot_take():
    with pytest.raises(UserError, match="stem.s stride 8"):
        build_network(published("EBNAS"), input_shape=(24, 24, 3), num_classes=10, cells=5,
                      channels=16, stem="imagenet")
    with pytest.raises(UserError, match="at least 16 channels"):
        build_network(published("EBNAS"), input_shape=(64, 64, 3), num_classes=10, cells=5,
                      channels=8, stem="imagenet")
    with pytest.raises(UserError, match="auxiliary head"):
        build_network(published("EBNAS"), input_shape=(128, 128, 3), num_classes=10, cells=5,
                      channels=16, stem="imagenet", auxiliary=True)


def test_supernet_uses_pc_darts_imagenet_stem():
    """model_search_imagenet.py: stems to stem_multiplier * C channels, stride 8, and the first
    cell built with reduction_prev=True."""
    config = SupernetConfig(num_classes=10, input_shape=(64, 64, 3), channels=8, cells=5,
                            nodes=2, multiplier=2, stem="imagenet", partial_normal=2,
                            partial_reduce=2)
    supernet = Supernet(config)
    edges, ops = edge_count(2), len(config.primitives)
    weights = ArchWeights(tf.fill([edges, ops], 1 / ops), tf.ones([edges]),
                          tf.fill([edges, ops], 1 / ops), tf.ones([edges]))
    supernet.build_variables(weights)
    s0, s1 = supernet.stem(tf.zeros([1, 64, 64, 3]))
    assert s0.shape == (1, 16, 16, 24) and s1.shape == (1, 8, 8, 24)
    assert supernet.search_cells[0].preprocess0.strides == 2
    kernels = {v.name.split("/")[-2]: v.shape for v in supernet.trainable_variables
               if "stem" in v.name}
    assert kernels == {"stem0_conv1": (3, 3, 3, 12), "stem0_conv2": (3, 3, 12, 24),
                       "stem1_conv": (3, 3, 24, 24)}
    assert supernet(tf.zeros([2, 64, 64, 3]), weights).shape == (2, 10)
    assert SupernetConfig(num_classes=10, input_shape=(32, 32, 3)).stem == "cifar"


@pytest.mark.slow
def test_ops_budget_costs_the_cells_behind_the_large_stem():
    """The cost model of an OPs-aware search prices every edge at the size the cells see behind
    the stride-8 stem and agrees with the built network, stems included."""
    primitives = get_space("binary").primitives
    model = NetworkCostModel("binary", primitives=primitives, nodes=2, multiplier=2, cells=5,
                             channels=16, input_shape=(128, 128, 3), num_classes=10)
    assert model.stem == "imagenet"
    conv3 = primitives.index("bin_conv_3x3")
    # Summed over the three normal cells (0, 2, 4): C=16 at 16x16, 32 at 8x8, 64 at 4x4, each
    # H * W * C * C * 9 / 64 BOPs-as-OPs = 16 * 16 * 16 * 16 * 9 / 64.
    assert model.costs["normal"][0, conv3] == 3 * 16 * 16 * 16 * 16 * 9 / 64
    rng = random.Random(0)
    genes = tuple((rng.choice(primitives), source) for node in range(2)
                  for source in rng.sample(range(node + 2), 2))
    genotype = Genotype(normal=genes, normal_concat=(2, 3), reduce=genes, reduce_concat=(2, 3),
                        space="binary")
    built = profile(model._build(genotype))
    stem_flops = sum(row.macs_float for row in built.layers if row.name.startswith("stem"))
    # DARTS's NetworkImageNet stem to C=16: 3->8 at 64x64, 8->16 at 32x32, 16->16 at 16x16
    assert stem_flops == 64 * 64 * 8 * 27 + 32 * 32 * 16 * 8 * 9 + 16 * 16 * 16 * 16 * 9
    assert model.genotype_ops(genotype) == pytest.approx(built.ops, rel=1e-9)


def test_low_memory_gradients_behind_the_large_stem_equal_the_plain_tape():
    """`low_memory` recomputes cells from the stem's two outputs (s0 and s1 differ behind the
    large stem): its gradients are the plain tape's, stem weights included (eager, 3 cells)."""
    from ubnas_tf.search.recompute import checkpointed_gradients
    from ubnas_tf.search.run import build_search_steps
    from ubnas_tf.search.steps import cross_entropy

    config = config_lib.load("search", overrides=[
        "channels=8", "cells=5", "nodes=2", "multiplier=2", "stem=imagenet",
        "partial_channels.normal=2", "partial_channels.reduce=2"])
    tf.keras.utils.set_random_seed(0)
    steps = build_search_steps(config, types.SimpleNamespace(input_shape=(64, 64, 3),
                                                             num_classes=5))
    rng = np.random.default_rng(0)
    images = tf.constant(rng.standard_normal((2, 64, 64, 3)), tf.float32)
    labels = tf.constant([1, 3])
    sources = steps.supernet.trainable_variables + steps.architect.parameters
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(sources)
        plain_loss, _ = cross_entropy(labels,
                                      steps.supernet(images, steps.architect.arch_weights()))
    plain = tape.gradient(plain_loss, sources)
    checkpointed, loss, _ = checkpointed_gradients(
        steps.supernet, images, sources, steps.architect.arch_weights,
        lambda logits: cross_entropy(labels, logits))
    assert float(loss) == pytest.approx(float(plain_loss), rel=1e-6)
    assert any("stem0_conv1" in v.name for v in sources)
    for variable, a, b in zip(sources, plain, checkpointed):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=variable.name)
