"""Trace a repeated layer once, replay the trace with each copy's own variables.

Tracing is the Python-bound part of a supernet's time to first step: about a millisecond per
graph op on 2 cores, and a supernet repeats the same edge dozens of times (PEER_BENCH.md: a
naive TF supernet spent 91-193 s tracing one step). See `TraceCache`.
"""
import tensorflow as tf

__all__ = ["TraceCache"]


class TraceCache:
    """Traces a layer's computation once per signature and replays it with other variables.

    A supernet repeats the same edge (same ops, channels, stride, input shape) dozens of times
    with different weights. Traced naively, each copy costs its own Python graph building
    (about a millisecond per op here, tens of thousands of ops forward and backward: most of
    a naive supernet's minutes to first step). Here the first layer of each signature is
    traced into a `ConcreteFunction`; every other layer of that signature calls the same
    function with its own variables as the captured inputs, so a signature is traced once
    forward and once backward for all its copies and for every step function.

    By default the functions are marked `_noinline`: each body is optimised once and run as a
    function call instead of being copied into the caller's graph, which keeps the step graphs
    (and the time to build and optimise them) small. Measured on 2 cores (issue 4's configs a
    and b): time to first step 27 s / 17 s against 66 s / 32 s for a flat graph (every edge
    traced), steps about 10% slower (the calls' overhead). `inline=True` inlines the shared
    functions (in between on both counts).

    Only layers whose variables are all trainable are shared (a layer that updates state,
    such as Keras BatchNormalization's moving averages, would update its template's copy);
    others, and eager calls, run directly.
    """

    def __init__(self, enabled: bool = True, inline: bool = False):
        self.enabled = enabled
        self.inline = inline
        self._functions = {}

    def clear(self) -> None:
        """Forget the traces (and their graphs); a later call traces again."""
        self._functions.clear()

    @staticmethod
    def signature(layer) -> tuple:
        """What makes two layers interchangeable up to their variables."""
        if hasattr(layer, "signature"):
            return (type(layer).__name__,) + tuple(layer.signature)
        config = dict(layer.get_config())
        config.pop("name", None)
        return (type(layer).__name__, repr(sorted(config.items())))

    def call(self, layer, function, *inputs):
        """`function(*inputs)`, where `function` reads only the variables of `layer`."""
        ready = getattr(layer, "ready", layer.built)
        if not self.enabled or tf.executing_eagerly() or not ready or layer.non_trainable_weights:
            return function(*inputs)
        strategy = tf.distribute.get_strategy()
        key = (self.signature(layer), id(strategy),
               tuple((tuple(x.shape), x.dtype.name) for x in inputs))
        if key not in self._functions:
            self._functions[key] = self._trace(layer, function, inputs, strategy)
        concrete, positions = self._functions[key]
        weights = layer.weights
        captured = [
            capture if position is None else weights[position].handle
            for capture, position in zip(concrete.captured_inputs, positions)
        ]
        # The public __call__ would pass the template's own variables; _call_flat takes the
        # captured inputs to use, and records the call (forward/backward pair) on the tape.
        return concrete._call_flat(list(inputs), captured)  # pylint: disable=protected-access

    def _trace(self, layer, function, inputs, strategy):
        attributes = None if self.inline else {"_noinline": True}
        traced = tf.function(function, autograph=False, experimental_attributes=attributes)
        concrete = traced.get_concrete_function(
            *[tf.TensorSpec(x.shape, x.dtype) for x in inputs])
        # Position in layer.weights of the variable behind each captured handle (any replica's
        # copy: the replica that traced it captured its own).
        owners = {}
        for position, variable in enumerate(layer.weights):
            for component in strategy.experimental_local_results(variable):
                owners[id(component.handle)] = position
        positions = [owners.get(id(capture)) for capture in concrete.captured_inputs]
        return concrete, positions
