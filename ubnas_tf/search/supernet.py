"""The search supernet: DARTS cells of mixed ops with PC-DARTS partial channels.

A plain network that *takes* the architecture weights as inputs of `call` (as khanrc/pt.darts
does): it owns no architecture parameter, so a weight step cannot touch them, and the
`Architect` (ubnas_tf/architect.py) owns them, their regularizers and the genotype.

Wiring (Liu et al., DARTS, ICLR 2019): a stem (for large images PC-DARTS's ImageNet search stem
of three stride-2 convs, `ubnas_tf.search_space.stems`), `cells` cells with reductions at 1/3
and 2/3 (`search_space.reduction_cells`, the retrained network's rule),
each cell taking the outputs of the two previous cells, N intermediate nodes, each node the sum
of one mixed op per earlier state, the cell output the concat of the last `multiplier` nodes.

Partial channels (Xu et al., PC-DARTS, ICLR 2020, model_search.py): a mixed op runs its candidate
ops on the first C/K channels only and passes the other channels by (max-pooled 2x2 on stride-2
edges), concatenates and shuffles the channels with K groups:

    f_edge(x) = shuffle_K( concat( sum_o w_o * o(x[:C/K]),  pool?(x[C/K:]) ) )
    node_i    = sum_j  e_ij * f_edge_ij(state_j)

Ops come from `space.build_op` with the search-time module structure, the same definitions the
retrained network builds; pool ops get a BatchNorm without affine as in DARTS, and `none` ops
are skipped (they contribute exactly zero). Because the shuffle and the concat are linear and
the same for every edge of a cell, a node is computed as

    node_i = shuffle_K( concat( sum_jo e_ij w_ijo o_ij(x_j[:C/K]),  sum_j e_ij pool?(x_j[C/K:]) ) )

one shuffle and one concat per node instead of one per edge, and each weighted sum is a single
stack + matmul (far fewer graph nodes, forward and backward, than one multiply per op).
`MixedOp.call` still computes the per-edge form; the tests check both agree.
"""
from __future__ import annotations

import dataclasses
import functools

import tensorflow as tf

from ubnas_tf.errors import UserError
from ubnas_tf.search_space import ModuleStructure, SearchSpace, get_space, reduction_cells
from ubnas_tf.search_space.layers import make_norm
from ubnas_tf.search_space.stems import Stem, resolve_stem, stem_channels, stem_stride
from ubnas_tf.search.shared_traces import TraceCache

__all__ = [
    "ArchWeights",
    "SupernetConfig",
    "MixedOp",
    "Cell",
    "Supernet",
    "channel_shuffle",
    "weighted_sum",
    "edge_count",
    "TraceCache",
    "GRAPH_MODES",
]


# How the step graphs hold the edges (measured in benchmarks/search_step.py, see TraceCache):
# 'shared': one trace per edge signature, run as function calls (smallest graphs, fastest start);
# 'inlined': one trace per signature, inlined into the step graphs;
# 'flat': every edge traced on its own (largest graphs, slowest start, ~10% faster steps).
GRAPH_MODES = ("shared", "inlined", "flat")


def edge_count(nodes: int) -> int:
    """Edges of a cell with `nodes` intermediate nodes: node i has i + 2 inputs."""
    return sum(2 + node for node in range(nodes))


def op_columns(primitives) -> list:
    """The columns of the ops that run and that a genotype can pick: every primitive but
    `none` (it contributes zero and is never built)."""
    return [i for i, name in enumerate(primitives) if name != "none"]


@dataclasses.dataclass(frozen=True)
class ArchWeights:
    """The architecture weights a supernet forward pass takes.

    normal_ops, reduce_ops:     [edges, ops] op weights (e.g. softmax of alphas).
    normal_edges, reduce_edges: [edges] edge weights (PC-DARTS softmax or EBNAS sigmoid).
    """

    normal_ops: tf.Tensor
    normal_edges: tf.Tensor
    reduce_ops: tf.Tensor
    reduce_edges: tf.Tensor

    def for_cell(self, reduction: bool):
        if reduction:
            return self.reduce_ops, self.reduce_edges
        return self.normal_ops, self.normal_edges


@dataclasses.dataclass(frozen=True)
class SupernetConfig:
    """Sizes and choices of a supernet; `from_config` reads the search config's keys."""

    num_classes: int
    input_shape: tuple
    channels: int = 16
    cells: int = 8
    nodes: int = 4
    multiplier: int = 4
    stem_multiplier: int = 3
    space: str = "binary"
    primitives: tuple | None = None
    module: object = None
    partial_normal: int = 8
    partial_reduce: int = 4
    graph: str = "shared"
    stem: str = "auto"

    def __post_init__(self):
        space = get_space(self.space)
        primitives = tuple(self.primitives or space.primitives)
        for name in primitives:
            space.check_op(name)
        if not [p for p in primitives if p != "none"]:
            raise UserError("primitives must hold at least one op other than 'none'")
        if len(set(primitives)) != len(primitives):
            raise UserError(f"primitives list an op twice: {list(primitives)}")
        object.__setattr__(self, "primitives", primitives)
        if self.graph not in GRAPH_MODES:
            raise UserError(f"supernet graph {self.graph!r} is not valid: use one of "
                            f"{', '.join(GRAPH_MODES)}")
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "stem", resolve_stem(self.stem, self.input_shape))
        if self.cells < 1 or self.nodes < 1 or self.channels < 1:
            raise UserError("cells, nodes and channels must be >= 1")
        if not 1 <= self.multiplier <= self.nodes:
            raise UserError(f"multiplier must be in 1..nodes={self.nodes}, got {self.multiplier}")
        for cell_type, k in (("normal", self.partial_normal), ("reduce", self.partial_reduce)):
            if k < 1:
                raise UserError(f"partial_channels.{cell_type} must be >= 1, got {k}")
        for index, (reduction, channels) in enumerate(self.cell_plan()):
            k = self.partial_reduce if reduction else self.partial_normal
            if channels % k:
                kind = "reduce" if reduction else "normal"
                raise UserError(
                    f"cell {index} has {channels} channels, not a multiple of "
                    f"partial_channels.{kind}={k}: change channels or partial_channels"
                )

    @property
    def structure(self) -> ModuleStructure:
        return ModuleStructure.from_config(self.module or get_space(self.space).search_module)

    def cell_plan(self):
        """[(reduction, channels)] per cell: the reductions (`reduction_cells`, the network's
        rule) double the channels."""
        plan, channels = [], self.channels
        reductions = reduction_cells(self.cells)
        for index in range(self.cells):
            reduction = index in reductions
            channels *= 2 if reduction else 1
            plan.append((reduction, channels))
        return plan


def channel_shuffle(x: tf.Tensor, groups: int) -> tf.Tensor:
    """ShuffleNet's channel shuffle on NHWC: channel g*(C/groups)+i moves to i*groups+g.

    The NHWC form of PC-DARTS's view(b, groups, c/groups, h, w).transpose(1, 2).
    """
    if groups == 1:
        return x
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    x = tf.reshape(x, [-1, height, width, groups, channels // groups])
    x = tf.transpose(x, [0, 1, 2, 4, 3])
    return tf.reshape(x, [-1, height, width, channels])


def weighted_sum(tensors, weights: tf.Tensor) -> tf.Tensor:
    """sum_i weights[i] * tensors[i], as one Stack + MatMul (+ reshapes).

    A multiply per tensor costs a broadcast-gradient subgraph each in the backward pass; the
    matmul's gradient is two matmuls whatever the number of tensors.
    """
    if len(tensors) == 1:
        return tensors[0] * weights[0]
    shape = tensors[0].shape
    flat = tf.reshape(tf.stack(tensors), [len(tensors), -1])
    mixed = tf.matmul(tf.reshape(weights, [1, len(tensors)]), flat)
    if shape.is_fully_defined():
        return tf.reshape(mixed, shape)
    return tf.reshape(mixed, tf.shape(tensors[0]))


class MixedOp(tf.keras.layers.Layer):
    """The candidate ops of one edge, on C/K partial channels (PC-DARTS).

    # Arguments
        space: the `SearchSpace` the ops come from.
        primitives: op names; the op weights passed to `call` have one column per name.
        channels: channels of the edge's input and output (C).
        stride: 2 on the edges of a reduction cell that leave the cell inputs.
        partial: K, the channel sampling ratio (1 gives the DARTS mixed op).
        structure: module structure of the ops (search-time: real weights, BN without affine).
    """

    def __init__(self, space: SearchSpace, primitives, channels, stride, partial, structure,
                 **kwargs):
        super().__init__(**kwargs)
        if channels % partial:
            raise ValueError(f"channels={channels} must be a multiple of K={partial}")
        self.channels = channels
        self.stride = stride
        self.partial = partial
        self.partial_channels = channels // partial
        self.structure_config = repr(sorted(structure.to_config().items()))
        self.space_name = space.name
        self.primitives = tuple(primitives)
        self.op_columns = op_columns(self.primitives)
        self.candidate_ops = []
        self.post_norms = []
        for column in self.op_columns:
            name = self.primitives[column]
            self.candidate_ops.append(
                space.build_op(name, self.partial_channels, stride, structure, name=name)
            )
            # DARTS/PC-DARTS follow every pool with BatchNorm(affine=False) in the supernet.
            self.post_norms.append(
                make_norm(structure.norm, False, name=f"{name}_bn") if "pool" in name else None
            )

    @property
    def ready(self) -> bool:
        """Whether every op has created its variables (the cell calls the ops, not this)."""
        return all(op.built for op in self.candidate_ops)

    @property
    def signature(self) -> tuple:
        """What makes two mixed ops interchangeable up to their weights."""
        return (self.space_name, self.primitives, self.channels, self.stride, self.partial,
                self.structure_config)

    def candidates(self, x: tf.Tensor, training=None) -> list:
        """Outputs of the ops that run, on the partial channels of `x`, in `op_columns` order.

        `training` reaches every norm: Keras BatchNormalization (module structures with
        `norm: batch_norm`) uses batch statistics only when it is true.
        """
        outputs = []
        for op, norm in zip(self.candidate_ops, self.post_norms):
            y = op(x, training=training)
            outputs.append(y if norm is None else norm(y, training=training))
        return outputs

    def split(self, x: tf.Tensor):
        """(channels the ops see, bypassed channels after the 2x2 max pool of stride-2 edges)."""
        if self.partial == 1:
            return x, None
        # One Split, whose gradient is one Concat (two strided slices would each need a
        # zero-filled StridedSliceGrad of the whole input: measured 15% of a search step).
        partial_input, bypass = tf.split(
            x, [self.partial_channels, self.channels - self.partial_channels], axis=-1)
        if self.stride > 1:
            # SAME: the ceil(H/2) rows the 'same'-padded strided ops give, for odd sizes too.
            bypass = tf.nn.max_pool2d(bypass, self.stride, self.stride, "SAME")
        return partial_input, bypass

    def call(self, x, op_weights, training=None):
        """The PC-DARTS edge output: shuffle_K(concat(sum_o w_o o(x[:C/K]), bypass))."""
        partial_input, bypass = self.split(x)
        mixed = weighted_sum(self.candidates(partial_input, training),
                             tf.gather(op_weights, self.op_columns))
        if bypass is None:
            return mixed
        return channel_shuffle(tf.concat([mixed, bypass], axis=-1), self.partial)


class Cell(tf.keras.layers.Layer):
    """A DARTS search cell: two preprocessed inputs, `nodes` nodes of mixed ops, concat."""

    def __init__(self, space, primitives, nodes, multiplier, channels, reduction,
                 reduction_prev, partial, structure, traces=None, **kwargs):
        super().__init__(**kwargs)
        self.traces = traces or TraceCache(enabled=False)
        self.nodes = nodes
        self.multiplier = multiplier
        self.reduction = reduction
        self.partial = partial
        self.channels = channels
        self.preprocess0 = space.build_preprocess(channels, reduction_prev, structure,
                                                  name="preprocess0")
        self.preprocess1 = space.build_preprocess(channels, False, structure, name="preprocess1")
        self.edges = []
        for node in range(nodes):
            for source in range(2 + node):
                stride = 2 if reduction and source < 2 else 1
                self.edges.append(MixedOp(space, primitives, channels, stride, partial, structure,
                                          name=f"edge_{node}_{source}"))

    def call(self, s0, s1, op_weights, edge_weights, training=None):
        # `training` is fixed in each trace; TraceCache shares only layers without moving
        # statistics, whose outputs do not depend on it.
        states = [self.traces.call(self.preprocess0,
                                   functools.partial(self.preprocess0, training=training), s0),
                  self.traces.call(self.preprocess1,
                                   functools.partial(self.preprocess1, training=training), s1)]
        op_columns = self.edges[0].op_columns
        if len(op_columns) != op_weights.shape[-1]:
            op_weights = tf.gather(op_weights, op_columns, axis=1)
        # e_ij * w_ijo for every edge and op that runs, in the order of the candidates.
        mixing = edge_weights[:, None] * op_weights
        # The split of a state is the same for every edge leaving it (same stride): once.
        splits = {}
        offset = 0
        for node in range(self.nodes):
            outputs, bypasses = [], []
            for source, state in enumerate(states):
                edge = self.edges[offset + source]
                if source not in splits:
                    splits[source] = edge.split(state)
                partial_input, bypass = splits[source]
                outputs.extend(self.traces.call(
                    edge, functools.partial(edge.candidates, training=training), partial_input))
                if bypass is not None:
                    bypasses.append(bypass)
            end = offset + len(states)
            mixed = weighted_sum(outputs, tf.reshape(mixing[offset:end], [-1]))
            if bypasses:
                bypass = weighted_sum(bypasses, edge_weights[offset:end])
                mixed = channel_shuffle(tf.concat([mixed, bypass], axis=-1), self.partial)
            offset = end
            states.append(mixed)
        return tf.concat(states[-self.multiplier:], axis=-1)


class Supernet(tf.keras.Model):
    """Stem, DARTS search cells, global pooling and a linear classifier.

    `call(images, arch_weights)` with an `ArchWeights`; the network holds only the weights
    of the ops (its `trainable_variables`).
    """

    def __init__(self, config: SupernetConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        space = get_space(config.space)
        structure = config.structure
        stem_width = stem_channels(config.stem, config.channels, config.stem_multiplier,
                                   search=True)
        if config.stem == "cifar":
            self.stem_conv = tf.keras.layers.Conv2D(stem_width, 3, padding="same",
                                                    use_bias=False, name="stem_conv")
            self.stem_norm = make_norm(structure.norm, structure.affine, name="stem_bn")
        else:  # PC-DARTS's ImageNet search stem: 3 * C channels, stride 8
            self.large_stem = Stem(config.stem, stem_width, structure.norm, structure.affine,
                                   name="stem")
        # One trace per distinct edge/preprocess signature, shared by the whole network.
        self.traces = TraceCache(enabled=config.graph != "flat",
                                 inline=config.graph == "inlined")
        self.search_cells = []
        reduction_prev = config.stem != "cifar"  # s0 comes at twice s1's resolution
        for index, (reduction, channels) in enumerate(config.cell_plan()):
            partial = config.partial_reduce if reduction else config.partial_normal
            self.search_cells.append(Cell(
                space, config.primitives, config.nodes, config.multiplier, channels, reduction,
                reduction_prev, partial, structure, traces=self.traces, name=f"cell_{index}"))
            reduction_prev = reduction
        self.global_pool = tf.keras.layers.GlobalAveragePooling2D(name="global_pool")
        self.classifier = tf.keras.layers.Dense(config.num_classes, name="classifier")

    def call(self, images, arch_weights: ArchWeights, training=None):
        """Logits; the search steps pass `training=True` (DARTS searches in train mode: every
        norm uses batch statistics and Keras BatchNormalization updates its moving ones)."""
        s0, s1 = self.stem(images, training)
        for cell in self.search_cells:
            s0, s1 = s1, self.run_cell(cell, s0, s1, arch_weights, training)
        return self.head(s1)

    # The three parts of `call`, apart for `recompute.checkpointed_gradients`.
    def stem(self, images, training=None):
        """(s0, s1): the first cell's two inputs (the same tensor behind the CIFAR stem)."""
        if self.config.stem != "cifar":
            return self.large_stem(images, training=training)
        x = self.stem_norm(self.stem_conv(images), training=training)
        return x, x

    @staticmethod
    def run_cell(cell, s0, s1, arch_weights: ArchWeights, training=None):
        return cell(s0, s1, *arch_weights.for_cell(cell.reduction), training=training)

    def head(self, state):
        return self.classifier(self.global_pool(state))

    def build_variables(self, arch_weights: ArchWeights) -> None:
        """Create every weight with one eager forward pass on one 8x8 image (8 times that
        behind a stride-8 stem).

        No variable depends on the spatial size, and a tiny eager pass (seconds) is far cheaper
        than letting the first `tf.function` trace create them (tf.function traces twice when
        it creates variables, and each trace of a supernet costs tens of seconds).
        """
        depth = self.config.input_shape[-1]
        side = 8 * stem_stride(self.config.stem)
        self(tf.zeros([1, side, side, depth]), arch_weights)
