"""The search steps run the supernet in training mode: every norm of every module structure
normalises with the statistics of its batch, and Keras BatchNormalization's moving statistics
move by one momentum update per forward pass (DARTS searches with `model.train()`)."""
import types

import numpy as np
import pytest
import tensorflow as tf

from ubnas_tf import config as config_lib
from ubnas_tf.search.run import build_search_steps
from ubnas_tf.search.steps import cross_entropy
from ubnas_tf.search_space.layers import BatchStatsNorm

# Few ops (a binary conv, and a pool for its BN), one node per cell: short traces.
SMALL = ["channels=4", "cells=5", "nodes=1", "multiplier=1", "stem_multiplier=1",
         "primitives=[avg_pool_3x3, bin_conv_3x3]", "partial_channels.normal=2",
         "partial_channels.reduce=2", "seed=5"]
EPSILON, MOMENTUM = 1e-5, 0.9  # make_norm's


def _steps(module):
    config = config_lib.load("search", overrides=SMALL)
    config["module"] = module
    tf.keras.utils.set_random_seed(5)
    return build_search_steps(config, types.SimpleNamespace(input_shape=(8, 8, 2), num_classes=3))


def _batch(seed):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(1.0, 2.0, (4, 8, 8, 2)).astype(np.float32)),
            tf.constant(rng.integers(0, 3, 4).astype(np.int32)))


def _record_norms(supernet):
    """Wrap the `call` of every norm layer to keep its (input, output) of each eager call."""
    records = {}
    norms = [layer for layer in supernet.submodules
             if isinstance(layer, (BatchStatsNorm, tf.keras.layers.BatchNormalization))]
    for layer in norms:
        def call(inputs, *args, _layer=layer, _call=layer.call, **kwargs):
            outputs = _call(inputs, *args, **kwargs)
            if tf.executing_eagerly():  # not while the steps are traced
                records[id(_layer)] = (np.asarray(inputs), np.asarray(outputs))
            return outputs
        layer.call = call
    return norms, records


@pytest.mark.parametrize("module", [
    "ebnas_search", "ebnas_retrain", "bireal", "quicknet", "quicknet_search",
    {"preset": "ebnas_search", "pre_bn": True, "norm": "batch_norm", "affine": True},
], ids=["ebnas_search", "ebnas_retrain", "bireal", "quicknet", "quicknet_search", "mapping"])
def test_search_steps_normalise_with_batch_statistics(module):
    steps = _steps(module)
    supernet, architect = steps.supernet, steps.architect
    norms, records = _record_norms(supernet)
    moving = [layer for layer in norms if isinstance(layer, tf.keras.layers.BatchNormalization)]
    assert bool(moving) == (module not in ("ebnas_search", "quicknet_search"))
    initial = [v.numpy() for v in supernet.non_trainable_variables]
    images, labels = _batch(0)
    if moving:  # inference mode uses the moving statistics (and updates nothing)
        inference, _ = cross_entropy(labels, supernet(images, architect.arch_weights()))

    # The forward pass the steps make (training=True), eagerly, against NumPy batch statistics.
    records.clear()
    loss, _ = cross_entropy(labels, supernet(images, architect.arch_weights(), training=True))
    assert len(records) == len(norms)  # every norm ran
    for layer in norms:
        x, y = records[id(layer)]
        normalised = (x - x.mean(axis=(0, 1, 2))) / np.sqrt(x.var(axis=(0, 1, 2)) + EPSILON)
        if getattr(layer, "scale", False):
            normalised = normalised * layer.gamma.numpy()
        if getattr(layer, "center", False):
            normalised = normalised + layer.beta.numpy()
        np.testing.assert_allclose(y, normalised, rtol=1e-4, atol=1e-4, err_msg=layer.name)
    if moving:  # so a step in inference mode would report another loss
        assert abs(float(inference) - float(loss)) > 1e-3
    for variable, value in zip(supernet.non_trainable_variables, initial):
        variable.assign(value)  # the eager passes updated them: start the step from the same

    # The compiled weight step: the same loss (before its update), and one momentum update of
    # each moving mean and (Bessel-corrected) variance towards the batch's statistics.
    step_loss, _ = steps.weight_step(images, labels)
    assert float(step_loss) == pytest.approx(float(loss), rel=1e-5)
    for layer in moving:
        x, _ = records[id(layer)]
        count = x.size // x.shape[-1]
        np.testing.assert_allclose(
            layer.moving_mean.numpy(), MOMENTUM * 0.0 + (1 - MOMENTUM) * x.mean(axis=(0, 1, 2)),
            rtol=1e-4, atol=1e-5, err_msg=layer.name)
        np.testing.assert_allclose(
            layer.moving_variance.numpy(),
            MOMENTUM * 1.0 + (1 - MOMENTUM) * x.var(axis=(0, 1, 2)) * count / (count - 1),
            rtol=1e-4, atol=1e-5, err_msg=layer.name)

    # The architecture step's loss is the training-mode loss at the new weights too.
    val_images, val_labels = _batch(1)
    val_loss, _ = cross_entropy(val_labels, supernet(val_images, architect.arch_weights(),
                                                     training=True))
    arch_loss, _ = steps.arch_step(val_images, val_labels, images, labels, tf.constant(0.5))
    assert float(arch_loss) == pytest.approx(float(val_loss), rel=1e-5)
