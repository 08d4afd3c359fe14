"""The binary search space of EBNAS/UBNAS: ops that suit 1-bit networks.

Seven ops, no `none` and no separable convs (depthwise convs are not binarized by LCE).
Binary convs are `BinaryConvModule`s whose structure comes from the config, so the supernet
(`ebnas_search`) and the retrained network (`ebnas_retrain`) build the same op definitions.
Parameter-free ops: 3x3 pools, and skip (AvgPool(2) on stride 2: the module's pooled shortcut,
where DARTS would use a parametric FactorizedReduce).
"""
from ubnas_tf.search_space.layers import Identity, Zero, pool
from ubnas_tf.search_space.module import BinaryConvModule, projection_structure
import tensorflow as tf

PRIMITIVES = (
    "skip_connect",
    "max_pool_3x3",
    "avg_pool_3x3",
    "bin_conv_3x3",
    "bin_conv_5x5",
    "bin_dil_conv_3x3",
    "bin_dil_conv_5x5",
)


def _bin_conv(kernel_size, dilation):
    def build(channels, stride, structure, name):
        return BinaryConvModule(
            channels, kernel_size, dilation, stride, structure=structure, name=name
        )

    return build


def _skip(channels, stride, structure, name):
    if stride == 1:
        return Identity(name=name)
    return tf.keras.layers.AveragePooling2D(stride, padding="same", name=name)


OPS = {
    "none": lambda channels, stride, structure, name: Zero(stride, name=name),
    "skip_connect": _skip,
    "max_pool_3x3": lambda channels, stride, structure, name: pool("max", stride, name),
    "avg_pool_3x3": lambda channels, stride, structure, name: pool("avg", stride, name),
    "bin_conv_3x3": _bin_conv(3, 1),
    "bin_conv_5x5": _bin_conv(5, 1),
    "bin_dil_conv_3x3": _bin_conv(3, 2),
    "bin_dil_conv_5x5": _bin_conv(5, 2),
}

PARAMETER_FREE = frozenset({"none", "skip_connect", "max_pool_3x3", "avg_pool_3x3"})


def preprocess(channels, reduction_prev, structure, name):
    """The 1x1 cell-input projection: a binary 1x1 conv (stride 2 after a reduction cell), with
    a real-valued group-mean shortcut when `structure.projection_shortcut`."""
    return BinaryConvModule(
        channels,
        1,
        strides=2 if reduction_prev else 1,
        structure=projection_structure(structure),
        name=name,
    )
