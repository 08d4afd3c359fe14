"""The block-level search: its supernet computes QuickNet's template, its cost model the OPs
of the retrained network, its regularizers the gradients of their formulas, and its run
writes blocks that tools/train.py retrains, resumes and refuses bad input."""
import functools
import json

import numpy as np
import pytest
import tensorflow as tf

from ubnas_tf import config as config_lib
from ubnas_tf.data import load_dataset
from ubnas_tf.data.info import DatasetInfo
from ubnas_tf.errors import UserError
from ubnas_tf.network import baselines
from ubnas_tf.network.cost import profile
from ubnas_tf.search.block_architect import (BlockArchitect, BlockCostModel, block_primitives,
                                             fit_block_ops)
from ubnas_tf.search.block_run import retrain_command, run_block_search, temperature
from ubnas_tf.search.block_supernet import BlockSupernet
from ubnas_tf.search.oneshot import rank_blocks
from ubnas_tf.search.steps import FusedAdam, SearchSteps

INFO = DatasetInfo("x", 4, (12, 12, 1), 10, 10, tuple("abcd"), (0.0,), (1.0,))
FILTERS, BLOCKS = (8, 16), (1, 2)
PRIMITIVES = block_primitives()


def _one_hot(ops):
    return tf.constant([[1.0 if p == op else 0.0 for p in PRIMITIVES] for op in ops])


def _layers_by_name(supernet):
    layers = [*supernet.stem_layers, *supernet.head_layers,
              *(layer for group in supernet.transitions.values() for layer in group),
              *(op for block in supernet.mixed_blocks for op in block.candidate_ops)]
    return {layer.name: layer for layer in layers}


def test_every_op_but_none_is_a_block_op_and_bad_primitives_are_refused():
    assert "none" not in PRIMITIVES and "bin_conv_3x3" in PRIMITIVES and len(PRIMITIVES) == 7
    for bad in (["none"], ["bin_conv_3x3", "bin_conv_3x3"], "bin_conv_3x3", [], ["sep_conv"]):
        with pytest.raises(UserError, match="primitives"):
            block_primitives(bad)


@pytest.mark.parametrize("ops", [["bin_conv_3x3"] * 3,
                                 ["avg_pool_3x3", "bin_dil_conv_5x5", "skip_connect"],
                                 ["bin_conv_5x5", "max_pool_3x3", "bin_dil_conv_3x3"]])
def test_supernet_with_one_hot_weights_computes_the_quicknet_of_those_blocks(ops):
    tf.keras.utils.set_random_seed(1)
    network = baselines.quicknet(INFO, filters=FILTERS, blocks=BLOCKS, ops=ops)
    supernet = BlockSupernet(INFO, filters=FILTERS, blocks=BLOCKS, primitives=PRIMITIVES)
    supernet.build_variables(_one_hot(ops))
    by_name = _layers_by_name(supernet)
    for layer in network.layers:
        if layer.weights:
            by_name[layer.name].set_weights(layer.get_weights())
    images = tf.random.stateless_normal([3, 12, 12, 1], seed=[0, 1])
    # Inference (moving statistics) and training (batch statistics) alike.
    for training in (False, True):
        np.testing.assert_allclose(supernet(images, _one_hot(ops), training=training),
                                   network(images, training=training), rtol=1e-5, atol=1e-5)


def test_mixed_block_is_the_weighted_sum_of_its_ops():
    supernet = BlockSupernet(INFO, filters=FILTERS, blocks=BLOCKS, primitives=PRIMITIVES)
    weights = tf.nn.softmax(tf.random.stateless_normal([3, len(PRIMITIVES)], seed=[2, 3]))
    supernet.build_variables(weights)
    block = supernet.mixed_blocks[1]
    x = tf.random.stateless_normal([2, 6, 6, 16], seed=[4, 5])
    expected = sum(float(weights[1, o]) * op(x, training=False)
                   for o, op in enumerate(block.candidate_ops))
    np.testing.assert_allclose(block(x, weights[1], training=False), expected, rtol=1e-5,
                               atol=1e-6)


@pytest.fixture(scope="module")
def cost_model():
    return BlockCostModel(INFO, filters=FILTERS, blocks=BLOCKS, primitives=PRIMITIVES)


@pytest.mark.parametrize("ops", [["bin_conv_3x3"] * 3,
                                 ["avg_pool_3x3", "bin_dil_conv_5x5", "skip_connect"],
                                 ["bin_conv_5x5", "max_pool_3x3", "bin_dil_conv_3x3"]])
def test_cost_model_gives_the_ops_of_the_network_retrained(cost_model, ops):
    network = baselines.quicknet(INFO, filters=FILTERS, blocks=BLOCKS, ops=ops)
    assert cost_model.network_ops(ops) == profile(network).ops
    # The expectation under one-hot weights is that network's OPs.
    assert float(cost_model.expected_ops(_one_hot(ops))) == pytest.approx(profile(network).ops)


def test_block_costs_by_hand(cost_model):
    # Block 0: 12x12x8; blocks 1-2: 16 channels at 6x6 (MaxPool(2, stride 1) gives 11, the
    # stride-2 blur 6). A binary 3x3 conv: 9 * C * C * H * W BOPs / 64, its BN folds away.
    column = {name: PRIMITIVES.index(name) for name in PRIMITIVES}
    for block, (channels, side) in enumerate([(8, 12), (16, 6), (16, 6)]):
        for name, taps in (("bin_conv_3x3", 9), ("bin_conv_5x5", 25), ("bin_dil_conv_3x3", 9),
                           ("bin_dil_conv_5x5", 25)):
            assert cost_model.costs[block, column[name]] == taps * channels ** 2 * side ** 2 / 64
        for name in ("skip_connect", "avg_pool_3x3", "max_pool_3x3"):
            assert cost_model.costs[block, column[name]] == 0
    low, high = cost_model.range()
    assert low == cost_model.fixed and high == cost_model.network_ops(["bin_conv_5x5"] * 3)


def test_fit_moves_the_argmax_into_the_window_at_the_least_weight_lost():
    # Three blocks, ops (cheap, mid, dear) costing 0, 10, 30; fixed 100; argmax all dear: 190.
    costs = np.array([[0.0, 10.0, 30.0]] * 3)
    weights = np.array([[0.1, 0.3, 0.6], [0.0, 0.45, 0.55], [0.2, 0.2, 0.6]])
    # Target 160 +- 5% = [152, 168]: dear -> mid (170) misses, though block 1's loses the
    # least per OP (0.10 / 20); dear -> cheap (160) lands, block 2's losing least (0.4).
    assert fit_block_ops([2, 2, 2], weights, costs, 100.0, 160.0, 0.05) == [2, 2, 0]
    # Target 150 +- 5% = [142.5, 157.5]: nothing lands from 190; the least per OP moved is
    # block 1's dear -> mid (0.10 / 20 against 0.3 / 20, 0.4 / 20 and 0.4 / 30 ...), to 170;
    # from there dear -> mid of block 0 (lost 0.3) or 2 (0.4) lands at 150: block 0's.
    assert fit_block_ops([2, 2, 2], weights, costs, 100.0, 150.0, 0.05) == [1, 1, 2]
    # Already inside: unchanged.
    assert fit_block_ops([2, 2, 2], weights, costs, 100.0, 190.0, 0.05) == [2, 2, 2]
    # Out of reach below: ends at the nearest network, all cheap.
    assert fit_block_ops([2, 2, 2], weights, costs, 100.0, 50.0, 0.05) == [0, 0, 0]


def test_regularizer_gradients_match_their_formulas(cost_model):
    architect = BlockArchitect(primitives=PRIMITIVES, block_count=3, cost_model=cost_model,
                               path_strength=1.5, target=30000.0, strength=2.0, seed=3,
                               init_scale=0.5)
    with tf.GradientTape() as tape:
        loss = architect.regularization(tf.constant(0.25))
    gradient = tape.gradient(loss, architect.alphas).numpy()
    p = tf.nn.softmax(architect.alphas).numpy().astype(np.float64)
    costs = cost_model.costs
    expected_ops = cost_model.fixed + (p * costs).sum()
    # d p_o / d alpha_k = p_o (delta_ok - p_k)
    jacobian = np.einsum("bo,ok->bok", p, np.eye(p.shape[1])) - np.einsum("bo,bk->bok", p, p)
    d_path = np.einsum("bo,bok->bk", 2.0 * (1.0 - p), jacobian)  # of -sum (1 - p)^2
    d_ops = np.einsum("bo,bok->bk", costs, jacobian)
    d_budget = 2.0 * 2.0 * np.log(expected_ops / 30000.0) / expected_ops * d_ops
    np.testing.assert_allclose(gradient, 0.25 * 1.5 * d_path + d_budget, rtol=1e-4, atol=1e-6)


def test_gumbel_weights_are_one_hot_samples_with_the_straight_through_gradient(cost_model):
    architect = BlockArchitect(primitives=PRIMITIVES, block_count=3, cost_model=cost_model,
                               op_weights="gumbel_hard", seed=4, init_scale=1.0)
    architect.temperature.assign(0.7)
    twin = tf.random.Generator.from_seed(5)  # the architect's noise: seed + 1
    scores = tf.random.stateless_normal([3, len(PRIMITIVES)], seed=[8, 9])
    with tf.GradientTape() as tape:
        weights = architect.arch_weights()
        loss = tf.reduce_sum(weights * scores)
    gradient = tape.gradient(loss, architect.alphas).numpy()
    uniform = twin.uniform([3, len(PRIMITIVES)], minval=1e-10, maxval=1.0).numpy()
    perturbed = architect.alphas.numpy() + -np.log(-np.log(uniform))
    # Forward: one op per block, argmax(alpha + g), weight 1.
    np.testing.assert_allclose(weights, np.eye(len(PRIMITIVES))[perturbed.argmax(axis=1)],
                               atol=1e-6)
    # Backward: d/d alpha of sum(softmax((alpha + g) / tau) * scores).
    soft = np.exp(perturbed / 0.7) / np.exp(perturbed / 0.7).sum(axis=1, keepdims=True)
    expected = soft * (scores.numpy() - (soft * scores.numpy()).sum(axis=1, keepdims=True)) / 0.7
    np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-6)


def test_gumbel_samples_follow_softmax_alpha(cost_model):
    architect = BlockArchitect(primitives=PRIMITIVES, block_count=1, cost_model=cost_model,
                               op_weights="gumbel_hard", seed=0)
    architect.alphas.assign([[1.0, 0.0, -1.0, 0.5, 0.0, 2.0, -0.5]])
    counts = sum(architect.arch_weights().numpy()[0] for _ in range(4000))
    # The Gumbel-max trick: P(o) = softmax(alpha)_o; 4,000 draws: std of a share <= 0.008.
    np.testing.assert_allclose(counts / 4000, architect.probabilities().numpy()[0], atol=0.03)


def test_temperature_is_annealed_linearly_over_the_searched_epochs():
    config = _config(epochs=10, op_weights="gumbel_hard")  # warm-up 0.5: epochs 0-4
    assert [temperature(config, e) for e in (0, 4, 5)] == [10.0, 10.0, 10.0]
    assert temperature(config, 7) == pytest.approx(10.0 + (0.1 - 10.0) * 2 / 4)
    assert temperature(config, 9) == pytest.approx(0.1)
    with pytest.raises(UserError, match="temperature.end"):
        run_block_search(_config(**{"temperature.end": 0}), dataset="demo",
                         output_dir="/nonexistent/never", print_fn=print)
    with pytest.raises(UserError, match="op_weights"):
        run_block_search(_config(op_weights="gumbel"), dataset="demo",
                         output_dir="/nonexistent/never", print_fn=print)


def test_weight_steps_leave_the_alphas_and_arch_steps_the_weights(cost_model):
    tf.keras.utils.set_random_seed(0)
    supernet = BlockSupernet(INFO, filters=FILTERS, blocks=BLOCKS, primitives=PRIMITIVES)
    architect = BlockArchitect(primitives=PRIMITIVES, block_count=3, cost_model=cost_model,
                               path_strength=1.0, target=30000.0)
    supernet.build_variables(architect.arch_weights())
    steps = SearchSteps(supernet, architect,
                        FusedAdam(supernet.trainable_variables, learning_rate=0.01),
                        FusedAdam(architect.parameters, learning_rate=0.01),
                        tf.distribute.get_strategy())
    images = tf.random.stateless_normal([8, 12, 12, 1], seed=[6, 7])
    labels = tf.constant([0, 1, 2, 3] * 2)
    alphas = architect.alphas.numpy()
    weights = [w.numpy() for w in supernet.trainable_variables]
    steps.weight_step(images, labels)
    np.testing.assert_array_equal(architect.alphas.numpy(), alphas)
    assert any(not np.array_equal(w.numpy(), before)
               for w, before in zip(supernet.trainable_variables, weights))
    weights = [w.numpy() for w in supernet.trainable_variables]
    steps.arch_step(images, labels, images, labels, tf.constant(1.0))
    assert not np.array_equal(architect.alphas.numpy(), alphas)
    for w, before in zip(supernet.trainable_variables, weights):
        np.testing.assert_array_equal(w.numpy(), before)


def _config(**sets):
    overrides = ["epochs=2", "max_examples=128", "batch_size=32", "template.filters=[8,16]",
                 "template.blocks=[1,1]", *(f"{k}={v}" for k, v in sets.items())]
    return config_lib.load("search_blocks", [], overrides)


def _log(folder):
    return [json.loads(line) for line in (folder / "search_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("op_weights", ["softmax", "gumbel_hard"])
def test_run_writes_blocks_that_train_builds_and_resumes_as_one_run(tmp_path, op_weights):
    quiet = lambda *args: None  # noqa: E731
    config = functools.partial(_config, op_weights=op_weights)
    blocks = run_block_search(config(), dataset="demo", output_dir=tmp_path / "a",
                              print_fn=quiet)
    assert len(blocks["ops"]) == 2 and blocks["filters"] == [8, 16]
    assert json.loads((tmp_path / "a" / "blocks.json").read_text()) == blocks
    log = _log(tmp_path / "a")
    assert [r["arch_updates"] for r in log] == [False, True]  # warm-up 0.5 of 2 epochs
    # The printed command's overrides build the QuickNet of those blocks with those OPs.
    overrides = [part.strip().strip('"') for part in
                 retrain_command(blocks, "demo").split("--set ")[1:]]
    train = config_lib.load("train", [], overrides)
    assert train["baselines"]["quicknet"]["ops"] == blocks["ops"]
    model = baselines.build_baseline("quicknet", load_dataset("demo").info, train)
    assert profile(model).ops == blocks["network_ops"]
    # Run again: nothing to do, the same blocks; one epoch then resumed to two: the same run.
    assert run_block_search(config(), dataset="demo", output_dir=tmp_path / "a",
                            print_fn=quiet) == blocks
    # (Architecture steps from the first epoch and the path term at full strength throughout:
    # the same schedule whether the run plans one epoch or two.)
    same = {"warmup_epochs": 0, "regularizers.ramp": 0}
    run_block_search(config(epochs=1, **same), dataset="demo", output_dir=tmp_path / "b",
                     print_fn=quiet)
    with pytest.raises(UserError, match="different config"):
        run_block_search(config(seed=1, epochs=1, **same), dataset="demo",
                         output_dir=tmp_path / "b", print_fn=quiet)
    run_block_search(config(epochs=2, **same), dataset="demo", output_dir=tmp_path / "b",
                     print_fn=quiet)
    run_block_search(config(epochs=2, **same), dataset="demo", output_dir=tmp_path / "c",
                     print_fn=quiet)
    assert _log(tmp_path / "b")[-1]["alphas"] == _log(tmp_path / "c")[-1]["alphas"]


def test_bad_input_is_refused_before_anything_is_written(tmp_path):
    quiet = lambda *args: None  # noqa: E731
    for config, match in ((_config(**{"ops_budget.target": 1.0}), "ops_budget.target"),
                          (_config(**{"ops_budget.tolerance": 1.5}), "ops_budget.tolerance"),
                          (_config(primitives="[none]"), "primitives"),
                          (_config(warmup_epochs=2), "warmup_epochs"),
                          (_config(op_weights="uniform", candidates=0), "candidates"),
                          (_config(**{"template.filters": "[6,16]"}), "filters")):
        with pytest.raises(UserError, match=match):
            run_block_search(config, dataset="demo", output_dir=tmp_path / "x", print_fn=quiet)
        assert not (tmp_path / "x").exists()


def test_nan_stops_with_one_line_and_keeps_the_finished_epochs(tmp_path):
    from ubnas_tf.search.run import SearchDiverged

    def poison(steps):
        # From epoch 2 on (2 weight steps an epoch), every loss is NaN: its first step's
        # architecture loss stops the run.
        iterations = steps.weight_optimizer.iterations
        steps.loss_hook = lambda loss: tf.where(iterations >= 2, tf.constant(np.nan), loss)

    with pytest.raises(SearchDiverged,
                       match=r"architecture loss became nan at epoch 2, step 1.*ckpt-1"):
        run_block_search(_config(), dataset="demo", output_dir=tmp_path, on_steps=poison,
                         print_fn=lambda *args: None)
    assert [r["epoch"] for r in _log(tmp_path)] == [1]
    assert json.loads((tmp_path / "blocks.json").read_text())["epoch"] == 1
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-1")


def test_cli_refuses_an_unknown_key_with_one_line(tool, tmp_path):
    result = tool("tools/search_blocks.py", "--dataset", "demo", "--output_dir",
                  str(tmp_path / "o"), "--set", "template.width=3")
    assert result.returncode == 2
    assert "template.width" in result.stderr and not (tmp_path / "o").exists()


def test_uniform_op_weights_are_one_hot_single_paths_drawn_uniformly(cost_model):
    architect = BlockArchitect(primitives=PRIMITIVES, block_count=3, cost_model=cost_model,
                               op_weights="uniform", seed=5, init_scale=1.0)
    draws = np.stack([architect.arch_weights().numpy() for _ in range(1400)])
    assert set(np.unique(draws)) == {0.0, 1.0} and np.all(draws.sum(axis=-1) == 1.0)
    # Uniform whatever the alphas (drawn at scale 1 here): each op 1/7 of 1,400 draws a block,
    # 200 +- 3 binomial standard deviations (14.3).
    counts = draws.sum(axis=0)
    assert np.all(np.abs(counts - 200) < 43), counts
    assert "argmax_ops" not in architect.summary()  # the alphas choose nothing


def test_uniform_search_trains_the_weights_only_and_returns_the_one_shot_best(tmp_path):
    quiet = lambda *args: None  # noqa: E731
    # Seed 4: the candidates' draw follows the search's seed, which rank_blocks must be given.
    config = _config(op_weights="uniform", candidates=5, seed=4,
                     **{"ops_budget.target": "null"})
    blocks = run_block_search(config, dataset="demo", output_dir=tmp_path, print_fn=quiet)
    log = _log(tmp_path)
    assert [r["arch_updates"] for r in log] == [False, False]  # no architecture step at all
    assert log[0]["alphas"] == log[1]["alphas"] and log[-1]["blocks"] is None
    ranking = json.loads((tmp_path / "ranking.json").read_text())
    assert ranking["epoch"] == 2 and len(ranking["ranking"]) == 5
    scores = [entry["oneshot_top1"] for entry in ranking["ranking"]]
    assert scores == sorted(scores, reverse=True)
    assert blocks["ops"] == ranking["ranking"][0]["block_ops"]
    assert json.loads((tmp_path / "blocks.json").read_text()) == blocks
    # Run again: the ranking of the finished run is read, not made again.
    stamp = (tmp_path / "ranking.json").stat().st_mtime_ns
    assert run_block_search(config, dataset="demo", output_dir=tmp_path,
                            print_fn=quiet) == blocks
    assert (tmp_path / "ranking.json").stat().st_mtime_ns == stamp
    # tools/rank_blocks.py given the search's seed and candidates ranks the same draw alike
    # from the checkpoint (experiments/ablations.py's uniform_topk reads past the best so).
    again = rank_blocks(tmp_path, tmp_path / "again", candidates=5, seed=config["seed"],
                        print_fn=quiet)
    assert [e["block_ops"] for e in again["ranking"]] == \
        [e["block_ops"] for e in ranking["ranking"]]
    assert [e["oneshot_top1"] for e in again["ranking"]] == pytest.approx(scores, abs=1e-6)
    assert again["drawn"] == {"count": 5, "seed": 4}
