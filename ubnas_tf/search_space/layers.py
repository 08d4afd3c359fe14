"""Small building blocks shared by both search spaces and by the supernet.

Every layer here has a `get_config` and is registered under the `ubnas_tf` package, so a model
that holds it reloads from `.h5` with only `import ubnas_tf`.
"""
import larq as lq
import tensorflow as tf

from ubnas_tf.quantizers import SERIALIZATION_PACKAGE

register = tf.keras.utils.register_keras_serializable(package=SERIALIZATION_PACKAGE)


class _DirectDilation:
    """A dilated convolution as one `Conv2D` op with `dilations` (forward and both gradients).

    `tf.nn.convolution`, which Keras calls, wraps every dilated convolution in SpaceToBatchND /
    BatchToSpaceND (its comment: the dilated gradient was once GPU-only). oneDNN's, cuDNN's and
    XLA's Conv2D kernels and gradients take dilations directly. Same outputs (bit for bit in
    our test), gradients equal up to float rounding; forward + backward of a 3x3 conv with
    dilation 2 on 128x28x28x16 ran 3x faster on the 2-core CPU (89 -> 30 ms, interleaved
    medians; benchmarks/train_step.py has the whole-network figures). Grouped convolutions keep
    Keras's path (its XLA workaround).
    """

    def convolution_op(self, inputs, kernel):
        if self.groups > 1 or max(self.dilation_rate) == 1 or self.data_format != "channels_last":
            return super().convolution_op(inputs, kernel)
        padding = self.padding.upper() if isinstance(self.padding, str) else self.padding
        return tf.nn.conv2d(inputs, kernel, strides=list(self.strides), padding=padding,
                            dilations=list(self.dilation_rate), name=type(self).__name__)


class QuantConv2D(_DirectDilation, lq.layers.QuantConv2D):
    """`larq.layers.QuantConv2D` with direct dilated convolutions (built inside the modules,
    which serialise their own arguments: a saved model never names this class)."""


class Conv2D(_DirectDilation, tf.keras.layers.Conv2D):
    """`tf.keras.layers.Conv2D` with direct dilated convolutions (the float twin's modules)."""


@register
class BatchStatsNorm(tf.keras.layers.Layer):
    """Batch normalisation with batch statistics only: no affine, no moving averages.

    The search-time BN of DARTS (affine=False). Keeping no moving statistics saves the graph
    nodes and variables of their updates (see PEER_BENCH.md: the naive TF supernet spent a
    large part of its ~70k nodes there); the supernet is always run in training mode.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        # A static channel count makes scale and offset two constants; tf.shape would add a
        # Shape/StridedSlice/Pack/Fill subgraph per norm (thousands of nodes in a supernet).
        channels = inputs.shape[-1]
        if channels is None:
            channels = tf.shape(inputs)[-1]
        ones = tf.ones([channels], inputs.dtype)
        zeros = tf.zeros([channels], inputs.dtype)
        # One FusedBatchNormV3 op forward, one gradient op backward.
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, ones, zeros, epsilon=self.epsilon, is_training=True
        )
        return outputs

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def make_norm(kind: str, affine: bool, name: str | None = None) -> tf.keras.layers.Layer:
    """`batch_stats` (search) or `batch_norm` (Keras BN with moving statistics)."""
    if kind == "batch_stats":
        return BatchStatsNorm(name=name)
    if kind == "batch_norm":
        return tf.keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, center=affine, scale=affine, name=name
        )
    raise ValueError(f"unknown norm {kind!r}: use 'batch_stats' or 'batch_norm'")


@register
class Subsample(tf.keras.layers.Layer):
    """Keep every `stride`-th row and column.

    Keras refuses strides > 1 together with dilation > 1, so a strided dilated conv is the
    stride-1 dilated conv followed by this (same output size as a 'same' strided conv).
    """

    def __init__(self, stride: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride

    def call(self, inputs):
        return inputs[:, :: self.stride, :: self.stride, :]

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


@register
class Identity(tf.keras.layers.Layer):
    def call(self, inputs):
        return tf.identity(inputs)


@register
class Zero(tf.keras.layers.Layer):
    """The DARTS `none` op: zeros of the output shape."""

    def __init__(self, stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride

    def call(self, inputs):
        return tf.zeros_like(inputs[:, :: self.stride, :: self.stride, :])

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


def pool(kind: str, stride: int, name: str | None = None) -> tf.keras.layers.Layer:
    """3x3 max or average pooling, 'same' padding (average excludes the padding, as DARTS)."""
    layer = {"max": tf.keras.layers.MaxPool2D, "avg": tf.keras.layers.AveragePooling2D}[kind]
    return layer(pool_size=3, strides=stride, padding="same", name=name)
