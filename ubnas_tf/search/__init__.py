"""Stage 3, the search: a supernet of every candidate op, trained bilevel, gives a genotype.

    supernet.py      DARTS cells of mixed ops with PC-DARTS partial channels
    architect.py     the architecture parameters, edge weights, regularizers, derivation
    steps.py         the compiled weight and architecture steps (first and second order)
    build.py         the supernet, architect and optimizers of a config, as SearchSteps
    run.py           the loop over epochs: checkpoints, outputs, resume
    schedule.py      warm-up and regularizer ramp as shares of the run
    channels.py      channels per sampled op (PC-DARTS's K from a target, the minimum)
    early_stop.py    the stop rules (collapse, DARTS+, RobustDARTS, patience)
    hessian.py       dominant Hessian eigenvalue w.r.t. the alphas (power iteration)
    search_log.py    search_log.jsonl, summary.json and the printed summary
    config.py        a search config checked up front; the output folder it owns
    ops_budget.py    the OPs-aware penalty (costs of the network that will be retrained)
    perturbation.py  genotype selection by perturbation (DARTS-PT) on a trained supernet
    derive.py        a finished search's genotype derived again from a checkpoint
    recompute.py, shared_traces.py, runtime_memory.py   memory and graph-size machinery

It imports the network stage (below it) only for the OPs budget's costs.
"""
from ubnas_tf.search.run import (SearchDiverged, SearchResult, build_search_steps,  # noqa: F401
                                 run_search)

__all__ = ["run_search", "build_search_steps", "SearchResult", "SearchDiverged"]
