"""Networks of the same OPs as the searched ones: random genotypes in a window, sized baselines.

Every OPs figure is the retrained network's (OPs = FLOPs + BOPs/64, `ubnas_tf.network.cost`):
- genotypes are costed by the search's `NetworkCostModel` at the retraining's cells, channels
  and module (exactly `cost.profile` of the built network, tested in tests/test_ops_budget.py),
  which takes milliseconds per genotype, so rejection sampling is cheap;
- Bi-Real and QuickNet (network/baselines.py) are built and profiled for each candidate width
  and depth; the one closest to the target (in ratio) is kept, and it must be within the window;
- QuickNet's template with random blocks (`baselines.quicknet(ops=...)`) is built and
  profiled for each draw (a few dozen: most land in a 10% window).
"""
from __future__ import annotations

import numpy as np

from ubnas_tf.errors import UserError

# The layouts tried for the baselines, in order of preference: the small-image layout of
# configs/train_fashion_mnist.yaml (three stages of two blocks) first; others only when no
# width of it lands in the window (the width moves the float OPs in coarse steps, the blocks
# of binary convs in fine ones).
DEPTHS = ((2, 2, 2), (1, 1, 1), (3, 3, 3), (4, 4, 4), (1, 1, 1, 1), (2, 2, 2, 2), (3, 3, 3, 3))
WIDTH_STEP = {"bireal": 2, "quicknet": 4}  # QuickNet's stem needs a multiple of 4
MAX_STEPS = 128


def genotype_cost_model(search_config: dict, train_config: dict, info):
    """The cost model of the network tools/train.py builds from a genotype of this search."""
    from ubnas_tf.search.ops_budget import cost_model_from_config

    config = {**search_config, "ops_budget": {
        **search_config["ops_budget"], "cells": train_config["cells"],
        "channels": train_config["channels"], "module": train_config["module"],
        "reduction": train_config["reduction"]}}
    return cost_model_from_config(config, info)


def _in_window(draw, cost, *, count: int, target: float, tolerance: float, seed: int,
               max_tries: int, what: str) -> tuple:
    """Rejection sampling: `count` draws (`draw(rng)`) whose `cost` is within `tolerance` of
    `target`, in the order drawn from `seed`; returns (list of (draw, cost), draws made)."""
    rng = np.random.default_rng(seed)
    kept, tries = [], 0
    while len(kept) < count:
        if tries >= max_tries:
            raise UserError(f"only {len(kept)} of {max_tries} {what} had OPs within "
                            f"{tolerance:.0%} of {target:,.0f}: widen the window")
        tries += 1
        drawn = draw(rng)
        ops = cost(drawn)
        if abs(ops / target - 1.0) <= tolerance:
            kept.append((drawn, ops))
    return kept, tries


def sample_in_window(cost_model, *, count: int, target: float, tolerance: float, seed: int,
                     nodes: int, multiplier: int, primitives=None, max_tries: int = 20000):
    """`count` random genotypes whose OPs are within `tolerance` of `target`, in the order
    drawn from `seed`; returns (list of (genotype, ops), number of genotypes drawn)."""
    from ubnas_tf.search_space.sampling import random_genotype

    return _in_window(
        lambda rng: random_genotype(cost_model.space, nodes, rng, multiplier=multiplier,
                                    primitives=primitives),
        cost_model.genotype_ops, count=count, target=target, tolerance=tolerance, seed=seed,
        max_tries=max_tries, what="random genotypes")


def random_genotypes_record(search: dict, train: dict, info, *, count: int, target: float,
                            tolerance: float, seed: int = 0) -> dict:
    """`count` random genotypes of the search's space whose retrained networks' OPs are within
    `tolerance` of `target`, as a results folder keeps them (the window, the seed, the draws)."""
    kept, tries = sample_in_window(
        genotype_cost_model(search, train, info), count=count, target=target,
        tolerance=tolerance, seed=seed, nodes=search["nodes"], multiplier=search["multiplier"],
        primitives=search["primitives"])
    return {"target_ops": target, "tolerance": tolerance, "seed": seed, "drawn": tries,
            "genotypes": [{"genotype": g.to_dict(), "ops": ops} for g, ops in kept]}


def _settings(name: str, blocks: tuple, step: int) -> dict:
    width = step * WIDTH_STEP[name]
    if name == "bireal":
        return {"width": width, "blocks": list(blocks)}
    return {"filters": [width * 2 ** s for s in range(len(blocks))], "blocks": list(blocks)}


def _ops(name: str, settings: dict, info) -> float:
    import tensorflow as tf

    from ubnas_tf.network.baselines import build_baseline
    from ubnas_tf.network.cost import profile

    model = build_baseline(name, info, {"baselines": {name: settings}})
    try:
        return profile(model).ops
    finally:
        del model
        tf.keras.backend.clear_session()


def size_baseline(name: str, info, *, target: float, tolerance: float) -> dict:
    """Width and depth of `name` (bireal | quicknet) with OPs within `tolerance` of `target`:
    for the first depth of DEPTHS that has one, the width closest to the target (in ratio).
    OPs grow with the width, so doubling then bisecting finds the narrowest width at or above
    the target; it and the width below are the candidates."""
    best = None
    for blocks in DEPTHS:
        cache = {}

        def ops(step):
            if step not in cache:
                cache[step] = _ops(name, _settings(name, blocks, step), info)
            return cache[step]

        high = 1  # doubling first: small widths are cheap to build, large ones are not
        while ops(high) < target and high < MAX_STEPS:
            high *= 2
        low = high // 2 + 1 if high > 1 else 1
        while low < high:
            middle = (low + high) // 2
            if ops(middle) >= target:
                high = middle
            else:
                low = middle + 1
        for step in {max(1, low - 1), low}:
            distance = abs(np.log(ops(step) / target))
            if best is None or distance < best[0] - 1e-12:
                best = (distance, _settings(name, blocks, step), ops(step))
        if abs(best[2] / target - 1.0) <= tolerance:
            break
    _, settings, ops_found = best
    if abs(ops_found / target - 1.0) > tolerance:
        raise UserError(f"no {name} layout has OPs within {tolerance:.0%} of {target:,.0f} "
                        f"(closest: {settings}, {ops_found:,.0f})")
    return {"settings": settings, "ops": ops_found}


def baseline_sizes_record(names, info, *, target: float, tolerance: float) -> dict:
    """Each baseline of `names` sized to `target` OPs (`size_baseline`), as a results folder
    keeps them (with the target and the window)."""
    return {"target_ops": target, "tolerance": tolerance,
            **{name: size_baseline(name, info, target=target, tolerance=tolerance)
               for name in names}}


def random_block_ops_record(settings: dict, info, *, count: int, target: float,
                            tolerance: float, seed: int = 0, max_tries: int = 500,
                            choices=None) -> dict:
    """`count` QuickNets of `settings` (filters, blocks) whose blocks are ops drawn uniformly
    from `choices` (default: the binary space, `baselines.BLOCK_SPACE`, without `none`) and
    whose OPs are within `tolerance` of `target`, in the order drawn from `seed`, as a results
    folder keeps them."""
    from ubnas_tf.search.block_architect import block_primitives

    choices = list(block_primitives(choices))
    blocks = sum(settings["blocks"])
    kept, tries = _in_window(
        lambda rng: [choices[i] for i in rng.integers(len(choices), size=blocks)],
        lambda ops: _ops("quicknet", {**settings, "ops": ops}, info), count=count,
        target=target, tolerance=tolerance, seed=seed, max_tries=max_tries,
        what="random block choices")
    return {"target_ops": target, "tolerance": tolerance, "seed": seed, "drawn": tries,
            "settings": dict(settings),
            "networks": [{"block_ops": ops, "ops": cost} for ops, cost in kept]}


def settings_as_sets(name: str, settings: dict) -> tuple:
    """`--set` overrides of configs/train*.yaml that build this baseline."""
    return tuple(f"baselines.{name}.{key}={value}".replace(" ", "")
                 for key, value in settings.items())
