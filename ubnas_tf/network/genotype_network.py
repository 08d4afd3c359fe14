"""The discrete network of a genotype: DARTS's NetworkCIFAR wiring as a functional Keras model.

Liu et al., "DARTS", ICLR 2019 (code quark0/darts, model.py `NetworkCIFAR`), as retrained by
PC-DARTS, EBNAS and UBNAS:

    stem:  full-precision Conv3x3(stem_multiplier * C) + BN; for large images (`stem`
           imagenet/ebnas_imagenet, `auto` from the input size) DARTS's NetworkImageNet stem of
           three stride-2 convs (ubnas_tf.search_space.stems), whose first cell takes s0 at
           twice s1's resolution (reduction_prev=True)
    cells: `cells` cells, reductions (stride 2, channels x2) at cells//3 and 2*cells//3
           (`search_space.reduction_cells`: the supernet's rule too, 5 cells or more); with
           `reduction="quicknet"` each reduction is QuickNet's float transition to the new
           stage's channels (ubnas_tf.network.transition) instead of the searched reduction
           cell, and only the normal cell comes from the genotype;
           cell k takes the outputs of cells k-2 and k-1, projects them with the space's
           preprocess (the first after a reduction halves the resolution), and each node sums
           two ops of the genotype; the cell's output concatenates the genotype's `concat` nodes
    head:  global average pooling + full-precision Dense classifier (logits)
    aux:   DARTS's auxiliary head on the output of the second reduction cell (optional)

Every op comes from `space.build_op(name, channels, stride, structure)`, the same definition
the supernet mixes, with the retraining `ModuleStructure` (binary space: `ebnas_retrain`).

Why the classifier is a `Dense` and not a 1x1 convolution: on the pooled 1x1 feature map the two
compute the same thing, and Larq Compute Engine binarizes neither a `QuantDense` nor a
full-precision classifier; the classifier stays float in every binary-NAS paper we compare with
(it holds ~1% of the MACs), and a `Dense` converts to one TFLite FULLY_CONNECTED op.

The layers are named so that a reader of a summary knows where they sit: `stem_*`,
`cell{k}_pre{0,1}`, `cell{k}_edge{e}_{op}`, `cell{k}_node{n}`, `cell{k}_out`, `global_pool`,
`classifier`, and `auxiliary_*` for the auxiliary head, which `ubnas_tf.network.cost` leaves out of the
counts (as DARTS's `count_parameters_in_MB` does).
"""
from __future__ import annotations

import dataclasses
import zlib

import tensorflow as tf

from ubnas_tf.errors import UserError
from ubnas_tf.network.transition import quicknet_transition, set_blur_kernels
from ubnas_tf.search_space.genotype import Genotype
from ubnas_tf.search_space import ModuleStructure, SearchSpace, get_space, reduction_cells
from ubnas_tf.search_space.layers import Identity, register
from ubnas_tf.search_space.stems import Stem, resolve_stem, stem_channels, stem_stride

__all__ = [
    "AUXILIARY_PREFIX",
    "DropPath",
    "NetworkSpec",
    "REDUCTIONS",
    "build_network",
    "build_from_config",
    "check_reduction",
    "check_space",
    "inference_model",
    "reduction_cells",
    "set_drop_path_rate",
]

AUXILIARY_PREFIX = "auxiliary"
# What sits at the reduction positions: the genotype's reduction cell, or QuickNet's float
# transition (ReLU, max pool, blur, float 1x1 conv, BN) to the stage's C channels.
REDUCTIONS = ("searched", "quicknet")


@register
class DropPath(tf.keras.layers.Layer):
    """Drop a whole op output per example, scaling the kept ones (Larsson et al., FractalNet;
    DARTS's `drop_path`): y = x * Bernoulli(1 - p) / (1 - p) in training, y = x otherwise.

    `max_rate` is the rate at the end of training; DARTS raises the rate linearly over the
    epochs, so the current rate lives in a variable that `set_drop_path_rate` assigns at the
    start of each epoch. That variable is deliberately not a weight of the layer: it is a
    schedule, not a parameter, so it is neither counted nor saved (a reloaded model, and
    inference, never drop).

    The masks are stateless draws seeded by (the layer's name, a draw counter), and the counter
    is set with the rate at the start of each epoch (`set_drop_path_rate`): a run resumed after
    a kill draws the masks an uninterrupted run would (issue 18.2), where a stateful
    `tf.random.uniform` would start its sequence over in the new process.
    """

    def __init__(self, max_rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= max_rate < 1.0:
            raise UserError(f"drop_path must be in [0, 1), got {max_rate}")
        self.max_rate = float(max_rate)
        # object.__setattr__ keeps Keras from tracking the variable as a weight.
        object.__setattr__(self, "_rate", tf.Variable(0.0, trainable=False, dtype=tf.float32))
        # Advanced in replica context: every replica keeps the first one's count (and so draws
        # the same mask pattern for its own slice of the batch).
        object.__setattr__(self, "_draws", tf.Variable(
            0, trainable=False, dtype=tf.int64,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA))
        self._seed_tag = zlib.crc32(self.name.encode())

    @property
    def rate(self) -> tf.Variable:
        return self._rate

    def call(self, inputs, training=None):
        if self.max_rate == 0.0:
            return inputs
        if training is None:
            training = tf.keras.backend.learning_phase()
        if isinstance(training, int):  # learning_phase() gives 0 or 1
            training = bool(training)

        def dropped():
            keep = 1.0 - tf.cast(self._rate, inputs.dtype)
            shape = tf.concat([tf.shape(inputs)[:1], tf.ones([tf.rank(inputs) - 1], tf.int32)], 0)
            seed = tf.stack([tf.constant(self._seed_tag, tf.int64), self._draws.assign_add(1)])
            mask = tf.floor(keep + tf.random.stateless_uniform(shape, seed, dtype=inputs.dtype))
            return inputs / keep * mask

        return tf.__internal__.smart_cond.smart_cond(training, dropped, lambda: inputs)

    def get_config(self):
        return {**super().get_config(), "max_rate": self.max_rate}


def set_drop_path_rate(model: tf.keras.Model, progress: float, *,
                       draws_from: int | None = None) -> None:
    """Set every DropPath of `model` to `max_rate * progress` (progress = epoch / epochs), and
    its draw counter to `draws_from` when given (a value fixed by the run's seed and epoch
    makes the epoch's masks reproducible, resumed or not)."""
    progress = min(max(float(progress), 0.0), 1.0)
    for layer in model.layers:
        if isinstance(layer, DropPath):
            layer.rate.assign(layer.max_rate * progress)
            if draws_from is not None:
                layer._draws.assign(int(draws_from))


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """The size of a network: what `build_network` needs besides genotype, space and data."""

    cells: int = 8
    channels: int = 16
    stem_multiplier: int = 3
    module: object = None  # a ModuleStructure, preset name or mapping; None: the space's
    auxiliary: bool = False
    drop_path: float = 0.0
    stem: str = "auto"
    reduction: str = "searched"

    def __post_init__(self):
        for field in ("cells", "channels", "stem_multiplier"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{field} must be a positive integer, got {value!r}")
        check_reduction(self.reduction)
        reduction_cells(self.cells)  # refuses counts that cannot keep DARTS's layout


def check_reduction(reduction) -> str:
    if reduction not in REDUCTIONS:
        raise UserError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return reduction


def _check_input(input_shape, num_classes, auxiliary: bool, stride: int = 1) -> tuple:
    """(H, W, C) of the images, refused when the stem (dividing by `stride`) and the two
    reductions would leave nothing (or the auxiliary head less than 5x5)."""
    if len(input_shape) != 3 or any(side is None for side in input_shape):
        raise UserError(f"the network needs images of one fixed size (H, W, C), got {input_shape}: "
                        "set data.input_size")
    height, width, channels = (int(side) for side in input_shape)
    if min(height, width) < 4 * stride or channels < 1:
        behind = f" behind the stem's stride {stride}" if stride > 1 else ""
        raise UserError(f"images of {height}x{width}x{channels} are too small for the network's "
                        f"two stride-2 reductions{behind}: set data.input_size to {8 * stride} "
                        "or more")
    final = -(-height // (4 * stride)), -(-width // (4 * stride))
    if auxiliary and min(final) < 5:
        raise UserError(f"the auxiliary head needs at least 5x5 features after the stem and two "
                        f"reductions; {height}x{width} images give {final[0]}x{final[1]}: set "
                        f"auxiliary.enabled=false or data.input_size to {20 * stride} or more")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise UserError(f"a classifier needs at least 2 classes, got {num_classes!r}")
    return height, width, channels


def _auxiliary_head(x, num_classes, pool_stride: int = 3):
    """DARTS's AuxiliaryHeadCIFAR: ReLU, AvgPool(5, stride 3), Conv1x1(128)+BN+ReLU,
    Conv(768)+BN+ReLU, Dense. DARTS assumes 8x8 features (pooled to 2x2, then a 2x2 conv); the
    second conv here spans whatever the pooling leaves, so 32x32 inputs give DARTS's head
    exactly and other sizes still end at 1x1. Behind an ImageNet stem the pool has stride 2, as
    DARTS's AuxiliaryHeadImageNet (7x7 features at 224 pixels, pooled to 2x2)."""
    p = AUXILIARY_PREFIX
    x = tf.keras.layers.ReLU(name=f"{p}_relu0")(x)
    x = tf.keras.layers.AveragePooling2D(5, strides=pool_stride, padding="valid",
                                         name=f"{p}_pool")(x)
    pooled = (int(x.shape[1]), int(x.shape[2]))
    x = tf.keras.layers.Conv2D(128, 1, use_bias=False, name=f"{p}_conv1")(x)
    x = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{p}_bn1")(x)
    x = tf.keras.layers.ReLU(name=f"{p}_relu1")(x)
    x = tf.keras.layers.Conv2D(768, pooled, use_bias=False, name=f"{p}_conv2")(x)
    x = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{p}_bn2")(x)
    x = tf.keras.layers.ReLU(name=f"{p}_relu2")(x)
    x = tf.keras.layers.Flatten(name=f"{p}_flatten")(x)
    return tf.keras.layers.Dense(num_classes, name=f"{p}_classifier")(x)


def _cell(space, genotype, structure, s0, s1, channels, reduction, reduction_prev, index,
          drop_path):
    prefix = f"cell{index}"
    s0 = space.build_preprocess(channels, reduction_prev, structure, name=f"{prefix}_pre0")(s0)
    s1 = space.build_preprocess(channels, False, structure, name=f"{prefix}_pre1")(s1)
    states = [s0, s1]
    edges = genotype.cell(reduction)
    for node in range(len(edges) // 2):
        branches = []
        for edge in (2 * node, 2 * node + 1):
            op_name, source = edges[edge]
            stride = 2 if reduction and source < 2 else 1
            op = space.build_op(op_name, channels, stride, structure,
                                name=f"{prefix}_edge{edge}_{op_name}")
            h = op(states[source])
            # DARTS drops every op output except identities (dropping a skip would only
            # rescale its input).
            if drop_path > 0 and not isinstance(op, Identity):
                h = DropPath(drop_path, name=f"{prefix}_edge{edge}_drop")(h)
            branches.append(h)
        states.append(tf.keras.layers.Add(name=f"{prefix}_node{node + 2}")(branches))
    concat = genotype.concat(reduction)
    if len(concat) == 1:
        return states[concat[0]]
    return tf.keras.layers.Concatenate(name=f"{prefix}_out")([states[i] for i in concat])


def build_network(
    genotype: Genotype,
    *,
    input_shape,
    num_classes: int,
    space: SearchSpace | str | None = None,
    cells: int = 8,
    channels: int = 16,
    stem_multiplier: int = 3,
    module=None,
    auxiliary: bool = False,
    drop_path: float = 0.0,
    stem: str = "auto",
    reduction: str = "searched",
    name: str = "network",
) -> tf.keras.Model:
    """The network of `genotype` as a functional Keras model that outputs logits.

    # Arguments
        genotype: the cells to stack.
        input_shape, num_classes: from the data (`DatasetInfo.input_shape`, `.num_classes`).
        space: the search space whose ops to build (default: the genotype's own).
        cells, channels: depth and initial channels C (DARTS's `layers` and `init_channels`).
        stem_multiplier: the stem has stem_multiplier * C channels.
        module: the `ModuleStructure` of the binary ops (preset, mapping or None for the
            space's retraining default).
        auxiliary: add DARTS's auxiliary head; the model then outputs [logits, aux_logits].
        drop_path: final drop-path rate (0 adds no DropPath layer).
        stem: `cifar`, `imagenet` (DARTS's NetworkImageNet: stride 8, C channels),
            `ebnas_imagenet` (EBNAS's grouped variant) or `auto` (by input size; see
            `ubnas_tf.search_space.stems`).
        reduction: `searched` (the genotype's reduction cells) or `quicknet` (QuickNet's float
            transition at each reduction position, to that stage's C channels; the
            genotype's reduction cell is not built).

    # Raises
        UserError: for a genotype of another space, or data the network cannot take.
    """
    if space is None:
        space = get_space(genotype.space)
    elif isinstance(space, str):
        space = get_space(space)
    spec = NetworkSpec(cells, channels, stem_multiplier, module, auxiliary, drop_path, stem,
                       reduction)
    _check_input(tuple(input_shape), num_classes, False)  # one fixed size, before the stem
    stem_kind = resolve_stem(spec.stem, input_shape)
    structure = ModuleStructure.from_config(module or space.network_module)
    for field in ("normal", "reduce"):
        for op_name, _ in getattr(genotype, field):
            space.check_op(op_name)
    _check_input(tuple(input_shape), num_classes, auxiliary, stem_stride(stem_kind))

    inputs = tf.keras.Input(shape=tuple(int(side) for side in input_shape), name="image")
    s0, s1 = _stem(inputs, stem_kind, stem_channels(stem_kind, spec.channels,
                                                     spec.stem_multiplier, search=False))
    current = spec.channels
    # After a large stem s0 has twice s1's resolution: the first cell halves it (DARTS's
    # NetworkImageNet starts with reduction_prev = True).
    reduction_prev = stem_kind != "cifar"
    reductions = reduction_cells(spec.cells)
    aux_logits = None
    blur_layers = []
    for index in range(spec.cells):
        reduction = index in reductions
        if reduction:
            current *= 2
        if reduction and spec.reduction == "quicknet":
            output, blur = quicknet_transition(s1, current, f"cell{index}_transition")
            blur_layers.append(blur)
        else:
            output = _cell(space, genotype, structure, s0, s1, current, reduction,
                           reduction_prev, index, spec.drop_path)
        s0, s1 = s1, output
        reduction_prev = reduction
        if auxiliary and index == reductions[1]:
            aux_logits = _auxiliary_head(s1, num_classes, 3 if stem_kind == "cifar" else 2)

    x = tf.keras.layers.GlobalAveragePooling2D(name="global_pool")(s1)
    logits = tf.keras.layers.Dense(num_classes, name="classifier")(x)
    outputs = [logits, aux_logits] if auxiliary else logits
    model = tf.keras.Model(inputs, outputs, name=name)
    set_blur_kernels(blur_layers)
    return model


def _stem(inputs, kind: str, channels: int):
    """(s0, s1) of the stem of a resolved `kind` (the CIFAR one: flat `stem_conv`/`stem_bn`)."""
    if kind != "cifar":
        return Stem(kind, channels, name="stem")(inputs)
    x = tf.keras.layers.Conv2D(channels, 3, padding="same", use_bias=False,
                               name="stem_conv")(inputs)
    x = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="stem_bn")(x)
    return x, x


def check_space(genotype: Genotype, config_space: str | None, source: str = "genotype") -> None:
    """Refuse a genotype searched in another space than the one the config trains."""
    if config_space and genotype.space != config_space:
        raise UserError(
            f"{source} is from search space {genotype.space!r} but the config trains space "
            f"{config_space!r}: pass --set space={genotype.space} or a genotype searched in "
            f"{config_space!r}"
        )


def build_from_config(genotype: Genotype, info, config: dict, *, space=None,
                      module=None, name: str = "network") -> tf.keras.Model:
    """`build_network` sized by a train config (`cells`, `channels`, `stem_multiplier`,
    `module`, `auxiliary`, `drop_path`, `stem`, `reduction`) for the data described by `info`
    (a DatasetInfo).

    `space` and `module` override the config's (the float baseline and two-stage training use
    them); the genotype must come from the config's space.
    """
    check_space(genotype, config.get("space"))
    auxiliary = config.get("auxiliary") or {}
    return build_network(
        genotype,
        input_shape=info.input_shape,
        num_classes=info.num_classes,
        space=space,
        cells=config["cells"],
        channels=config["channels"],
        stem_multiplier=config.get("stem_multiplier", 3),
        module=module if module is not None else config.get("module"),
        auxiliary=bool(auxiliary.get("enabled", False)),
        drop_path=float(config.get("drop_path") or 0.0),
        stem=config.get("stem", "auto"),
        reduction=config.get("reduction", "searched"),
        name=name,
    )


def inference_model(model: tf.keras.Model) -> tf.keras.Model:
    """The model without its auxiliary output (sharing its layers and weights): what is saved,
    evaluated and converted."""
    if len(model.outputs) == 1:
        return model
    return tf.keras.Model(model.inputs, model.outputs[0], name=model.name)
