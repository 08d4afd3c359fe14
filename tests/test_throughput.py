"""Speed options keep results, and the benchmarks measure what they say (issue 15)."""
import importlib.util
import json
import types

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, run_tool
from ubnas_tf.search_space.genotype import Genotype
from ubnas_tf.search_space.module import BinaryConvModule
from ubnas_tf.network.genotype_network import build_network


def _benchmark(name: str):
    """benchmarks/NAME.py as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_step = _benchmark("train_step")


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_direct_dilated_conv_matches_space_to_batch(kernel_size):
    """A binary module's dilated conv (one Conv2D with dilations) against the same module
    computing it as tf.nn.convolution does (SpaceToBatchND, conv, BatchToSpaceND): outputs
    equal, gradients (inputs, latent weights) equal up to float rounding."""
    def build():
        # (On stride 2 a dilation-2 module samples its input and convolves undilated.)
        module = BinaryConvModule(6, kernel_size, dilation=2,
                                  structure={"preset": "ebnas_retrain", "shortcut": False})
        module(images)
        return module

    images = tf.random.stateless_normal((2, 9, 9, 4), [0, 1])
    ours, keras_way = build(), build()
    keras_way.set_weights(ours.get_weights())
    assert train_step.keras_dilation(keras_way) == 1
    results = {}
    for name, module in (("ours", ours), ("keras", keras_way)):
        call = tf.function(lambda x, module=module: module(x, training=True))
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = call(images)
            loss = tf.reduce_sum(outputs * tf.random.stateless_normal(outputs.shape, [5, 6]))
        gradients = tape.gradient(loss, [images, module.conv.kernel.latent_variable])
        ops = {op.type for op in call.get_concrete_function(images).graph.get_operations()}
        assert ("SpaceToBatchND" in ops) == (name == "keras")
        results[name] = [outputs, *gradients]
    np.testing.assert_array_equal(results["ours"][0], results["keras"][0])
    for mine, theirs in zip(results["ours"][1:], results["keras"][1:]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5,
                                   atol=1e-6 * float(tf.reduce_max(tf.abs(theirs))))


def _dilated_genotype():
    cell = (("bin_dil_conv_3x3", 0), ("bin_dil_conv_5x5", 1), ("bin_conv_3x3", 2),
            ("skip_connect", 0))
    return Genotype(normal=cell, normal_concat=(2, 3), reduce=cell, reduce_concat=(2, 3),
                    space="binary")


def test_training_steps_equal_with_and_without_direct_dilation():
    """Three training steps of two dilated retraining modules (3x3 and 5x5) and a classifier,
    once with Keras's dilated convolution and once with ours: losses and weights equal up to
    rounding. Plain SGD: Adam's first steps are +-lr wherever a gradient is near zero, which
    turns rounding differences of such gradients into differences of lr."""
    def build():
        tf.keras.utils.set_random_seed(0)
        return tf.keras.Sequential([
            tf.keras.Input((10, 10, 4)),
            BinaryConvModule(4, 3, dilation=2, structure="ebnas_retrain"),
            BinaryConvModule(4, 5, dilation=2, structure="ebnas_retrain"),
            tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(3)])

    keras_way, ours = build(), build()
    ours.set_weights(keras_way.get_weights())
    assert train_step.keras_dilation(keras_way) == 2
    images = tf.random.stateless_normal((8, 10, 10, 4), [1, 2])
    labels = tf.constant([0, 1, 2, 0, 1, 2, 0, 1])
    losses = {}
    for name, model in (("keras", keras_way), ("ours", ours)):
        optimizer = tf.keras.optimizers.SGD(0.5)

        @tf.function
        def step(model=model, optimizer=optimizer):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
                    labels, model(images, training=True), from_logits=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        losses[name] = [float(step()) for _ in range(3)]
    assert losses["keras"][-1] < losses["keras"][0]  # the steps do train
    np.testing.assert_allclose(losses["ours"], losses["keras"], rtol=1e-6)
    for mine, theirs in zip(ours.get_weights(), keras_way.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_remove_quantizers_gives_the_float_convolution():
    """The benchmark's quantizer-free twin computes conv(pad(x, +1), latent kernel)."""
    model = build_network(_dilated_genotype(), input_shape=(8, 8, 1), num_classes=3, cells=5,
                          channels=4, module="ebnas_retrain")
    layer = BinaryConvModule(4, 3, structure={"preset": "ebnas_retrain", "shortcut": False,
                                              "pre_bn": False})
    images = tf.random.stateless_normal((2, 6, 6, 4), [3, 4])
    layer(images)
    stripped = train_step.remove_quantizers(layer)
    assert stripped == 1
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=1.0)
    expected = tf.nn.conv2d(padded, tf.convert_to_tensor(layer.conv.kernel.latent_variable),
                            1, "VALID")
    np.testing.assert_allclose(layer.conv(images), expected, rtol=1e-5, atol=1e-5)
    assert train_step.remove_quantizers(model) == len(
        [v for v in model.weights if v.name.endswith("/conv/kernel:0")])


def test_step_flops_are_macs_times_six():
    """One 3x3 conv of 2 -> 3 channels on 5x5 'same' plus a dense layer: MACs by hand."""
    inputs = tf.keras.Input((5, 5, 2))
    x = tf.keras.layers.Conv2D(3, 3, padding="same", use_bias=False)(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(x))
    macs = 5 * 5 * 3 * 3 * 3 * 2 + 3 * 4
    assert train_step.step_flops(model, batch=7) == macs * 2 * 3 * 7


@pytest.mark.slow
def test_train_step_benchmark_runs_and_reports(tmp_path):
    """The script end to end on tiny networks: JSON and table, consistent figures."""
    result = run_tool("benchmarks/train_step.py", "--tiny", "--networks", "bireal-fashion",
                      "--steps", "1", "--batch", "4", "--json", str(tmp_path / "r.json"),
                      "--markdown", str(tmp_path / "r.md"), timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["peak"]["peak_gflop_per_s"] > 0
    rows = {row["variant"]: row for row in report["steps"]}
    assert set(rows) == {"binary", "float"}
    for row in rows.values():
        assert row["batch"] == 4 and row["median_s"] > 0
        assert row["images_per_s"] == pytest.approx(4 / row["median_s"], rel=0.01)
        assert row["time_to_first_step_s"] >= row["import_s"] + row["build_s"]
    # Removing the quantizers leaves the topology, hence the FLOPs, as they were.
    assert rows["binary"]["step_gflop"] == rows["float"]["step_gflop"] > 0
    table = (tmp_path / "r.md").read_text()
    assert "| bireal-fashion | binary | 4 |" in table and "| bireal-fashion | float | 4 |" in table


def _ops_without_gpu_kernel(graph_def) -> list:
    """Op types of a graph (its function library included) that have neither a GPU kernel nor
    a DEFAULT one (the device-independent kernels of NoOp, ReadVariableOp, shape helpers)."""
    from tensorflow.python.framework import kernels

    types_used = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types_used |= {node.op for node in function.node_def}
    return sorted(op for op in types_used if not {"GPU", "DEFAULT"} & {
        kernel.device_type for kernel in kernels.get_registered_kernels_for_op(op).kernel})


def test_training_and_search_steps_have_gpu_kernels_for_every_op():
    """GPU readiness without a GPU: the retraining step (auxiliary head, drop-path, label
    smoothing, Adam with clipping) and the supernet's forward + backward use no CPU-only op
    (TensorFlow's pip wheel registers its GPU kernels on every machine)."""
    from ubnas_tf import config as config_lib
    from ubnas_tf.network.genotype_network import build_from_config
    from ubnas_tf.search.run import build_search_steps
    from ubnas_tf.train import Trainer, make_optimizer

    config = config_lib.load("train", overrides=["cells=5", "channels=4", "drop_path=0.2"])
    info = types.SimpleNamespace(input_shape=(20, 20, 3), num_classes=5)
    network = build_from_config(Genotype.load(train_step.GENOTYPE), info, config)
    trainer = Trainer(network, num_classes=5, aux_weight=0.4, label_smoothing=0.1)
    trainer.compile(optimizer=make_optimizer(config["optimizer"], total_steps=10))
    batch = (tf.zeros((2, 20, 20, 3)), tf.zeros((2,), tf.int32))
    graph = tf.function(trainer.train_step).get_concrete_function(batch).graph
    assert _ops_without_gpu_kernel(graph.as_graph_def()) == []

    search = config_lib.load("search", overrides=[
        "channels=8", "cells=5", "nodes=2", "multiplier=2", "stem_multiplier=1",
        "partial_channels.normal=4", "partial_channels.reduce=2"])
    steps = build_search_steps(search, types.SimpleNamespace(input_shape=(8, 8, 1),
                                                             num_classes=5))

    @tf.function
    def forward_backward(images, labels):
        with tf.GradientTape() as tape:
            logits = steps.supernet(images, steps.architect.arch_weights())
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        return tape.gradient(loss, [*steps.supernet.trainable_variables,
                                    *steps.architect.parameters])

    graph_def = forward_backward.get_concrete_function(
        tf.zeros((2, 8, 8, 1)), tf.zeros((2,), tf.int32)).graph.as_graph_def()
    assert _ops_without_gpu_kernel(graph_def) == []


def test_search_cli_benchmark_runs_config_b_with_k4_and_the_search_accepts_it():
    # The benchmark once stopped at the search's channels-per-op check (K=4 at C=8 leaves 2
    # channels per op) and measured nothing: its overrides must pass the search's checks.
    from ubnas_tf import config as config_lib
    from ubnas_tf.search.channels import per_op_channels
    from ubnas_tf.search.config import check_config

    config = config_lib.load("search", overrides=_benchmark("search_cli").CONFIG_B)
    check_config(config)
    assert (config["channels"], config["cells"], config["batch_size"]) == (8, 5, 32)
    # Config (b) of issue 15: K=4 in both cell types, 2 channels per op in the normal cells.
    assert per_op_channels(config)["normal"][0] == 8 // 4
    assert config["warmup_epochs"] == 0
