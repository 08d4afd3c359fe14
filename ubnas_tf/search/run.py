"""The UBNAS search: bilevel optimisation of a supernet, early stopping, resumable outputs.

    from ubnas_tf import config, search
    result = search.run_search(config.load("search"), dataset="demo", output_dir="/tmp/s1")

Per epoch: `steps_per_epoch` iterations of (architecture step on the architecture half, after
the warm-up, search/schedule.py) + (weight step on the weight half), as EBNAS's
train_search.py; then the genotype is derived, the early-stopping rules consulted
(search/early_stop.py), the epoch logged (search/search_log.py) and a checkpoint saved.

Everything a run could refuse (config ranges, channels per op, an architecture that would never
be searched, batch size against the data, the output folder) is checked before anything is
written, so a refused command leaves the folder as it was and the corrected one runs.

Outputs in `output_dir` (shared/INTERFACES.md): genotype.json, genotype.png, search_log.jsonl
(one line per epoch), config.yaml (resolved), run.json (dataset), summary.json, tensorboard/,
checkpoints/ and, with `selection.method: perturbation`, selection/ (search/derive.py: the
genotype returned is then DARTS-PT's, selected on the finished supernet), written by the chief
worker only (`ubnas_tf.distribute`; the config's batch_size is the global batch, split across
replicas). Running the same command again resumes
from the last checkpoint, which holds the weights, the architecture, both optimizers, the
epoch and the architecture half's iterator (the weight half is skipped forward to the epoch);
the early-stopping rules read the log, truncated to the checkpoint's epochs, so a resumed run
ends with the genotype of an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import sys
import time

import numpy as np
import tensorflow as tf

from ubnas_tf import config as config_lib
from ubnas_tf.search.build import build_search_steps
from ubnas_tf.distribute import ChiefCheckpointManager, is_chief, make_strategy, summary_writer
from ubnas_tf.errors import UserError
from ubnas_tf.search_space import get_space
from ubnas_tf.search_space.genotype import Genotype
from ubnas_tf.io_utils import append_jsonl, atomic_write_json
from ubnas_tf.search.channels import per_op_channels
from ubnas_tf.search.early_stop import Decision, EarlyStopping, parameter_free_shares
from ubnas_tf.search.hessian import AlphaHessian
from ubnas_tf.search.ops_budget import budget_from_config
from ubnas_tf.search.runtime_memory import limit_malloc_arenas
from ubnas_tf.search.config import (check_config, check_output_dir, seeded_search_data,
                                    supernet_config)
from ubnas_tf.search.schedule import ramp_end, ramp_value, warmup_epochs
from ubnas_tf.search.search_log import (LOG_NAME, build_summary, epoch_line, print_summary,
                                        read_log, truncate_log, write_log)

__all__ = ["run_search", "build_search_steps", "SearchResult", "SearchDiverged", "make_strategy",
           "LOG_NAME"]


class SearchDiverged(RuntimeError):
    """A loss became NaN or Inf: the run stops, its last good checkpoint kept."""


def diverged(which: str, value: float, epoch: int, step: int, kept, output_dir) -> SearchDiverged:
    """The error of a search whose `which` loss became `value` (epoch and step from 0);
    `kept`: the latest checkpoint's path, or None."""
    where = (f"the last good checkpoint ({pathlib.Path(kept).name}) is kept in "
             f"{pathlib.Path(output_dir) / 'checkpoints'}" if kept
             else "no checkpoint had been written yet")
    return SearchDiverged(
        f"the {which} loss became {value} at epoch {epoch + 1}, step {step + 1}: the "
        f"search diverged; {where}. Lower weights_optimizer.lr / arch_optimizer.lr and "
        "use a new --output_dir")


@dataclasses.dataclass
class SearchResult:
    genotype: Genotype
    epochs_run: int
    epochs_planned: int
    stop_rule: str | None
    epochs_saved: int
    seconds: float
    output_dir: pathlib.Path
    genotype_epoch: int = 0  # the epoch whose genotype was returned (a rule may roll back)


def progress_bar(steps: int):
    verbose = 1 if sys.stdout.isatty() else 2
    return tf.keras.utils.Progbar(steps, verbose=verbose,
                                  stateful_metrics=["loss", "acc", "arch_loss", "arch_acc"])


def _per_replica(strategy: tf.distribute.Strategy, batch):
    """A global batch as one slice per replica (the batch itself for one replica)."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return batch
    parts = [tf.split(tensor, replicas) for tensor in batch]
    return strategy.experimental_distribute_values_from_function(
        lambda context: tuple(part[context.replica_id_in_sync_group] for part in parts))


def _decision_of(record: dict) -> Decision | None:
    """The early stop a logged epoch recorded (a resumed, already stopped run)."""
    if not record.get("stop_rule"):
        return None
    return Decision(record["stop_rule"], record.get("stop_reason") or record["stop_rule"],
                    record.get("genotype_epoch") or record["epoch"])


class _Search:
    """One search run: the objects it trains, its checkpoint, and the loop over epochs."""

    def __init__(self, config: dict, data, splits, strategy, output_dir: pathlib.Path, print_fn,
                 budget=None):
        self.config, self.strategy, self.output_dir = config, strategy, output_dir
        self.chief = is_chief(strategy)  # the one worker that writes into output_dir
        self.records = []  # the log's records, kept here too: other workers do not write it
        self.print = print_fn
        self.info = data.info
        self.batch_size = config["batch_size"]
        self.sizes = data.search_split_sizes(config["data"]["portion"])
        self.weight_data, arch_data = splits
        self.steps_per_epoch = self.sizes[0] // self.batch_size
        self.warmup = warmup_epochs(config)
        self.steps = build_search_steps(config, self.info, strategy, budget=budget)
        self.architect, self.supernet = self.steps.architect, self.steps.supernet
        self.weight_optimizer = self.steps.weight_optimizer
        self.arch_optimizer = self.steps.arch_optimizer
        space = get_space(config["space"])
        self.early_stop = EarlyStopping(config, self.architect.primitives, space.parameter_free,
                                        searched_epochs=config["epochs"] - self.warmup)
        self.hessian = None
        if self.early_stop.wants_eigenvalue:
            # Its own iterator: the first batches of the architecture half, the same every
            # epoch and after a resume, and the search's iterators are not moved.
            batches = list(arch_data.take(config["early_stop"]["hessian"]["batches"]))
            self.hessian = AlphaHessian(self.supernet, self.architect, batches,
                                        iterations=config["early_stop"]["hessian"]["iterations"])
        # The architecture half repeats inside its pipeline, and its iterator's state (shuffle
        # and augmentation seeds included) is checkpointed. The weight half is repeated here,
        # and a repetition started after a restore does not get its uninterrupted seeds back
        # (measured: TF 2.16 restores the first new repetition exactly, not the next ones), so
        # its iterator is rebuilt and skipped forward instead (`restore`). Both iterate global
        # batches (a distributed iterator cannot be checkpointed), split by `_per_replica`.
        self.arch_iterator = iter(arch_data)
        self.weight_iterator = None
        self.completed = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_epochs")
        self.stable = tf.Variable(0, dtype=tf.int64, trainable=False, name="stable_epochs")
        self.stopped = tf.Variable(0, dtype=tf.int64, trainable=False, name="stopped")
        checkpoint = tf.train.Checkpoint(
            supernet=self.supernet, architect=self.architect,
            weight_optimizer=self.weight_optimizer, arch_optimizer=self.arch_optimizer,
            arch_iterator=self.arch_iterator, completed_epochs=self.completed,
            stable_epochs=self.stable, stopped=self.stopped)
        self.checkpoint = checkpoint
        self.manager = ChiefCheckpointManager(checkpoint, output_dir / "checkpoints",
                                              strategy=strategy, max_to_keep=2)
        self.log_path = output_dir / LOG_NAME
        self.writer = summary_writer(output_dir / "tensorboard", strategy)

    def restore(self) -> list:
        """Restore the last checkpoint (if any); returns the log records it covers."""
        latest = self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            self.print(f"resuming {self.output_dir} after epoch {int(self.completed.numpy())} "
                       f"({latest})")
        completed = int(self.completed.numpy())
        # Epoch e reads repetition e of the weight half (drop_remainder: whole repetitions), so
        # skipping e * steps batches gives the batches of an uninterrupted run, seeds included.
        self.weight_iterator = iter(
            self.weight_data.repeat().skip(completed * self.steps_per_epoch))
        with self.writer.as_default():
            tf.summary.text("config", config_lib.to_markdown(self.config), step=completed)
        if self.chief:
            self.records = truncate_log(self.log_path, completed)
        else:
            self.records = [r for r in read_log(self.log_path) if r.get("epoch", 0) <= completed]
        return self.records

    def train_epoch(self, epoch: int, search_arch: bool, ramp: float) -> np.ndarray:
        """One epoch of steps; returns (loss sum, correct, arch loss sum, arch correct)."""
        steps, strategy, batch_size = self.steps, self.strategy, self.batch_size
        ramp_tensor = tf.constant(ramp, tf.float32)
        bar = progress_bar(self.steps_per_epoch)
        totals = np.zeros(4)
        for step in range(self.steps_per_epoch):
            images, labels = _per_replica(strategy, next(self.weight_iterator))
            if search_arch:
                arch_images, arch_labels = _per_replica(strategy, next(self.arch_iterator))
                arch_loss, arch_correct = steps.arch_step(arch_images, arch_labels, images,
                                                          labels, ramp_tensor)
                arch_loss = float(arch_loss)
                if not math.isfinite(arch_loss):
                    raise self._diverged("architecture", arch_loss, epoch, step)
                totals[2:] += arch_loss, float(arch_correct)
            loss, correct = steps.weight_step(images, labels)
            loss = float(loss)
            if not math.isfinite(loss):
                raise self._diverged("weight", loss, epoch, step)
            totals[:2] += loss, float(correct)
            done = step + 1
            values = [("loss", totals[0] / done), ("acc", totals[1] / (done * batch_size))]
            if search_arch:
                values += [("arch_loss", totals[2] / done),
                           ("arch_acc", totals[3] / (done * batch_size))]
            bar.update(done, values=values)
        return totals

    def _diverged(self, which, value, epoch, step) -> SearchDiverged:
        return diverged(which, value, epoch, step, self.manager.latest_checkpoint,
                        self.output_dir)

    def _record(self, epoch, totals, search_arch, ramp, genotype, changed, started) -> dict:
        steps, examples = self.steps_per_epoch, self.steps_per_epoch * self.batch_size
        shares = parameter_free_shares(genotype, self.early_stop.parameter_free)
        eigenvalue = None
        if search_arch and self.hessian is not None:
            eigenvalue = float(np.float32(self.hessian.eigenvalue()))
        return {
            "epoch": epoch + 1,
            "arch_updates": search_arch,
            "train_loss": round(totals[0] / steps, 5),
            "train_acc": round(totals[1] / examples, 5),
            "arch_loss": round(totals[2] / steps, 5) if search_arch else None,
            "arch_acc": round(totals[3] / examples, 5) if search_arch else None,
            "ramp": round(ramp, 5),
            "genotype": genotype.to_dict(),
            "genotype_changed": changed,
            "stable_epochs": int(self.stable.numpy()),
            "parameter_free_normal": round(shares["normal"], 4),
            "parameter_free_reduce": round(shares["reduce"], 4),
            "collapsed": self.early_stop.collapsed(genotype),
            "hessian_eigenvalue": eigenvalue,
            "seconds": round(time.time() - started, 2),
            **self.architect.summary(),
        }

    def end_epoch(self, epoch: int, totals, search_arch: bool, ramp: float, previous: Genotype,
                  started: float):
        """Derive, decide, log and checkpoint; returns (genotype, Decision or None)."""
        genotype = self.architect.genotype()
        changed = genotype != previous
        if search_arch:
            self.stable.assign(0 if changed else self.stable + 1)
        record = self._record(epoch, totals, search_arch, ramp, genotype, changed, started)
        decision = self.early_stop.decide(self.records + [record])
        record.update(self._stop_fields(decision, epoch + 1))
        record["seconds"] = round(time.time() - started, 2)
        # Log line first, checkpoint second: a kill in between leaves one line too many,
        # which `truncate_log` drops on resume (the epoch is then run and logged again).
        self.records.append(record)
        if self.chief:
            append_jsonl(self.log_path, record)
        with self.writer.as_default():
            for key in ("train_loss", "train_acc", "arch_loss", "arch_acc", "seconds",
                        "stable_epochs", "ramp", "hessian_eigenvalue", "parameter_free_normal",
                        "parameter_free_reduce"):
                if record[key] is not None:
                    tf.summary.scalar(f"search/{key}", record[key], step=epoch + 1)
            tf.summary.text("genotype", f"```\n{genotype.to_json()}```", step=epoch + 1)
        self.writer.flush()
        if decision:
            genotype = self.genotype_of(decision)
        if self.chief:
            genotype.save(self.output_dir / "genotype.json")
        self.completed.assign(epoch + 1)
        if decision:
            self.stopped.assign(1)
        self.manager.save(checkpoint_number=epoch + 1)
        self.print(epoch_line(record))
        return genotype, decision

    def _stop_fields(self, decision: Decision | None, epoch: int) -> dict:
        """The early-stopping facts of epoch `epoch`'s log record (1-based)."""
        return {"stop_rule": decision.rule if decision else None,
                "stop_reason": decision.message if decision else None,
                "genotype_epoch": decision.genotype_epoch if decision else None,
                "epochs_saved": self.config["epochs"] - epoch if decision else 0}

    def decide_again(self, records: list) -> Decision | None:
        """A stopped search resumed: the rule that fires on its log under this run's early_stop
        settings, which may differ from the stopped run's (the rules read only the log). When
        the decision differs from the recorded one, the last record says so, and a search no
        rule stops any more goes on from its checkpoint (e.g. `early_stop.enabled=false` runs
        it to the end: the same search as one run without early stopping)."""
        recorded = _decision_of(records[-1])
        decision = self.early_stop.decide(records)
        # Set even when the log already agrees (a kill after its rewrite): a search going on
        # must not carry the flag into its next checkpoints.
        self.stopped.assign(1 if decision else 0)
        if decision != recorded:
            epoch = records[-1]["epoch"]
            records[-1].update(self._stop_fields(decision, epoch))
            if self.chief:
                write_log(self.log_path, records)
            going_on = (f"no rule fires, going on to epoch {epoch + 1}"
                        if epoch < self.config["epochs"] else "no rule fires")
            self.print(f"early stop after epoch {epoch} ({recorded.rule if recorded else 'none'}"
                       f") does not hold under this run's early_stop settings: "
                       + (decision.message if decision else going_on))
        return decision

    def genotype_of(self, decision: Decision) -> Genotype:
        """The genotype a rule returns: that of its epoch (a rule may roll back)."""
        return Genotype.from_dict(self.records[decision.genotype_epoch - 1]["genotype"])

    def run(self) -> tuple:
        """Epochs from the restored one to the end or an early stop: (genotype, Decision)."""
        config = self.config
        records = self.restore()
        epochs, warmup = config["epochs"], self.warmup
        start = int(self.completed.numpy())
        genotype = self.architect.genotype()
        if self.stopped.numpy():
            if not records:  # a stopped checkpoint whose log was removed: nothing to decide on
                return genotype, None
            decision = self.decide_again(records)
            if decision or start >= epochs:
                return (self.genotype_of(decision) if decision else genotype), decision
        if start < epochs:
            n_weight, n_arch = self.sizes
            channels = per_op_channels(config)
            self.print(
                f"search: {self.info.name} {self.info.input_shape} {self.info.num_classes} "
                f"classes, {n_weight} weight / {n_arch} architecture images, "
                f"{self.steps_per_epoch} steps per epoch, epochs {start + 1}..{epochs} "
                f"(warm-up {warmup} epochs = {warmup * self.steps_per_epoch} weight steps), "
                f"channels per op: normal cells {channels['normal']}, reduction cells "
                f"{channels['reduce']}, {self.strategy.num_replicas_in_sync} replica(s)")
            if self.early_stop.enabled and self.early_stop.hessian_too_short:
                hessian = config["early_stop"]["hessian"]
                self.print(f"early stop: the hessian rule needs {hessian['window']} + "
                           f"{hessian['lookback']} searched epochs, this run has "
                           f"{epochs - warmup}: its eigenvalue is not computed")
        end = ramp_end(config)
        for epoch in range(start, epochs):
            started = time.time()
            search_arch = epoch >= warmup
            ramp = ramp_value(epoch, end)
            self.print(f"epoch {epoch + 1}/{epochs}" + ("" if search_arch else " (warm-up)"))
            totals = self.train_epoch(epoch, search_arch, ramp)
            genotype, decision = self.end_epoch(epoch, totals, search_arch, ramp, genotype,
                                                started)
            if decision:
                self.print(f"early stop after epoch {epoch + 1}: {decision.message}; saved "
                           f"{epochs - epoch - 1} of {epochs} epochs")
                return genotype, decision
        return genotype, None


def run_search(config: dict, *, dataset: str, output_dir, data_dir=None, manual_dir=None,
               strategy: tf.distribute.Strategy | None = None, on_steps=None,
               print_fn=print) -> SearchResult:
    """Run (or resume) a search; see the module docstring. `on_steps(steps)` is a test hook
    called with the `SearchSteps` before the first step."""
    started = time.time()
    check_config(config)
    output_dir = pathlib.Path(output_dir)
    run = {"dataset": dataset}
    resuming = check_output_dir(output_dir, config, run)
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if config["batch_size"] % replicas:
        raise UserError(f"batch_size {config['batch_size']} must be a multiple of the "
                        f"{replicas} replicas")

    if config["low_memory"]:
        limit_malloc_arenas()  # before the runtime's thread pools allocate (runtime_memory)
    # Everything the data can refuse (portion, batch size against the halves), the supernet
    # (K against the cells' channels, primitives, module) and the OPs budget, before any write.
    data, splits = seeded_search_data(config, dataset, data_dir, manual_dir)
    supernet_config(config, data.info).structure
    budget = budget_from_config(config, data.info)
    if is_chief(strategy):
        output_dir.mkdir(parents=True, exist_ok=True)
        config_lib.save(config, output_dir / "config.yaml")
        atomic_write_json(output_dir / "run.json", run)
    search = _Search(config, data, splits, strategy, output_dir, print_fn, budget=budget)
    if resuming and not search.manager.latest_checkpoint:
        print_fn(f"{output_dir} holds this run's config but no checkpoint: starting over")
    if on_steps is not None:
        on_steps(search.steps)
    genotype, decision = search.run()
    selection = _select(search, genotype, decision, dataset, data_dir, manual_dir)
    return _finish(search, genotype, decision, started, selection)


def _select(search: _Search, genotype: Genotype, decision, dataset, data_dir, manual_dir):
    """(genotype, derivation record) of `selection.method` when it is not the magnitude rule
    the epochs used, else None. The chief selects (one process, one device); other workers
    return the magnitude genotype."""
    if search.config["selection"]["method"] == "magnitude" or not search.chief:
        return None
    from ubnas_tf.search.derive import select_after_search

    epoch = decision.genotype_epoch if decision else int(search.completed.numpy())
    return select_after_search(search.output_dir, search.config, dataset, epoch,
                               data_dir=data_dir, manual_dir=manual_dir, print_fn=search.print)


def _finish(search: _Search, genotype: Genotype, decision, started: float,
            selection=None) -> SearchResult:
    """Final outputs: genotype.json, genotype.png, summary.json, and the printed summary."""
    from ubnas_tf.search_space.visualize import save_genotype_png

    output_dir, epochs = search.output_dir, search.config["epochs"]
    records = search.records
    epochs_run = int(search.completed.numpy())
    magnitude = genotype
    if selection is not None:
        genotype = selection[0]
    if search.chief:
        genotype.save(output_dir / "genotype.json")
        method = search.config["selection"]["method"]
        save_genotype_png(genotype, output_dir / "genotype.png",
                          title=f"{search.info.name}: search of {epochs_run} epochs"
                          + (f", {method} selection" if selection else ""))
    seconds = sum(r.get("seconds", 0.0) for r in records)
    summary = build_summary(
        dataset=search.info.name, records=records, epochs_run=epochs_run,
        epochs_planned=epochs, decision=decision, genotype=genotype,
        channels_per_op=per_op_channels(search.config),
        collapsed=search.early_stop.collapsed(genotype), seconds=seconds,
        invocation_seconds=time.time() - started)
    budget = search.architect.budget
    if budget is not None:
        ops = budget.cost_model.genotype_ops(genotype)
        summary["ops_budget"] = {"target": budget.target, "genotype_ops": round(ops),
                                 "off_by": round(ops / budget.target - 1.0, 4)}
    if selection is not None:
        record = selection[1]
        summary["selection"] = {"method": record["method"], "epoch": record["epoch"],
                                "seconds": record["seconds"],
                                "magnitude_genotype": magnitude.to_dict()}
    if search.chief:
        atomic_write_json(output_dir / "summary.json", summary)
    print_summary(summary, output_dir, search.print)
    return SearchResult(
        genotype=genotype, epochs_run=epochs_run, epochs_planned=epochs,
        stop_rule=decision.rule if decision else None, epochs_saved=summary["epochs_saved"],
        seconds=seconds, output_dir=output_dir, genotype_epoch=summary["genotype_epoch"])
