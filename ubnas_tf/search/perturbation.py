"""Genotype selection by perturbation: which ops and edges the trained supernet relies on.

DARTS reads the genotype off the magnitudes of the architecture weights. Wang et al.
("Rethinking Architecture Selection in Differentiable NAS", ICLR 2021, ruocwang/darts-pt) showed
that the largest alpha of an edge is often not the op the supernet depends on most, and picked
instead by perturbation (DARTS-PT):

1. ops: for each edge in turn, remove each op (its weight set to zero, the others unchanged, as
   darts-pt's `proj_mask`) and measure the supernet's validation accuracy; keep the op whose
   removal costs the most accuracy, and project the edge onto it (weights one-hot) before the
   next edge is decided;
2. edges: for each node with more than two inputs, remove each incoming edge (edge weight
   zero) and keep the two whose removal costs the most.

Scores are the accuracy on fixed validation batches (the same for every candidate, so every
comparison is paired), ties broken by the larger loss; or, with `criterion="loss"` (darts-pt's
`proj_crit: loss`), the loss alone, which a removal moves on every image where the accuracy
moves on the few it flips (experiments/pt_reliability.py measures what each decides). The
supernet runs with batch statistics (`training=True`), as it was searched and as darts-pt
evaluates it. Each round decides one
edge of each cell type (ops; edges in index order, darts-pt draws them at random), then one
node of each (edges).

DARTS-PT fine-tunes the supernet between decisions (`proj_intv`, 10 epochs each on CIFAR-10);
here the fine-tuning is `tune`, any number of weight steps after each round (tools/derive.py's
`--tune_steps`, 0: none), so a selection costs minutes. It reads a finished search's
checkpoint and leaves the search as it was (search/derive.py).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from ubnas_tf.search.supernet import ArchWeights
from ubnas_tf.search_space.genotype import Genotype

__all__ = ["CRITERIA", "Probe", "Selection", "clear_of_noise", "hurts_most",
           "select_by_perturbation"]

CELL_TYPES = ("normal", "reduce")


class Probe:
    """The supernet's (accuracy, mean loss) on fixed batches for given architecture weights."""

    def __init__(self, supernet, batches):
        self.supernet = supernet
        self.batches = [(tf.constant(images), tf.constant(labels)) for images, labels in batches]
        if not self.batches:
            raise ValueError("the probe needs at least one batch")
        self.images = sum(int(labels.shape[0]) for _, labels in self.batches)
        # The four weight tensors as arguments (a dataclass would retrace on every call).
        self._batch = tf.function(self._batch_totals, autograph=False)

    def _batch_totals(self, images, labels, normal_ops, normal_edges, reduce_ops, reduce_edges):
        weights = ArchWeights(normal_ops, normal_edges, reduce_ops, reduce_edges)
        logits = self.supernet(images, weights, training=True)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits)
        correct = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(labels, tf.int32))
        return tf.reduce_sum(tf.cast(correct, tf.float32)), tf.reduce_sum(losses)

    def __call__(self, weights: dict) -> tuple[float, float]:
        """`weights`: {'normal': (ops [E, P], edges [E]), 'reduce': ...} numpy arrays."""
        return self.totals(self.per_batch(weights))

    def totals(self, per_batch: np.ndarray) -> tuple[float, float]:
        """(accuracy, mean loss) over the probe from `per_batch`'s rows."""
        correct, loss = np.asarray(per_batch).sum(axis=0)
        return float(correct) / self.images, float(loss) / self.images

    def per_batch(self, weights: dict) -> np.ndarray:
        """[batches, 2]: each batch's (correct predictions, summed loss), for `weights` as in
        `__call__` (what an analysis of the probe's noise needs)."""
        tensors = [tf.constant(np.asarray(w, np.float32))
                   for cell_type in CELL_TYPES for w in weights[cell_type]]
        return np.array([[float(value) for value in self._batch(images, labels, *tensors)]
                         for images, labels in self.batches], np.float64)


CRITERIA = ("accuracy", "loss")


def hurts_most(scores: dict, criterion: str = "accuracy"):
    """The key whose removal left the lowest accuracy (ties: the largest loss), or with
    `criterion="loss"` the largest loss."""
    if criterion == "loss":
        return max(scores, key=lambda key: scores[key][1])
    return min(scores, key=lambda key: (scores[key][0], -scores[key][1]))


def clear_of_noise(per_batch: dict, winner, criterion: str = "accuracy", z: float = 2.0) -> bool:
    """Whether `winner` leads the runner-up by more than `z` paired standard errors: the
    per-batch differences of their scores, summed, against their spread over the batches.
    `per_batch`: {key: [batches, 2] (correct, summed loss)}. One batch gives no spread: False.
    On a binary supernet removing an op flips signs downstream, and these differences are
    mostly noise (experiments/pt_reliability.py)."""
    column, sign = (0, 1.0) if criterion == "accuracy" else (1, -1.0)  # lower hurts more
    values = {key: sign * np.asarray(rows, np.float64)[:, column]
              for key, rows in per_batch.items()}
    runner = min((key for key in values if key != winner), key=lambda key: values[key].sum())
    gaps = values[runner] - values[winner]
    if len(gaps) < 2:
        return False
    spread = gaps.std(ddof=1) * np.sqrt(len(gaps))
    return bool(gaps.sum() > z * spread) if spread > 0 else bool(gaps.sum() > 0)


@dataclasses.dataclass
class Selection:
    """The derived genotype and every score that decided it (JSON-ready `to_dict`)."""

    genotype: Genotype
    supernet_score: tuple  # (accuracy, loss) with the search's own weights
    projected_score: tuple  # after every edge is projected onto its op, all edges kept
    op_scores: dict  # cell type -> [per edge {op: (accuracy, loss) without it}]
    edge_scores: dict  # cell type -> [per node {source: (accuracy, loss) without it}]
    evaluations: int
    # cell type -> [per edge: its op's lead clear of the probe's noise (`clear_of_noise`)];
    # None for a probe without per-batch scores
    ops_clear: dict | None = None

    def to_dict(self) -> dict:
        return {"genotype": self.genotype.to_dict(), "supernet_score": list(self.supernet_score),
                "projected_score": list(self.projected_score), "op_scores": self.op_scores,
                "ops_clear": self.ops_clear,
                "edge_scores": self.edge_scores, "evaluations": self.evaluations}


def _count_evaluations(architect, columns: int) -> int:
    edges = architect.edges
    multi_input = sum(end - start for start, end in architect.node_slices() if end - start > 2)
    return 1 + 2 * edges * columns + 1 + 2 * multi_input


def select_by_perturbation(probe: Probe, architect, *, tune=None, progress=None,
                           criterion: str = "accuracy") -> Selection:
    """DARTS-PT's selection (module docstring) on the supernet behind `probe`.

    The decisions are written into `architect` as they are taken (`project_op`,
    `remove_edge`), so pass a copy of a search's state, not the running search. Each round
    decides one edge of each cell type (ops), then one node of each (edges); `tune()`, if
    given, trains the supernet's weights with the projected architecture after every round
    (DARTS-PT's fine-tuning between decisions). `progress(done, total)` follows every
    evaluation. `criterion`: what a removal costs (`CRITERIA`, module docstring).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    primitives = architect.primitives
    columns = architect.op_columns
    total, done = _count_evaluations(architect, len(columns)), 0

    def scored(cell_type=None, ops=None, edges=None):
        """((accuracy, loss), per-batch rows or None for a probe without them) with the
        architect's weights, one cell type's replaced."""
        nonlocal done
        weights = architect.weights_numpy()
        if cell_type is not None:
            current_ops, current_edges = weights[cell_type]
            weights[cell_type] = (current_ops if ops is None else ops,
                                  current_edges if edges is None else edges)
        rows = probe.per_batch(weights) if hasattr(probe, "per_batch") else None
        result = probe(weights) if rows is None else probe.totals(rows)
        done += 1
        if progress is not None:
            progress(done, total)
        return result, rows

    def score(cell_type=None, ops=None, edges=None):
        return scored(cell_type, ops, edges)[0]

    supernet_score = score()
    op_scores = {cell_type: [] for cell_type in CELL_TYPES}
    chosen = {cell_type: [] for cell_type in CELL_TYPES}
    clear = {cell_type: [] for cell_type in CELL_TYPES}
    edges = architect.edges
    for edge in range(edges):
        for cell_type in CELL_TYPES:
            scores, per_batch = {}, {}
            for column in columns:
                ops = np.array(architect.weights_numpy()[cell_type][0])
                ops[edge, column] = 0.0  # darts-pt: the op removed, the others unchanged
                name = primitives[column]
                scores[name], per_batch[name] = scored(cell_type, ops=ops)
            best = hurts_most(scores, criterion)
            op_scores[cell_type].append({k: list(v) for k, v in scores.items()})
            chosen[cell_type].append(best)
            if per_batch[best] is not None:
                clear[cell_type].append(clear_of_noise(per_batch, best, criterion))
            architect.project_op(cell_type, edge, best)
        if tune is not None:
            tune()
    projected_score = score()

    edge_scores = {cell_type: [] for cell_type in CELL_TYPES}
    kept = {cell_type: [] for cell_type in CELL_TYPES}
    for start, end in architect.node_slices():
        for cell_type in CELL_TYPES:
            if end - start == 2:  # node 0 keeps both cell inputs
                kept[cell_type].append((0, 1))
                edge_scores[cell_type].append({})
                continue
            scores = {}
            for source in range(end - start):
                edge_weights = np.array(architect.weights_numpy()[cell_type][1])
                edge_weights[start + source] = 0.0
                scores[source] = score(cell_type, edges=edge_weights)
            first = hurts_most(scores, criterion)
            second = hurts_most({k: v for k, v in scores.items() if k != first}, criterion)
            kept[cell_type].append((first, second))
            edge_scores[cell_type].append({str(k): list(v) for k, v in scores.items()})
            for source in range(end - start):
                if source not in (first, second):
                    architect.remove_edge(cell_type, start + source)
        if end - start > 2 and tune is not None:
            tune()

    genes = {cell_type: [(chosen[cell_type][start + source], source)
                         for (start, _), sources in zip(architect.node_slices(),
                                                        kept[cell_type])
                         for source in sources]
             for cell_type in CELL_TYPES}
    concat = tuple(range(2 + architect.nodes - architect.multiplier, architect.nodes + 2))
    genotype = Genotype(normal=tuple(genes["normal"]), normal_concat=concat,
                        reduce=tuple(genes["reduce"]), reduce_concat=concat,
                        space=architect.space)
    return Selection(genotype, supernet_score, projected_score, op_scores, edge_scores, done,
                     clear if clear["normal"] else None)
