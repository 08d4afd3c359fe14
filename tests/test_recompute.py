"""Cell-level gradient checkpointing (`low_memory: true`) gives the plain tape's gradients."""
import types

import numpy as np
import pytest
import tensorflow as tf

from test_search import FOUR_OPS
from ubnas_tf import config as config_lib
from ubnas_tf.search.recompute import checkpointed_gradients
from ubnas_tf.search.run import build_search_steps
from ubnas_tf.search.steps import cross_entropy

# 5 cells: normal, reduction, normal, reduction, normal (reductions at 1/3 and 2/3): the gradient
# of a state flows back from two cells, across both kinds of cell.
SMALL = ["channels=8", "cells=5", "nodes=2", "multiplier=2", "stem_multiplier=1",
         "partial_channels.normal=4", "partial_channels.reduce=2", "seed=3", FOUR_OPS]


def _steps(*overrides):
    config = config_lib.load("search", overrides=[*SMALL, *overrides])  # later keys win
    tf.keras.utils.set_random_seed(3)
    info = types.SimpleNamespace(input_shape=(8, 8, 2), num_classes=5)
    return build_search_steps(config, info)


def _batch(seed):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.standard_normal((6, 8, 8, 2)).astype(np.float32)),
            tf.constant(rng.integers(0, 5, 6).astype(np.int32)))


def _plain_gradients(steps, images, labels, sources, extra):
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(sources)
        loss, _ = cross_entropy(labels, steps.supernet(images, steps.architect.arch_weights(),
                                                       training=True))
        total = loss + extra()
    return tape.gradient(total, sources), loss


@pytest.mark.parametrize("graph", [True, False], ids=["tf.function", "eager"])
def test_checkpointed_gradients_equal_the_plain_tape(graph):
    steps = _steps()
    images, labels = _batch(0)
    sources = steps.supernet.trainable_variables + steps.architect.parameters
    extra = lambda: steps.architect.regularization(tf.constant(0.7))  # noqa: E731

    def both():
        plain, plain_loss = _plain_gradients(steps, images, labels, sources, extra)
        checkpointed, loss, _ = checkpointed_gradients(
            steps.supernet, images, sources, steps.architect.arch_weights,
            lambda logits: cross_entropy(labels, logits), extra_loss=extra)
        return plain, plain_loss, checkpointed, loss

    plain, plain_loss, checkpointed, loss = (tf.function(both) if graph else both)()
    assert float(loss) == pytest.approx(float(plain_loss), rel=1e-6)
    assert all(g is not None for g in checkpointed)
    for variable, a, b in zip(sources, plain, checkpointed):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=variable.name)


@pytest.mark.parametrize("order", ["first", "second"])
def test_recomputing_steps_move_the_variables_as_the_plain_steps(order):
    """A weight step then an architecture step from the same initial state, with and without
    low_memory."""
    results = []
    for low_memory in ("false", "true"):
        steps = _steps(f"low_memory={low_memory}", f"order={order}")
        assert steps.recompute == (low_memory == "true")
        images, labels = _batch(0)
        val_images, val_labels = _batch(1)
        losses = [float(steps.weight_step(images, labels)[0]),
                  float(steps.arch_step(val_images, val_labels, images, labels,
                                        tf.constant(0.5))[0])]
        variables = steps.supernet.trainable_variables + steps.architect.parameters
        results.append((losses, [v.numpy() for v in variables]))
    (plain_losses, plain), (losses, recomputed) = results
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-5)
    for a, b in zip(plain, recomputed):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_recomputation_updates_moving_statistics_once_per_step():
    """Keras BatchNormalization (ebnas_retrain) updates its moving statistics in the forward
    pass *and* in the recomputation; the recomputation puts them back, so after a weight step
    and an architecture step they are the plain steps' (one update per forward pass: their
    value is checked against the batch statistics in test_search_batch_norm.py)."""
    results = []
    for low_memory in ("false", "true"):
        steps = _steps("module=ebnas_retrain", f"low_memory={low_memory}", "nodes=1",
                       "multiplier=1", "primitives=[avg_pool_3x3, bin_conv_3x3]")  # short traces
        supernet = steps.supernet
        initial = [v.numpy() for v in supernet.non_trainable_variables]
        images, labels = _batch(0)
        val_images, val_labels = _batch(1)
        steps.weight_step(images, labels)
        after_weight_step = [v.numpy() for v in supernet.non_trainable_variables]
        steps.arch_step(val_images, val_labels, images, labels, tf.constant(0.5))
        results.append((after_weight_step,
                        [v.numpy() for v in supernet.non_trainable_variables],
                        [v.numpy() for v in supernet.trainable_variables]))
    assert len(initial) > 20  # moving means and variances of every cell
    (plain_weight, plain_arch, plain_weights), (weight, arch, weights) = results
    # They moved (training mode; a BN fed by a BN sees mean 0 and variance ~1 and barely moves).
    assert sum(not np.allclose(a, before) for before, a in zip(initial, plain_weight)) > 20
    for a, b in zip(plain_weight, weight):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    for a, b in zip(plain_arch, arch):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    for a, b in zip(plain_weights, weights):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
