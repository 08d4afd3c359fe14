"""The architecture: its parameters, edge weights, regularizers and the derived genotype.

The architecture parameters live apart from the network weights, as their own `tf.Variable`s
(they reach every checkpoint through the `Architect`, a `tf.Module`):

- `alphas_normal`, `alphas_reduce`: [edges, ops], op weights softmax(alpha) per edge (DARTS);
- `betas_normal`, `betas_reduce`: edge weights, in one of two forms:

  - `softmax` (PC-DARTS edge normalisation): one beta per edge, e_ij = softmax_j(beta_i.).
  - `sigmoid` (EBNAS, sscckk/EBNAS model_search.py): node i >= 1 with n = i + 2 inputs has
    e_ij = sigmoid(beta_ij + log(2 / (n - 2))), so each node's edge weights start at 2/n and sum
    to 2; node 0's two edges are fixed at 1 (it keeps both inputs anyway). One beta per edge
    of nodes 1..N-1.

EBNAS's regularizers of the architecture loss (architect.py there), with r(e) = min(1, e / R):

    L_arch = CE_val + r(e) * ( path * -sum (1 - softmax(alpha))^2
                             + edge * sum_nodes [ -sum_j (e_ij - mean_j e_ij)^2
                                                  + 0.5 * (sum_j e_ij - 2)^2 ] )

The path term pushes each edge's op weights towards one-hot, the edge term pushes each node's
edge weights apart while keeping their sum near 2 (two inputs kept per node). In the softmax
form the sum term is constant (the weights sum to 1) and only the spread acts.

Genotype (`edge_selection`), per node two incoming edges, on each the argmax op other than
`none`; the edges are

- `ebnas` (sscckk/EBNAS): the two with the largest edge weight e_ij (node 0 keeps both of its
  inputs; with sigmoid weights the offsets of a node are equal, so this ranks by beta);
- `pcdarts` (PC-DARTS/DARTS `_parse`): the two with the largest e_ij * max_{o != none} w_ijo.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ubnas_tf.errors import UserError
from ubnas_tf.search_space.genotype import Genotype
from ubnas_tf.search.schedule import ramp_value as ramp
from ubnas_tf.search.supernet import ArchWeights, edge_count, op_columns

__all__ = ["Architect", "EDGE_WEIGHT_FORMS", "EDGE_SELECTIONS", "sigmoid_offsets", "ramp"]

EDGE_WEIGHT_FORMS = ("sigmoid", "softmax")
EDGE_SELECTIONS = ("ebnas", "pcdarts")
CELL_TYPES = ("normal", "reduce")
PROJECTED_LOGIT = 30.0  # exp(-30) ~ 1e-13: a projected weight is 0 or 1 to float32 precision


def sigmoid_offsets(nodes: int) -> np.ndarray:
    """log(2 / (n - 2)) per edge of nodes 1..N-1 (n inputs): sigmoid(offset) * n = 2."""
    return np.concatenate([
        np.full(node + 2, math.log(2.0 / node), dtype=np.float32) for node in range(1, nodes)
    ]) if nodes > 1 else np.zeros([0], np.float32)


def rounded(values) -> list:
    return np.round(np.asarray(values, np.float64), 5).tolist()


def exact(variable) -> list:
    """float32 values as the shortest decimals that read back to the same float32."""
    return [[float(np.format_float_positional(v, unique=True)) for v in row]
            if np.ndim(row) else float(np.format_float_positional(row, unique=True))
            for row in np.asarray(variable.numpy(), np.float32)]


class Architect(tf.Module):
    """Owns the architecture parameters; computes edge/op weights, regularizers, genotype.

    # Arguments
        primitives: op names (one alpha column each; `none` may be one of them).
        nodes: intermediate nodes per cell.
        multiplier: nodes concatenated into the cell output (the last ones).
        edge_weights: 'sigmoid' (EBNAS) or 'softmax' (PC-DARTS).
        edge_selection: 'ebnas' or 'pcdarts': how the genotype picks a node's two inputs.
        path_strength, edge_strength: factors of the two regularizers (0 disables one).
        ramp_epochs: R of the linear ramp r(e) = min(1, e / R) (search/schedule.py).
        space: name of the search space (written into the genotype).
        seed: seeds the 1e-3 * N(0, 1) initialisation (DARTS).
        budget: an `ops_budget.BudgetPenalty` (OPs-aware search) or None.
    """

    def __init__(self, *, primitives, nodes: int, multiplier: int, edge_weights: str = "sigmoid",
                 edge_selection: str = "ebnas", path_strength: float = 0.0,
                 edge_strength: float = 0.0, ramp_epochs: float = 0,
                 space: str = "binary", seed: int = 0, init_scale: float = 1e-3,
                 budget=None, name: str = "architect"):
        super().__init__(name=name)
        if edge_weights not in EDGE_WEIGHT_FORMS:
            raise UserError(f"edge_weights={edge_weights!r} is not valid: use one of "
                            f"{', '.join(EDGE_WEIGHT_FORMS)}")
        if edge_selection not in EDGE_SELECTIONS:
            raise UserError(f"edge_selection={edge_selection!r} is not valid: use one of "
                            f"{', '.join(EDGE_SELECTIONS)}")
        self.edge_selection = edge_selection
        self.primitives = tuple(primitives)
        self.nodes = int(nodes)
        self.multiplier = int(multiplier)
        self.edge_form = edge_weights
        self.path_strength = float(path_strength)
        self.edge_strength = float(edge_strength)
        self.ramp_epochs = float(ramp_epochs)
        self.space = space
        self.budget = budget
        self.edges = edge_count(self.nodes)
        rng = np.random.default_rng(seed)
        beta_count = self.edges - 2 if edge_weights == "sigmoid" else self.edges
        self._offsets = tf.constant(sigmoid_offsets(self.nodes))
        self._not_none = np.array([name != "none" for name in self.primitives])
        self.op_columns = op_columns(self.primitives)  # the ops a genotype can pick
        for cell_type in CELL_TYPES:
            alphas = init_scale * rng.standard_normal((self.edges, len(self.primitives)))
            betas = init_scale * rng.standard_normal(beta_count)
            setattr(self, f"alphas_{cell_type}",
                    tf.Variable(alphas.astype(np.float32), name=f"alphas_{cell_type}"))
            setattr(self, f"betas_{cell_type}",
                    tf.Variable(betas.astype(np.float32), name=f"betas_{cell_type}"))

    # -- what the supernet takes ------------------------------------------------------------
    @property
    def parameters(self) -> list:
        """The architecture variables, in a fixed order (alphas then betas, normal first)."""
        return [self.alphas_normal, self.alphas_reduce, self.betas_normal, self.betas_reduce]

    def node_slices(self):
        """(start, end) of each node's incoming edges in the edge order of a cell."""
        slices, start = [], 0
        for node in range(self.nodes):
            slices.append((start, start + node + 2))
            start += node + 2
        return slices

    def edge_weights_of(self, betas) -> tf.Tensor:
        """[edges] edge weights from a cell type's betas."""
        if self.edge_form == "sigmoid":
            return tf.concat([tf.ones([2], betas.dtype), tf.sigmoid(betas + self._offsets)], 0)
        return tf.concat([tf.nn.softmax(betas[start:end]) for start, end in self.node_slices()],
                         axis=0)

    def arch_weights(self) -> ArchWeights:
        """The weights the supernet takes: softmax(alpha) per edge and the edge weights."""
        return ArchWeights(
            normal_ops=tf.nn.softmax(self.alphas_normal, axis=-1),
            normal_edges=self.edge_weights_of(self.betas_normal),
            reduce_ops=tf.nn.softmax(self.alphas_reduce, axis=-1),
            reduce_edges=self.edge_weights_of(self.betas_reduce),
        )

    # -- projection (search/perturbation.py) ------------------------------------------------
    def project_op(self, cell_type: str, edge: int, op: str) -> None:
        """Fix `edge`'s op weights to one-hot on `op` (softmax of a 30-logit gap: 1 and ~1e-13
        in float32), so every later step and score sees the edge as the discrete op."""
        alphas = getattr(self, f"alphas_{cell_type}")
        row = np.zeros(len(self.primitives), np.float32)
        row[self.primitives.index(op)] = PROJECTED_LOGIT
        alphas[edge].assign(row)

    def remove_edge(self, cell_type: str, edge: int) -> None:
        """Drive `edge`'s weight to zero (sigmoid form; in the softmax form the node's other
        edges take its share). Node 0's two edges carry no parameter and are always kept."""
        index = edge - 2 if self.edge_form == "sigmoid" else edge
        if index < 0:
            raise ValueError(f"edge {edge} belongs to node 0, which keeps both cell inputs")
        getattr(self, f"betas_{cell_type}")[index].assign(-PROJECTED_LOGIT)

    # -- regularizers -----------------------------------------------------------------------
    def path_regularizer(self) -> tf.Tensor:
        """-sum (1 - softmax(alpha))^2 over both cell types (EBNAS alpha_loss)."""
        total = 0.0
        for alphas in (self.alphas_normal, self.alphas_reduce):
            total -= tf.reduce_sum(tf.square(1.0 - tf.nn.softmax(alphas, axis=-1)))
        return total

    def edge_regularizer(self) -> tf.Tensor:
        """sum over learnable nodes of -sum_j (e_j - mean e)^2 + 0.5 (sum_j e_j - 2)^2."""
        first = 1 if self.edge_form == "sigmoid" else 0  # node 0's edges are fixed at 1
        total = 0.0
        for betas in (self.betas_normal, self.betas_reduce):
            weights = self.edge_weights_of(betas)
            for start, end in self.node_slices()[first:]:
                node = weights[start:end]
                spread = tf.reduce_sum(tf.square(node - tf.reduce_mean(node)))
                total += -spread + 0.5 * tf.square(tf.reduce_sum(node) - 2.0)
        return total

    def regularization(self, ramp_value) -> tf.Tensor:
        """r(e) * (path * path_regularizer + edge * edge_regularizer), plus the OPs budget's
        penalty (not ramped: the budget holds from the first architecture step)."""
        total = tf.constant(0.0)
        if self.path_strength:
            total += self.path_strength * self.path_regularizer()
        if self.edge_strength:
            total += self.edge_strength * self.edge_regularizer()
        total = ramp_value * total
        if self.budget is not None:
            total += self.budget(self.arch_weights())
        return total

    def ramp(self, epoch: int) -> float:
        return ramp(epoch, self.ramp_epochs)

    # -- genotype ---------------------------------------------------------------------------
    def weights_numpy(self) -> dict:
        """{'normal': (op_weights [E, ops], edge_weights [E]), 'reduce': ...} as numpy."""
        weights = self.arch_weights()
        return {
            cell_type: tuple(np.asarray(w) for w in weights.for_cell(cell_type == "reduce"))
            for cell_type in CELL_TYPES
        }

    def derive_cell(self, op_weights: np.ndarray, edge_weights: np.ndarray) -> tuple:
        """Two inputs per node (`edge_selection`), the argmax op other than `none` on each."""
        op_weights = np.where(self._not_none[None, :], op_weights, -np.inf)
        best_ops = op_weights.argmax(axis=1)
        strength = (edge_weights if self.edge_selection == "ebnas"
                    else edge_weights * op_weights.max(axis=1))
        genes = []
        for start, end in self.node_slices():
            # Stable sort: on a tie the earlier input wins, the same on every run.
            order = sorted(range(end - start), key=lambda j: -strength[start + j])[:2]
            for source in order:
                genes.append((self.primitives[best_ops[start + source]], source))
        return tuple(genes)

    def genotype(self, fit_budget: bool = True) -> Genotype:
        """DARTS's derivation; with an OPs budget, fitted to it (`ops_budget.fit_genotype`)
        unless `fit_budget` is False."""
        weights = self.weights_numpy()
        concat = tuple(range(2 + self.nodes - self.multiplier, self.nodes + 2))
        genotype = Genotype(
            normal=self.derive_cell(*weights["normal"]),
            normal_concat=concat,
            reduce=self.derive_cell(*weights["reduce"]),
            reduce_concat=concat,
            space=self.space,
        )
        if self.budget is not None and fit_budget:
            genotype = self.budget.fit(genotype, weights)
        return genotype

    def summary(self) -> dict:
        """JSON-ready op weights, edge weights and raw parameters, for the per-epoch log."""
        weights = self.weights_numpy()
        record = {}
        for cell_type in CELL_TYPES:
            ops, edges = weights[cell_type]
            record[f"op_weights_{cell_type}"] = rounded(ops)
            record[f"edge_weights_{cell_type}"] = rounded(edges)
            # Raw parameters at full float32 precision (exact resume/determinism checks).
            record[f"alphas_{cell_type}"] = exact(getattr(self, f"alphas_{cell_type}"))
            record[f"betas_{cell_type}"] = exact(getattr(self, f"betas_{cell_type}"))
        if self.budget is not None:
            record["expected_ops"] = round(float(self.budget.expected_ops(self.arch_weights())))
            cost_model = self.budget.cost_model
            record["genotype_ops"] = round(cost_model.genotype_ops(self.genotype()))
            record["argmax_genotype_ops"] = round(
                cost_model.genotype_ops(self.genotype(fit_budget=False)))
            record["ops_target"] = self.budget.target
        return record
