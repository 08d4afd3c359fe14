"""The search supernet: channel shuffle, partial channels, mixed ops, cells, shared traces."""
import numpy as np
import pytest
import tensorflow as tf

from ubnas_tf.search_space import get_space
from ubnas_tf.search_space.module import ModuleStructure
from ubnas_tf.search.supernet import (
    ArchWeights,
    Cell,
    MixedOp,
    Supernet,
    SupernetConfig,
    TraceCache,
    channel_shuffle,
    edge_count,
    weighted_sum,
)

SEARCH = ModuleStructure.from_config("ebnas_search")
BINARY = get_space("binary")


def _images(shape, seed=0):
    return tf.constant(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _softmax_rows(rows, columns, seed=0):
    logits = np.random.default_rng(seed).standard_normal((rows, columns))
    weights = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return tf.constant(weights.astype(np.float32))


def test_channel_shuffle_matches_pc_darts_permutation():
    # PC-DARTS channel_shuffle(x, 4) on 8 channels: view(4, 2).transpose -> 0,2,4,6,1,3,5,7.
    x = tf.reshape(tf.range(8, dtype=tf.float32), [1, 1, 1, 8])
    assert channel_shuffle(x, 4).numpy().ravel().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert channel_shuffle(x, 2).numpy().ravel().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert channel_shuffle(x, 1).numpy().ravel().tolist() == list(range(8))
    # Spatial positions keep their own channels.
    y = tf.reshape(tf.range(2 * 3 * 8, dtype=tf.float32), [1, 2, 3, 8])
    np.testing.assert_array_equal(channel_shuffle(y, 4).numpy()[0, 1, 2],
                                  y.numpy()[0, 1, 2][[0, 2, 4, 6, 1, 3, 5, 7]])


def test_weighted_sum_is_the_weighted_sum():
    tensors = [_images([2, 3, 3, 4], seed) for seed in range(5)]
    weights = tf.constant([0.1, -2.0, 0.5, 3.0, 0.0])
    expected = sum(float(w) * t.numpy() for w, t in zip(weights, tensors))
    np.testing.assert_allclose(weighted_sum(tensors, weights).numpy(), expected, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channel_shapes(stride):
    op = MixedOp(BINARY, BINARY.primitives, channels=16, stride=stride, partial=4,
                 structure=SEARCH)
    x = _images([3, 8, 8, 16])
    partial_input, bypass = op.split(x)
    size = 8 // stride
    assert partial_input.shape == (3, 8, 8, 4)
    assert bypass.shape == (3, size, size, 12)
    outputs = op.candidates(partial_input)
    assert len(outputs) == 7 and all(o.shape == (3, size, size, 4) for o in outputs)
    assert op(x, _softmax_rows(1, 7)[0]).shape == (3, size, size, 16)
    # The bypassed channels pass as they are, max-pooled 2x2 on a stride-2 edge.
    expected = x[..., 4:] if stride == 1 else tf.nn.max_pool2d(x[..., 4:], 2, 2, "VALID")
    np.testing.assert_array_equal(bypass.numpy(), expected.numpy())


def test_mixed_op_output_by_hand():
    """shuffle_K(concat(sum_o w_o o(x[:C/K]), x[C/K:])), written out for C=8, K=4."""
    op = MixedOp(BINARY, BINARY.primitives, channels=8, stride=1, partial=4, structure=SEARCH)
    x = _images([2, 6, 6, 8], seed=1)
    weights = _softmax_rows(1, 7, seed=2)[0]
    output = op(x, weights).numpy()
    mixed = sum(float(w) * o.numpy() for w, o in zip(weights, op.candidates(x[..., :2])))
    # Channel order after the shuffle: concat index g*2 + i goes to i*4 + g.
    expected = np.empty_like(output)
    stacked = np.concatenate([mixed, x.numpy()[..., 2:]], axis=-1)
    for group in range(4):
        for index in range(2):
            expected[..., index * 4 + group] = stacked[..., group * 2 + index]
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)
    # With every op weight zero the edge only moves the bypassed channels.
    moved = op(x, tf.zeros([7])).numpy()
    np.testing.assert_array_equal(moved[..., [0, 4]], np.zeros_like(moved[..., [0, 4]]))
    np.testing.assert_array_equal(moved[..., [1, 5, 2, 6, 3, 7]], x.numpy()[..., 2:])


def test_k1_is_the_darts_mixed_op_and_none_is_skipped():
    darts = get_space("darts")
    op = MixedOp(darts, darts.primitives, channels=4, stride=1, partial=1, structure=SEARCH)
    assert "none" not in [layer.name for layer in op.candidate_ops]
    x = _images([2, 5, 5, 4], seed=3)
    weights = _softmax_rows(1, len(darts.primitives), seed=4)[0]
    output = op(x, weights).numpy()
    # DARTS: sum_o w_o o(x) over every primitive, the none op giving zeros; pools with BN.
    expected = np.zeros_like(output)
    for layer, norm, column in zip(op.candidate_ops, op.post_norms, op.op_columns):
        y = layer(x)
        y = y if norm is None else norm(y)
        expected += float(weights[column]) * y.numpy()
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)
    # The none column's weight changes nothing.
    heavier_none = weights.numpy().copy()
    heavier_none[darts.primitives.index("none")] = 100.0
    np.testing.assert_allclose(op(x, tf.constant(heavier_none)).numpy(), output, rtol=1e-6)
    # Pools are followed by a batch norm without affine parameters, as in DARTS.
    pool_norms = [n for n, c in zip(op.post_norms, op.op_columns)
                  if "pool" in darts.primitives[c]]
    assert len(pool_norms) == 2 and all(n is not None and not n.weights for n in pool_norms)


def _reference_cell(cell, s0, s1, op_weights, edge_weights):
    """The per-edge PC-DARTS cell: node_i = sum_j e_ij * MixedOp_ij(state_j)."""
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    offset = 0
    for _ in range(cell.nodes):
        node = 0.0
        for source, state in enumerate(states):
            node += edge_weights[offset + source] * cell.edges[offset + source](
                state, op_weights[offset + source])
        offset += len(states)
        states.append(node)
    return tf.concat(states[-cell.multiplier:], axis=-1)


@pytest.mark.parametrize("reduction", [False, True])
def test_cell_computes_the_per_edge_sum(reduction):
    """The fused cell (one shuffle per node, shared traces) equals the per-edge formula."""
    traces = TraceCache()
    cell = Cell(BINARY, BINARY.primitives, nodes=3, multiplier=2, channels=8,
                reduction=reduction, reduction_prev=False, partial=4, structure=SEARCH,
                traces=traces)
    edges = edge_count(3)
    s0, s1 = _images([2, 8, 8, 6], 5), _images([2, 8, 8, 6], 6)
    op_weights = _softmax_rows(edges, 7, seed=7)
    edge_weights = tf.constant(np.linspace(0.2, 1.5, edges).astype(np.float32))
    eager = cell(s0, s1, op_weights, edge_weights)  # builds the variables
    reference = _reference_cell(cell, s0, s1, op_weights, edge_weights)
    np.testing.assert_allclose(eager.numpy(), reference.numpy(), rtol=1e-4, atol=1e-4)
    traced = tf.function(lambda: cell(s0, s1, op_weights, edge_weights), autograph=False)()
    np.testing.assert_allclose(traced.numpy(), reference.numpy(), rtol=1e-4, atol=1e-4)
    size = 4 if reduction else 8
    assert traced.shape == (2, size, size, 16)
    # Edges of one signature share one trace: two strides at most, plus the two preprocesses.
    assert len(traces._functions) <= 4


def _tiny_config(**overrides):
    values = dict(num_classes=5, input_shape=(8, 8, 2), channels=8, cells=5, nodes=2,
                  multiplier=2, stem_multiplier=1, partial_normal=4, partial_reduce=2)
    values.update(overrides)
    return SupernetConfig(**values)


def _arch_weights(config, seed=0):
    edges = edge_count(config.nodes)
    ops = len(config.primitives)
    return ArchWeights(_softmax_rows(edges, ops, seed), tf.ones([edges]) * 0.7,
                       _softmax_rows(edges, ops, seed + 1), tf.ones([edges]) * 1.3)


def test_shared_traces_give_the_same_outputs_and_gradients():
    """The TraceCache replays one trace with other variables: same values and gradients."""
    shared = Supernet(_tiny_config(graph="shared"))
    plain = Supernet(_tiny_config(graph="flat"))
    arch = _arch_weights(shared.config)
    for net in (shared, plain):
        net.build_variables(arch)
    plain.set_weights(shared.get_weights())
    images = _images([4, 8, 8, 2], 9)
    labels = tf.constant([0, 1, 2, 3])

    def loss_and_gradients(net):
        def step():
            with tf.GradientTape() as tape:
                tape.watch(net.trainable_variables)
                logits = net(images, arch)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            return loss, tape.gradient(loss, net.trainable_variables)

        return tf.function(step, autograph=False)()

    shared_loss, shared_gradients = loss_and_gradients(shared)
    plain_loss, plain_gradients = loss_and_gradients(plain)
    assert shared.traces._functions and not plain.traces._functions
    np.testing.assert_allclose(shared_loss.numpy(), plain_loss.numpy(), rtol=1e-5)
    assert all(g is not None for g in shared_gradients)
    for a, b in zip(shared_gradients, plain_gradients):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-5)


def test_supernet_sizes_are_pinned():
    """Issue 4's config (b) supernet: classes and input from the config, sizes pinned."""
    config = SupernetConfig(num_classes=10, input_shape=(28, 28, 1), channels=8, cells=5)
    assert [r for r, _ in config.cell_plan()] == [False, True, False, True, False]
    assert [c for _, c in config.cell_plan()] == [8, 16, 16, 32, 32]
    net = Supernet(config)
    arch = ArchWeights(_softmax_rows(14, 7), tf.ones([14]), _softmax_rows(14, 7, 1),
                       tf.ones([14]))
    net.build_variables(arch)
    assert len(net.trainable_variables) == 293
    assert sum(int(np.prod(v.shape)) for v in net.trainable_variables) == 110714
    assert not net.non_trainable_variables  # search-time BN keeps no moving statistics
    logits = net(_images([2, 28, 28, 1]), arch)
    assert logits.shape == (2, 10)


def test_bad_partial_channels_name_the_fix():
    from ubnas_tf.errors import UserError

    with pytest.raises(UserError, match="partial_channels.normal"):
        SupernetConfig(num_classes=10, input_shape=(8, 8, 1), channels=12, cells=5,
                       partial_normal=8)
