"""The architecture, the bilevel steps, the search loop and tools/search.py."""
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from ubnas_tf import config as config_lib
from ubnas_tf.search.architect import Architect, ramp, sigmoid_offsets
from ubnas_tf.errors import UserError
from ubnas_tf.search_space.genotype import Genotype
from ubnas_tf.search.run import build_search_steps
from ubnas_tf.search_space import get_space
from ubnas_tf.search.steps import FusedAdam, SearchSteps

ROOT = pathlib.Path(__file__).resolve().parent.parent
BINARY_OPS = get_space("binary").primitives
DARTS_OPS = get_space("darts").primitives

# One op of each kind (identity, pool, conv, dilated conv): the traces, most of a small search's
# time, are half as long as with the seven.
FOUR_OPS = "primitives=[skip_connect, avg_pool_3x3, bin_conv_3x3, bin_dil_conv_5x5]"
# A search that traces and runs in seconds: 5 cells of 2 nodes, 2 steps per epoch.
TINY = ["cells=5", "channels=8", "nodes=2", "multiplier=2", "stem_multiplier=1",
        "batch_size=32", "max_examples=128", "partial_channels.normal=4",
        "partial_channels.reduce=2", "warmup_epochs=1", "regularizers.ramp_epochs=2",
        "early_stop.patience=null", "arch_optimizer.lr=0.01", "partial_channels.min_per_op=2",
        FOUR_OPS]


def tiny_config(*overrides):
    return config_lib.load("search", overrides=[*TINY, *overrides])


# -- architecture ---------------------------------------------------------------------------
def test_sigmoid_edge_weights_start_summing_to_two():
    architect = Architect(primitives=BINARY_OPS, nodes=4, multiplier=4, edge_weights="sigmoid")
    assert architect.betas_normal.shape == (12,)  # node 0's two edges are fixed at 1
    architect.betas_normal.assign(tf.zeros([12]))
    weights = architect.arch_weights().normal_edges.numpy()
    np.testing.assert_allclose(weights[:2], [1.0, 1.0])
    np.testing.assert_allclose(weights[2:5], [2 / 3] * 3, rtol=1e-6)  # EBNAS: +0.6931
    np.testing.assert_allclose(weights[5:9], [0.5] * 4, rtol=1e-6)
    np.testing.assert_allclose(weights[9:14], [0.4] * 5, rtol=1e-6)  # EBNAS: -0.4055
    np.testing.assert_allclose(sigmoid_offsets(4), [math.log(2)] * 3 + [0.0] * 4
                               + [math.log(2 / 3)] * 5, rtol=1e-6)
    for start, end in architect.node_slices():
        assert weights[start:end].sum() == pytest.approx(2.0, rel=1e-6)
    betas = np.linspace(-1, 1, 12).astype(np.float32)
    architect.betas_normal.assign(betas)
    expected = 1 / (1 + np.exp(-(betas + sigmoid_offsets(4))))
    np.testing.assert_allclose(architect.arch_weights().normal_edges.numpy()[2:], expected,
                               rtol=1e-6)


def test_softmax_edge_weights_are_a_softmax_per_node():
    architect = Architect(primitives=BINARY_OPS, nodes=3, multiplier=3, edge_weights="softmax")
    betas = np.array([0.5, -0.5, 1.0, 2.0, 0.0, 0.3, 0.1, -0.2, 0.4], np.float32)
    architect.betas_reduce.assign(betas)
    weights = architect.arch_weights().reduce_edges.numpy()
    for start, end in [(0, 2), (2, 5), (5, 9)]:
        expected = np.exp(betas[start:end]) / np.exp(betas[start:end]).sum()
        np.testing.assert_allclose(weights[start:end], expected, rtol=1e-6)
    ops = architect.arch_weights().reduce_ops.numpy()
    np.testing.assert_allclose(ops.sum(axis=1), np.ones(9), rtol=1e-6)


def test_genotype_from_hand_set_parameters():
    """Top-2 inputs by e_ij * max_{o != none} w_ijo, argmax op other than none."""
    architect = Architect(primitives=DARTS_OPS, nodes=2, multiplier=2, edge_weights="softmax",
                          edge_selection="pcdarts", space="darts")
    index = {name: i for i, name in enumerate(DARTS_OPS)}

    def alphas(best):
        rows = np.zeros((5, len(DARTS_OPS)), np.float32)
        for edge, (op, strength) in enumerate(best):
            rows[edge, index[op]] = strength
        return rows

    # Edge 3 (node 1 <- c_{k-1}) prefers 'none' but takes its best other op; node 1 keeps
    # inputs 0 and 2 because c_{k-1}'s edge weight is small. Hand-computed strengths of node 1:
    # edge 2: softmax([0, -5, .5])[0] * e^3 / (e^3 + 7) = .3766 * .7416 = .279 (first),
    # edge 4: .6209 * e^1.5 / (e^1.5 + 7) = .6209 * .3903 = .242.
    architect.alphas_normal.assign(alphas([("sep_conv_3x3", 2.0), ("skip_connect", 1.0),
                                           ("max_pool_3x3", 3.0), ("none", 9.0),
                                           ("dil_conv_5x5", 1.5)]))
    architect.alphas_normal[3, index["avg_pool_3x3"]].assign(4.0)
    architect.betas_normal.assign([0.0, 0.0, 0.0, -5.0, 0.5])
    architect.alphas_reduce.assign(alphas([("skip_connect", 1.0), ("dil_conv_3x3", 2.0),
                                           ("sep_conv_5x5", 0.5), ("max_pool_3x3", 0.6),
                                           ("avg_pool_3x3", 3.0)]))
    architect.betas_reduce.assign([1.0, 0.0, 0.0, 0.0, 0.0])
    # Reduction node 0: .731 * e/(e+7) = .2045 > .269 * e^2/(e^2+7) = .138; node 1 (equal
    # edges): avg_pool (3.0) > max_pool (0.6) > sep_conv_5x5 (0.5).
    genotype = architect.genotype()
    assert genotype == Genotype(
        normal=(("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0),
                ("dil_conv_5x5", 2)),
        normal_concat=(2, 3),
        reduce=(("skip_connect", 0), ("dil_conv_3x3", 1), ("avg_pool_3x3", 2),
                ("max_pool_3x3", 1)),
        reduce_concat=(2, 3),
        space="darts")
    genotype.validate()


@pytest.mark.parametrize("selection, node_1", [
    # Node 1's edge weights sigmoid(beta + ln 2) for betas (1, 0, -0.5): .8446, .6667, .5481;
    # their strongest op weights: softmax([.5, 0 x6])[bin_conv_3x3] = .2156, softmax([5, 0 x6])
    # = .9611, softmax([4, 0 x6]) = .9010.
    # EBNAS keeps the two largest edge weights: inputs 0 and 1.
    ("ebnas", (("bin_conv_3x3", 0), ("bin_conv_5x5", 1))),
    # PC-DARTS ranks the products .1821, .6407, .4938: inputs 1 and 2.
    ("pcdarts", (("bin_conv_5x5", 1), ("avg_pool_3x3", 2))),
])
def test_edge_selection_from_hand_set_parameters(selection, node_1):
    architect = Architect(primitives=BINARY_OPS, nodes=2, multiplier=2, edge_weights="sigmoid",
                          edge_selection=selection)
    index = {name: i for i, name in enumerate(BINARY_OPS)}
    alphas = np.zeros((5, len(BINARY_OPS)), np.float32)
    alphas[0, index["max_pool_3x3"]] = 1.0  # node 0 keeps both inputs (edge weights fixed 1)
    alphas[1, index["skip_connect"]] = 1.0
    alphas[2, index["bin_conv_3x3"]] = 0.5
    alphas[3, index["bin_conv_5x5"]] = 5.0
    alphas[4, index["avg_pool_3x3"]] = 4.0
    architect.alphas_normal.assign(alphas)
    architect.betas_normal.assign([1.0, 0.0, -0.5])
    for variable in (architect.alphas_reduce, architect.betas_reduce):
        variable.assign(tf.zeros_like(variable))
    # All-zero parameters: the first op and, on equal weights, the first inputs.
    assert architect.genotype() == Genotype(
        normal=(("max_pool_3x3", 0), ("skip_connect", 1), *node_1), normal_concat=(2, 3),
        reduce=(("skip_connect", 0), ("skip_connect", 1)) * 2, reduce_concat=(2, 3),
        space="binary")


def test_regularizers_and_ramp():
    architect = Architect(primitives=BINARY_OPS, nodes=4, multiplier=4, edge_weights="sigmoid",
                          path_strength=1.5, edge_strength=0.8, ramp_epochs=49)
    for variable in architect.parameters:
        variable.assign(tf.zeros_like(variable))
    # Uniform alphas: -sum (1 - 1/7)^2 over 14 edges x 7 ops x 2 cell types.
    assert float(architect.path_regularizer()) == pytest.approx(-2 * 14 * 7 * (6 / 7) ** 2,
                                                                rel=1e-5)
    # Initial sigmoid edge weights: no spread, sums exactly 2.
    assert float(architect.edge_regularizer()) == pytest.approx(0.0, abs=1e-5)
    architect.betas_normal.assign([3.0, 0.0, 0.0] + [0.0] * 9)
    node = tf.sigmoid(tf.constant([3.0, 0.0, 0.0]) + math.log(2.0)).numpy()
    expected = -np.sum((node - node.mean()) ** 2) + 0.5 * (node.sum() - 2) ** 2
    assert float(architect.edge_regularizer()) == pytest.approx(expected, rel=1e-5)
    total = 1.5 * float(architect.path_regularizer()) + 0.8 * expected
    assert float(architect.regularization(0.5)) == pytest.approx(0.5 * total, rel=1e-5)
    assert [ramp(e, 49) for e in (0, 25, 49, 60)] == [0.0, 25 / 49, 1.0, 1.0]
    assert ramp(3, 0) == 1.0


# -- steps ----------------------------------------------------------------------------------
def _steps(order="first", strategy=None, seed=0):
    config = config_lib.load("search", overrides=[
        "channels=8", "cells=5", "nodes=2", "multiplier=2", "stem_multiplier=1",
        "partial_channels.normal=4", "partial_channels.reduce=2", "regularizers.ramp_epochs=2",
        "weights_optimizer.lr=0.01", "arch_optimizer.lr=0.01", f"seed={seed}", f"order={order}",
        FOUR_OPS])
    tf.keras.utils.set_random_seed(seed)
    info = types.SimpleNamespace(input_shape=(8, 8, 1), num_classes=4)
    return build_search_steps(config, info, strategy)


def _batch(size=8, seed=0):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.standard_normal((size, 8, 8, 1)).astype(np.float32)),
            tf.constant(rng.integers(0, 4, size).astype(np.int32)))


def _values(variables):
    return [v.numpy().copy() for v in variables]


def _same(before, variables):
    return all(np.array_equal(a, v.numpy()) for a, v in zip(before, variables))


def test_weight_step_never_changes_the_architecture_and_vice_versa():
    first = _steps("first")
    second = SearchSteps(first.supernet, first.architect, first.weight_optimizer,
                         first.arch_optimizer, first.strategy, order="second")
    weights = first.supernet.trainable_variables + first.weight_optimizer.m
    arch = first.architect.parameters + first.arch_optimizer.m
    images, labels = _batch()
    val_images, val_labels = _batch(seed=1)
    for steps in (first, second):
        arch_before, weights_before = _values(arch), _values(weights)
        steps.weight_step(images, labels)
        assert _same(arch_before, arch)
        assert not _same(weights_before, first.supernet.trainable_variables)
        weights_before, arch_before = _values(weights), _values(first.architect.parameters)
        steps.arch_step(val_images, val_labels, images, labels, tf.constant(0.5))
        # Bit for bit, for the second order too: the unrolled step puts back the weights it
        # moved for its virtual step and finite differences.
        assert _same(weights_before, weights), steps.order
        assert not _same(arch_before, first.architect.parameters)
    for _ in range(2):
        first.weight_step(images, labels)
        first.arch_step(val_images, val_labels, images, labels, tf.constant(0.5))
    assert first.traces == {"weight": 1, "arch": 1}  # one trace per step function
    assert second.traces == {"weight": 1, "arch": 1}
    # From the same state, the unrolled step moves the architecture elsewhere than the first
    # order step (its -xi * Hessian-vector product term is not zero).
    state = first.architect.parameters + first.arch_optimizer.m + first.arch_optimizer.v
    saved, iterations = _values(state), first.arch_optimizer.iterations.numpy()
    moved = []
    for steps in (first, second):
        for variable, value in zip(state, saved):
            variable.assign(value)
        first.arch_optimizer.iterations.assign(iterations)
        steps.arch_step(val_images, val_labels, images, labels, tf.constant(0.0))
        moved.append(np.concatenate([v.numpy().ravel() for v in first.architect.parameters]))
    assert not np.allclose(moved[0], moved[1], rtol=0, atol=1e-9)


def test_fused_adam_is_pytorch_adam_with_l2_and_clip():
    variable = tf.Variable([[1.0, -2.0], [0.5, 3.0]])
    optimizer = FusedAdam([variable], learning_rate=0.1, beta_1=0.9, beta_2=0.999,
                          weight_decay=0.01, clip_norm=1.0, epsilon=1e-8)
    w = variable.numpy().astype(np.float64)
    m = v = np.zeros_like(w)
    for step in range(1, 4):
        gradient = np.array([[3.0, 4.0], [0.0, -1.0]]) * step
        norm = optimizer.apply([tf.constant(gradient, tf.float32)], [variable])
        assert float(norm) == pytest.approx(np.linalg.norm(gradient), rel=1e-6)
        g = gradient * min(1.0, 1.0 / np.linalg.norm(gradient)) + 0.01 * w
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        rate = 0.1 * math.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
        w = w - rate * m / (np.sqrt(v) + 1e-8)
        np.testing.assert_allclose(variable.numpy(), w, rtol=1e-5, atol=1e-6)
    assert int(optimizer.iterations.numpy()) == 3


def test_mirrored_strategy_gives_the_one_device_loss_and_update(mirrored_strategy):
    single = _steps(seed=3)
    mirrored = _steps(strategy=mirrored_strategy, seed=3)
    for a, b in zip(single.supernet.trainable_variables, mirrored.supernet.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    images, labels = _batch(seed=4)
    # Batch statistics are per replica (as PC-DARTS's DataParallel): the same 8 images on
    # each of the two replicas make the same batch as one device sees, and the all-reduced
    # mean gradient must then be that one device's gradient.
    distributed = mirrored_strategy.experimental_distribute_values_from_function(
        lambda context: (images, labels))
    loss_one, correct_one = single.weight_step(images, labels)
    loss_two, correct_two = mirrored.weight_step(*distributed)
    assert float(loss_two) == pytest.approx(float(loss_one), rel=1e-5)
    assert float(correct_two) == 2 * float(correct_one)  # summed over both replicas
    for a, b in zip(single.supernet.trainable_variables, mirrored.supernet.trainable_variables):
        for replica_value in mirrored_strategy.experimental_local_results(b):
            np.testing.assert_allclose(replica_value.numpy(), a.numpy(), rtol=1e-4, atol=1e-6)
    arch_one, _ = single.arch_step(images, labels, images, labels, tf.constant(1.0))
    arch_two, _ = mirrored.arch_step(*distributed, *distributed, tf.constant(1.0))
    assert float(arch_two) == pytest.approx(float(arch_one), rel=1e-4)
    for a, b in zip(single.architect.parameters, mirrored.architect.parameters):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6)


# -- the search loop, in process --------------------------------------------------------------
def _log(path):
    return [json.loads(line) for line in (path / "search_log.jsonl").read_text().splitlines()]


def test_nan_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    from ubnas_tf.search.run import SearchDiverged, run_search

    def poison(steps):
        # From the 3rd weight step on (epoch 2), the loss is NaN.
        iterations = steps.weight_optimizer.iterations
        steps.loss_hook = lambda loss: tf.where(iterations >= 2, tf.constant(math.nan), loss)

    with pytest.raises(SearchDiverged, match=r"loss became nan at epoch 2.*ckpt-1"):
        run_search(tiny_config("epochs=3"), dataset="demo", output_dir=tmp_path,
                   on_steps=poison, print_fn=lambda *a: 0)
    assert [r["epoch"] for r in _log(tmp_path)] == [1]
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    assert latest and latest.endswith("ckpt-1")
    reader = tf.train.load_checkpoint(latest)
    names = [name for name, _ in tf.train.list_variables(latest)]
    assert any("alphas_normal" in name for name in names)
    completed = [n for n in names if n.startswith("completed_epochs")][0]
    assert reader.get_tensor(completed) == 1
    for name in names:
        if name.startswith(("supernet", "architect", "weight_optimizer")):
            assert np.isfinite(reader.get_tensor(name)).all(), name


# -- tools/search.py ------------------------------------------------------------------------
def _command(output_dir, *overrides, dataset="demo"):
    sets = [arg for item in [*TINY, *overrides] for arg in ("--set", item)]
    return [sys.executable, str(ROOT / "tools" / "search.py"), "--dataset", dataset,
            "--output_dir", str(output_dir), *sets]


def _run(command, timeout=300):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted CLI search of 3 epochs (1 warm-up), shared by the tests below."""
    output_dir = tmp_path_factory.mktemp("reference")
    result = _run(_command(output_dir, "epochs=3"))
    assert result.returncode == 0, result.stderr[-2000:]
    return output_dir, result


@pytest.mark.slow
def test_cli_writes_every_output(reference_run):
    output_dir, result = reference_run
    for name in ("genotype.json", "genotype.png", "search_log.jsonl", "config.yaml",
                 "summary.json", "run.json"):
        assert (output_dir / name).is_file(), name
    assert (output_dir / "genotype.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    genotype = Genotype.load(output_dir / "genotype.json")  # what tools/train.py reads
    assert genotype.space == "binary" and len(genotype.normal) == 4
    log = _log(output_dir)
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert log[0]["arch_loss"] is None and log[1]["arch_loss"] is not None  # warm-up first
    assert log[-1]["alphas_normal"] != log[0]["alphas_normal"]
    # The last epoch's genotype, or the earlier one an early-stop rule returned.
    summary = json.loads((output_dir / "summary.json").read_text())
    assert log[summary["genotype_epoch"] - 1]["genotype"] == genotype.to_dict()
    assert summary["genotype"] == genotype.to_dict()
    for key in ("train_loss", "train_acc", "arch_acc", "alphas_normal", "betas_reduce",
                "op_weights_normal", "edge_weights_reduce", "genotype", "seconds"):
        assert key in log[-1]
    assert list((output_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert tf.train.latest_checkpoint(str(output_dir / "checkpoints")).endswith("ckpt-3")
    assert config_lib.load("search", [output_dir / "config.yaml"])["cells"] == 5
    assert "search summary" in result.stdout and "epochs run     3 of 3" in result.stdout


def _error_lines(result):
    """Our error lines (TensorFlow's C++ start-up chatter on stderr is not ours)."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.slow
def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    unknown = _run(_command(tmp_path / "a", dataset="no_such_dataset_xyz"))
    assert unknown.returncode == 2
    assert len(_error_lines(unknown)) == 1 and "no_such_dataset_xyz" in _error_lines(unknown)[0]
    assert unknown.stderr.strip().splitlines()[-1] == _error_lines(unknown)[0]
    bad_key = _run(_command(tmp_path / "b", "no_such_key=3"))
    assert bad_key.returncode == 2
    assert len(_error_lines(bad_key)) == 1 and "no_such_key" in _error_lines(bad_key)[0]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_cli_refuses_an_output_dir_of_another_run(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    config_lib.save(tiny_config("channels=16"), tmp_path / "config.yaml")
    (tmp_path / "checkpoints" / "checkpoint").write_text("model_checkpoint_path: 'ckpt-1'\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = _run(_command(tmp_path, "epochs=2"))
    assert result.returncode == 2
    assert len(_error_lines(result)) == 1
    message = _error_lines(result)[0]
    assert "channels" in message and "--output_dir" in message
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing overwritten


def _contents(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_cli_refusals_write_nothing_and_the_corrected_command_runs(tmp_path):
    """Issue 18: a refused search (a batch larger than the data, an architecture that would
    never be searched) exits 2 with one line and leaves its folder as it was, so the corrected
    command is not taken for "a search with a different config". And a one-epoch search with
    the default warm-up share searches the architecture in that epoch."""
    output_dir = tmp_path / "run"
    for overrides, words in ((["batch_size=4096"], "batch_size 4096"),
                             (["epochs=1", "warmup_epochs=25"], "never be searched"),
                             (["partial_channels.min_per_op=4"], "partial_channels.normal")):
        result = _run(_command(output_dir, "epochs=2", *overrides))
        assert result.returncode == 2, (overrides, result.stderr[-2000:])
        lines = _error_lines(result)
        assert len(lines) == 1 and words in lines[0], (overrides, lines)
        assert result.stderr.strip().splitlines()[-1] == lines[0]
        assert not output_dir.exists(), overrides
    output_dir.mkdir()
    (output_dir / "notes.txt").write_text("mine")
    before = _contents(output_dir)
    result = _run(_command(output_dir, "epochs=2", "batch_size=4096"))
    assert result.returncode == 2 and _contents(output_dir) == before
    result = _run(_command(output_dir, "epochs=1", "warmup_epochs=null"))
    assert result.returncode == 0, result.stderr[-2000:]
    log = _log(output_dir)
    assert [(r["epoch"], r["arch_updates"]) for r in log] == [(1, True)]
    assert log[0]["alphas_normal"] != _log_initial_alphas(output_dir)
    summary = json.loads((output_dir / "summary.json").read_text())
    # [N, R, N, R, N] at C=8: normal cells 8, 16, 32 (K=4), reductions 16, 32 (K=2).
    assert summary["channels_per_op"] == {"normal": [2, 4, 8], "reduce": [8, 16]}


def _log_initial_alphas(output_dir):
    """The alphas the tiny search starts from (the architect's seeded init, seed 0)."""
    from ubnas_tf.search.architect import exact

    return exact(Architect(primitives=BINARY_OPS, nodes=2, multiplier=2, seed=0).alphas_normal)


@pytest.mark.slow
def test_cli_resumes_after_sigkill_with_the_same_genotype(reference_run, tmp_path):
    """Killed after its first checkpoint and started again, a run ends where an uninterrupted
    run with the same seed ends: same genotype, same parameters and losses every epoch. The
    three processes involved (reference, killed, resumed) also show that the same seed and
    config give the same search on CPU."""
    reference_dir, _ = reference_run
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(_command(killed_dir, "epochs=3"), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.time() + 240
    try:
        # The `checkpoint` state file is written after ckpt-1's data and index: a kill in
        # between would leave no checkpoint to resume (the run then starts over).
        while not (killed_dir / "checkpoints" / "checkpoint").exists():
            assert process.poll() is None, "the run ended before its first checkpoint"
            assert time.time() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed_dir / "summary.json").exists()  # it was killed mid-run
    resumed = _run(_command(killed_dir, "epochs=3"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout
    assert ((killed_dir / "genotype.json").read_text()
            == (reference_dir / "genotype.json").read_text())
    whole, again = _log(reference_dir), _log(killed_dir)
    assert [r["epoch"] for r in again] == [1, 2, 3]  # no epoch logged twice
    for left, right in zip(whole, again):
        for key in ("train_loss", "arch_loss", "alphas_normal", "alphas_reduce", "betas_normal"):
            assert left[key] == right[key], (left["epoch"], key)


# tools/search.py with a rule that stops every search after its second epoch (the rule's own
# logic is tested in test_early_stop.py; here only a stop at a known epoch matters).
_STOP_AFTER_EPOCH_2 = """
import runpy, sys
from ubnas_tf.search import early_stop
decide = early_stop.EarlyStopping.decide
def forced(self, records):
    if self.enabled and records and records[-1]["epoch"] == 2:
        return early_stop.Decision("patience", "patience: forced by the test", 2)
    return decide(self, records)
early_stop.EarlyStopping.decide = forced
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_a_stopped_search_resumed_without_early_stopping_is_the_full_search(reference_run,
                                                                             tmp_path):
    """Early stopping may change on resume (its rules read only the log): a search stopped
    after epoch 2, resumed with `early_stop.enabled=false`, runs epoch 3 from its checkpoint
    and ends where the uninterrupted 3-epoch search (reference_run, whose rules only read its
    epochs) was after epoch 3."""
    reference_dir, _ = reference_run
    stopped_dir = tmp_path / "stopped"
    stopped = _run([sys.executable, "-c", _STOP_AFTER_EPOCH_2,
                    *_command(stopped_dir, "epochs=3")[1:]])
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert [(r["epoch"], r["stop_rule"]) for r in _log(stopped_dir)] == [(1, None),
                                                                         (2, "patience")]
    resumed = _run(_command(stopped_dir, "epochs=3", "early_stop.enabled=false"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "early stop after epoch 2 (patience) does not hold" in resumed.stdout
    whole, continued = _log(reference_dir), _log(stopped_dir)
    assert Genotype.load(stopped_dir / "genotype.json") == Genotype.from_dict(whole[2]["genotype"])
    assert [(r["epoch"], r["stop_rule"]) for r in continued] == [(1, None), (2, None), (3, None)]
    for left, right in zip(whole, continued):
        for key in ("train_loss", "arch_loss", "alphas_normal", "alphas_reduce", "betas_normal"):
            assert left[key] == right[key], (left["epoch"], key)
    summary = json.loads((stopped_dir / "summary.json").read_text())
    assert (summary["epochs_run"], summary["stop_rule"], summary["genotype_epoch"]) == (3, None, 3)
    # The finished run resumed with early stopping on again is left as it is.
    again = _run(_command(stopped_dir, "epochs=3"))
    assert again.returncode == 0 and "does not hold" not in again.stdout
    assert _log(stopped_dir) == continued


def test_config_errors_name_the_key():
    from ubnas_tf.search.config import check_config

    with pytest.raises(UserError, match="order"):
        check_config(tiny_config("order=third"))
    with pytest.raises(UserError, match="early_stop.patience"):
        check_config(tiny_config("early_stop.patience=0"))
    with pytest.raises(UserError, match="unknown config key"):
        tiny_config("regularizers.pathh=1")
