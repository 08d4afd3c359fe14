"""The binary residual module and its configurable structure.

UBNAS compares module structures and picks one; users will want to as well, so the structure
is data (`ModuleStructure`), not one copy of each op per variant. Two presets come from EBNAS's
code (shared/reference/UBNAS.md):

- `ebnas_search`:  y = x + BN(Conv(sign(x)))                  real weights, BN without affine
- `ebnas_retrain`: y = PReLU(x + BN(Conv_b(sign(BN(x)))))    sign(w) * per-channel scale

and QuickNet's block (larq-zoo), for comparing what the block does inside searched cells:

- `quicknet`:      y = x + BN(ReLU(Conv_b(sign(x))))          sign(w), SteSign at 1.25

On stride 2 the shortcut is AvgPool(2). The activation sign is ApproxSign (`sign: approx`,
Bi-Real's gradient, as UBNAS) or the plain clipped straight-through estimator (`sign: ste`,
larq's `ste_sign`: gradient 1 on |x| <= sign_width, 0 outside) for the ablation of the paper's
claim that ApproxSign converges faster. Both have `larq.math.sign` as their forward, the form
Larq Compute Engine fuses; the convolution pads with +1 (`pad_values=1`) so that it becomes
LceBconv2d on every target.
"""
import dataclasses
import math

import larq as lq
import tensorflow as tf

from ubnas_tf.errors import UserError
from ubnas_tf.quantizers import ApproxSign
from ubnas_tf.search_space.layers import QuantConv2D, Subsample, make_norm, register

WEIGHT_MODES = ("real", "sign", "scaled_sign")
ACTIVATIONS = ("none", "prelu", "relu")
NORMS = ("batch_stats", "batch_norm")
SIGNS = ("approx", "ste")
CONV_ACTIVATIONS = ("none", "relu")


@dataclasses.dataclass(frozen=True)
class ModuleStructure:
    """How one binary module is wired.

    pre_bn:      BN before the sign (Bi-Real/EBNAS retraining) or not (EBNAS search).
    weights:     'real' latent weights, 'sign' (+-1), 'scaled_sign' (+-mean|w| per out channel).
    activation:  applied after the residual add ('prelu' as EBNAS, 'none' as Bi-Real).
    conv_activation: applied to the binary conv's output, before its BN ('relu' as QuickNet:
                 x + BN(ReLU(Conv_b(sign(x))))), or 'none'.
    shortcut:    residual shortcut (pooled on stride 2) or a plain conv block.
    norm:        'batch_stats' (search: no moving statistics) or 'batch_norm'.
    affine:      learn BN scale and offset.
    sign:        activation binarizer: 'approx' (ApproxSign, UBNAS) or 'ste' (clipped STE).
    sign_width:  half-width of the gradient window (ApproxSign's triangle, STE's clip).
    groups:      grouped binary conv (LCE needs a multiple of 32 input channels per group).
    weight_clip: clip latent binary weights to [-c, c] (None: no clip); 'sign' weights pass
                 their gradient on the same window (larq's SteSign(clip_value=c), QuickNet's
                 1.25; ste_sign's 1 without a clip).
    projection_shortcut: the cells' 1x1 input projections (fewer output than input channels)
                 add a real-valued shortcut too, the mean of each group of input channels
                 (`channel_group_mean`), pooled on stride 2; else (DARTS, EBNAS) the
                 projection is a plain binary conv and every cell boundary binarizes all
                 that crosses it. No MACs either way.
    """

    pre_bn: bool = False
    weights: str = "real"
    activation: str = "none"
    shortcut: bool = True
    norm: str = "batch_stats"
    affine: bool = False
    sign: str = "approx"
    sign_width: float = 1.0
    groups: int = 1
    weight_clip: float | None = 1.0
    projection_shortcut: bool = False
    conv_activation: str = "none"

    def __post_init__(self):
        for field, allowed in (
            ("weights", WEIGHT_MODES),
            ("activation", ACTIVATIONS),
            ("conv_activation", CONV_ACTIVATIONS),
            ("norm", NORMS),
            ("sign", SIGNS),
        ):
            if getattr(self, field) not in allowed:
                raise UserError(
                    f"module.{field}={getattr(self, field)!r} is not valid: use one of {allowed}"
                )
        if self.sign_width <= 0 or self.groups < 1:
            raise UserError("module.sign_width must be > 0 and module.groups >= 1")

    @classmethod
    def from_config(cls, value) -> "ModuleStructure":
        """From a preset name, a dict (unknown keys are an error) or a ModuleStructure."""
        if isinstance(value, ModuleStructure):
            return value
        if isinstance(value, str):
            if value not in PRESETS:
                raise UserError(f"unknown module preset {value!r}: use one of {sorted(PRESETS)}")
            return PRESETS[value]
        if isinstance(value, dict):
            known = {f.name for f in dataclasses.fields(cls)}
            values = dict(value)
            base = PRESETS[values.pop("preset")] if "preset" in values else cls()
            unknown = sorted(set(values) - known)
            if unknown:
                raise UserError(f"unknown module key(s) {unknown}: use any of {sorted(known)}")
            return dataclasses.replace(base, **values)
        raise UserError(f"module must be a preset name or a mapping, got {value!r}")

    def to_config(self) -> dict:
        return dataclasses.asdict(self)


PRESETS = {
    "ebnas_search": ModuleStructure(),
    "ebnas_retrain": ModuleStructure(
        pre_bn=True, weights="scaled_sign", activation="prelu", norm="batch_norm", affine=True
    ),
    "bireal": ModuleStructure(
        pre_bn=False, weights="scaled_sign", activation="none", norm="batch_norm", affine=True
    ),
}

# The sign ablation (experiments/ablations.py) needs the STE in the search too, whose config
# takes a preset name only.
PRESETS["ebnas_search_ste"] = dataclasses.replace(PRESETS["ebnas_search"], sign="ste")
PRESETS["ebnas_retrain_ste"] = dataclasses.replace(PRESETS["ebnas_retrain"], sign="ste")

# QuickNet's block (larq-zoo sota.QuickNet, our baselines.quicknet): x + BN(ReLU(Conv_b(sign(x))))
# with SteSign at 1.25 on activations and weights, weights clipped at 1.25, no scaling.
PRESETS["quicknet"] = ModuleStructure(
    weights="sign", conv_activation="relu", norm="batch_norm", affine=True, sign="ste",
    sign_width=1.25, weight_clip=1.25,
)
# QuickNet's block in the supernet as EBNAS searches: real latent weights, BN without affine on
# batch statistics; the ReLU before the BN and SteSign at 1.25 as `quicknet`.
PRESETS["quicknet_search"] = dataclasses.replace(
    PRESETS["ebnas_search"], conv_activation="relu", sign="ste", sign_width=1.25)


def kernel_quantizer(structure: ModuleStructure):
    """The weight binarizer: none (real), SteSign passing gradients inside the weight clip, or
    larq's magnitude-aware sign."""
    if structure.weights == "sign":
        return lq.quantizers.SteSign(clip_value=structure.weight_clip or 1.0)
    return {"real": None, "scaled_sign": "magnitude_aware_sign"}[structure.weights]


def input_quantizer(structure: ModuleStructure):
    """The activation binarizer of a module: ApproxSign or larq's clipped STE sign."""
    if structure.sign == "ste":
        return lq.quantizers.SteSign(clip_value=structure.sign_width)
    return ApproxSign(structure.sign_width)


def projection_structure(structure: ModuleStructure) -> dict:
    """The structure of a cell-input projection: a shortcut only with `projection_shortcut`."""
    return {**structure.to_config(), "shortcut": structure.projection_shortcut}


def channel_group_mean(x, channels: int):
    """`x` (N, H, W, C_in) to `channels` channels without weights: output channel j is the mean
    of input channels j * C_in / channels ... (j + 1) * C_in / channels, a channel split across
    two groups counting in each by its share (each input channel repeated channels / gcd times,
    then means of C_in / gcd). Reshape and mean only: no MACs, and TFLite builtins."""
    inputs = int(x.shape[-1])
    common = math.gcd(inputs, channels)
    if channels // common > 1:
        x = tf.repeat(x, channels // common, axis=-1)
    height, width = x.shape[1], x.shape[2]
    spatial = [height, width] if height is not None and width is not None else \
        tf.unstack(tf.shape(x)[1:3])
    grouped = tf.reshape(x, [-1, *spatial, channels, inputs // common])
    return tf.reduce_mean(grouped, axis=-1)


def _activation(kind: str, name: str):
    if kind == "prelu":
        return tf.keras.layers.PReLU(shared_axes=[1, 2], name=name)
    if kind == "relu":
        return tf.keras.layers.ReLU(name=name)
    return None


@register
class BinaryConvModule(tf.keras.layers.Layer):
    """One binary convolution wrapped in the configured residual module.

    # Arguments
        filters: output channels (must equal input channels when `structure.shortcut`).
        kernel_size, dilation, strides: of the binary convolution.
        structure: a `ModuleStructure`, preset name or dict.
    """

    def __init__(self, filters, kernel_size, dilation=1, strides=1, structure=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.dilation = int(dilation)
        self.strides = int(strides)
        self.structure = ModuleStructure.from_config(structure or "ebnas_search")
        s = self.structure
        # Keras refuses stride > 1 with dilation > 1. When dilation == stride, a dilated conv
        # read at every stride-th pixel only ever touches pixels of that sub-grid: sampling the
        # input first and convolving it undilated gives exactly the same outputs (the +1
        # padding included) at 1/stride^2 of the MACs. Other combinations convolve at stride 1
        # and subsample after.
        sample_input = self.strides > 1 and self.dilation == self.strides
        subsample = self.strides > 1 and self.dilation > 1 and not sample_input
        binary_weights = s.weights != "real"
        self.pre_norm = make_norm(s.norm, s.affine, name="pre_bn") if s.pre_bn else None
        self.conv = QuantConv2D(
            self.filters,
            self.kernel_size,
            strides=1 if subsample or sample_input else self.strides,
            dilation_rate=1 if sample_input else self.dilation,
            padding="same",
            pad_values=1.0,
            groups=s.groups,
            input_quantizer=input_quantizer(s),
            kernel_quantizer=kernel_quantizer(s),
            kernel_constraint=lq.constraints.WeightClip(s.weight_clip)
            if binary_weights and s.weight_clip
            else None,
            kernel_initializer="glorot_normal",
            activation=None if s.conv_activation == "none" else s.conv_activation,
            use_bias=False,
            name="conv",
        )
        self.norm = make_norm(s.norm, s.affine, name="bn")
        self.subsample = Subsample(self.strides, name="subsample") if subsample else None
        self.sample_input = Subsample(self.strides, name="sample_input") if sample_input else None
        self.shortcut_pool = (
            tf.keras.layers.AveragePooling2D(self.strides, padding="same", name="shortcut_pool")
            if s.shortcut and self.strides > 1
            else None
        )
        self.activation = _activation(s.activation, name="act")

    def build(self, input_shape):
        # A projection's shortcut maps its channels by group means; an op's must not need to.
        self.group_mean = self.structure.shortcut and input_shape[-1] != self.filters
        if self.group_mean and not self.structure.projection_shortcut:
            raise ValueError(
                f"a residual binary module needs as many input as output channels "
                f"({input_shape[-1]} != {self.filters}); use shortcut=False"
            )
        super().build(input_shape)

    def call(self, inputs, training=None):
        x = inputs if self.sample_input is None else self.sample_input(inputs)
        x = x if self.pre_norm is None else self.pre_norm(x, training=training)
        x = self.norm(self.conv(x), training=training)
        if self.subsample is not None:
            x = self.subsample(x)
        if self.structure.shortcut:
            shortcut = inputs if self.shortcut_pool is None else self.shortcut_pool(inputs)
            if self.group_mean:
                shortcut = channel_group_mean(shortcut, self.filters)
            x = x + shortcut
        if self.activation is not None:
            x = self.activation(x)
        return x

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "dilation": self.dilation,
            "strides": self.strides,
            "structure": self.structure.to_config(),
        }
