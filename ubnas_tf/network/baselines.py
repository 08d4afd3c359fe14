"""Hand-designed networks to judge a searched genotype against, under the same data and budget.

- `bireal`: a Bi-Real-style binary ResNet for small images (Liu et al., "Bi-Real Net", ECCV
  2018): every 3x3 binary conv has its own real-valued shortcut, y = x + BN(Conv_b(sign(x))),
  with ApproxSign (Bi-Real's own gradient) and magnitude-aware weights; a downsampling block
  adds AvgPool(2) -> float Conv1x1 -> BN on the shortcut. The binary conv is our
  `BinaryConvModule` with the `bireal` structure, the op every genotype uses.
- `quicknet`: a QuickNet-style network (larq-zoo `sota.QuickNet`, Bannink et al., "Larq
  Compute Engine", MLSys 2021) scaled for small images: the stem keeps QuickNet's
  conv -> depthwise -> 1x1 form without its two stride-2 steps, residual blocks are
  x + BN(ReLU(Conv_b(sign(x)))) with sign weights clipped at 1.25, and transitions are
  ReLU -> MaxPool(2, stride 1) -> fixed blur-pool depthwise conv (stride 2) -> float Conv1x1 -> BN.
  `ops` puts an op of the binary search space at each block instead (its binary convs with
  the `quicknet` module, QuickNet's block itself; skip and pools as in the cells): QuickNet's
  template with other blocks, the space of a block-level search.
- `float`: the float version of any genotype: the same cells, every binary conv module with a
  full-precision conv and full-precision activations (`float_space`).

Every model takes its input shape and classes from the data, and uses only layers that reload
from `.h5` after `import ubnas_tf` (the blur-pool kernel is set as a frozen weight, not as a
custom initializer).
"""
from __future__ import annotations

import dataclasses

import larq as lq
import tensorflow as tf

from ubnas_tf.errors import UserError
from ubnas_tf.network.transition import quicknet_transition, set_blur_kernels
from ubnas_tf.search_space import BinaryConvModule, SearchSpace, get_space
from ubnas_tf.search_space.module import projection_structure
from ubnas_tf.search_space.layers import Conv2D, register

__all__ = ["BASELINES", "FloatConvModule", "bireal", "quicknet", "float_space", "build_baseline"]


def _bn(name):
    return tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _check_input(info, downsamplings: int, what: str):
    height, width, _ = info.input_shape
    if height is None or width is None:
        raise UserError(f"{what} needs images of one fixed size: set data.input_size")
    if min(height, width) < 2 ** downsamplings:
        raise UserError(f"images of {height}x{width} are too small for {what}'s {downsamplings} "
                        f"stride-2 stages: set data.input_size to {2 ** (downsamplings + 1)} or "
                        "more, or use fewer stages")


def _positive_ints(values, what):
    values = tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise UserError(f"{what} must be a non-empty list of positive integers, got {list(values)}")
    return values


# --- Bi-Real ---------------------------------------------------------------------------------

def bireal(info, *, width: int = 64, blocks=(4, 4, 4, 4), name: str = "bireal") -> tf.keras.Model:
    """Bi-Real-style binary ResNet: stage s has width * 2**s channels and `blocks[s]` binary
    3x3 convs, each with its own shortcut (Bi-Real-18 is blocks (4, 4, 4, 4), width 64)."""
    blocks = _positive_ints(blocks, "baselines.bireal.blocks")
    (width,) = _positive_ints([width], "baselines.bireal.width")
    _check_input(info, len(blocks) - 1, "bireal")
    inputs = tf.keras.Input(shape=tuple(info.input_shape), name="image")
    x = tf.keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _bn("stem_bn")(x)
    for stage, count in enumerate(blocks):
        filters = width * 2 ** stage
        for block in range(count):
            prefix = f"stage{stage}_block{block}"
            if block == 0 and stage > 0:
                main = BinaryConvModule(filters, 3, strides=2,
                                        structure={"preset": "bireal", "shortcut": False},
                                        name=f"{prefix}_bconv")(x)
                shortcut = tf.keras.layers.AveragePooling2D(2, padding="same",
                                                            name=f"{prefix}_down_pool")(x)
                shortcut = tf.keras.layers.Conv2D(filters, 1, use_bias=False,
                                                  name=f"{prefix}_down_conv")(shortcut)
                shortcut = _bn(f"{prefix}_down_bn")(shortcut)
                x = tf.keras.layers.Add(name=f"{prefix}_add")([main, shortcut])
            else:
                x = BinaryConvModule(filters, 3, structure="bireal", name=f"{prefix}_bconv")(x)
    x = tf.keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = tf.keras.layers.Dense(info.num_classes, name="classifier")(x)
    return tf.keras.Model(inputs, outputs, name=name)


# --- QuickNet --------------------------------------------------------------------------------

def quicknet_stem_layers(width: int) -> list:
    """QuickNet's stem for small images, in order: conv -> BN -> ReLU -> depthwise -> BN ->
    1x1 conv to `width` -> BN (the baseline applies them, the block-search supernet holds them)."""
    return [
        tf.keras.layers.Conv2D(width // 4, 3, padding="same", use_bias=False,
                               kernel_initializer="he_normal", name="stem_conv"),
        _bn("stem_bn"),
        tf.keras.layers.ReLU(name="stem_relu"),
        tf.keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="stem_depthwise"),
        tf.keras.layers.BatchNormalization(center=False, scale=False, name="stem_depthwise_bn"),
        tf.keras.layers.Conv2D(width, 1, use_bias=False, kernel_initializer="he_normal",
                               name="stem_pointwise"),
        _bn("stem_pointwise_bn"),
    ]


def quicknet_head_layers(num_classes: int) -> list:
    """QuickNet's head, in order: ReLU -> global average pool -> linear classifier."""
    return [
        tf.keras.layers.ReLU(name="head_relu"),
        tf.keras.layers.GlobalAveragePooling2D(name="global_pool"),
        tf.keras.layers.Dense(num_classes, kernel_initializer="glorot_normal", name="classifier"),
    ]


def _apply(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def quicknet_template(info, filters, blocks) -> list:
    """(prefix, width, transition before it) of each block of QuickNet's template, its sizes
    checked against the data (one-line UserErrors naming the key)."""
    filters = _positive_ints(filters, "baselines.quicknet.filters")
    blocks = _positive_ints(blocks, "baselines.quicknet.blocks")
    if len(filters) != len(blocks):
        raise UserError("baselines.quicknet.filters and .blocks must have the same length")
    if filters[0] % 4:
        raise UserError(f"baselines.quicknet.filters[0] must be a multiple of 4, got {filters[0]}")
    transitions = sum(1 for a, b in zip(filters, filters[1:]) if a != b)
    _check_input(info, transitions + 1, "quicknet")
    plan, previous = [], filters[0]
    for section, (width, count) in enumerate(zip(filters, blocks)):
        for block in range(count):
            plan.append((f"section{section}_block{block}", width, width != previous))
            previous = width
    return plan


def quicknet(info, *, filters=(64, 128, 256, 512), blocks=(4, 4, 4, 4), ops=None,
             name: str = "quicknet") -> tf.keras.Model:
    """QuickNet-style binary network for small images (see the module docstring); `ops`: one
    op name of the binary space per block (None: QuickNet's own block everywhere)."""
    plan = quicknet_template(info, filters, blocks)
    ops = None if ops is None else check_block_ops(ops, len(plan))
    inputs = tf.keras.Input(shape=tuple(info.input_shape), name="image")
    x = _apply(quicknet_stem_layers(plan[0][1]), inputs)
    blur_layers = []
    for index, (prefix, width, transition) in enumerate(plan):
        if transition:
            x, blur = quicknet_transition(x, width, f"{prefix}_transition")
            blur_layers.append(blur)
        if ops is not None:
            x = block_op(ops[index], width, prefix)(x)
            continue
        residual = x
        x = lq.layers.QuantConv2D(
            width, 3, padding="same", pad_values=1.0, use_bias=False, activation="relu",
            input_quantizer=lq.quantizers.SteSign(clip_value=1.25),
            kernel_quantizer=lq.quantizers.SteSign(clip_value=1.25),
            kernel_constraint=lq.constraints.WeightClip(1.25),
            kernel_initializer="glorot_normal", name=f"{prefix}_bconv")(x)
        x = _bn(f"{prefix}_bn")(x)
        x = tf.keras.layers.Add(name=f"{prefix}_add")([x, residual])
    outputs = _apply(quicknet_head_layers(info.num_classes), x)
    model = tf.keras.Model(inputs, outputs, name=name)
    set_blur_kernels(blur_layers)
    return model


BLOCK_SPACE = "binary"  # the space whose ops `quicknet(ops=...)` puts at its blocks


def check_block_ops(ops, count: int) -> list:
    """The op names of `quicknet(ops=...)`, checked: one per block, of the binary space, no
    `none` (a block that outputs zero cuts the network)."""
    space = get_space(BLOCK_SPACE)
    if isinstance(ops, str) or not isinstance(ops, (list, tuple)) or len(ops) != count:
        raise UserError(f"baselines.quicknet.ops must be a list of {count} op names (one per "
                        f"block), got {ops!r}")
    for op_name in ops:
        if op_name == "none" or op_name not in space.primitives:
            raise UserError(f"baselines.quicknet.ops: {op_name!r} is not a block op; use "
                            f"{', '.join(p for p in space.primitives if p != 'none')}")
    return list(ops)


def block_op(op_name: str, width: int, prefix: str, structure="quicknet"):
    """The op of a block: the binary space's op at stride 1 with QuickNet's module (the
    block-search supernet passes its search-time module)."""
    return get_space(BLOCK_SPACE).build_op(op_name, width, 1, structure=structure,
                                           name=f"{prefix}_{op_name}")


# --- the float version of a genotype ---------------------------------------------------------

@register
class FloatConvModule(BinaryConvModule):
    """`BinaryConvModule` with its binary conv replaced by a full-precision one: same wiring
    (pre-BN, conv activation, BN, shortcut, activation), real weights and real activations."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The binary module decides how a strided dilated conv is computed (input sampled first
        # and an undilated conv, or a stride-1 conv subsampled after) and its `call` applies
        # that plan; the float conv takes the binary conv's strides and dilation so the plan
        # stays one. (Recomputing them here once gave dilation 2 on the sampled input: an
        # effective dilation 4.)
        binary_conv = self.conv
        self.conv = Conv2D(
            self.filters,
            self.kernel_size,
            strides=binary_conv.strides,
            dilation_rate=binary_conv.dilation_rate,
            padding="same",
            groups=self.structure.groups,
            activation=binary_conv.activation,
            use_bias=False,
            kernel_initializer="he_normal",
            name="conv",
        )


def _float_conv(kernel_size, dilation):
    def build(channels, stride, structure, name):
        return FloatConvModule(channels, kernel_size, dilation, stride, structure=structure,
                               name=name)

    return build


def _float_preprocess(channels, reduction_prev, structure, name):
    return FloatConvModule(channels, 1, strides=2 if reduction_prev else 1,
                           structure=projection_structure(structure), name=name)


def float_space(space: SearchSpace | str) -> SearchSpace:
    """The same space with every binary conv module made full precision (same op names, so a
    genotype of `space` builds in it unchanged). A float space is returned as it is."""
    space = get_space(space) if isinstance(space, str) else space
    if not space.binary:
        return space
    ops = dict(space.ops)
    for op_name in ops:
        if op_name.startswith("bin_"):
            kernel_size = int(op_name[-1])
            ops[op_name] = _float_conv(kernel_size, 2 if "_dil_" in op_name else 1)
    return dataclasses.replace(space, ops=ops, preprocess=_float_preprocess, binary=False)


# --- by name ---------------------------------------------------------------------------------

BASELINES = ("bireal", "quicknet", "float")


def build_baseline(name: str, info, config: dict, genotype=None) -> tf.keras.Model:
    """A baseline by name, sized by `config['baselines'][name]` (or the network keys for
    `float`), for the data described by `info`."""
    from ubnas_tf.network.genotype_network import build_from_config

    settings = (config.get("baselines") or {}).get(name) or {}
    if name == "bireal":
        return bireal(info, **settings)
    if name == "quicknet":
        return quicknet(info, **settings)
    if name == "float":
        if genotype is None:
            raise UserError("--model float is the float version of a genotype: pass --genotype "
                            "G.json as well")
        space = get_space(config.get("space") or genotype.space)
        return build_from_config(genotype, info, config, space=float_space(space), name="float")
    raise UserError(f"unknown model {name!r}: use one of {', '.join(BASELINES)} "
                    "(or --genotype G.json for a searched network)")
