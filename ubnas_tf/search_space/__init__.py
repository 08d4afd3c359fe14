"""Search spaces: the DARTS vocabulary (`PRIMITIVES`, `OPS`) for the binary and float spaces.

One op definition serves the supernet and the retrained network: both call
`space.build_op(name, channels, stride, structure)`, differing only in the `ModuleStructure`
(search: real weights, BN without affine; retraining: binary weights, affine BN).
"""
import dataclasses
import difflib
from collections.abc import Callable, Mapping

import tensorflow as tf

from ubnas_tf.errors import UserError
from ubnas_tf.search_space import binary, darts
from ubnas_tf.search_space.layout import MIN_CELLS, reduction_cells
from ubnas_tf.search_space.module import PRESETS, BinaryConvModule, ModuleStructure

__all__ = [
    "SearchSpace",
    "SPACES",
    "get_space",
    "ModuleStructure",
    "BinaryConvModule",
    "PRESETS",
    "MIN_CELLS",
    "reduction_cells",
]


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A named op vocabulary.

    primitives:      the candidate ops a supernet mixes by default (may include `none`).
    ops:             op name -> factory(channels, stride, structure, name) -> Layer.
    parameter_free:  ops without weights (the paper balances these against parametric ops).
    preprocess:      factory(channels, reduction_prev, structure, name) for cell inputs.
    search_module / network_module: default module structures for search and retraining.
    binary:          whether the cells' convolutions are binary.
    """

    name: str
    primitives: tuple
    ops: Mapping[str, Callable]
    parameter_free: frozenset
    preprocess: Callable
    search_module: str
    network_module: str
    binary: bool

    def check_op(self, op_name: str) -> None:
        if op_name not in self.ops:
            close = difflib.get_close_matches(op_name, list(self.ops), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UserError(
                f"unknown op {op_name!r} in search space {self.name!r}{hint}: "
                f"use one of {', '.join(self.ops)}"
            )

    def build_op(self, op_name, channels, stride, structure=None, name=None):
        self.check_op(op_name)
        structure = ModuleStructure.from_config(structure or self.network_module)
        return self.ops[op_name](channels, stride, structure, name)

    def build_preprocess(self, channels, reduction_prev, structure=None, name=None):
        structure = ModuleStructure.from_config(structure or self.network_module)
        return self.preprocess(channels, reduction_prev, structure, name)


_FLOAT_SEARCH = ModuleStructure(norm="batch_stats", affine=False)
_FLOAT_NETWORK = ModuleStructure(norm="batch_norm", affine=True)
PRESETS.setdefault("darts_search", _FLOAT_SEARCH)
PRESETS.setdefault("darts_network", _FLOAT_NETWORK)

SPACES = {
    "binary": SearchSpace(
        name="binary",
        primitives=binary.PRIMITIVES,
        ops=binary.OPS,
        parameter_free=binary.PARAMETER_FREE,
        preprocess=binary.preprocess,
        search_module="ebnas_search",
        network_module="ebnas_retrain",
        binary=True,
    ),
    "darts": SearchSpace(
        name="darts",
        primitives=darts.PRIMITIVES,
        ops=darts.OPS,
        parameter_free=darts.PARAMETER_FREE,
        preprocess=darts.preprocess,
        search_module="darts_search",
        network_module="darts_network",
        binary=False,
    ),
}


def get_space(name: str) -> SearchSpace:
    if name not in SPACES:
        raise UserError(f"unknown search space {name!r}: use one of {', '.join(SPACES)}")
    return SPACES[name]
