"""OPs-aware search: the cost model against built networks, the penalty, the fitted derivation."""
import dataclasses
import json
import random
import types

import numpy as np
import pytest
import tensorflow as tf

from ubnas_tf import config as config_lib
from ubnas_tf.search.architect import Architect
from ubnas_tf.network.cost import profile
from ubnas_tf.errors import UserError
from ubnas_tf.search_space.genotype import Genotype
from ubnas_tf.search.ops_budget import (BudgetPenalty, NetworkCostModel, budget_from_config,
                                 cost_model_from_config, fit_genotype)
from ubnas_tf.search_space import get_space
from ubnas_tf.search.supernet import ArchWeights

PRIMITIVES = get_space("binary").primitives
NODES = 4
INFO = types.SimpleNamespace(input_shape=(12, 12, 1), num_classes=10)  # what the budget reads
CONCAT = (2, 3, 4, 5)


@pytest.fixture(scope="module")
def cost_model():
    return NetworkCostModel("binary", primitives=PRIMITIVES, nodes=NODES, multiplier=4, cells=5,
                            channels=8, input_shape=(12, 12, 1), num_classes=10)


def random_genotype(rng: random.Random) -> Genotype:
    def cell():
        return tuple((rng.choice(PRIMITIVES), source) for node in range(NODES)
                     for source in rng.sample(range(node + 2), 2))

    return Genotype(normal=cell(), normal_concat=CONCAT, reduce=cell(), reduce_concat=CONCAT,
                    space="binary")


def edge_index(node: int, source: int) -> int:
    return sum(n + 2 for n in range(node)) + source


def one_hot_weights(genotype: Genotype) -> ArchWeights:
    """Arch weights whose derivation is `genotype` with certainty: kept edges weigh 1."""
    tensors = {}
    for cell_type in ("normal", "reduce"):
        ops = np.zeros((edge_index(NODES, 0), len(PRIMITIVES)), np.float32)
        ops[:, 0] = 1.0
        edges = np.zeros(edge_index(NODES, 0), np.float32)
        for index, (op_name, source) in enumerate(genotype.cell(cell_type == "reduce")):
            edge = edge_index(index // 2, source)
            ops[edge] = 0.0
            ops[edge, PRIMITIVES.index(op_name)] = 1.0
            edges[edge] = 1.0
        tensors[f"{cell_type}_ops"] = tf.constant(ops)
        tensors[f"{cell_type}_edges"] = tf.constant(edges)
    return ArchWeights(**tensors)


def test_ops_of_a_genotype_are_those_of_its_built_network(cost_model):
    rng = random.Random(0)
    for _ in range(2):
        genotype = random_genotype(rng)
        built = profile(cost_model._build(genotype)).ops
        assert cost_model.genotype_ops(genotype) == pytest.approx(built, rel=1e-9)


def test_with_float_transitions_the_budget_costs_the_normal_cells_and_the_transitions():
    """`reduction: quicknet` builds QuickNet's float transitions where the reduction cells were:
    the budget's network is that one, whatever the genotype's reduction cell holds."""
    transitions = NetworkCostModel("binary", primitives=PRIMITIVES, nodes=NODES, multiplier=4,
                                   cells=5, channels=8, input_shape=(12, 12, 1),
                                   num_classes=10, reduction="quicknet")
    assert not transitions.costs["reduce"].any()
    rng = random.Random(1)
    first, second = random_genotype(rng), random_genotype(rng)
    mixed = dataclasses.replace(first, reduce=second.reduce)
    for genotype in (first, second, mixed):
        model = transitions._build(genotype)
        names = {layer.name for layer in model.layers}
        # Cells 1 and 3 of 5 are the reductions: transitions, no cell.
        assert {"cell1_transition_conv", "cell3_transition_conv"} <= names
        assert not any(name.startswith(("cell1_", "cell3_")) and "transition" not in name
                       for name in names)
        assert transitions.genotype_ops(genotype) == pytest.approx(profile(model).ops, rel=1e-9)
    # Another reduction cell under the same normal cell costs the same.
    assert transitions.genotype_ops(mixed) == transitions.genotype_ops(first)


def test_edge_costs_are_bops_over_64_of_the_binary_convolutions(cost_model):
    # Cells [N, R, N, R, N]: normal cells at 12x12 (C=8), 6x6 (C=16) and 3x3 (C=32), each
    # summed into the 'normal' table; a 3x3 binary conv is H*W*C*C*9 BOPs; pools and skips
    # cost nothing; cells 1 and 3 are reductions (summed into the 'reduce' table).
    conv3 = PRIMITIVES.index("bin_conv_3x3")
    assert cost_model.costs["normal"][0, conv3] == (
        12 * 12 * 8 * 8 * 9 + 6 * 6 * 16 * 16 * 9 + 3 * 3 * 32 * 32 * 9) / 64
    for free in ("skip_connect", "max_pool_3x3", "avg_pool_3x3"):
        assert not cost_model.costs["normal"][:, PRIMITIVES.index(free)].any()
    # Reduction edge from input 0 (stride 2): outputs at 6x6 (C=16) in cell 1, 3x3 (C=32) in
    # cell 3.
    expected = (6 * 6 * 16 * 16 * 9 + 3 * 3 * 32 * 32 * 9) / 64
    assert cost_model.costs["reduce"][0, conv3] == expected


def test_expected_ops_of_certain_weights_are_the_genotype_ops(cost_model):
    genotype = random_genotype(random.Random(1))
    expected = cost_model.expected_ops(one_hot_weights(genotype), "sigmoid")
    assert float(expected) == pytest.approx(cost_model.genotype_ops(genotype), rel=1e-6)


def test_penalty_gradient_pushes_towards_the_target(cost_model):
    low, high = cost_model.range()
    conv5 = PRIMITIVES.index("bin_conv_5x5")
    for target, sign in ((low * 1.05, 1.0), (high * 0.95, -1.0)):
        budget = BudgetPenalty(cost_model, target, strength=1.0, edge_form="sigmoid")
        architect = Architect(primitives=PRIMITIVES, nodes=NODES, multiplier=4, budget=budget)
        with tf.GradientTape() as tape:
            penalty = architect.regularization(tf.constant(0.0))  # ramp 0: the budget alone
        gradient = tape.gradient(penalty, architect.alphas_normal).numpy()
        # Above the target the penalty lowers the expensive op's alpha (positive gradient),
        # below it raises it.
        assert np.all(gradient[:, conv5] * sign > 0)


@pytest.mark.parametrize("factor", [0.5, 1.25])
def test_fitted_genotype_lands_within_tolerance(cost_model, factor):
    rng = np.random.default_rng(2)
    weights = {cell_type: (np.asarray(tf.nn.softmax(rng.normal(size=(14, 7)))),
                           np.asarray(tf.sigmoid(rng.normal(size=14))))
               for cell_type in ("normal", "reduce")}
    genotype = random_genotype(random.Random(3))
    target = factor * cost_model.genotype_ops(genotype)
    low, high = cost_model.range()
    assert low <= target <= high
    fitted = fit_genotype(genotype, weights, cost_model, target, tolerance=0.05)
    assert abs(cost_model.genotype_ops(fitted) / target - 1) <= 0.05
    for cell_type in ("normal", "reduce"):  # still two distinct inputs per node
        genes = fitted.cell(cell_type == "reduce")
        assert all(genes[2 * n][1] != genes[2 * n + 1][1] for n in range(NODES))
    assert Genotype.from_dict(json.loads(fitted.to_json())) == fitted  # plain ints: it saves
    # A genotype already within the band is left as it is.
    assert fit_genotype(fitted, weights, cost_model, target, tolerance=0.05) == fitted


def test_an_unknown_budget_reduction_is_refused_naming_the_key():
    from ubnas_tf.search.config import check_config

    config = config_lib.load("search", overrides=["ops_budget.reduction=float"])
    with pytest.raises(UserError, match="'ops_budget.reduction' must be one of searched, "
                                        "quicknet, got 'float'"):
        check_config(config)


def test_unreachable_or_bad_targets_are_user_errors():
    for override, message in (("ops_budget.target=1", "out of reach"),
                              ("ops_budget.target=-5", "must be null or a number"),
                              ("ops_budget.tolerance=1.5", "tolerance")):
        config = config_lib.load("search", overrides=["cells=5", "channels=8", override])
        with pytest.raises(UserError, match=message):
            budget_from_config(config, INFO)


@pytest.mark.slow
def test_a_search_with_a_budget_derives_a_network_within_tolerance(tmp_path):
    from tests.test_search import tiny_config
    from ubnas_tf.search.run import run_search

    config = tiny_config("epochs=2")
    free = run_search(config, dataset="demo", output_dir=tmp_path / "free",
                      print_fn=lambda *_: None)
    model = cost_model_from_config(config, types.SimpleNamespace(input_shape=(28, 28, 1),
                                                                  num_classes=10))
    unconstrained, (low, high) = model.genotype_ops(free.genotype), model.range()
    # Half-way to the far end of the range: a target the free search did not land on.
    far = low if unconstrained - low > high - unconstrained else high
    target = round((unconstrained + far) / 2)
    budgeted = tiny_config("epochs=2", f"ops_budget.target={target}")
    result = run_search(budgeted, dataset="demo", output_dir=tmp_path / "budget",
                        print_fn=lambda *_: None)
    summary = json.loads((tmp_path / "budget" / "summary.json").read_text())
    assert summary["ops_budget"]["genotype_ops"] == model.genotype_ops(result.genotype)
    assert abs(model.genotype_ops(result.genotype) / target - 1) <= 0.05
    last = json.loads((tmp_path / "budget" / "search_log.jsonl").read_text().splitlines()[-1])
    assert last["ops_target"] == target and last["expected_ops"] > 0
