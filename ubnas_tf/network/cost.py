"""What a model costs: 1-bit and 32-bit parameters, binary and float MACs, OPs and size.

The binary-NAS papers (BATS, CP-NAS, EBNAS, UBNAS) compare networks by

    OPs = FLOPs + BOPs / 64

where FLOPs are the full-precision multiply-accumulates and BOPs the binary ones (a 64-bit
XNOR-popcount does 64 of them at once; Liu et al., Bi-Real Net, ECCV 2018, sec. 4.3).

A multiply-accumulate is binary (a BOP) when both the input and the weights of its layer are
1-bit: a `QuantConv2D` whose `input_quantizer` and `kernel_quantizer` both have precision 1.
A layer with binary inputs but real weights (stage one of two-stage training) still costs FLOPs.

This builds on larq's profiler (`larq.models.ModelProfile`): same rules for a weight's bit
width (`precision` of its quantized variable), for a MAC's precision (the larger of input and
weight precision) and for MACs = weights x output pixels. Larq's profiler only looks at the
top-level layers of a model and finds no MACs inside nested layers (our ops are layers that
hold layers), so this module walks every nested layer instead and reads each leaf's output
shape from the shape it was built with.

Parameter counts are *trainable* parameters, as PyTorch's `named_parameters` (and so the DARTS
and PC-DARTS tables) count them: conv weights, BN gamma and beta, classifier weight and bias.
Layers named `auxiliary*` are left out by default, as DARTS's `count_parameters_in_MB` does.
The model size is the inference size: 1-bit weights packed 8 to a byte, 32-bit weights 4 bytes
each, a batch norm as the 2 floats per channel it folds to (as larq's summary counts it).
"""
from __future__ import annotations

import dataclasses
import math

import larq as lq
import numpy as np
import tensorflow as tf

from ubnas_tf.network.genotype_network import AUXILIARY_PREFIX

__all__ = ["LayerCost", "CostProfile", "profile", "op_profile", "MAC_LAYERS"]

# Layers whose MACs are (weights other than the bias) x (output pixels), larq's rule; their
# larq Quant* subclasses are included by inheritance.
MAC_LAYERS = (
    tf.keras.layers.Conv1D,
    tf.keras.layers.Conv2D,
    tf.keras.layers.Conv3D,
    tf.keras.layers.DepthwiseConv2D,
    tf.keras.layers.SeparableConv1D,
    tf.keras.layers.SeparableConv2D,
    tf.keras.layers.Dense,
)


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """The cost of one leaf layer. `name` is its path, e.g. `cell3_edge0_bin_conv_3x3/conv`."""

    name: str
    kind: str
    input_bits: int
    weight_bits: int
    output_shape: tuple | None
    params_binary: int
    params_float: int
    params_non_trainable: int
    macs_binary: int
    macs_float: int
    size_bits: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CostProfile:
    """Totals over the rows of `layers` (see the module docstring for the rules)."""

    layers: tuple

    @property
    def params_binary(self) -> int:
        return sum(row.params_binary for row in self.layers)

    @property
    def params_float(self) -> int:
        return sum(row.params_float for row in self.layers)

    @property
    def params(self) -> int:
        return self.params_binary + self.params_float

    @property
    def params_non_trainable(self) -> int:
        return sum(row.params_non_trainable for row in self.layers)

    @property
    def macs_binary(self) -> int:
        """BOPs."""
        return sum(row.macs_binary for row in self.layers)

    @property
    def macs_float(self) -> int:
        """FLOPs (as multiply-accumulates, the convention of the NAS tables)."""
        return sum(row.macs_float for row in self.layers)

    @property
    def ops(self) -> float:
        """OPs = FLOPs + BOPs / 64."""
        return self.macs_float + self.macs_binary / 64.0

    @property
    def model_size_bytes(self) -> int:
        return math.ceil(sum(row.size_bits for row in self.layers) / 8)

    def to_dict(self) -> dict:
        """The totals (no rows), with the names metrics.json uses."""
        return {
            "params_binary": self.params_binary,
            "params_float": self.params_float,
            "params": self.params,
            "params_non_trainable": self.params_non_trainable,
            "binary_macs": self.macs_binary,
            "float_macs": self.macs_float,
            "ops": self.ops,
            "model_size_bytes": self.model_size_bytes,
        }

    def table(self, only_costly: bool = True) -> str:
        """A fixed-width table of the rows (only those with parameters or MACs by default)."""
        header = ("layer", "kind", "in/w bits", "output", "1-bit params", "32-bit params",
                  "binary MACs", "float MACs")
        rows = [header]
        for row in self.layers:
            if only_costly and not (row.params_binary or row.params_float or row.macs_binary
                                    or row.macs_float):
                continue
            rows.append((row.name, row.kind, f"{row.input_bits}/{row.weight_bits}",
                         "x".join(str(d) for d in row.output_shape or ()) or "-",
                         f"{row.params_binary:,}", f"{row.params_float:,}",
                         f"{row.macs_binary:,}", f"{row.macs_float:,}"))
        rows.append(("total", "", "", "", f"{self.params_binary:,}", f"{self.params_float:,}",
                     f"{self.macs_binary:,}", f"{self.macs_float:,}"))
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
        lines = ["  ".join(str(c).ljust(w) if i < 4 else str(c).rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        summary = (f"OPs = FLOPs + BOPs/64 = {self.ops:,.0f}; model size "
                   f"{self.model_size_bytes:,} bytes (1-bit weights packed)")
        return "\n".join(lines + [summary])


def _children(layer):
    # Direct sublayers in creation order (tf-keras's own traversal; `submodules` is recursive
    # and unordered).
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _own_weights(layer):
    return list(layer._trainable_weights) + list(layer._non_trainable_weights)


def _precision(quantizer) -> int:
    precision = getattr(quantizer, "precision", None)
    return 32 if precision is None or isinstance(quantizer, lq.quantizers.NoOp) else precision


def _output_shape(layer):
    """The output shape of a (possibly nested) built layer, without its batch dimension."""
    input_shape = getattr(layer, "_build_input_shape", None)
    if input_shape is None:
        return None
    try:
        shape = layer.compute_output_shape(input_shape)
    except (NotImplementedError, ValueError, TypeError, AttributeError):
        return None
    shape = tf.TensorShape(shape)
    if shape.rank is None:
        return None
    return tuple(shape.as_list()[1:])


def _layer_cost(layer, path) -> LayerCost:
    weights = _own_weights(layer)
    trainable_ids = {id(w) for w in layer.trainable_weights}  # empty for a frozen layer
    input_bits = _precision(getattr(layer, "input_quantizer", None))
    params_binary = params_float = non_trainable = size_bits = 0
    kernel_bits = 32
    batch_norm = isinstance(layer, tf.keras.layers.BatchNormalization)
    for weight in weights:
        count = int(np.prod(weight.shape.as_list())) if weight.shape.rank else 1
        bits = getattr(weight, "precision", None) or 32
        if id(weight) in trainable_ids:
            if bits == 1:
                params_binary += count
            else:
                params_float += count
        else:
            non_trainable += count
        if "kernel" in weight.name:
            kernel_bits = bits
        if not batch_norm:
            size_bits += bits * count
    if batch_norm:
        size_bits = 2 * 32 * int(layer._build_input_shape[layer.axis[0]]
                                 if isinstance(layer.axis, (list, tuple)) else
                                 layer._build_input_shape[layer.axis])
    output_shape = _output_shape(layer)
    macs_binary = macs_float = 0
    if isinstance(layer, MAC_LAYERS) and output_shape is not None:
        pixels = int(np.prod(output_shape[:-1])) if len(output_shape) > 1 else 1
        for weight in weights:
            if "bias" in weight.name:
                continue
            count = int(np.prod(weight.shape.as_list()))
            bits = getattr(weight, "precision", None) or 32
            if max(input_bits, bits) == 1:
                macs_binary += count * pixels
            else:
                macs_float += count * pixels
    return LayerCost(
        name=path,
        kind=type(layer).__name__,
        input_bits=input_bits,
        weight_bits=kernel_bits,
        output_shape=output_shape,
        params_binary=params_binary,
        params_float=params_float,
        params_non_trainable=non_trainable,
        macs_binary=macs_binary,
        macs_float=macs_float,
        size_bits=size_bits,
    )


def _walk(layer, path, rows):
    children = _children(layer)
    if _own_weights(layer) or not children:
        rows.append(_layer_cost(layer, path))
    for child in children:
        _walk(child, f"{path}/{child.name}", rows)


def profile(model: tf.keras.Model, *, exclude=(AUXILIARY_PREFIX,)) -> CostProfile:
    """The cost of a built model, one row per leaf layer.

    # Arguments
        model: a built Keras model (functional, or any model whose layers were called once).
        exclude: top-level layer name prefixes to leave out (the auxiliary head by default).
    """
    rows: list[LayerCost] = []
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        if any(layer.name.startswith(prefix) for prefix in exclude):
            continue
        _walk(layer, layer.name, rows)
    return CostProfile(tuple(rows))


def op_profile(space, op_name: str, *, channels: int, stride: int = 1, input_size=(32, 32),
               structure=None) -> CostProfile:
    """The cost of one op of a search space on an input of `input_size` x `channels`: what an
    OPs-aware search weighs each candidate op of an edge by.

    `structure` defaults to the space's *retraining* module (`space.network_module`), so a
    binary op is costed as the 1-bit op it becomes in the retrained network, not as the
    real-weight op the supernet trains.
    """
    from ubnas_tf.search_space import get_space

    space = get_space(space) if isinstance(space, str) else space
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    inputs = tf.keras.Input((height, width, channels))
    op = space.build_op(op_name, channels, stride, structure, name=op_name)
    return profile(tf.keras.Model(inputs, op(inputs)))
