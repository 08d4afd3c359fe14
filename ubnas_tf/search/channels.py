"""Channels per sampled op: the PC-DARTS sampling ratio K as a quantity a search is set by.

A mixed op of a cell with C channels runs its candidate ops on C/K channels (PC-DARTS, Xu et
al. ICLR 2020) and passes the rest by. C doubles at each reduction, K is one number per cell
type, so the op of the *first* cell of a type sees the fewest channels, C_first/K. That number
is what decides the contest between ops: a binary conv on one channel sees a single sign map
(a 3x3 kernel over it has 2^9 input patterns and one weight per tap), while a pool on the
same channel keeps real values. With the earlier fixed K=8/4 and C=8 (the demo and
Fashion-MNIST configs) the normal cells' binary convs saw 1, 2 and 4 channels, and the demo's
searched normal cell came out as five average pools and a skip of eight edges (issue 14).

UBNAS "adjusts the channel sampling ratio to balance the advantages of different operations".
Here the balance is set in channels, not in K:

- `partial_channels.per_op.{normal,reduce}`: channels each op sees in the first cell of the
  type; with `partial_channels.normal/reduce` null, K is the largest one that divides every
  cell's channels and gives at least that many (EBNAS's C=16 search: normal K=4 -> 4 channels,
  PC-DARTS's; reduce K=4 -> 8 channels, EBNAS's own reduction setting);
- `partial_channels.min_per_op`: the fewest channels an op may see in any cell; an explicit K
  below it is refused with the fix (set a smaller K, more channels, or lower the minimum).

`per_op_channels` reports what every cell's ops see (printed at the start of a search and kept
in summary.json), so two searches can be compared by that figure.
"""
from __future__ import annotations

from ubnas_tf.errors import UserError
from ubnas_tf.search_space import reduction_cells

__all__ = ["cell_channels", "resolve_partial", "per_op_channels", "check_channels_per_op"]

CELL_TYPES = ("normal", "reduce")


def cell_channels(channels: int, cells: int) -> dict:
    """{'normal': [C of each normal cell], 'reduce': [C of each reduction cell]}, in order
    (the supernet's plan: reductions at 1/3 and 2/3 double C)."""
    plan = {"normal": [], "reduce": []}
    reductions = reduction_cells(cells)
    for index in range(cells):
        if index in reductions:
            channels *= 2
        plan["reduce" if index in reductions else "normal"].append(channels)
    return plan


def _auto_partial(cell_sizes: list, target: int) -> int:
    """The largest K dividing every size in `cell_sizes` with min(sizes) / K >= target
    (1 when even K=1 gives fewer: the op then sees all the cell's channels)."""
    smallest = min(cell_sizes)
    best = 1
    for k in range(1, smallest + 1):
        if all(size % k == 0 for size in cell_sizes) and smallest // k >= target:
            best = k
    return best


def resolve_partial(config: dict) -> dict:
    """{'normal': K, 'reduce': K} of a search config: the explicit K, or the one `per_op` asks
    for (a cell type with no cell gets K=1)."""
    partial = config["partial_channels"]
    plan = cell_channels(config["channels"], config["cells"])
    resolved = {}
    for cell_type in CELL_TYPES:
        k = partial[cell_type]
        if k is None:
            k = _auto_partial(plan[cell_type], partial["per_op"][cell_type]) \
                if plan[cell_type] else 1
        resolved[cell_type] = k
    return resolved


def per_op_channels(config: dict) -> dict:
    """{'normal': [C/K per normal cell], 'reduce': [...]}: what each cell's ops see."""
    plan = cell_channels(config["channels"], config["cells"])
    partial = resolve_partial(config)
    return {cell_type: [size // partial[cell_type] for size in plan[cell_type]]
            for cell_type in CELL_TYPES}


def check_channels_per_op(config: dict) -> None:
    """UserError, naming the fix, when an op of some cell would see fewer than `min_per_op`
    channels (or K does not divide a cell's channels)."""
    partial = config["partial_channels"]
    for cell_type in CELL_TYPES:
        k = partial[cell_type]
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise UserError(f"config key 'partial_channels.{cell_type}' must be null (from "
                            f"per_op) or an integer >= 1, got {k!r}")
        target = partial["per_op"][cell_type]
        if isinstance(target, bool) or not isinstance(target, int) or target < 1:
            raise UserError(f"config key 'partial_channels.per_op.{cell_type}' must be an "
                            f"integer >= 1, got {target!r}")
    minimum = partial["min_per_op"]
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
        raise UserError(f"config key 'partial_channels.min_per_op' must be an integer >= 1, "
                        f"got {minimum!r}")
    plan = cell_channels(config["channels"], config["cells"])
    resolved = resolve_partial(config)
    for cell_type in CELL_TYPES:
        k = resolved[cell_type]
        for size in plan[cell_type]:
            if size % k:
                raise UserError(
                    f"a {cell_type} cell has {size} channels, not a multiple of "
                    f"partial_channels.{cell_type}={k}: change channels or partial_channels")
        if plan[cell_type] and min(plan[cell_type]) // k < minimum:
            seen = min(plan[cell_type]) // k
            fit = _auto_partial(plan[cell_type], minimum)
            raise UserError(
                f"partial_channels.{cell_type}={k} leaves {seen} channel(s) per op in the first "
                f"{cell_type} cell ({min(plan[cell_type])} channels), below "
                f"partial_channels.min_per_op={minimum}: set partial_channels.{cell_type}="
                f"{fit} or null, more channels, or partial_channels.min_per_op={seen}")
