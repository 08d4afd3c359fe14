"""The objects a search config trains: supernet, architect and both optimizers, as the
compiled `SearchSteps` (search/steps.py) that update them."""
from __future__ import annotations

import tensorflow as tf

from ubnas_tf.search.architect import Architect
from ubnas_tf.search.config import supernet_config
from ubnas_tf.search.schedule import ramp_end
from ubnas_tf.search.steps import FusedAdam, SearchSteps
from ubnas_tf.search.supernet import Supernet

__all__ = ["build_search_steps"]


def build_search_steps(config: dict, info, strategy=None, budget=None) -> SearchSteps:
    """The supernet, architect and both optimizers of a search config, built in `strategy`'s
    scope, as the compiled `SearchSteps` that train them (`info`: the data's `input_shape` and
    `num_classes`; `budget`: an `ops_budget.BudgetPenalty` or None)."""
    strategy = strategy or tf.distribute.get_strategy()
    net_config = supernet_config(config, info)
    weights_options, arch_options = config["weights_optimizer"], config["arch_optimizer"]
    with strategy.scope():
        architect = Architect(
            primitives=net_config.primitives, nodes=config["nodes"],
            multiplier=config["multiplier"], edge_weights=config["edge_weights"],
            edge_selection=config["edge_selection"],
            path_strength=config["regularizers"]["path"],
            edge_strength=config["regularizers"]["edge"],
            ramp_epochs=ramp_end(config), space=config["space"],
            seed=config["seed"], budget=budget)
        supernet = Supernet(net_config, name="supernet")
        supernet.build_variables(architect.arch_weights())
        weight_optimizer = FusedAdam(
            supernet.trainable_variables, learning_rate=weights_options["lr"],
            beta_1=weights_options["beta_1"], beta_2=weights_options["beta_2"],
            weight_decay=weights_options["weight_decay"],
            clip_norm=weights_options["grad_clip"], name="weight_optimizer")
        arch_optimizer = FusedAdam(
            architect.parameters, learning_rate=arch_options["lr"],
            beta_1=arch_options["beta_1"], beta_2=arch_options["beta_2"],
            weight_decay=arch_options["weight_decay"], name="arch_optimizer")
    return SearchSteps(supernet, architect, weight_optimizer, arch_optimizer, strategy,
                       order=config["order"], jit_compile=config["xla"],
                       recompute=config["low_memory"])
