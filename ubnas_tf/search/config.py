"""What a search run is: its config checked up front, its supernet, its output folder.

An output folder belongs to one run: re-running the same command resumes it, and a different
config or dataset is refused with a one-line error before anything is written.
"""
from __future__ import annotations

import json
import pathlib

import yaml

from ubnas_tf import config as config_lib
from ubnas_tf.search.architect import EDGE_WEIGHT_FORMS
from ubnas_tf.errors import UserError
from ubnas_tf.search.supernet import GRAPH_MODES, SupernetConfig

__all__ = ["check_config", "supernet_config", "check_output_dir", "RESUMABLE_KEYS"]

# Keys that may differ when a run is resumed: a longer or shorter budget, the same search.
RESUMABLE_KEYS = ("epochs",)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def check_config(config: dict) -> None:
    """Check values the schema's types cannot (ranges, choices), naming the key to fix."""
    positive = ("epochs", "batch_size", "cells", "channels", "nodes", "multiplier",
                "stem_multiplier")
    for key in positive:
        _require(config[key] >= 1, f"config key {key!r} must be >= 1, got {config[key]!r}")
    _require(config["max_examples"] is None or config["max_examples"] >= 1,
             "config key 'max_examples' must be null or >= 1")
    _require(config["multiplier"] <= config["nodes"],
             f"config key 'multiplier' ({config['multiplier']}) must be <= nodes "
             f"({config['nodes']})")
    _require(config["warmup_epochs"] >= 0, "config key 'warmup_epochs' must be >= 0")
    _require(config["order"] in ("first", "second"),
             f"config key 'order' must be 'first' or 'second', got {config['order']!r}")
    _require(config["edge_weights"] in EDGE_WEIGHT_FORMS,
             f"config key 'edge_weights' must be one of {', '.join(EDGE_WEIGHT_FORMS)}, "
             f"got {config['edge_weights']!r}")
    for cell_type in ("normal", "reduce"):
        value = config["partial_channels"][cell_type]
        _require(isinstance(value, int) and value >= 1,
                 f"config key 'partial_channels.{cell_type}' must be an integer >= 1")
    for name in ("weights_optimizer", "arch_optimizer"):
        options = config[name]
        _require(options["lr"] > 0, f"config key '{name}.lr' must be > 0")
        _require(options["weight_decay"] >= 0, f"config key '{name}.weight_decay' must be >= 0")
        for beta in ("beta_1", "beta_2"):
            _require(0 <= options[beta] < 1, f"config key '{name}.{beta}' must be in [0, 1)")
    clip = config["weights_optimizer"]["grad_clip"]
    _require(clip is None or clip > 0, "config key 'weights_optimizer.grad_clip' must be "
                                       "null or > 0")
    regularizers = config["regularizers"]
    for key in ("path", "edge"):
        _require(regularizers[key] >= 0, f"config key 'regularizers.{key}' must be >= 0")
    _require(regularizers["ramp_epochs"] >= 0, "config key 'regularizers.ramp_epochs' must be "
                                               ">= 0")
    stop = config["early_stop"]
    for key in ("patience", "max_skip"):
        _require(stop[key] is None or (isinstance(stop[key], int) and stop[key] >= 1),
                 f"config key 'early_stop.{key}' must be null or an integer >= 1")
    _require(0 < config["data"]["portion"] < 1, "config key 'data.portion' must be in (0, 1)")
    _require(config["supernet_graph"] in GRAPH_MODES,
             f"config key 'supernet_graph' must be one of {', '.join(GRAPH_MODES)}, "
             f"got {config['supernet_graph']!r}")
    primitives = config["primitives"]
    _require(primitives is None or (isinstance(primitives, list) and primitives),
             "config key 'primitives' must be null (the space's ops) or a list of op names")


def supernet_config(config: dict, info) -> SupernetConfig:
    """The supernet of a search config, with classes and input shape from the dataset."""
    return SupernetConfig(
        num_classes=info.num_classes,
        input_shape=tuple(info.input_shape),
        channels=config["channels"],
        cells=config["cells"],
        nodes=config["nodes"],
        multiplier=config["multiplier"],
        stem_multiplier=config["stem_multiplier"],
        space=config["space"],
        primitives=tuple(config["primitives"]) if config["primitives"] else None,
        module=config["module"],
        partial_normal=config["partial_channels"]["normal"],
        partial_reduce=config["partial_channels"]["reduce"],
        graph=config["supernet_graph"],
    )


def check_output_dir(output_dir: pathlib.Path, config: dict, run: dict) -> bool:
    """True when `output_dir` holds this run (resume); UserError when it holds another."""
    config_path = output_dir / "config.yaml"
    checkpoints = output_dir / "checkpoints"
    if not config_path.is_file():
        if checkpoints.is_dir() and any(checkpoints.iterdir()):
            raise UserError(f"{output_dir} holds checkpoints but no config.yaml: pass a new "
                            "--output_dir (nothing was overwritten)")
        return False
    try:
        previous = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError:
        raise UserError(f"{config_path} is not valid YAML: pass a new --output_dir "
                        "(nothing was overwritten)") from None
    differences = config_lib.same_run(config_lib.with_defaults("search", previous), config,
                                      ignore=RESUMABLE_KEYS)
    if differences:
        raise UserError(
            f"{output_dir} holds a search with a different config "
            f"({config_lib.describe_differences(differences)}): pass a new "
            "--output_dir, or the same config and dataset to resume it (nothing was overwritten)")
    run_path = output_dir / "run.json"
    if run_path.is_file():
        previous_run = json.loads(run_path.read_text())
        if previous_run.get("dataset") != run["dataset"]:
            raise UserError(
                f"{output_dir} holds a search on dataset {previous_run.get('dataset')!r}, not "
                f"{run['dataset']!r}: pass a new --output_dir, or --dataset "
                f"{previous_run.get('dataset')} to resume it (nothing was overwritten)")
    return True
