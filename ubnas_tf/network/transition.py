"""QuickNet's float transition: how QuickNet halves the resolution and widens the channels.

Bannink et al., "Larq Compute Engine", MLSys 2021 (larq-zoo `sota.QuickNet`): between two
sections of binary blocks, ReLU -> MaxPool(2, stride 1) -> a fixed 3x3 binomial blur as a
depthwise conv with stride 2 (anti-aliased pooling, Zhang, ICML 2019) -> full-precision
Conv1x1 -> BN. All of it is float and cheap (a depthwise conv and a 1x1 conv at the lower
resolution), and QuickNet spends most of its float OPs there. Shared by the QuickNet baseline
and by the networks of a genotype built with `reduction: quicknet`, which put it where the
searched reduction cells were.

The blur is a frozen `DepthwiseConv2D` whose kernel is set once the model exists
(`set_blur_kernels`), saved with the model: no custom initializer to register, and a `.h5`
reloads after `import ubnas_tf` only.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["blur_kernel", "quicknet_transition", "quicknet_transition_layers", "set_blur_kernels"]


def blur_kernel(channels: int) -> np.ndarray:
    """The 3x3 binomial blur of anti-aliased pooling, one per channel (depthwise layout)."""
    row = np.array([1.0, 2.0, 1.0])
    kernel = np.outer(row, row) / 16.0
    return np.repeat(kernel[:, :, None, None], channels, axis=2).astype(np.float32)


def quicknet_transition_layers(width: int, prefix: str) -> list:
    """The transition's layers in order (the blur is the third): the QuickNet baseline applies
    them to a Keras tensor, the block-search supernet holds them."""
    return [
        tf.keras.layers.ReLU(name=f"{prefix}_relu"),
        tf.keras.layers.MaxPool2D(2, strides=1, name=f"{prefix}_pool"),
        tf.keras.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False,
                                        trainable=False, name=f"{prefix}_blur"),
        tf.keras.layers.Conv2D(width, 1, use_bias=False, kernel_initializer="glorot_normal",
                               name=f"{prefix}_conv"),
        tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{prefix}_bn"),
    ]


def quicknet_transition(x, width: int, prefix: str):
    """(y, blur layer): `x` at half its resolution with `width` channels; pass the blur layers
    of a model to `set_blur_kernels` once it is built."""
    layers = quicknet_transition_layers(width, prefix)
    for layer in layers:
        x = layer(x)
    return x, layers[2]


def set_blur_kernels(blur_layers) -> None:
    for blur in blur_layers:
        blur.set_weights([blur_kernel(int(blur.depthwise_kernel.shape[2]))])
