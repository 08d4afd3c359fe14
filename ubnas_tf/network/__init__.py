"""Stage 2, the network: what a genotype (or a hand-designed baseline) builds, and its cost.

    genotype_network.py   DARTS's NetworkCIFAR wiring of a genotype's cells
    baselines.py          Bi-Real, QuickNet-style and the float twin of a genotype
    cost.py               parameters, MACs, BOPs and OPs = FLOPs + BOPs/64 per layer

Below the search (whose OPs budget prices the network it will retrain) and the training.
"""
from ubnas_tf.network.genotype_network import (  # noqa: F401
    AUXILIARY_PREFIX, DropPath, NetworkSpec, build_from_config, build_network, check_space,
    inference_model, reduction_cells, set_drop_path_rate)

__all__ = ["AUXILIARY_PREFIX", "DropPath", "NetworkSpec", "build_from_config", "build_network",
           "check_space", "inference_model", "reduction_cells", "set_drop_path_rate"]
