"""What a search run is: its config checked up front, its supernet, its output folder.

An output folder belongs to one run: re-running the same command resumes it, and a different
config or dataset is refused with a one-line error before anything is written.
"""
from __future__ import annotations

import json
import pathlib

import tensorflow as tf
import yaml

from ubnas_tf import config as config_lib
from ubnas_tf.search.architect import EDGE_SELECTIONS, EDGE_WEIGHT_FORMS
from ubnas_tf.search.perturbation import CRITERIA as SELECTION_CRITERIA
from ubnas_tf.errors import UserError
from ubnas_tf.search.channels import check_channels_per_op, resolve_partial
from ubnas_tf.search.early_stop import check_early_stop
from ubnas_tf.search.schedule import check_schedule, comparable_schedule
from ubnas_tf.search.supernet import GRAPH_MODES, SupernetConfig
from ubnas_tf.network.genotype_network import REDUCTIONS
from ubnas_tf.search_space import reduction_cells
from ubnas_tf.search_space.stems import STEM_KINDS

__all__ = ["check_config", "check_selection", "supernet_config", "check_output_dir",
           "seeded_search_data", "comparable", "RESUMABLE_KEYS", "SELECTION_METHODS",
           "SELECTION_CRITERIA"]

# Keys that may differ when a run is resumed: a longer or shorter budget, the same search
# (warm-up and ramp, as shares, scale with it), and the channel minimum, a check that does not
# change a search whose K it accepts, the selection, which reads the finished supernet, and
# early stopping, whose rules read only the log (a stopped search they no longer stop goes on).
RESUMABLE_KEYS = ("epochs", "partial_channels.min_per_op", "selection", "early_stop")
# How a finished supernet's genotype is read (search/derive.py): the largest weights, or DARTS-PT.
SELECTION_METHODS = ("magnitude", "perturbation")


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
    _require(config["order"] in ("first", "second"),
             f"config key 'order' must be 'first' or 'second', got {config['order']!r}")
    _require(config["edge_weights"] in EDGE_WEIGHT_FORMS,
             f"config key 'edge_weights' must be one of {', '.join(EDGE_WEIGHT_FORMS)}, "
             f"got {config['edge_weights']!r}")
    _require(config["edge_selection"] in EDGE_SELECTIONS,
             f"config key 'edge_selection' must be one of {', '.join(EDGE_SELECTIONS)}, "
             f"got {config['edge_selection']!r}")
    check_channels_per_op(config)
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
    check_schedule(config)
    check_early_stop(config)
    selection = config["selection"]
    check_selection(selection["method"], selection["batches"], selection["tune_steps"],
                    selection["criterion"], key="config key selection.")
    _require(selection["method"] == "magnitude" or config["ops_budget"]["target"] is None,
             "selection.method=perturbation ignores ops_budget.target (the budget's fit works on "
             "the weights): set one of them only")
    _require(0 < config["data"]["portion"] < 1, "config key 'data.portion' must be in (0, 1)")
    _require(config["supernet_graph"] in GRAPH_MODES,
             f"config key 'supernet_graph' must be one of {', '.join(GRAPH_MODES)}, "
             f"got {config['supernet_graph']!r}")
    # The supernet's and the budget network's layout (refused here, before anything is written).
    reduction_cells(config["cells"])
    if config["ops_budget"]["cells"] is not None:
        reduction_cells(config["ops_budget"]["cells"], key="ops_budget.cells")
    _require(config["ops_budget"]["reduction"] in REDUCTIONS,
             f"config key 'ops_budget.reduction' must be one of {', '.join(REDUCTIONS)}, "
             f"got {config['ops_budget']['reduction']!r}")
    _require(config["stem"] in STEM_KINDS,
             f"config key 'stem' must be one of {', '.join(STEM_KINDS)}, got {config['stem']!r}")
    primitives = config["primitives"]
    _require(primitives is None or (isinstance(primitives, list) and primitives),
             "config key 'primitives' must be null (the space's ops) or a list of op names")


def check_selection(method: str, batches: int, tune_steps: int, criterion: str = "accuracy",
                    key: str = "") -> None:
    """UserError naming the key (config `selection.*`, or the flag) of a bad setting."""
    if method not in SELECTION_METHODS:
        raise UserError(f"{key}method {method!r} is not known: use one of "
                        f"{', '.join(SELECTION_METHODS)}")
    if criterion not in SELECTION_CRITERIA:
        raise UserError(f"{key}criterion {criterion!r} is not known: use one of "
                        f"{', '.join(SELECTION_CRITERIA)}")
    if batches < 0 or tune_steps < 0:
        raise UserError(f"{key}batches and tune_steps must be >= 0, got {batches} and "
                        f"{tune_steps}")


def supernet_config(config: dict, info) -> SupernetConfig:
    """The supernet of a search config, with classes and input shape from the dataset."""
    partial = resolve_partial(config)
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
        partial_normal=partial["normal"],
        partial_reduce=partial["reduce"],
        graph=config["supernet_graph"],
        stem=config["stem"],
    )


# What a run saved before warm-up shares, edge selection and the new stop rules existed
# (its config.yaml has no `warmup`) did: PC-DARTS's derivation, no collapse, ranking or Hessian
# rule. `with_defaults` would fill today's defaults, which that run did not have.
_BEFORE_SHARES = {"edge_selection": "pcdarts",
                  "early_stop": {"max_parameter_free": {"normal": None, "reduce": None},
                                 "ranking_patience": None, "hessian": {"growth": None}}}


def saved_config(previous: dict) -> dict:
    """A run folder's config.yaml with every key of today's schema, at the value that means
    what that run did (`with_defaults`, after `_BEFORE_SHARES` for runs saved before it)."""
    if "warmup" not in previous:
        previous = config_lib.merge(config_lib.with_defaults("search", previous), _BEFORE_SHARES)
    return config_lib.with_defaults("search", previous)


def comparable(config: dict) -> dict:
    """A config in the form two runs are compared in: K resolved (null and the K it resolves to
    are the same search), `per_op` then moot, the schedule as shares (search/schedule.py)."""
    config = comparable_schedule(config)
    config["partial_channels"] = {**config["partial_channels"], **resolve_partial(config),
                                  "per_op": None}
    return config


def check_output_dir(output_dir: pathlib.Path, config: dict, run: dict, *,
                     kind: str = "search", saved=saved_config, normalize=comparable,
                     resumable=RESUMABLE_KEYS) -> bool:
    """True when `output_dir` holds this run (resume); UserError when it holds another.
    `kind` names the run in the errors; the saved config is read by `saved` (today's schema)
    and both compared as `normalize` makes them, but for the `resumable` keys (defaults: the
    cell search's)."""
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
    differences = config_lib.same_run(normalize(saved(previous)), normalize(config),
                                      ignore=resumable)
    if differences:
        raise UserError(
            f"{output_dir} holds a {kind} with a different config "
            f"({config_lib.describe_differences(differences)}): pass a new "
            "--output_dir, or the same config and dataset to resume it (nothing was overwritten)")
    run_path = output_dir / "run.json"
    if run_path.is_file():
        previous_run = json.loads(run_path.read_text())
        if previous_run.get("dataset") != run["dataset"]:
            raise UserError(
                f"{output_dir} holds a {kind} on dataset {previous_run.get('dataset')!r}, not "
                f"{run['dataset']!r}: pass a new --output_dir, or --dataset "
                f"{previous_run.get('dataset')} to resume it (nothing was overwritten)")
    return True


def seeded_search_data(config: dict, dataset: str, data_dir=None, manual_dir=None):
    """(data, (weight half, architecture half)) of a search config, after seeding every
    generator and, with `deterministic`, making the ops deterministic."""
    from ubnas_tf.data import load_dataset

    tf.keras.utils.set_random_seed(config["seed"])
    if config["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    data = load_dataset(dataset, data_dir=data_dir, manual_dir=manual_dir,
                        input_size=config["data"]["input_size"],
                        max_examples=config["max_examples"], seed=config["seed"],
                        augment=config["data"]["augment"] or None,
                        skip_corrupt=config["data"]["skip_corrupt"])
    return data, data.search_splits(config["batch_size"], portion=config["data"]["portion"],
                                    seed=config["seed"])
