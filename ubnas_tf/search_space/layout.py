"""Where the reduction cells sit: one rule for the supernet, the network and the OPs budget.

DARTS (Liu et al., ICLR 2019; quark0/darts model_search.py and model.py) puts the two
reduction cells at `cells // 3` and `2 * cells // 3`. For 3n + 2 cells (DARTS's 8 for search
and 20 for evaluation: reductions at [2, 5] and [6, 13]) that is n normal cells, a reduction,
n normal cells, a reduction, n normal cells; for any count from 5 up every stage keeps at least
one normal cell and the stages differ by at most one cell. Below 5 cells no layout can: 4 cells
would give [N, R, R, N], a reduction fed by a reduction (a context the searched reduction cell
never saw) and one stage without a normal cell, so those counts are refused, not built.
"""
import operator

from ubnas_tf.errors import UserError

__all__ = ["MIN_CELLS", "reduction_cells"]

MIN_CELLS = 5  # one normal cell before, between and after the two reductions


def reduction_cells(cells: int, key: str = "cells") -> tuple[int, int]:
    """Indices of the two reduction cells of a stack of `cells` cells (DARTS's rule); `key`
    names the config key in the error.

    # Raises
        UserError: for fewer than `MIN_CELLS` cells.
    """
    try:
        cells = operator.index(cells)
    except TypeError:
        raise UserError(f"{key} must be an integer, got {cells!r}") from None
    if cells < MIN_CELLS:
        raise UserError(
            f"{key}={cells} cannot keep the reductions at 1/3 and 2/3 with a normal cell before, "
            f"between and after them (DARTS places them at cells//3 and 2*cells//3): set {key} "
            f"to {MIN_CELLS} or more (3n+2 cells, e.g. 5, 8, 11, 20, give n normal cells per "
            "stage)")
    return cells // 3, 2 * cells // 3
