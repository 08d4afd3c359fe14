"""The architecture of a block-level search: one op per block of QuickNet's template.

- `alphas`: [blocks, ops], initialised 1e-3 * N(0, 1) from the seed. The supernet's op
  weights (`op_weights`) are either DARTS's softmax(alpha) (every op mixed in every step) or
  GDAS's hard Gumbel sample (Dong & Yang, "Searching for a Robust Neural Architecture in Four
  GPU Hours", CVPR 2019): per step and block one op, o = argmax(alpha + g), g ~ Gumbel(0, 1),
  weight exactly 1, with the straight-through gradient of softmax((alpha + g) / tau), tau
  annealed linearly over the searched epochs (`temperature`). Sampled, each op trains alone in
  its block (the warm-up then trains uniformly drawn single paths, as one-shot NAS does), where
  the softmax mixture trains them together, and the one that helps the mixture early (the
  identity of a skip or a pool, while the binary convs are noise) wins: the collapse measured
  with softmax on Fashion-MNIST (issue 14). `uniform` (SPOS, Guo et al., ECCV 2020; Li &
  Talwalkar's random search with weight sharing, UAI 2019): per step and block one op drawn
  uniformly, weight exactly 1, no architecture steps: every path trains equally, and the
  network is chosen after the search by its one-shot accuracy (search/oneshot.py).
- Architecture loss: CE_val + r(e) * path * -sum (1 - softmax(alpha))^2 (EBNAS's path term:
  one op per block) + the OPs budget's strength * log(E[OPs] / target)^2 (ops_budget.py's form).
- Genotype: the argmax op of each block, moved into the budget's window when there is one
  (`fit_block_ops`), a list of op names that `baselines.quicknet(ops=...)` retrains.

`BlockCostModel` holds what each op costs at each block (OPs = FLOPs + BOPs / 64,
network/cost.py, with QuickNet's module: the retrained block), so that

    ops(network) = fixed + sum_b cost[b, op_b]
    E[ops]       = fixed + sum_b sum_o softmax(alpha_b)_o * cost[b, o]

exactly (tested against `cost.profile` of the built network).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ubnas_tf.errors import UserError
from ubnas_tf.network.baselines import BLOCK_SPACE, quicknet, quicknet_template
from ubnas_tf.network.cost import op_profile, profile
from ubnas_tf.search.architect import exact, rounded
from ubnas_tf.search.ops_budget import check_budget_keys

__all__ = ["BlockCostModel", "BlockArchitect", "fit_block_ops", "block_primitives",
           "check_budget", "check_op_weights", "OP_WEIGHTS"]

OP_WEIGHTS = ("softmax", "gumbel_hard", "uniform")


def block_primitives(primitives=None) -> tuple:
    """The ops a block may take: `primitives` checked, or every op of the binary space but
    `none` (a block that outputs zero cuts the network)."""
    from ubnas_tf.search_space import get_space

    allowed = [p for p in get_space(BLOCK_SPACE).primitives if p != "none"]
    if primitives is None:
        return tuple(allowed)
    if isinstance(primitives, str) or not primitives or len(set(primitives)) != len(primitives) \
            or any(p not in allowed for p in primitives):
        raise UserError(f"config key 'primitives' must be null or a list of distinct block ops "
                        f"of {', '.join(allowed)}; got {primitives!r}")
    return tuple(primitives)


class BlockCostModel:
    """OPs of the networks of a block search: `fixed` (stem, transitions, head) plus one term
    per block, `costs[b, o]` (op o at block b's width and resolution)."""

    def __init__(self, info, *, filters, blocks, primitives):
        self.primitives = tuple(primitives)
        plan = quicknet_template(info, filters, blocks)
        # Skip connections cost nothing: the all-skip network is the fixed part, and it gives
        # each block's input size.
        skip = quicknet(info, filters=filters, blocks=blocks, ops=["skip_connect"] * len(plan))
        self.fixed = float(profile(skip).ops)
        costs = np.zeros([len(plan), len(self.primitives)])
        for index, (prefix, width, _) in enumerate(plan):
            _, height, side, _ = skip.get_layer(f"{prefix}_skip_connect").input_shape
            for column, op_name in enumerate(self.primitives):
                costs[index, column] = op_profile(BLOCK_SPACE, op_name, channels=width,
                                                  input_size=(height, side),
                                                  structure="quicknet").ops
        self.costs = costs
        self._costs = tf.constant(costs, tf.float32)

    @classmethod
    def from_config(cls, info, config: dict) -> "BlockCostModel":
        """The cost model of a block search config's template and ops."""
        template = config["template"]
        return cls(info, filters=template["filters"], blocks=template["blocks"],
                   primitives=block_primitives(config["primitives"]))

    def network_ops(self, block_ops) -> float:
        return self.columns_ops([self.primitives.index(op_name) for op_name in block_ops])

    def columns_ops(self, columns) -> float:
        """OPs of the network with op column `columns[b]` at block b."""
        return self.fixed + float(sum(self.costs[b, c] for b, c in enumerate(columns)))

    def expected_ops(self, op_weights) -> tf.Tensor:
        return self.fixed + tf.reduce_sum(op_weights * self._costs)

    def range(self) -> tuple[float, float]:
        return (self.fixed + float(self.costs.min(axis=1).sum()),
                self.fixed + float(self.costs.max(axis=1).sum()))


def fit_block_ops(columns, op_weights: np.ndarray, costs: np.ndarray, fixed: float,
                  target: float, tolerance: float) -> list:
    """Op columns per block moved into target * (1 +- tolerance): while outside, make the
    change that lands inside at the least op weight lost, else the one that brings the OPs
    closer to the target at the least op weight lost per OP moved (the distance shrinks at
    every change, so it ends; a window out of reach ends at the nearest network found)."""
    columns = list(columns)
    low, high = target * (1 - tolerance), target * (1 + tolerance)

    def ops_of(choice):
        return fixed + sum(costs[b, c] for b, c in enumerate(choice))

    while not low <= ops_of(columns) <= high:
        current = ops_of(columns)
        distance = abs(current - target)
        best = None
        for block, column in enumerate(columns):
            for other in range(costs.shape[1]):
                moved = current - costs[block, column] + costs[block, other]
                gain = distance - abs(moved - target)
                if other == column or gain <= 0:
                    continue
                lost = op_weights[block, column] - op_weights[block, other]
                inside = low <= moved <= high
                key = (not inside, lost if inside else lost / gain)
                if best is None or key < best[0]:
                    best = (key, block, other)
        if best is None:
            break
        columns[best[1]] = best[2]
    return columns


def check_op_weights(op_weights: str) -> None:
    if op_weights not in OP_WEIGHTS:
        raise UserError(f"config key 'op_weights' must be one of {', '.join(OP_WEIGHTS)}, "
                        f"got {op_weights!r}")


class BlockArchitect(tf.Module):
    """Owns the alphas of a block search; computes op weights, regularizers and the genotype.

    # Arguments
        primitives: the ops a block may take (one alpha column each).
        block_count: blocks of the template.
        path_strength: factor of EBNAS's path regularizer (0 disables it).
        cost_model: a `BlockCostModel` (always: the log reports each epoch's OPs).
        target, strength, tolerance: the OPs budget (target None: no budget).
        op_weights: 'softmax' (DARTS), 'gumbel_hard' (GDAS; `temperature` is then tau) or
            'uniform' (SPOS: uniform single paths; the alphas are not searched).
        seed: seeds the initialisation and the Gumbel noise.
    """

    def __init__(self, *, primitives, block_count: int, cost_model: BlockCostModel,
                 path_strength: float = 0.0, target: float | None = None,
                 strength: float = 1.0, tolerance: float = 0.1, op_weights: str = "softmax",
                 seed: int = 0, init_scale: float = 1e-3, name: str = "architect"):
        super().__init__(name=name)
        check_op_weights(op_weights)
        self.op_weights = op_weights
        # Both checkpointed with the architect: a resumed search samples as an uninterrupted one.
        self.temperature = tf.Variable(1.0, trainable=False, name="temperature")
        self.noise = tf.random.Generator.from_seed(seed + 1)
        self.primitives = tuple(primitives)
        self.cost_model = cost_model
        self.path_strength = float(path_strength)
        self.target = None if target is None else float(target)
        self.strength = float(strength)
        self.tolerance = float(tolerance)
        alphas = init_scale * np.random.default_rng(seed).standard_normal(
            (block_count, len(self.primitives)))
        self.alphas = tf.Variable(alphas.astype(np.float32), name="alphas")

    @property
    def parameters(self) -> list:
        return [self.alphas]

    def probabilities(self) -> tf.Tensor:
        """[blocks, ops] softmax(alpha): what the genotype, the regularizers and the log read."""
        return tf.nn.softmax(self.alphas, axis=-1)

    def arch_weights(self) -> tf.Tensor:
        """[blocks, ops] op weights the supernet takes (`op_weights`; a new sample each call
        with `gumbel_hard`)."""
        if self.op_weights == "softmax":
            return self.probabilities()
        if self.op_weights == "uniform":
            blocks, ops = self.alphas.shape
            drawn = self.noise.uniform([blocks], minval=0, maxval=ops, dtype=tf.int32)
            return tf.one_hot(drawn, ops, dtype=self.alphas.dtype)
        uniform = self.noise.uniform(self.alphas.shape, minval=1e-10, maxval=1.0)
        gumbel = -tf.math.log(-tf.math.log(uniform))
        soft = tf.nn.softmax((self.alphas + gumbel) / self.temperature, axis=-1)
        hard = tf.one_hot(tf.argmax(soft, axis=-1), soft.shape[-1], dtype=soft.dtype)
        return hard - tf.stop_gradient(soft) + soft

    def path_regularizer(self) -> tf.Tensor:
        return -tf.reduce_sum(tf.square(1.0 - self.probabilities()))

    def budget_penalty(self) -> tf.Tensor:
        ratio = self.cost_model.expected_ops(self.probabilities()) / self.target
        return self.strength * tf.square(tf.math.log(ratio))

    def regularization(self, ramp) -> tf.Tensor:
        """r(e) * path * path_regularizer, plus the budget's penalty (not ramped)."""
        total = tf.constant(0.0)
        if self.path_strength:
            total += ramp * self.path_strength * self.path_regularizer()
        if self.target is not None:
            total += self.budget_penalty()
        return total

    def genotype(self, fit_budget: bool = True) -> list:
        """One op name per block: the argmax, fitted to the budget's window when there is one."""
        weights = np.asarray(self.probabilities())
        columns = weights.argmax(axis=1)
        if self.target is not None and fit_budget:
            columns = fit_block_ops(columns, weights, self.cost_model.costs,
                                    self.cost_model.fixed, self.target, self.tolerance)
        return [self.primitives[c] for c in columns]

    def summary(self) -> dict:
        """JSON-ready op weights, alphas and OPs for the per-epoch log."""
        weights = np.asarray(self.probabilities())
        record = {"op_weights": rounded(weights), "alphas": exact(self.alphas),
                  "expected_ops": round(float(self.cost_model.expected_ops(weights)))}
        if self.op_weights == "uniform":  # the alphas are not searched: no genotype of theirs
            return record
        record["argmax_ops"] = round(self.cost_model.network_ops(self.genotype(False)))
        record["genotype_ops"] = round(self.cost_model.network_ops(self.genotype()))
        if self.target is not None:
            record["ops_target"] = self.target
        if self.op_weights != "softmax":
            record["temperature"] = round(float(self.temperature.numpy()), 5)
        return record


def check_budget(cost_model: BlockCostModel, budget: dict) -> None:
    """One-line UserErrors naming the key for a budget (`ops_budget` section) this search
    cannot meet."""
    check_budget_keys(budget)
    target = budget["target"]
    if target is None:
        return
    low, high = cost_model.range()
    if not low <= target <= high:
        raise UserError(f"ops_budget.target {target:,.0f} OPs is out of reach: the networks of "
                        f"this template have {low:,.0f} to {high:,.0f} OPs; pick a target in "
                        "that range or change template.filters/blocks")
