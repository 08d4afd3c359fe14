"""Random genotypes: the baseline every NAS method is judged against.

Li & Talwalkar (UAI 2019) and Yang et al. ("NAS evaluation is frustratingly hard", ICLR 2020)
compare searched cells with cells sampled uniformly from the same space under the same rules
as the derivation. Ours (search/architect.py, DARTS's `_parse`) keeps, for every node, two
edges from two *distinct* earlier states, each with one op other than `none`, and concatenates
the last `multiplier` nodes. So a random genotype draws, per node of each cell type,

    inputs:  2 distinct states among the 2 cell inputs and the earlier nodes, uniformly;
    ops:     one op per edge, uniformly and independently among the space's ops without `none`.
"""
from __future__ import annotations

import numpy as np

from ubnas_tf.errors import UserError
from ubnas_tf.search_space.genotype import CELL_FIELDS, Genotype

__all__ = ["sampleable_ops", "random_genotype"]


def sampleable_ops(space, primitives=None) -> tuple:
    """The ops a derived genotype may hold: `primitives` (default: the space's) minus `none`."""
    from ubnas_tf.search_space import get_space

    space = get_space(space) if isinstance(space, str) else space
    ops = tuple(op for op in (primitives or space.primitives) if op != "none")
    for op in ops:
        space.check_op(op)
    if not ops:
        raise UserError("random genotypes need at least one op other than 'none'")
    return ops


def random_genotype(space, nodes: int, rng: np.random.Generator, *, multiplier: int | None = None,
                    primitives=None) -> Genotype:
    """A genotype drawn uniformly under the derivation's rules (see the module docstring).

    # Arguments
        space: search-space name or `SearchSpace`.
        nodes: intermediate nodes per cell (>= 1).
        rng: a `numpy.random.Generator`; the same seed gives the same genotype.
        multiplier: nodes concatenated into the cell output (default: all of them).
        primitives: the op vocabulary (default: the space's).
    """
    from ubnas_tf.search_space import get_space

    space = get_space(space) if isinstance(space, str) else space
    nodes = int(nodes)
    multiplier = nodes if multiplier is None else int(multiplier)
    if nodes < 1 or not 1 <= multiplier <= nodes:
        raise UserError(f"random genotypes need nodes >= 1 and 1 <= multiplier <= nodes, got "
                        f"nodes={nodes}, multiplier={multiplier}")
    ops = sampleable_ops(space, primitives)
    cells = {}
    for field in CELL_FIELDS:
        edges = []
        for node in range(nodes):
            inputs = rng.choice(node + 2, size=2, replace=False)
            for source in sorted(int(i) for i in inputs):
                edges.append((ops[int(rng.integers(len(ops)))], source))
        cells[field] = tuple(edges)
    concat = tuple(range(2 + nodes - multiplier, nodes + 2))
    genotype = Genotype(normal=cells["normal"], normal_concat=concat, reduce=cells["reduce"],
                        reduce_concat=concat, space=space.name)
    genotype.validate("random genotype")
    return genotype
