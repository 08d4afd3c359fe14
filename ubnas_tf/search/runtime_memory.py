"""Keep a long search's resident memory near what its tensors need.

Three costs that are not the network's, measured on issue 4's config (b) (benchmarks/):
- the Python graphs of the traced steps: once TensorFlow's runtime holds a step function, its
  `FuncGraph` (and the graphs of the functions it calls) are only needed to trace again.
  `GraphFreeFunction` traces a step, keeps the runtime function and drops the graphs;
- eager kernels cached while the variables were created (one per variable for the ops that
  carry the variable's name): `release_free_memory` clears the cache, they are not used again;
- glibc's per-thread malloc arenas, which keep freed memory (`limit_malloc_arenas`), and the
  free memory at the top of the heap after tracing (`release_free_memory` trims it).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os

import tensorflow as tf
from tensorflow.python.eager import context

__all__ = ["GraphFreeFunction", "limit_malloc_arenas", "release_free_memory"]

_M_ARENA_MAX = -8  # glibc's mallopt parameter


@functools.lru_cache(maxsize=None)
def _glibc():
    """The C library when it is glibc (mallopt and malloc_trim exist), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX does); True when applied.

    TensorFlow's thread pools each get an arena by default, and every arena keeps its own free
    memory. Call it before TensorFlow's threads first allocate (the first op). Threads then
    contend for the one arena: in paired runs of benchmarks/ config (b) it saved 0.08 GiB of
    peak memory and cost about 15% of step time, so only `low_memory: true` asks for it.
    """
    if "MALLOC_ARENA_MAX" in os.environ:  # the user's choice, applied by glibc itself
        return False
    libc = _glibc()
    return bool(libc and libc.mallopt(_M_ARENA_MAX, int(arenas)))


def release_free_memory() -> None:
    """Collect Python garbage, clear the eager kernel cache and return free heap to the OS."""
    gc.collect()
    context.context().clear_kernel_cache()
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)


def _drop_graphs(function, seen: set) -> None:
    """Forget the Python graph and FunctionDef copy of a runtime function and its callees."""
    if id(function) in seen:
        return
    seen.add(id(function))
    # pylint: disable=protected-access  (TF 2.16's AtomicFunction; tensorflow is pinned)
    function._cached_graph = None
    function._cached_definition = None
    for child in function._children:
        _drop_graphs(child, seen)


class GraphFreeFunction:
    """`tf.function(python_function, autograph=False)` that keeps no Python graph.

    Each input signature (shapes and dtypes) is traced once; the function's runtime part (the
    `AtomicFunction` TensorFlow calls, which keeps its callees registered) and its captured
    inputs are kept, and `release_graphs` drops every `FuncGraph`. Calls run the runtime
    function directly, as a `ConcreteFunction` does when no gradient tape watches. For steps
    called eagerly without a tape (the search loop), not inside other functions or tapes.
    """

    def __init__(self, python_function):
        self._python_function = python_function
        self._traced = {}  # signature -> (AtomicFunction, captured inputs)

    @staticmethod
    def _signature(args) -> tuple:
        return tuple((tuple(arg.shape), arg.dtype) for arg in args)

    def trace(self, *args):
        """The runtime function for the signature of `args` (tensors or TensorSpecs)."""
        return self._entry(args)[0]

    def _entry(self, args) -> tuple:
        """(runtime function, captured inputs) for the signature of `args`, traced once."""
        key = self._signature(args)
        if key not in self._traced:
            traced = tf.function(self._python_function, autograph=False)
            concrete = traced.get_concrete_function(
                *[tf.TensorSpec(arg.shape, arg.dtype) for arg in args])
            # pylint: disable=protected-access
            runtime_function = concrete._inference_function
            # Deferred captures (callables) are evaluated per call, as ConcreteFunction does.
            captures = list(concrete._captured_inputs)
            self._traced[key] = (runtime_function, captures)
        return self._traced[key]

    def release_graphs(self) -> None:
        """Drop the Python graphs of every trace so far (and of the functions they call).

        Call it once every function that calls the same shared functions is traced: tracing
        another caller needs their graphs.
        """
        seen = set()
        for runtime_function, _ in self._traced.values():
            _drop_graphs(runtime_function, seen)

    def __call__(self, *args):
        args = [tf.convert_to_tensor(arg) for arg in args]
        runtime_function, captures = self._entry(args)
        captured = tf.nest.flatten([c() if callable(c) else c for c in captures],
                                   expand_composites=True)
        return runtime_function.call_preflattened(args + captured)

    def graph_nodes(self, *args) -> int:
        """Nodes of the step's own graph (not of the functions it calls) for `args`' signature."""
        return len(self.trace(*args).definition.node_def)
