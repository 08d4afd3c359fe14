"""Channels per sampled op (search/channels.py): K from a target, the minimum, the supernet."""
import types

import pytest

from ubnas_tf import config as config_lib
from ubnas_tf.errors import UserError
from ubnas_tf.search.channels import cell_channels, per_op_channels, resolve_partial
from ubnas_tf.search.config import check_config, supernet_config


def _config(*overrides):
    return config_lib.load("search", overrides=list(overrides))


def test_cell_channels_follow_the_darts_plan():
    # 8 cells, reductions at 8 // 3 = 2 and 16 // 3 = 5, each doubling C.
    assert cell_channels(16, 8) == {"normal": [16, 16, 32, 32, 64, 64], "reduce": [32, 64]}
    assert cell_channels(8, 5) == {"normal": [8, 16, 32], "reduce": [16, 32]}  # reductions 1, 3


@pytest.mark.parametrize("overrides, partial, seen", [
    # EBNAS's supernet (C=16): 4 channels per op in the first normal cell needs K=16/4=4, and 8
    # in the first reduction cell (C=32) needs K=4, EBNAS's own reduction K.
    ([], {"normal": 4, "reduce": 4},
     {"normal": [4, 4, 8, 8, 16, 16], "reduce": [8, 16]}),
    # The demo's C=8: K=2 (4 of 8, and 8 of 16), where the earlier fixed K=8 gave 1 channel.
    (["cells=5", "channels=8"], {"normal": 2, "reduce": 2},
     {"normal": [4, 8, 16], "reduce": [8, 16]}),
    # A target above the smallest cell: K=1, the ops see every channel (plain DARTS).
    (["cells=5", "channels=8", "partial_channels.per_op.normal=16"], {"normal": 1, "reduce": 2},
     {"normal": [8, 16, 32], "reduce": [8, 16]}),
    # C=12: K must divide 12, 24, 48; 12 / 3 = 4 channels.
    (["channels=12"], {"normal": 3, "reduce": 3}, {"normal": [4, 4, 8, 8, 16, 16],
                                                  "reduce": [8, 16]}),
    # An explicit K wins over the target (--set partial_channels.normal=K, as before).
    (["partial_channels.normal=2", "partial_channels.reduce=8"], {"normal": 2, "reduce": 8},
     {"normal": [8, 8, 16, 16, 32, 32], "reduce": [4, 8]}),
])
def test_k_from_channels_per_op(overrides, partial, seen):
    config = _config(*overrides)
    assert resolve_partial(config) == partial
    assert per_op_channels(config) == seen
    check_config(config)
    info = types.SimpleNamespace(input_shape=(8, 8, 1), num_classes=3)
    net = supernet_config(config, info)
    assert (net.partial_normal, net.partial_reduce) == (partial["normal"], partial["reduce"])


def test_the_supernets_ops_see_the_resolved_channels():
    from ubnas_tf.search.supernet import Supernet

    config = _config("cells=5", "channels=8", "nodes=1", "multiplier=1", "stem_multiplier=1")
    net = Supernet(supernet_config(config, types.SimpleNamespace(input_shape=(8, 8, 1),
                                                                 num_classes=3)))
    seen = [(cell.reduction, {edge.partial_channels for edge in cell.edges})
            for cell in net.search_cells]
    # [N, R, N, R, N] with C = 8, 16, 16, 32, 32. Normal cells (8, 16, 32) get the largest K
    # that leaves 4 channels in the smallest: K=2; reductions (16, 32) the largest that leaves 8:
    # K=2. So each op sees C/2: 4, then 8, 8, 16, 16.
    assert seen == [(False, {4}), (True, {8}), (False, {8}), (True, {16}), (False, {16})]
    assert per_op_channels(config) == {"normal": [4, 8, 16], "reduce": [8, 16]}


def test_below_the_minimum_is_refused_with_the_fix():
    with pytest.raises(UserError) as error:
        check_config(_config("cells=5", "channels=8", "partial_channels.normal=8"))
    message = str(error.value)
    assert "1 channel(s) per op" in message and "min_per_op=4" in message
    assert "partial_channels.normal=2 or null" in message  # the K that meets the minimum
    assert "\n" not in message
    # Lowering the minimum is the other way out (what an ablation of K does).
    check_config(_config("cells=5", "channels=8", "partial_channels.normal=8",
                         "partial_channels.min_per_op=1"))
    with pytest.raises(UserError, match="not a multiple of partial_channels.normal=3"):
        check_config(_config("partial_channels.normal=3"))
    with pytest.raises(UserError, match="partial_channels.per_op.reduce"):
        check_config(_config("partial_channels.per_op.reduce=0"))
