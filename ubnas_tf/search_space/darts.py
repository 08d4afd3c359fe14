"""The float DARTS search space (Liu et al., ICLR 2019; code quark0/darts, operations.py).

Kept beside the binary space so published DARTS/PC-DARTS genotypes build here and their
parameter counts can be checked against the papers' tables. Convs have no bias, as in DARTS.
"""
import tensorflow as tf

from ubnas_tf.search_space.layers import Identity, Subsample, Zero, make_norm, pool, register

PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class _Sequential(tf.keras.layers.Layer):
    """A named chain of sublayers; subclasses build `self.chain` in __init__."""

    chain: list

    def call(self, inputs, training=None):
        x = inputs
        for layer in self.chain:
            x = layer(x, training=training)
        return x


def _norm(affine, structure, name):
    return make_norm(structure.norm, affine, name=name)


@register
class ReLUConvBN(_Sequential):
    def __init__(self, filters, kernel_size, strides=1, affine=True, norm="batch_norm", **kw):
        super().__init__(**kw)
        self.config = dict(filters=filters, kernel_size=kernel_size, strides=strides,
                           affine=affine, norm=norm)
        self.chain = [
            tf.keras.layers.ReLU(),
            tf.keras.layers.Conv2D(filters, kernel_size, strides, "same", use_bias=False),
            make_norm(norm, affine),
        ]

    def get_config(self):
        return {**super().get_config(), **self.config}


@register
class DilConv(_Sequential):
    """ReLU -> depthwise (dilated) conv -> pointwise conv -> BN."""

    def __init__(self, filters, kernel_size, strides, dilation, affine=True, norm="batch_norm",
                 **kw):
        super().__init__(**kw)
        self.config = dict(filters=filters, kernel_size=kernel_size, strides=strides,
                           dilation=dilation, affine=affine, norm=norm)
        subsample = strides > 1 and dilation > 1  # Keras refuses stride>1 with dilation>1
        self.chain = [
            tf.keras.layers.ReLU(),
            tf.keras.layers.DepthwiseConv2D(kernel_size, 1 if subsample else strides, "same",
                                            dilation_rate=dilation, use_bias=False),
            *([Subsample(strides)] if subsample else []),
            tf.keras.layers.Conv2D(filters, 1, use_bias=False),
            make_norm(norm, affine),
        ]

    def get_config(self):
        return {**super().get_config(), **self.config}


@register
class SepConv(_Sequential):
    """Two stacked DilConv(dilation=1), the first carrying the stride."""

    def __init__(self, filters, kernel_size, strides, affine=True, norm="batch_norm", **kw):
        super().__init__(**kw)
        self.config = dict(filters=filters, kernel_size=kernel_size, strides=strides,
                           affine=affine, norm=norm)
        self.chain = [
            DilConv(filters, kernel_size, strides, 1, affine, norm),
            DilConv(filters, kernel_size, 1, 1, affine, norm),
        ]

    def get_config(self):
        return {**super().get_config(), **self.config}


@register
class FactorizedReduce(tf.keras.layers.Layer):
    """Halve the resolution with two offset 1x1 stride-2 convs, concatenated (DARTS)."""

    def __init__(self, filters, affine=True, norm="batch_norm", **kw):
        super().__init__(**kw)
        self.config = dict(filters=filters, affine=affine, norm=norm)
        self.conv_even = tf.keras.layers.Conv2D(filters // 2, 1, 2, use_bias=False)
        self.conv_odd = tf.keras.layers.Conv2D(filters - filters // 2, 1, 2, use_bias=False)
        self.norm = make_norm(norm, affine)

    def call(self, inputs, training=None):
        x = tf.nn.relu(inputs)
        # Pad one row/column so both branches give ceil(H/2) rows for odd sizes as well.
        shifted = tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]])[:, 1:, 1:, :]
        x = tf.concat([self.conv_even(x), self.conv_odd(shifted)], axis=-1)
        return self.norm(x, training=training)

    def get_config(self):
        return {**super().get_config(), **self.config}


def _sep(kernel_size):
    return lambda c, stride, structure, name: SepConv(
        c, kernel_size, stride, structure.affine, structure.norm, name=name)


def _dil(kernel_size):
    return lambda c, stride, structure, name: DilConv(
        c, kernel_size, stride, 2, structure.affine, structure.norm, name=name)


def _skip(c, stride, structure, name):
    if stride == 1:
        return Identity(name=name)
    return FactorizedReduce(c, structure.affine, structure.norm, name=name)


OPS = {
    "none": lambda c, stride, structure, name: Zero(stride, name=name),
    "max_pool_3x3": lambda c, stride, structure, name: pool("max", stride, name),
    "avg_pool_3x3": lambda c, stride, structure, name: pool("avg", stride, name),
    "skip_connect": _skip,
    "sep_conv_3x3": _sep(3),
    "sep_conv_5x5": _sep(5),
    "sep_conv_7x7": _sep(7),
    "dil_conv_3x3": _dil(3),
    "dil_conv_5x5": _dil(5),
}

PARAMETER_FREE = frozenset({"none", "skip_connect", "max_pool_3x3", "avg_pool_3x3"})


def preprocess(channels, reduction_prev, structure, name):
    """DARTS's cell-input projection: ReLUConvBN 1x1, or FactorizedReduce after a reduction."""
    if reduction_prev:
        return FactorizedReduce(channels, structure.affine, structure.norm, name=name)
    return ReLUConvBN(channels, 1, 1, structure.affine, structure.norm, name=name)
