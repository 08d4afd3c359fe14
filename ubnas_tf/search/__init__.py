"""Stage 3, the search: a supernet of every candidate op, trained bilevel, gives a genotype.

    supernet.py      DARTS cells of mixed ops with PC-DARTS partial channels
    architect.py     the architecture parameters, edge weights, regularizers, derivation
    steps.py         the compiled weight and architecture steps (first and second order)
    run.py           the loop over epochs: early stopping, checkpoints, outputs
    config.py        a search config checked up front; the output folder it owns
    ops_budget.py    the OPs-aware penalty (costs of the network that will be retrained)
    recompute.py, shared_traces.py, runtime_memory.py   memory and graph-size machinery

It imports the network stage (below it) only for the OPs budget's costs.
"""
from ubnas_tf.search.run import (SearchDiverged, SearchResult, build_search_steps,  # noqa: F401
                                 run_search)

__all__ = ["run_search", "build_search_steps", "SearchResult", "SearchDiverged"]
