"""Early-stopping rules (search/early_stop.py) on hand-written logs, and the Hessian eigenvalue
(search/hessian.py) against exact Hessians."""
import types

import numpy as np
import pytest
import tensorflow as tf

from ubnas_tf import config as config_lib
from ubnas_tf.errors import UserError
from ubnas_tf.search.config import check_config
from ubnas_tf.search.early_stop import EarlyStopping, parameter_free_shares
from ubnas_tf.search.hessian import AlphaHessian, dominant_eigenvalue, hessian_vector_product
from ubnas_tf.search_space import get_space

SPACE = get_space("binary")
OPS = SPACE.primitives  # skip, max_pool, avg_pool, 4 binary convs
HEALTHY = {"normal": [["bin_conv_3x3", 0], ["bin_conv_5x5", 1], ["avg_pool_3x3", 0],
                      ["bin_conv_3x3", 2]],
           "reduce": [["max_pool_3x3", 0], ["bin_conv_3x3", 1], ["skip_connect", 2],
                      ["bin_dil_conv_3x3", 0]],
           "normal_concat": [2, 3], "reduce_concat": [2, 3], "space": "binary"}
# 3 of 4 normal ops parameter-free: 0.75 >= the default limit 0.5.
COLLAPSED = {**HEALTHY, "normal": [["avg_pool_3x3", 0], ["avg_pool_3x3", 1],
                                   ["skip_connect", 0], ["bin_conv_3x3", 2]]}


def _config(*overrides):
    return config_lib.load("search", overrides=["nodes=2", "multiplier=2", *overrides])


def _record(epoch, genotype=HEALTHY, searched=True, alphas=None, stable=0, eigenvalue=None):
    alphas = np.zeros((5, len(OPS))) if alphas is None else alphas
    return {"epoch": epoch, "arch_updates": searched, "genotype": genotype,
            "stable_epochs": stable, "hessian_eigenvalue": eigenvalue,
            "alphas_normal": alphas.tolist(), "alphas_reduce": alphas.tolist()}


def _rules(*overrides):
    return EarlyStopping(_config(*overrides), OPS, SPACE.parameter_free)


def test_parameter_free_shares_read_the_space():
    from ubnas_tf.search_space.genotype import Genotype

    shares = parameter_free_shares(Genotype.from_dict(COLLAPSED), SPACE.parameter_free)
    assert shares == {"normal": 0.75, "reduce": 0.5}


def test_collapse_rolls_back_to_the_last_healthy_epoch():
    rules = _rules("early_stop.patience=null", "early_stop.ranking_patience=null")
    warmup = [_record(1, COLLAPSED, searched=False)]
    # Collapsed from the first searched epoch: nothing healthy to return, the search goes on.
    assert rules.decide(warmup + [_record(2, COLLAPSED)]) is None
    records = warmup + [_record(2, COLLAPSED), _record(3), _record(4), _record(5, COLLAPSED)]
    decision = rules.decide(records)
    assert decision.rule == "collapse" and decision.genotype_epoch == 4
    assert "normal 0.75" in decision.message
    assert rules.decide(records[:-1]) is None
    # The reduction cell has its own limit: 0.5 of its ops is below 0.75, at 0.5 it fires.
    strict = _rules("early_stop.max_parameter_free.reduce=0.5", "early_stop.patience=null",
                    "early_stop.ranking_patience=null")
    assert strict.decide(warmup + [_record(2, {**HEALTHY, "reduce": HEALTHY["normal"]}),
                                   _record(3)]).genotype_epoch == 2
    # The master switch: no rule at all.
    assert _rules("early_stop.enabled=false").decide(records) is None


def test_ranking_of_learnable_alphas_unchanged_for_n_epochs():
    rules = _rules("early_stop.ranking_patience=2", "early_stop.patience=null")
    learnable = [OPS.index(op) for op in OPS if op not in SPACE.parameter_free]
    base = np.zeros((5, len(OPS)))
    base[:, learnable] = [1.0, 0.5, 0.2, 0.1]
    moved = base.copy()
    moved[:, learnable] = [2.0, 0.6, 0.3, 0.15]  # values change, the ranking does not
    pools_moved = moved.copy()
    pools_moved[:, OPS.index("avg_pool_3x3")] = 9.0  # parameter-free ops do not count
    swapped = base.copy()
    swapped[0, learnable[:2]] = [0.5, 1.0]
    start = np.zeros_like(base)
    start[:, learnable] = [0.1, 0.2, 0.5, 1.0]  # the reverse ranking
    records = [_record(1, searched=False, alphas=start), _record(2, alphas=base),
               _record(3, alphas=moved)]
    assert rules.decide(records) is None  # stable for 1 epoch (2 -> 3)
    decision = rules.decide(records + [_record(4, alphas=pools_moved)])
    assert decision.rule == "ranking" and decision.genotype_epoch == 4
    assert rules.decide(records + [_record(4, alphas=swapped)]) is None


def test_hessian_rule_returns_the_earlier_epoch():
    rules = _rules("early_stop.patience=null", "early_stop.ranking_patience=null",
                   "early_stop.hessian.window=2", "early_stop.hessian.lookback=2",
                   "early_stop.hessian.growth=1.3")
    values = [1.0, 1.0, 1.0, 1.4, 1.3]
    records = [_record(1, searched=False)] + [
        _record(epoch, eigenvalue=value) for epoch, value in enumerate(values, start=2)]
    # Means over 2 epochs: epochs 5-6 (1.35) vs epochs 3-4 (1.0): 1.35x > 1.3x, fires at
    # epoch 6 and returns epoch 6 - 2 = 4's genotype.
    decision = rules.decide(records)
    assert decision.rule == "hessian" and decision.genotype_epoch == 4
    assert "1.35x" in decision.message
    assert rules.decide(records[:-1]) is None  # epochs 4-5 (1.2) vs 2-3 (1.0): 1.2x


def test_patience_and_max_skip():
    rules = _rules("early_stop.patience=2", "early_stop.max_skip=1",
                   "early_stop.ranking_patience=null", "early_stop.max_parameter_free.normal=1.0")
    assert rules.decide([_record(1, stable=1)]) is None
    assert rules.decide([_record(1, stable=2)]).rule == "patience"
    assert rules.decide([_record(1, COLLAPSED, stable=0)]).rule == "darts_plus"  # one skip
    assert rules.decide([_record(1, COLLAPSED, searched=False)]) is None  # warm-up


def test_early_stop_keys_are_checked():
    with pytest.raises(UserError, match="early_stop.max_parameter_free.normal"):
        check_config(_config("early_stop.max_parameter_free.normal=1.5"))
    with pytest.raises(UserError, match="early_stop.hessian.growth"):
        check_config(_config("early_stop.hessian.growth=0.9"))
    with pytest.raises(UserError, match="early_stop.ranking_patience"):
        check_config(_config("early_stop.ranking_patience=0"))


# -- the Hessian eigenvalue -------------------------------------------------------------------
def _tiny_loss(parameters, inputs, labels):
    """A two-layer network whose weights are the differentiated parameters."""
    hidden = tf.tanh(inputs @ parameters[0])
    logits = hidden @ parameters[1]
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


def _exact_hessian(loss_fn, parameters):
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            loss = loss_fn()
        gradients = inner.gradient(loss, parameters, unconnected_gradients="zero")
        gradient = tf.concat([tf.reshape(g, [-1]) for g in gradients], 0)
    rows = outer.jacobian(gradient, parameters, unconnected_gradients="zero")
    size = int(gradient.shape[0])
    return np.concatenate([np.reshape(r.numpy(), [size, -1]) for r in rows], axis=1)


def test_power_iteration_gives_the_exact_hessians_dominant_eigenvalue():
    rng = np.random.default_rng(0)
    inputs = tf.constant(rng.standard_normal((16, 3)), tf.float64)
    labels = tf.constant(rng.integers(0, 3, 16), tf.int32)
    parameters = [tf.Variable(rng.standard_normal((3, 4))), tf.Variable(rng.standard_normal((4, 3)))]
    loss_fn = lambda: _tiny_loss(parameters, inputs, labels)  # noqa: E731
    hessian = _exact_hessian(loss_fn, parameters)
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-10)
    vector = [tf.constant(rng.standard_normal(p.shape)) for p in parameters]
    product = hessian_vector_product(loss_fn, parameters, vector)
    flat = np.concatenate([np.ravel(v.numpy()) for v in vector])
    np.testing.assert_allclose(np.concatenate([np.ravel(p.numpy()) for p in product]),
                               hessian @ flat, rtol=1e-8, atol=1e-10)
    eigenvalues = np.linalg.eigvalsh(hessian)
    dominant = eigenvalues[np.argmax(np.abs(eigenvalues))]

    @tf.function
    def apply(vectors):
        return hessian_vector_product(loss_fn, parameters,
                                      [tf.cast(v, tf.float64) for v in vectors])

    estimate = dominant_eigenvalue(apply, [p.shape for p in parameters], iterations=200)
    assert estimate == pytest.approx(dominant, rel=1e-3)


@pytest.mark.slow
def test_alpha_hessian_of_a_supernet_matches_its_exact_hessian():
    from ubnas_tf.search.run import build_search_steps

    config = config_lib.load("search", overrides=[
        "channels=4", "cells=5", "nodes=1", "multiplier=1", "stem_multiplier=1",
        "partial_channels.min_per_op=1", "primitives=[avg_pool_3x3, bin_conv_3x3]"])
    tf.keras.utils.set_random_seed(0)
    steps = build_search_steps(config, types.SimpleNamespace(input_shape=(6, 6, 1),
                                                             num_classes=3))
    architect = steps.architect
    rng = np.random.default_rng(1)
    architect.alphas_normal.assign(rng.standard_normal((2, 2)).astype(np.float32))
    images = rng.standard_normal((8, 6, 6, 1)).astype(np.float32)
    labels = rng.integers(0, 3, 8).astype(np.int32)
    hessian = AlphaHessian(steps.supernet, architect, [(images, labels)], iterations=100)

    def loss_fn():
        logits = steps.supernet(images, architect.arch_weights(), training=True)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

    exact = _exact_hessian(loss_fn, hessian.alphas)
    vectors = [tf.constant(rng.standard_normal(a.shape).astype(np.float32))
               for a in hessian.alphas]
    flat = np.concatenate([np.ravel(v.numpy()) for v in vectors])
    got = np.concatenate([np.ravel(p.numpy()) for p in hessian.product(vectors)])
    np.testing.assert_allclose(got, exact @ flat, rtol=1e-3, atol=1e-5)
    eigenvalues = np.linalg.eigvalsh((exact + exact.T) / 2)
    assert hessian.eigenvalue() == pytest.approx(eigenvalues[np.argmax(np.abs(eigenvalues))],
                                                 rel=1e-2)
