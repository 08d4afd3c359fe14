"""One-shot evaluation of block networks (search/oneshot.py, tools/rank_blocks.py)."""
import json

import numpy as np
import pytest
import tensorflow as tf

from test_block_search import BLOCKS, FILTERS, INFO, PRIMITIVES, _config, _layers_by_name
from ubnas_tf.data import load_dataset
from ubnas_tf.errors import UserError
from ubnas_tf.network import baselines
from ubnas_tf.search import oneshot
from ubnas_tf.search.block_architect import BlockCostModel
from ubnas_tf.search.block_run import run_block_search
from ubnas_tf.search.block_supernet import BlockSupernet


def _ranker(batches=()):
    supernet = BlockSupernet(INFO, filters=FILTERS, blocks=BLOCKS, primitives=PRIMITIVES)
    supernet.build_variables(tf.fill([3, len(PRIMITIVES)], 1.0 / len(PRIMITIVES)))
    cost_model = BlockCostModel(INFO, filters=FILTERS, blocks=BLOCKS, primitives=PRIMITIVES)
    return oneshot.OneShotRanker(supernet, cost_model, {}, list(batches))


@pytest.mark.parametrize("ops", [["bin_conv_3x3"] * 3,
                                 ["avg_pool_3x3", "bin_dil_conv_5x5", "skip_connect"]])
def test_single_path_is_the_quicknet_of_those_blocks_with_the_supernets_weights(ops):
    tf.keras.utils.set_random_seed(2)
    ranker = _ranker()
    network = baselines.quicknet(INFO, filters=FILTERS, blocks=BLOCKS, ops=ops)
    by_name = _layers_by_name(ranker.supernet)
    for layer in network.layers:
        if layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
    images = tf.random.stateless_normal([6, 12, 12, 1], seed=[3, 4])
    # Batch statistics, as the ranking normalises (the moving ones came from the mixture).
    np.testing.assert_allclose(ranker.logits(ops, images), network(images, training=True),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="3 blocks"):
        ranker.logits(ops[:2], images)
    with pytest.raises(UserError, match="sep_conv_3x3"):
        ranker.logits(["sep_conv_3x3"] * 3, images)


def test_accuracy_is_the_share_of_correct_predictions_over_every_batch():
    tf.keras.utils.set_random_seed(3)
    ops = ["bin_conv_3x3", "max_pool_3x3", "bin_conv_5x5"]
    images = [tf.random.stateless_normal([n, 12, 12, 1], seed=[n, 0]) for n in (5, 3)]
    ranker = _ranker()
    predicted = [np.argmax(ranker.logits(ops, x), axis=-1) for x in images]
    # Labels right for the first 2 of 5 and the first 1 of 3 images: 3 of 8.
    labels = [np.where(np.arange(len(p)) < right, p, (p + 1) % 4).astype(np.int32)
              for p, right in zip(predicted, (2, 1))]
    ranker.batches = list(zip(images, map(tf.constant, labels)))
    ranker.images = 8
    assert ranker.accuracy(ops) == pytest.approx(3 / 8)


def _toy_costs(ops_per_block=3, blocks=3):
    """Blocks whose ops cost 0, 10, 20 ... on top of a fixed 100."""
    model = BlockCostModel.__new__(BlockCostModel)  # its costs set by hand, no network built
    model.costs = np.tile(10.0 * np.arange(ops_per_block), (blocks, 1))
    model.fixed, model.primitives = 100.0, tuple(f"op{i}" for i in range(ops_per_block))
    return model


def test_candidates_are_the_distinct_networks_in_the_window(monkeypatch):
    model = _toy_costs()
    # 130 +- 5%: the block costs must sum to 30: the 6 orders of (0, 10, 20) and (10, 10, 10).
    window = oneshot.draw_candidates(model, 100, target=130.0, tolerance=0.05)
    expected = {("op0", "op1", "op2"), ("op0", "op2", "op1"), ("op1", "op0", "op2"),
                ("op1", "op2", "op0"), ("op2", "op0", "op1"), ("op2", "op1", "op0"),
                ("op1", "op1", "op1")}
    assert len(window) == 7 and set(map(tuple, window)) == expected
    drawn = oneshot.draw_candidates(model, 3, target=130.0, tolerance=0.05, seed=1)
    assert len(set(map(tuple, drawn))) == 3 and set(map(tuple, drawn)) <= expected
    assert len(oneshot.draw_candidates(model, 100, target=None, tolerance=0.0)) == 27
    # A space too large to list: drawn at random, distinct, all in the window.
    monkeypatch.setattr(oneshot, "ENUMERATE_UP_TO", 0)
    sampled = oneshot.draw_candidates(model, 5, target=130.0, tolerance=0.05, seed=2)
    assert len(set(map(tuple, sampled))) == 5 and set(map(tuple, sampled)) <= expected
    with pytest.raises(UserError, match="only 7 distinct networks"):
        oneshot.draw_candidates(model, 8, target=130.0, tolerance=0.05, max_tries=2000)


def test_search_half_batches_are_the_architecture_half_once_in_order():
    data = load_dataset("demo", max_examples=128, seed=0)
    first = list(data.search_half_batches(50, half="architecture", seed=0))
    again = list(data.search_half_batches(50, half="architecture", seed=0))
    arch = data.search_split_indices(0.5, seed=0)[1]
    assert sum(len(labels) for _, labels in first) == len(arch)
    for (x, y), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    weight = list(data.search_half_batches(500, half="weight", seed=0, max_examples=10))
    assert len(weight) == 1 and len(weight[0][1]) == 10
    with pytest.raises(UserError, match="half"):
        data.search_half_batches(50, half="test")


@pytest.fixture(scope="module")
def block_search(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blocks")
    run_block_search(_config(epochs=1, **{"ops_budget.target": "null"}), dataset="demo",
                     output_dir=folder, print_fn=lambda *args: None)
    return folder


def test_rank_blocks_restores_the_supernet_and_writes_the_ranking_best_first(block_search,
                                                                             tmp_path):
    ranker = oneshot.OneShotRanker.from_search_dir(block_search)
    checkpoint = tf.train.latest_checkpoint(str(block_search / "checkpoints"))
    kernel = [name for name, _ in tf.train.list_variables(checkpoint)
              if name.startswith("supernet/head_layers") and "kernel" in name]
    assert len(kernel) == 1
    np.testing.assert_array_equal(ranker.supernet.head_layers[2].kernel.numpy(),
                                  tf.train.load_variable(checkpoint, kernel[0]))
    networks = [["bin_conv_3x3", "skip_connect"], ["avg_pool_3x3", "bin_conv_5x5"],
                ["max_pool_3x3", "max_pool_3x3"]]
    record = oneshot.rank_blocks(block_search, tmp_path / "r", networks=networks,
                                 print_fn=lambda *args: None)
    assert json.loads((tmp_path / "r" / oneshot.RANKING_NAME).read_text()) == record
    scores = {tuple(e["block_ops"]): e["oneshot_top1"] for e in record["ranking"]}
    assert set(scores) == set(map(tuple, networks))
    for network in networks:
        assert scores[tuple(network)] == pytest.approx(ranker.accuracy(network), abs=1e-6)
    assert [e["oneshot_top1"] for e in record["ranking"]] == sorted(scores.values(),
                                                                    reverse=True)
    assert all(e["ops"] == ranker.network_ops(e["block_ops"]) for e in record["ranking"])
    # The architecture half of 128 examples, less the validation hold-out, cut in two.
    assert record["images"] == ranker.images == \
        load_dataset("demo", max_examples=128, seed=0).search_split_sizes(0.5)[1]
    drawn = oneshot.rank_blocks(block_search, tmp_path / "d", candidates=4, seed=1,
                                print_fn=lambda *args: None)
    assert len(drawn["ranking"]) == 4 and drawn["drawn"] == {"count": 4, "seed": 1}


def test_cli_refuses_bad_input_with_one_line(block_search, tool, tmp_path):
    result = tool("tools/rank_blocks.py", "--search_dir", str(tmp_path), "--output_dir",
                  str(tmp_path / "o"))
    assert result.returncode == 2 and "not a block search" in result.stderr
    (tmp_path / "n.json").write_text('[["sep_conv_3x3", "skip_connect"]]')
    result = tool("tools/rank_blocks.py", "--search_dir", str(block_search), "--output_dir",
                  str(tmp_path / "o"), "--networks", str(tmp_path / "n.json"))
    assert result.returncode == 2 and "sep_conv_3x3" in result.stderr
    assert not (tmp_path / "o").exists()
    (tmp_path / "bad.json").write_text('{"ops": 1}')
    result = tool("tools/rank_blocks.py", "--search_dir", str(block_search), "--output_dir",
                  str(tmp_path / "o"), "--networks", str(tmp_path / "bad.json"))
    assert result.returncode == 2 and "lists of op names" in result.stderr
