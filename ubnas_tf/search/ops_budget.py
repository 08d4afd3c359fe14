"""OPs-aware search: the cost of the network a supernet would derive, and a penalty on it.

Beyond UBNAS (which searches for accuracy only): users ship to devices with a budget. The
derived network's OPs (FLOPs + BOPs/64, as `ubnas_tf.network.cost`) are a sum of a fixed part (stem,
preprocessing, classifier) and one term per kept edge, the cost of its op at that edge's
channels, stride and resolution. `NetworkCostModel` holds those terms for every edge of every
cell (summed over the cells that share a cell type's architecture), measured from shapes by
`cost.op_profile` with the *retraining* module of each op, so

    ops(genotype) = fixed + sum over kept edges e of cost[cell type][e, op(e)]

exactly (tested against `cost.profile` of the built network). With the architecture weights
the same sum becomes differentiable, the expected OPs of the derived network:

    E[ops] = fixed + sum_type sum_e keep_e * sum_{o != none} p_eo * cost[type][e, o]

where p_eo = softmax(alpha_e) renormalised over the ops the derivation may pick (never
`none`) and keep_e is the chance the edge is one of its node's two kept inputs: its edge
weight in EBNAS's sigmoid form (a node's weights sum to 2) and twice it in the softmax form
(they sum to 1). The architecture loss then adds

    strength * log(E[ops] / target)^2

which pulls the expectation to the target from either side, in ratios (half and double the
budget weigh the same).

The penalty moves the architecture weights slowly, but the argmax of a derivation flips every
edge to the cheapest (or dearest) op as soon as the penalty's gradient tips it: measured on the
shipped dataset, a target of half the unconstrained OPs gave an argmax network 27% below it
while the expectation was still 38% above. So the derivation is budget-aware too
(`fit_genotype`): starting from DARTS's argmax genotype, it makes the single gene changes
(another op on a kept edge, or another input for a node) that cost the least architecture
strength per OP moved, until the network is within `tolerance` of the target.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from ubnas_tf.errors import UserError
from ubnas_tf.search_space.genotype import Genotype

__all__ = ["NetworkCostModel", "BudgetPenalty", "budget_from_config", "cost_model_from_config",
           "fit_genotype", "check_budget_keys"]

CELL_TYPES = ("normal", "reduce")


def _edge_sources(nodes: int):
    """(node, source) of each edge, in the supernet's edge order."""
    return [(node, source) for node in range(nodes) for source in range(node + 2)]


class NetworkCostModel:
    """Per-edge op costs of the network that a genotype of this search becomes.

    # Arguments
        space: the search space (name or `SearchSpace`).
        primitives: the supernet's op columns (their order is the alphas').
        nodes: intermediate nodes per cell.
        multiplier, stem_multiplier, cells, channels: the *network's* sizes (the retraining's,
            which may differ from the supernet's).
        input_shape, num_classes: the data's.
        module: the module structure of the retrained ops (None: the space's default).
        stem: the network's stem kind (`auto` resolves it from `input_shape`, as
            `build_network` does): the cells' sizes start at the stem's stride.
        reduction: the network's reductions, `searched` (the genotype's reduction cells) or
            `quicknet` (QuickNet's float transitions, a fixed cost: the reduction cell's edges
            then cost nothing, whatever the genotype holds there).
    """

    def __init__(self, space, *, primitives, nodes: int, multiplier: int, cells: int,
                 channels: int, input_shape, num_classes: int, stem_multiplier: int = 3,
                 module=None, stem: str = "auto", reduction: str = "searched"):
        from ubnas_tf.network.genotype_network import check_reduction
        from ubnas_tf.search_space import get_space, reduction_cells
        from ubnas_tf.search_space.stems import resolve_stem, stem_stride

        self.space = get_space(space) if isinstance(space, str) else space
        self.primitives = tuple(primitives)
        self.nodes, self.multiplier = int(nodes), int(multiplier)
        self.cells, self.channels = int(cells), int(channels)
        self.input_shape, self.num_classes = tuple(input_shape), int(num_classes)
        self.stem_multiplier = int(stem_multiplier)
        self.module = module
        self.stem = resolve_stem(stem, self.input_shape)
        self.reduction = check_reduction(reduction)
        # Edge e of node n is `starts[n] + source`; the derivation never picks `none`.
        self.starts = [int(start) for start in np.cumsum([0] + [n + 2 for n in range(self.nodes)])]
        self.pickable = [i for i, name in enumerate(self.primitives) if name != "none"]
        self._profiles = {}
        self.costs = {cell_type: np.zeros((len(_edge_sources(self.nodes)),
                                           len(self.primitives)), np.float64)
                      for cell_type in CELL_TYPES}
        stride = stem_stride(self.stem)
        height, width = (-(-int(side) // stride) for side in self.input_shape[:2])
        current = self.channels
        reductions = reduction_cells(self.cells)
        for index in range(self.cells):
            reduction = index in reductions
            if reduction:
                current *= 2
            if not (reduction and self.reduction == "quicknet"):
                self._add_cell(self.costs["reduce" if reduction else "normal"], current,
                               (height, width), reduction)
            if reduction:
                height, width = -(-height // 2), -(-width // 2)
        self.fixed = self._fixed_part()

    def _op_ops(self, op_name: str, channels: int, stride: int, size) -> float:
        from ubnas_tf.network.cost import op_profile

        if op_name == "none":
            return 0.0
        key = (op_name, channels, stride, size)
        if key not in self._profiles:
            self._profiles[key] = op_profile(self.space, op_name, channels=channels,
                                             stride=stride, input_size=size,
                                             structure=self.module).ops
        return self._profiles[key]

    def _add_cell(self, table: np.ndarray, channels: int, size, reduction: bool) -> None:
        reduced = (-(-size[0] // 2), -(-size[1] // 2))
        for edge, (_, source) in enumerate(_edge_sources(self.nodes)):
            from_input = source < 2
            stride = 2 if reduction and from_input else 1
            at = size if from_input or not reduction else reduced
            for column, op_name in enumerate(self.primitives):
                table[edge, column] += self._op_ops(op_name, channels, stride, at)

    def _build(self, genotype: Genotype) -> tf.keras.Model:
        from ubnas_tf.network.genotype_network import build_network

        return build_network(genotype, input_shape=self.input_shape,
                             num_classes=self.num_classes, space=self.space, cells=self.cells,
                             channels=self.channels, stem_multiplier=self.stem_multiplier,
                             module=self.module, stem=self.stem, reduction=self.reduction)

    def _cheapest_genotype(self) -> Genotype:
        """Every node's first two inputs with the cheapest pickable op (to measure `fixed`)."""
        column = min(self.pickable, key=lambda i: self.costs["normal"][:, i].sum()
                     + self.costs["reduce"][:, i].sum())
        genes = tuple((self.primitives[column], source)
                      for node in range(self.nodes) for source in (0, 1))
        concat = tuple(range(2 + self.nodes - self.multiplier, self.nodes + 2))
        return Genotype(normal=genes, normal_concat=concat, reduce=genes, reduce_concat=concat,
                        space=self.space.name)

    def _fixed_part(self) -> float:
        """Stem, preprocessing and classifier: a built network's OPs minus its edges'."""
        from ubnas_tf.network.cost import profile

        genotype = self._cheapest_genotype()
        return profile(self._build(genotype)).ops - self._edges_ops(genotype)

    def _edges_ops(self, genotype: Genotype) -> float:
        total = 0.0
        for cell_type in CELL_TYPES:
            genes = genotype.cell(cell_type == "reduce")
            for index, (op_name, source) in enumerate(genes):
                edge = self.starts[index // 2] + source
                total += self.costs[cell_type][edge, self.primitives.index(op_name)]
        return float(total)

    def genotype_ops(self, genotype: Genotype) -> float:
        """OPs of the network of `genotype` (equal to `cost.profile` of the built network)."""
        return self.fixed + self._edges_ops(genotype)

    def expected_ops(self, arch_weights, edge_form: str) -> tf.Tensor:
        """E[OPs] of the derived network under `arch_weights` (an `ArchWeights`): a
        differentiable scalar."""
        pickable = tf.constant([name != "none" for name in self.primitives], tf.float32)
        total = tf.constant(self.fixed, tf.float32)
        for cell_type in CELL_TYPES:
            op_weights, edge_weights = arch_weights.for_cell(cell_type == "reduce")
            picked = op_weights * pickable
            picked = picked / tf.reduce_sum(picked, axis=-1, keepdims=True)
            keep = edge_weights if edge_form == "sigmoid" else 2.0 * edge_weights
            per_edge = tf.reduce_sum(picked * tf.constant(self.costs[cell_type], tf.float32),
                                     axis=-1)
            total += tf.reduce_sum(keep * per_edge)
        return total

    def range(self) -> tuple[float, float]:
        """(cheapest, dearest) OPs a genotype of this search can have."""
        low = high = self.fixed
        starts = self.starts
        for cell_type in CELL_TYPES:
            best = self.costs[cell_type][:, self.pickable]
            for node in range(self.nodes):
                rows = best[starts[node]:starts[node + 1]]
                low += np.sort(rows.min(axis=1))[:2].sum()
                high += np.sort(rows.max(axis=1))[-2:].sum()
        return float(low), float(high)


def _moves(state, strengths, costs, pickable, starts):
    """Every single gene change: (cell type, gene index, new (edge, op), OPs delta, log
    strength delta)."""
    for cell_type, genes in state.items():
        for index, (edge, column) in enumerate(genes):
            node = index // 2
            other = genes[index ^ 1][0]  # the node's other kept input stays distinct
            for new_edge in range(starts[node], starts[node + 1]):
                if new_edge == other:
                    continue
                for new_column in pickable:
                    if (new_edge, new_column) == (edge, column):
                        continue
                    yield (cell_type, index, (new_edge, new_column),
                           costs[cell_type][new_edge, new_column] - costs[cell_type][edge, column],
                           strengths[cell_type][new_edge, new_column]
                           - strengths[cell_type][edge, column])


def fit_genotype(genotype: Genotype, weights: dict, cost_model: NetworkCostModel, target: float,
                 tolerance: float, max_changes: int = 64) -> Genotype:
    """The genotype nearest `genotype` in architecture strength whose OPs are within
    `tolerance` of `target` (or as near as single gene changes get).

    `weights`: {'normal': (op_weights [E, ops], edge_weights [E]), 'reduce': ...} (numpy).
    A gene's strength is log(edge weight * op weight), DARTS's ranking; each change is the one
    that lands in the band with the least strength lost, else the one that loses the least
    strength per OP moved towards the target without passing the band.
    """
    primitives, starts = cost_model.primitives, cost_model.starts
    strengths = {cell_type: np.log(np.maximum(op_weights * edge_weights[:, None], 1e-30))
                 for cell_type, (op_weights, edge_weights) in weights.items()}
    state = {cell_type: [(starts[index // 2] + source, primitives.index(op_name))
                         for index, (op_name, source) in
                         enumerate(genotype.cell(cell_type == "reduce"))]
             for cell_type in CELL_TYPES}
    ops = cost_model.genotype_ops(genotype)
    low, high = target * (1 - tolerance), target * (1 + tolerance)
    for _ in range(max_changes):
        if low <= ops <= high:
            break
        direction = 1.0 if ops < low else -1.0
        moves = [m for m in _moves(state, strengths, cost_model.costs, cost_model.pickable,
                                   starts) if m[3] * direction > 0]
        landing = [m for m in moves if low <= ops + m[3] <= high]
        if landing:
            move = max(landing, key=lambda m: m[4])
        else:
            # Moves that stop short of the band (none of the others passes it: none lands).
            short = [m for m in moves if (ops + m[3] < low if direction > 0 else ops + m[3] > high)]
            if not short:
                break
            move = max(short, key=lambda m: m[4] / abs(m[3]))
        cell_type, index, gene, delta, _ = move
        state[cell_type][index] = gene
        ops += delta
    cells = {cell_type: tuple((primitives[column], int(edge - starts[index // 2]))
                              for index, (edge, column) in enumerate(genes))
             for cell_type, genes in state.items()}
    return dataclasses.replace(genotype, normal=cells["normal"], reduce=cells["reduce"])


@dataclasses.dataclass
class BudgetPenalty:
    """strength * log(E[OPs] / target)^2, added to the architecture loss; `fit` derives the
    genotype within `tolerance` of the target."""

    cost_model: NetworkCostModel
    target: float
    strength: float
    edge_form: str
    tolerance: float = 0.05

    def expected_ops(self, arch_weights) -> tf.Tensor:
        return self.cost_model.expected_ops(arch_weights, self.edge_form)

    def fit(self, genotype: Genotype, weights: dict) -> Genotype:
        return fit_genotype(genotype, weights, self.cost_model, self.target, self.tolerance)

    def __call__(self, arch_weights) -> tf.Tensor:
        ratio = self.expected_ops(arch_weights) / self.target
        return self.strength * tf.square(tf.math.log(ratio))


def cost_model_from_config(config: dict, info) -> NetworkCostModel:
    """The cost model of a search config for the data described by `info` (its `input_shape`
    and `num_classes`): the supernet's ops, and the network of `ops_budget.cells`/`channels`/
    `module`/`reduction` (null: the search's own cells and channels, the space's retraining
    module; `reduction` defaults to the searched reduction cells)."""
    from ubnas_tf.search.config import supernet_config

    budget = config["ops_budget"]
    return NetworkCostModel(
        config["space"], primitives=supernet_config(config, info).primitives,
        nodes=config["nodes"], multiplier=config["multiplier"],
        cells=budget["cells"] or config["cells"], channels=budget["channels"] or config["channels"],
        input_shape=info.input_shape, num_classes=info.num_classes,
        stem_multiplier=config["stem_multiplier"], module=budget["module"], stem=config["stem"],
        reduction=budget["reduction"])


def check_budget_keys(budget: dict) -> None:
    """One-line UserErrors naming the key for an `ops_budget` section's tolerance, strength
    or target (null allowed) out of range (the block search's budget too)."""
    target, strength, tolerance = budget["target"], budget["strength"], budget["tolerance"]
    if not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise UserError(f"config key 'ops_budget.tolerance' must be in [0, 1), got {tolerance!r}")
    if not isinstance(strength, (int, float)) or strength <= 0:
        raise UserError(f"config key 'ops_budget.strength' must be > 0, got {strength!r}")
    if target is not None and (not isinstance(target, (int, float)) or isinstance(target, bool)
                               or target <= 0 or not math.isfinite(target)):
        raise UserError(f"config key 'ops_budget.target' must be null or a number of OPs > 0, "
                        f"got {target!r}")


def budget_from_config(config: dict, info) -> BudgetPenalty | None:
    """The penalty of a search config's `ops_budget` section (None when `target` is null);
    the network it costs is `cost_model_from_config`'s."""
    budget = config["ops_budget"]
    target, strength, tolerance = budget["target"], budget["strength"], budget["tolerance"]
    check_budget_keys(budget)
    if target is None:
        return None
    model = cost_model_from_config(config, info)
    low, high = model.range()
    if not low <= target <= high:
        raise UserError(
            f"ops_budget.target {target:,.0f} OPs is out of reach: the networks of this search "
            f"(cells {model.cells}, channels {model.channels}) have {low:,.0f} to {high:,.0f} "
            "OPs; pick a target in that range or change ops_budget.cells/channels")
    return BudgetPenalty(model, float(target), float(strength), config["edge_weights"],
                         float(tolerance))
