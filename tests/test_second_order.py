"""DARTS's second-order architecture step (eq. 7-8) against the exact unrolled gradient.

The finite difference of eq. 8 approximates a Hessian-vector product only where dL/dalpha is
differentiable in w. In the binary space it is not (sign), nor in the DARTS space: ReLU's
derivative jumps, so dL/dalpha jumps wherever a pre-activation crosses 0, and on a tiny DARTS
supernet the central difference at DARTS's eps (a step of norm 0.01) was measured 7-15x the
norm of the exact product away from it. So the step is checked on a supernet of smooth ops
(convolution + batch-statistics BN, average pooling, identity: nonlinear through BN and the
softmax, twice differentiable), where the difference must converge to the exact product.
"""
import dataclasses
import types

import numpy as np
import pytest
import tensorflow as tf

from ubnas_tf import config as config_lib
from ubnas_tf.search.run import build_search_steps
from ubnas_tf.search.steps import cross_entropy
from ubnas_tf.search_space import SPACES, get_space
from ubnas_tf.search_space.layers import BatchStatsNorm, Identity, pool


def _conv_bn(kernel_size):
    def build(channels, stride, structure, name):
        return tf.keras.Sequential([
            tf.keras.layers.Conv2D(channels, kernel_size, stride, "same", use_bias=False),
            BatchStatsNorm()], name=name)
    return build


def _skip(channels, stride, structure, name):
    return Identity(name=name) if stride == 1 else tf.keras.layers.AveragePooling2D(
        stride, padding="same", name=name)


SMOOTH = dataclasses.replace(
    get_space("darts"), name="smooth", primitives=("avg_pool_3x3", "skip_connect", "conv_3x3"),
    ops={"avg_pool_3x3": lambda c, stride, structure, name: pool("avg", stride, name),
         "skip_connect": _skip, "conv_3x3": _conv_bn(3)},
    preprocess=lambda c, reduction_prev, structure, name: _conv_bn(1)(
        c, 2 if reduction_prev else 1, structure, name))

# 5 cells of one node, 4 channels, 8x8 images: seconds per forward pass.
TINY = ["space=smooth", "module=darts_search", "channels=4", "cells=5", "nodes=1", "multiplier=1",
        "stem_multiplier=1", "partial_channels.normal=1", "partial_channels.reduce=1",
        "order=second", "weights_optimizer.lr=0.05", "seed=7"]


def _batch(seed):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(size=(6, 8, 8, 2)).astype(np.float32)),
            tf.constant(rng.integers(0, 3, 6).astype(np.int32)))


@pytest.fixture
def smooth_space(monkeypatch):
    monkeypatch.setitem(SPACES, "smooth", SMOOTH)


def test_second_order_step_is_the_exact_unrolled_gradient(smooth_space):
    """d/dalpha L_val(w'(alpha), alpha), w'(alpha) = w - xi (dL_train/dw (w, alpha) + wd w), is
    by the chain rule dL_val/dalpha (w') - xi * d/dalpha [dL_train/dw (w, alpha) . v] with
    v = dL_val/dw' held constant: an exact Hessian-vector product from nested tapes. The step
    replaces that product with a central difference at w +- eps v, eps = 0.01 / ||v||."""
    config = config_lib.load("search", overrides=TINY)
    tf.keras.utils.set_random_seed(7)
    steps = build_search_steps(config, types.SimpleNamespace(input_shape=(8, 8, 2),
                                                             num_classes=3))
    supernet, architect = steps.supernet, steps.architect
    weights, parameters = supernet.trainable_variables, architect.parameters
    xi, decay = 0.05, steps.weight_optimizer.weight_decay
    ramp = tf.constant(0.5)
    train_images, train_labels = _batch(0)
    val_images, val_labels = _batch(1)

    def loss(images, labels):
        return cross_entropy(labels, supernet(images, architect.arch_weights(), training=True))[0]

    # The step's gradient, as it reaches the architecture optimizer (eager, one replica).
    applied = []
    steps.arch_optimizer.apply = lambda gradients, variables: applied.append(
        [g.numpy() for g in gradients])
    originals = [w.numpy() for w in weights]
    steps._second_order_replica(val_images, val_labels, train_images, train_labels, ramp)
    for w, w0 in zip(weights, originals):
        np.testing.assert_array_equal(w.numpy(), w0)  # the step puts the weights back
    (step_gradients,) = applied

    # The exact unrolled gradient.
    with tf.GradientTape() as tape:
        train_loss = loss(train_images, train_labels)
    train_gradients = tape.gradient(train_loss, weights)
    for w, w0, g in zip(weights, originals, train_gradients):
        w.assign(w0 - xi * (g.numpy() + decay * w0))
    with tf.GradientTape() as tape:
        val_loss = loss(val_images, val_labels)
    gradients = tape.gradient(val_loss, parameters + weights)
    alpha_gradients, v = gradients[:len(parameters)], gradients[len(parameters):]
    for w, w0 in zip(weights, originals):
        w.assign(w0)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            train_loss = loss(train_images, train_labels)
        dot = tf.add_n([tf.reduce_sum(g * vi) for g, vi in
                        zip(inner.gradient(train_loss, weights), v)])
    hessian_v = outer.gradient(dot, parameters)
    with tf.GradientTape() as tape:
        regularization = architect.regularization(ramp)
    regularization_gradients = tape.gradient(regularization, parameters,
                                             unconnected_gradients="zero")
    second_order = [xi * h.numpy() for h in hessian_v]
    exact = [a.numpy() - s + r.numpy() for a, s, r in
             zip(alpha_gradients, second_order, regularization_gradients)]

    def norm(arrays):
        return float(np.sqrt(sum(np.sum(np.square(a)) for a in arrays)))

    # The second-order term matters here (else the comparison below would not test it) ...
    assert norm(second_order) > 0.05 * norm(exact)
    # ... and the finite difference gets it to within its error: O(eps^2) truncation for a
    # step of norm 0.01, and float32 cancellation in the difference of two gradients
    # (~1e-7 |dL/dalpha| / (2 eps |Hv|)). Measured: 0.22% of the term (the term itself 14% of
    # the gradient); 2% leaves room for other seeds and machines, and a wrong xi, sign or
    # eps (an error of the order of the term) still fails.
    error = norm([s - e for s, e in zip(step_gradients, exact)])
    assert error <= 0.02 * norm(second_order), (error, norm(second_order))
