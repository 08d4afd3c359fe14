"""The retrained network of a genotype, and every baseline, convert with all binary convs fused.

Sizes are small (28x28x1 inputs as the shipped demo, a few cells or blocks) and the weights,
BN statistics and PReLU slopes random, so that the numbers below pin the structure: a change
in the network builders that adds, drops or unfuses a binary conv fails here.
"""
import types

import numpy as np
import pytest

from ubnas_tf.network import baselines
from ubnas_tf.export import convert_model, op_counts, unfused_binary_convs
from ubnas_tf.export.report import binary_convs, unsupported_ops
from ubnas_tf.export.verify import verify
from ubnas_tf.search_space.genotype import Genotype
from ubnas_tf.network.genotype_network import build_network
from test_convert_ops import randomize

pytestmark = pytest.mark.slow

INFO = types.SimpleNamespace(input_shape=(28, 28, 1), num_classes=10)
# Every op of the binary space, in the normal cell (stride 1) and on the reduction cell's
# stride-2 edges (inputs 0 and 1).
EVERY_OP = Genotype.from_dict({
    "space": "binary",
    "normal": [["bin_conv_3x3", 0], ["skip_connect", 1], ["bin_dil_conv_3x3", 0],
               ["bin_conv_5x5", 1], ["max_pool_3x3", 0], ["bin_dil_conv_5x5", 2],
               ["avg_pool_3x3", 1], ["bin_conv_3x3", 3]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [["bin_dil_conv_5x5", 0], ["bin_conv_3x3", 1], ["bin_dil_conv_3x3", 0],
               ["max_pool_3x3", 1], ["bin_conv_5x5", 0], ["skip_connect", 1],
               ["avg_pool_3x3", 0], ["bin_conv_3x3", 2]],
    "reduce_concat": [2, 3, 4, 5],
})
INPUTS = np.random.default_rng(3).standard_normal((16, 28, 28, 1)).astype(np.float32)


def network(space=None, reduction="searched", module=None):
    return build_network(EVERY_OP, input_shape=INFO.input_shape, num_classes=INFO.num_classes,
                         space=space, cells=5, channels=16, reduction=reduction, module=module)


# name -> (builder, binary convs, LceBconv2d, float CONV_2D, DEPTHWISE_CONV_2D)
CASES = {
    # 5 cells x (2 preprocess + 5 binary ops) = 35 binary convs; CONV_2D is the stem.
    "genotype": (network, 5 * 7, 5 * 7, 1, 0),
    # QuickNet's transitions at the 2 reductions: 3 normal cells x (2 preprocess + 5 binary
    # ops); CONV_2D: stem + 2 transitions; depthwise: 2 blur pools.
    "genotype_quicknet_reduction": (lambda: network(reduction="quicknet"), 3 * 7, 3 * 7, 3, 2),
    # Real-valued group-mean shortcuts on the 10 projections: reshapes and means, still fused.
    "genotype_projection_shortcut": (
        lambda: network(module={"preset": "ebnas_retrain", "projection_shortcut": True}),
        5 * 7, 5 * 7, 1, 0),
    # QuickNet's block (ReLU between the binary conv and its BN) as every binary module.
    "genotype_quicknet_block": (lambda: network(module="quicknet"), 5 * 7, 5 * 7, 1, 0),
    # 3 stages x 2 blocks; CONV_2D: stem + 2 downsampling shortcuts.
    "bireal": (lambda: baselines.bireal(INFO, width=16, blocks=(2, 2, 2)), 6, 6, 3, 0),
    # CONV_2D: stem, stem pointwise, 2 transitions; depthwise: stem + 2 blur pools.
    "quicknet": (lambda: baselines.quicknet(INFO, filters=(16, 32, 64), blocks=(2, 2, 2)),
                 6, 6, 4, 3),
    # QuickNet's template with other blocks of the binary space: 3 binary convs (5x5 and both
    # dilated), the rest pools and a skip.
    "quicknet_ops": (lambda: baselines.quicknet(
        INFO, filters=(16, 32, 64), blocks=(2, 2, 2),
        ops=["bin_conv_5x5", "bin_dil_conv_3x3", "avg_pool_3x3", "bin_dil_conv_5x5",
             "max_pool_3x3", "skip_connect"]), 3, 3, 4, 3),
    # The float version of the genotype: every binary conv is a float CONV_2D.
    "float": (lambda: network(baselines.float_space("binary")), 0, 0, 5 * 7 + 1, 0),
}


# Where binary convs read a tensor as it is (no BN before the sign), those that read the same
# one share its LceQuantize. QuickNet's block: the 10 projections read 5 tensors (the stem's,
# read by both projections of cell 0, and cells 0-3's outputs, each read by the next two
# cells); the 3 normal cells' 5 binary ops read 4 states (0, 1, 2, 3); the 2 reductions' read
# 3 states, state 0 twice over: as it is (5x5) and subsampled once for both dilated convs.
QUANTIZES = {"genotype_quicknet_block": 5 + 3 * 4 + 2 * (3 + 1)}
# Where ReLU zeros (or a binary conv's few distinct outputs) pass a BN to a sign, a whole
# region of a channel holds one value; the random BN of seed 0 puts one such value of
# cell4_pre1 at 1.1e-6, which float rounding signs differently in Keras and TFLite (a tie,
# not a conversion error: each op and each chain of ops matches on its own).
RANDOM_SEEDS = {"genotype_quicknet_block": 1}


@pytest.mark.parametrize("name", sorted(CASES))
def test_network_converts_with_every_binary_conv_fused(name):
    builder, binary, bconv, conv, depthwise = CASES[name]
    model = randomize(builder(), RANDOM_SEEDS.get(name, 0))
    tflite_bytes = convert_model(model)
    counts = op_counts(tflite_bytes)
    assert len(binary_convs(model)) == binary
    assert counts.get("LceBconv2d", 0) == bconv, counts
    assert counts.get("LceQuantize", 0) == QUANTIZES.get(name, bconv), counts
    assert counts.get("CONV_2D", 0) == conv, counts
    assert counts.get("DEPTHWISE_CONV_2D", 0) == depthwise, counts
    assert "LceDequantize" not in counts and unsupported_ops(counts) == []
    assert unfused_binary_convs(model, tflite_bytes) == []
    result = verify(model, tflite_bytes, INPUTS)
    assert result["passed"] and result["median_relative_diff"] <= 1e-5, result
