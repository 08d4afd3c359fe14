"""The stems before the cells: one 3x3 conv for small images, three stride-2 convs for large.

The stem is full precision in every variant (every binary-NAS paper we compare with keeps the
first layer float and counts it as FLOPs). Kinds:

- `cifar` (DARTS NetworkCIFAR, EBNAS's CIFAR network and search): Conv3x3 + BN, stride 1; both
  cell inputs of the first cell are its output.
- `imagenet` (DARTS NetworkImageNet, quark0/darts model.py; PC-DARTS's ImageNet supernet,
  yuhuixu1993/PC-DARTS model_search_imagenet.py): stride 8 in all,

      stem0: Conv3x3 s2 (C/2) + BN + ReLU + Conv3x3 s2 (C) + BN       -> s0, 1/4 of the input
      stem1: ReLU + Conv3x3 s2 (C) + BN                               -> s1, 1/8 of the input

  The first cell takes s0 at twice s1's resolution, so it is built with reduction_prev=True
  (its preprocess0 halves s0).
- `ebnas_imagenet` (EBNAS's NetworkImageNet, sscckk/EBNAS model.py): the same three convs, but
  stem0's second conv has 4 groups and stem1's conv 2 groups, and the ReLUs close each stem
  (stem0: ... BN + ReLU; stem1: Conv + BN + ReLU). The grouped float convs are what brings
  EBNAS's ImageNet network to its published 1.72e8 OPs (DARTS's stem alone would cost 2.1e8
  FLOPs at C=96). TFLite runs grouped float convs (checked: LCE's interpreter matches Keras).
- `auto`: `imagenet` when the shorter input side is at least `AUTO_IMAGENET_MIN_SIDE` (128),
  else `cifar`. Why 128: with the stride-8 stem and the two reductions the last cells see
  1/32 of the input, so 128 pixels still leave 4x4 features (224 leaves DARTS's 7x7), while a
  stride-1 stem at 128 pixels or more would run the first cells at 16x CIFAR's spatial cost;
  below 128 (CIFAR, 64x64 downsampled ImageNet, Fashion-MNIST) the CIFAR stem keeps enough
  resolution.

C is the channels the caller asks for: DARTS's NetworkImageNet uses the cells' C, the CIFAR
network and PC-DARTS's supernet stem_multiplier * C; the callers choose (see `stem_channels`).
Keras pads 'same' strided convs asymmetrically (0 before, 1 after on even sizes) where PyTorch
pads 1 on both sides: the same shapes and MACs, the sampling grid shifted by one pixel.
"""
from __future__ import annotations

import tensorflow as tf

from ubnas_tf.errors import UserError
from ubnas_tf.search_space.layers import make_norm, register

__all__ = ["STEM_KINDS", "AUTO_IMAGENET_MIN_SIDE", "Stem", "resolve_stem", "stem_stride",
           "stem_channels"]

STEM_KINDS = ("auto", "cifar", "imagenet", "ebnas_imagenet")
AUTO_IMAGENET_MIN_SIDE = 128

# The first conv's output channels. Measured: TensorFlow 2.16's oneDNN CPU kernels abort the
# process ("double free or corruption") in the gradient of a supernet whose stem starts with a
# 3 -> 4 channel stride-2 conv on 224x224 images; 8 channels and more run (so do 4 with
# TF_ENABLE_ONEDNN_OPTS=0). Every published stem has 24 or more.
MIN_FIRST_CHANNELS = 8

# (kernel groups of stem0's second conv, of stem1's conv, ReLU closing each stem)
_LARGE = {"imagenet": (1, 1, False), "ebnas_imagenet": (4, 2, True)}


def resolve_stem(stem: str, input_shape) -> str:
    """The concrete stem kind for `stem` (a `STEM_KINDS` value) and images of `input_shape`
    (H, W, C); `auto` picks by the shorter side (see the module docstring)."""
    if stem not in STEM_KINDS:
        raise UserError(f"stem {stem!r} is not valid: use one of {', '.join(STEM_KINDS)}")
    if stem != "auto":
        return stem
    return "imagenet" if min(int(input_shape[0]), int(input_shape[1])) >= \
        AUTO_IMAGENET_MIN_SIDE else "cifar"


def stem_stride(kind: str) -> int:
    """How much a (resolved) stem divides the input's height and width before the cells."""
    return 1 if kind == "cifar" else 8


def stem_channels(kind: str, channels: int, stem_multiplier: int, *, search: bool) -> int:
    """Output channels of the stem: stem_multiplier * C, except DARTS's/EBNAS's retrained
    ImageNet network, whose stem ends at C (NetworkImageNet: C_prev_prev = C_prev = C)."""
    if kind == "cifar" or search:
        return stem_multiplier * channels
    return channels


@register
class Stem(tf.keras.layers.Layer):
    """A stride-8 stem of kind `kind` ending at `channels` channels; `call` returns (s0, s1),
    the two inputs of the first cell. (The `cifar` stem, one conv + BN, stays the flat
    `stem_conv`/`stem_bn` layers of the network and the supernet, so that models and
    checkpoints written before the large stems existed still load.)

    # Arguments
        kind: `imagenet` or `ebnas_imagenet`.
        channels: output channels (the large stems' first conv has channels // 2).
        norm, affine: the BN of the stem (`batch_norm` + affine when retraining, the search
            module's `batch_stats` in the supernet), as `layers.make_norm`.
    """

    def __init__(self, kind: str, channels: int, norm: str = "batch_norm", affine: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        if kind not in _LARGE:
            raise UserError(f"stem kind {kind!r} has no stride-8 stem: use one of "
                            f"{', '.join(_LARGE)}")
        self.kind, self.channels, self.norm, self.affine = kind, int(channels), norm, affine

        def conv(filters, strides, groups, name):
            return tf.keras.layers.Conv2D(filters, 3, strides=strides, padding="same",
                                          groups=groups, use_bias=False, name=name)

        groups0, groups1, relu_last = _LARGE[kind]
        half = self.channels // 2
        if half < MIN_FIRST_CHANNELS or half % groups0 or self.channels % max(groups0, groups1):
            raise UserError(
                f"stem {kind!r} needs at least {2 * MIN_FIRST_CHANNELS} channels, divisible by "
                f"{2 * max(groups0, groups1)}; got {self.channels}: change channels (or "
                "stem_multiplier in a search)")
        relu = tf.keras.layers.ReLU
        # Lists built whole: Keras tracks them for checkpoints only if they are append-only.
        sequence0 = [conv(half, 2, 1, "stem0_conv1"), make_norm(norm, affine, "stem0_bn1"),
                     relu(name="stem0_relu"), conv(self.channels, 2, groups0, "stem0_conv2"),
                     make_norm(norm, affine, "stem0_bn2")]
        sequence1 = [conv(self.channels, 2, groups1, "stem1_conv"),
                     make_norm(norm, affine, "stem1_bn")]
        if relu_last:  # EBNAS: each stem ends with its ReLU
            sequence0 = sequence0 + [relu(name="stem0_relu_out")]
            sequence1 = sequence1 + [relu(name="stem1_relu_out")]
        else:  # DARTS: stem1 starts with the ReLU (s0 itself stays pre-activation)
            sequence1 = [relu(name="stem1_relu")] + sequence1
        self.sequence0, self.sequence1 = sequence0, sequence1

    def call(self, inputs, training=None):
        s0 = _run(self.sequence0, inputs, training)
        return s0, _run(self.sequence1, s0, training)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "channels": self.channels,
                "norm": self.norm, "affine": self.affine}


def _run(layers, x, training):
    for layer in layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            x = layer(x, training=training)
        else:
            x = layer(x)
    return x
