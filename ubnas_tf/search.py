"""The UBNAS search: bilevel optimisation of a supernet, early stopping, resumable outputs.

    from ubnas_tf import config, search
    result = search.run_search(config.load("search"), dataset="demo", output_dir="/tmp/s1")

Per epoch: `steps_per_epoch` iterations of (architecture step on the architecture half, after
`warmup_epochs`) + (weight step on the weight half), as EBNAS's train_search.py; then the
genotype is derived, logged, and a checkpoint saved. The search stops early (UBNAS's cost
saver) when, after warm-up:

- `early_stop.patience`: the derived genotype has not changed for that many epochs, or
- `early_stop.max_skip` (DARTS+, Liang et al. 2019): the normal cell holds at least that many
  skip connections.

Outputs in `output_dir` (shared/INTERFACES.md): genotype.json, genotype.png, search_log.jsonl
(one line per epoch), config.yaml (resolved), run.json (dataset), summary.json, tensorboard/,
checkpoints/. Running the same command again resumes from the last checkpoint, which holds the
weights, the architecture, both optimizers, the epoch and both data iterators, so a resumed run
ends with the genotype of an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import sys
import time

import numpy as np
import tensorflow as tf
import yaml

from ubnas_tf import config as config_lib
from ubnas_tf.architect import EDGE_WEIGHT_FORMS, Architect
from ubnas_tf.errors import UserError
from ubnas_tf.genotype import Genotype
from ubnas_tf.io_utils import append_jsonl, atomic_write_json, atomic_write_text
from ubnas_tf.search_steps import FusedAdam, SearchSteps
from ubnas_tf.supernet import Supernet, SupernetConfig

__all__ = ["run_search", "SearchResult", "SearchDiverged", "make_strategy", "check_config"]

STRATEGIES = ("one_device", "mirrored")
LOG_NAME = "search_log.jsonl"
# Keys that may differ when a run is resumed: a longer or shorter budget, the same search.
RESUMABLE_KEYS = ("epochs",)


class SearchDiverged(RuntimeError):
    """A loss became NaN or Inf: the run stops, its last good checkpoint kept."""


@dataclasses.dataclass
class SearchResult:
    genotype: Genotype
    epochs_run: int
    epochs_planned: int
    stop_rule: str | None
    epochs_saved: int
    seconds: float
    output_dir: pathlib.Path


def make_strategy(name: str, devices=None) -> tf.distribute.Strategy:
    """'one_device': the default strategy (no replication overhead); 'mirrored': all devices
    (or `devices`), gradients all-reduced across replicas."""
    if name == "one_device":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    raise UserError(f"unknown strategy {name!r}: use one of {', '.join(STRATEGIES)}")


# -- config ---------------------------------------------------------------------------------
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
    )


# -- output folder --------------------------------------------------------------------------
def _check_output_dir(output_dir: pathlib.Path, config: dict, run: dict) -> bool:
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
    differences = config_lib.same_run(previous, config, ignore=RESUMABLE_KEYS)
    if differences:
        shown = ", ".join(differences[:6]) + (" ..." if len(differences) > 6 else "")
        raise UserError(
            f"{output_dir} holds a search with a different config ({shown} differ): pass a new "
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


def _read_log(path: pathlib.Path) -> list:
    """The log's whole lines (a line cut by a kill is dropped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _truncate_log(path: pathlib.Path, completed_epochs: int) -> list:
    """Keep the log lines of the epochs the checkpoint holds (a kill between the log line and
    the checkpoint leaves one line too many; the resumed run writes it again)."""
    records = [r for r in _read_log(path) if r.get("epoch", 0) <= completed_epochs]
    if path.is_file():
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return records


# -- the search -----------------------------------------------------------------------------
def _count_skips(genotype: Genotype) -> int:
    return sum(1 for op, _ in genotype.normal if op == "skip_connect")


def _stop_rule(config: dict, genotype: Genotype, stable_epochs: int, after_warmup: bool):
    if not after_warmup:
        return None
    stop = config["early_stop"]
    if stop["max_skip"] and _count_skips(genotype) >= stop["max_skip"]:
        return (f"darts_plus: {_count_skips(genotype)} skip connections in the normal cell "
                f"(max_skip {stop['max_skip']})")
    if stop["patience"] and stable_epochs >= stop["patience"]:
        return f"patience: genotype unchanged for {stable_epochs} epochs (patience {stop['patience']})"
    return None


def _progress_bar(steps: int):
    verbose = 1 if sys.stdout.isatty() else 2
    return tf.keras.utils.Progbar(steps, verbose=verbose,
                                  stateful_metrics=["loss", "acc", "arch_loss", "arch_acc"])


def _finite(value: float) -> bool:
    return math.isfinite(value)


def run_search(config: dict, *, dataset: str, output_dir, data_dir=None, manual_dir=None,
               strategy: tf.distribute.Strategy | None = None, on_steps=None,
               print_fn=print) -> SearchResult:
    """Run (or resume) a search; see the module docstring. `on_steps(steps)` is a test hook."""
    started = time.time()
    check_config(config)
    output_dir = pathlib.Path(output_dir)
    run = {"dataset": dataset}
    resuming = _check_output_dir(output_dir, config, run)
    strategy = strategy or tf.distribute.get_strategy()

    tf.keras.utils.set_random_seed(config["seed"])
    if config["deterministic"]:
        tf.config.experimental.enable_op_determinism()

    from ubnas_tf.data import load_dataset

    data = load_dataset(dataset, data_dir=data_dir, manual_dir=manual_dir,
                        input_size=config["data"]["input_size"],
                        max_examples=config["max_examples"], seed=config["seed"],
                        augment=config["data"]["augment"] or None)
    info = data.info
    batch_size, portion = config["batch_size"], config["data"]["portion"]
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UserError(f"batch_size {batch_size} must be a multiple of the {replicas} replicas")
    n_weight, n_arch = data.search_split_sizes(portion)
    weight_data, arch_data = data.search_splits(batch_size, portion=portion, seed=config["seed"])
    steps_per_epoch = n_weight // batch_size
    net_config = supernet_config(config, info)

    output_dir.mkdir(parents=True, exist_ok=True)
    config_lib.save(config, output_dir / "config.yaml")
    atomic_write_json(output_dir / "run.json", run)

    with strategy.scope():
        architect = Architect(
            primitives=net_config.primitives, nodes=config["nodes"],
            multiplier=config["multiplier"], edge_weights=config["edge_weights"],
            path_strength=config["regularizers"]["path"],
            edge_strength=config["regularizers"]["edge"],
            ramp_epochs=config["regularizers"]["ramp_epochs"], space=config["space"],
            seed=config["seed"])
        supernet = Supernet(net_config, name="supernet")
        supernet.build_variables(architect.arch_weights())
        weights_options, arch_options = config["weights_optimizer"], config["arch_optimizer"]
        weight_optimizer = FusedAdam(
            supernet.trainable_variables, learning_rate=weights_options["lr"],
            beta_1=weights_options["beta_1"], beta_2=weights_options["beta_2"],
            weight_decay=weights_options["weight_decay"], clip_norm=weights_options["grad_clip"],
            name="weight_optimizer")
        arch_optimizer = FusedAdam(
            architect.parameters, learning_rate=arch_options["lr"],
            beta_1=arch_options["beta_1"], beta_2=arch_options["beta_2"],
            weight_decay=arch_options["weight_decay"], name="arch_optimizer")
        weight_iterator = iter(strategy.experimental_distribute_dataset(weight_data.repeat()))
        arch_iterator = iter(strategy.experimental_distribute_dataset(arch_data))
    steps = SearchSteps(supernet, architect, weight_optimizer, arch_optimizer, strategy,
                        order=config["order"], jit_compile=config["xla"])
    if on_steps is not None:
        on_steps(steps)

    completed = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_epochs")
    stable = tf.Variable(0, dtype=tf.int64, trainable=False, name="stable_epochs")
    stopped = tf.Variable(0, dtype=tf.int64, trainable=False, name="stopped")
    checkpoint = tf.train.Checkpoint(
        supernet=supernet, architect=architect, weight_optimizer=weight_optimizer,
        arch_optimizer=arch_optimizer, weight_iterator=weight_iterator,
        arch_iterator=arch_iterator, completed_epochs=completed, stable_epochs=stable,
        stopped=stopped)
    manager = tf.train.CheckpointManager(checkpoint, str(output_dir / "checkpoints"),
                                         max_to_keep=2)
    log_path = output_dir / LOG_NAME
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        records = _truncate_log(log_path, int(completed.numpy()))
        print_fn(f"resuming {output_dir} after epoch {int(completed.numpy())} "
                 f"({manager.latest_checkpoint})")
    else:
        records = _truncate_log(log_path, 0)
        if resuming:
            print_fn(f"{output_dir} holds this run's config but no checkpoint: starting over")
    writer = tf.summary.create_file_writer(str(output_dir / "tensorboard"))
    with writer.as_default():
        tf.summary.text("config", config_lib.to_markdown(config), step=int(completed.numpy()))

    epochs, warmup = config["epochs"], config["warmup_epochs"]
    start_epoch = int(completed.numpy())
    genotype = architect.genotype()
    stop_rule = records[-1].get("stop_rule") if records and stopped.numpy() else None
    if not stopped.numpy() and start_epoch < epochs:
        print_fn(f"search: {info.name} {info.input_shape} {info.num_classes} classes, "
                 f"{n_weight} weight / {n_arch} architecture images, {steps_per_epoch} steps "
                 f"per epoch, epochs {start_epoch + 1}..{epochs} (warm-up {warmup}), "
                 f"{replicas} replica(s)")
    for epoch in range(start_epoch, epochs):
        if stopped.numpy():
            break
        epoch_started = time.time()
        search_arch = epoch >= warmup
        ramp = architect.ramp(epoch)
        ramp_tensor = tf.constant(ramp, tf.float32)
        print_fn(f"epoch {epoch + 1}/{epochs}" + ("" if search_arch else " (warm-up)"))
        bar = _progress_bar(steps_per_epoch)
        totals = np.zeros(4)  # loss sum, correct, arch loss sum, arch correct
        for step in range(steps_per_epoch):
            images, labels = next(weight_iterator)
            values = []
            if search_arch:
                arch_images, arch_labels = next(arch_iterator)
                arch_loss, arch_correct = steps.arch_step(arch_images, arch_labels, images,
                                                          labels, ramp_tensor)
                arch_loss = float(arch_loss)
                if not _finite(arch_loss):
                    raise _diverged("architecture", arch_loss, epoch, step, manager, output_dir)
                totals[2:] += arch_loss, float(arch_correct)
            loss, correct = steps.weight_step(images, labels)
            loss = float(loss)
            if not _finite(loss):
                raise _diverged("weight", loss, epoch, step, manager, output_dir)
            totals[:2] += loss, float(correct)
            done = step + 1
            values = [("loss", totals[0] / done), ("acc", totals[1] / (done * batch_size))]
            if search_arch:
                values += [("arch_loss", totals[2] / done),
                           ("arch_acc", totals[3] / (done * batch_size))]
            bar.update(done, values=values)
        previous = genotype
        genotype = architect.genotype()
        changed = genotype != previous
        if search_arch:
            stable.assign(0 if changed else stable + 1)
        rule = _stop_rule(config, genotype, int(stable.numpy()), search_arch)
        record = {
            "epoch": epoch + 1,
            "arch_updates": search_arch,
            "train_loss": round(totals[0] / steps_per_epoch, 5),
            "train_acc": round(totals[1] / (steps_per_epoch * batch_size), 5),
            "arch_loss": round(totals[2] / steps_per_epoch, 5) if search_arch else None,
            "arch_acc": (round(totals[3] / (steps_per_epoch * batch_size), 5)
                         if search_arch else None),
            "ramp": round(ramp, 5),
            "genotype": genotype.to_dict(),
            "genotype_changed": changed,
            "stable_epochs": int(stable.numpy()),
            "stop_rule": rule,
            "epochs_saved": epochs - (epoch + 1) if rule else 0,
            "seconds": round(time.time() - epoch_started, 2),
            **architect.summary(),
        }
        append_jsonl(log_path, record)
        with writer.as_default():
            for key in ("train_loss", "train_acc", "arch_loss", "arch_acc", "seconds",
                        "stable_epochs", "ramp"):
                if record[key] is not None:
                    tf.summary.scalar(f"search/{key}", record[key], step=epoch + 1)
            tf.summary.text("genotype", f"```\n{genotype.to_json()}```", step=epoch + 1)
        writer.flush()
        genotype.save(output_dir / "genotype.json")
        completed.assign(epoch + 1)
        if rule:
            stopped.assign(1)
            stop_rule = rule
        manager.save(checkpoint_number=epoch + 1)
        print_fn(_epoch_line(record))
        if rule:
            print_fn(f"early stop after epoch {epoch + 1}: {rule}; saved "
                     f"{record['epochs_saved']} of {epochs} epochs")
            break

    records = _read_log(log_path)
    epochs_run = int(completed.numpy())
    genotype.save(output_dir / "genotype.json")
    from ubnas_tf.visualize import save_genotype_png

    save_genotype_png(genotype, output_dir / "genotype.png",
                      title=f"{info.name}: search of {epochs_run} epochs")
    result = SearchResult(
        genotype=genotype, epochs_run=epochs_run, epochs_planned=epochs, stop_rule=stop_rule,
        epochs_saved=max(0, epochs - epochs_run) if stop_rule else 0,
        seconds=sum(r.get("seconds", 0.0) for r in records), output_dir=output_dir)
    summary = {
        "dataset": info.name,
        "epochs_run": result.epochs_run,
        "epochs_planned": epochs,
        "stop_rule": stop_rule,
        "epochs_saved": result.epochs_saved,
        "search_seconds": round(result.seconds, 1),
        "this_invocation_seconds": round(time.time() - started, 1),
        "final": {k: records[-1].get(k) for k in ("train_loss", "train_acc", "arch_loss",
                                                  "arch_acc")} if records else None,
        "genotype": genotype.to_dict(),
    }
    atomic_write_json(output_dir / "summary.json", summary)
    _print_summary(summary, output_dir, print_fn)
    return result


def _diverged(which, value, epoch, step, manager, output_dir) -> SearchDiverged:
    kept = manager.latest_checkpoint
    where = (f"the last good checkpoint ({pathlib.Path(kept).name}) is kept in "
             f"{output_dir / 'checkpoints'}" if kept else "no checkpoint had been written yet")
    return SearchDiverged(
        f"the {which} loss became {value} at epoch {epoch + 1}, step {step + 1}: the search "
        f"diverged; {where}. Lower weights_optimizer.lr / arch_optimizer.lr and use a new "
        f"--output_dir")


def _epoch_line(record: dict) -> str:
    parts = [f"epoch {record['epoch']}: loss {record['train_loss']:.4f} "
             f"acc {record['train_acc']:.4f}"]
    if record["arch_loss"] is not None:
        parts.append(f"arch loss {record['arch_loss']:.4f} acc {record['arch_acc']:.4f}")
    parts.append(f"{record['seconds']:.1f} s")
    parts.append("genotype changed" if record["genotype_changed"] else
                 f"genotype stable for {record['stable_epochs']} epoch(s)")
    return ", ".join(parts)


def _print_summary(summary: dict, output_dir: pathlib.Path, print_fn) -> None:
    genotype = summary["genotype"]
    print_fn("search summary")
    print_fn(f"  epochs run     {summary['epochs_run']} of {summary['epochs_planned']}")
    if summary["stop_rule"]:
        print_fn(f"  early stop     {summary['stop_rule']} ({summary['epochs_saved']} epochs "
                 "saved)")
    print_fn(f"  search time    {summary['search_seconds']:.1f} s in epochs")
    if summary["final"]:
        final = summary["final"]
        line = f"  last epoch     loss {final['train_loss']} acc {final['train_acc']}"
        if final["arch_loss"] is not None:
            line += f", arch loss {final['arch_loss']} acc {final['arch_acc']}"
        print_fn(line)
    print_fn(f"  normal cell    {genotype['normal']}")
    print_fn(f"  reduction cell {genotype['reduce']}")
    print_fn(f"  outputs        {output_dir}/genotype.json, genotype.png, {LOG_NAME}, "
             "tensorboard/, checkpoints/")
