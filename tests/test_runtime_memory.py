"""GraphFreeFunction runs as tf.function does without keeping graphs; memory helpers."""
import gc
import os
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import func_graph

from ubnas_tf.search.runtime_memory import GraphFreeFunction, release_free_memory
from ubnas_tf.search.shared_traces import TraceCache


def _live_func_graphs():
    gc.collect()
    return {id(o) for o in gc.get_objects() if isinstance(o, func_graph.FuncGraph)}


def _func_graph_names(ids):
    gc.collect()
    return [o.name for o in gc.get_objects()
            if isinstance(o, func_graph.FuncGraph) and id(o) in ids]


def test_graph_free_function_matches_tf_function_and_drops_its_graphs():
    dense = tf.keras.layers.Dense(3)
    dense.build((None, 4))
    counter = tf.Variable(0)

    def make_step(traces):
        def step(x, scale):
            # A shared (TraceCache) layer call inside, as the search steps have.
            y = traces.call(dense, dense, x) * scale
            counter.assign_add(1)  # a state change, kept by the runtime function
            return tf.reduce_sum(y), y
        return step

    x = tf.constant(np.arange(8, dtype=np.float32).reshape(2, 4))
    expected_sum, expected = tf.function(make_step(TraceCache()), autograph=False)(x, 2.0)
    before = _live_func_graphs()
    traces = TraceCache()
    step = GraphFreeFunction(make_step(traces))
    step.trace(x, tf.TensorSpec([], tf.float32))
    assert len(_live_func_graphs() - before) >= 2  # the step's and the shared function's
    step.release_graphs()
    traces.clear()
    assert not _live_func_graphs() - before
    release_free_memory()
    # It still runs, with the variables' current values.
    total, y = step(x, tf.constant(2.0))
    np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-6)
    assert float(total) == float(expected_sum)
    dense.kernel.assign(dense.kernel * 0.0)
    assert float(step(x, tf.constant(2.0))[0]) == 0.0
    assert int(counter.numpy()) == 3
    # A new signature is traced on its own (the shared function is traced again).
    assert step(tf.ones([3, 4]), tf.constant(1.0))[1].shape == (3, 3)
    assert step.graph_nodes(x, tf.TensorSpec([], tf.float32)) > 3


def test_malloc_arenas_are_limited_unless_the_user_set_them():
    code = textwrap.dedent("""
        import os
        from ubnas_tf.search.runtime_memory import limit_malloc_arenas
        print(limit_malloc_arenas(), flush=True)
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = []
    for extra in ({}, {"MALLOC_ARENA_MAX": "4"}):
        env = {**os.environ, "PYTHONPATH": root, **extra}
        env.pop("MALLOC_ARENA_MAX", None) if not extra else None
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)
        results.append(out.stdout.strip().splitlines()[-1])
    assert results == ["True", "False"]


def test_search_steps_keep_no_python_graph_once_traced():
    import types

    from ubnas_tf import config as config_lib
    from ubnas_tf.search.run import build_search_steps

    config = config_lib.load("search", overrides=[
        "channels=8", "cells=5", "nodes=2", "multiplier=2", "stem_multiplier=1",
        "partial_channels.normal=4", "partial_channels.reduce=2"])
    before = _live_func_graphs()
    steps = build_search_steps(config, types.SimpleNamespace(input_shape=(8, 8, 1),
                                                             num_classes=4))
    assert steps.graph_free
    images, labels = tf.random.normal([4, 8, 8, 1]), tf.constant([0, 1, 2, 3])
    losses = [float(steps.arch_step(images, labels, images, labels, tf.constant(0.5))[0]),
              float(steps.weight_step(images, labels)[0])]
    assert all(np.isfinite(losses))
    assert steps.traces == {"weight": 1, "arch": 1}
    # The step graphs are gone. Some edge traces stay: tf.custom_gradient (ApproxSign) keeps
    # its gradient function, and the graph it closes over, in TensorFlow's global registry.
    left = _func_graph_names(_live_func_graphs() - before)
    assert not [name for name in left if "step" in name], left
    assert set(left) <= {"candidates", "function"}, left
