"""The block-level search: DARTS's bilevel search of one op per block of QuickNet's template.

    from ubnas_tf import config
    from ubnas_tf.search.block_run import run_block_search
    run_block_search(config.load("search_blocks"), dataset="demo", output_dir="/tmp/b1")

The same bilevel optimisation as the cell search (search/run.py), with its compiled steps
(`SearchSteps`, first order), optimizers and warm-up/ramp schedule (search/schedule.py), on the
block supernet (search/block_supernet.py) and its architecture (search/block_architect.py:
`op_weights` softmax, DARTS's mixture, or gumbel_hard, GDAS's samples, with its temperature
set here per epoch). Per epoch: weight steps on the weight half, and after the warm-up an
architecture step before each; then the blocks are derived, the epoch logged and a
checkpoint saved. No early stopping: six argmaxes settle or not within the few epochs such a
search runs (the log says when they last changed). With `op_weights: uniform` (SPOS / random
search with weight sharing) only the weights are trained, on uniformly drawn single paths, and
after the last epoch the blocks are the best of `candidates` networks drawn in the budget's
window by one-shot accuracy on the architecture half (search/oneshot.py; ranking.json).

Everything a run could refuse (config, template against the data, budget, output folder) is
checked before anything is written; a NaN or Inf loss stops the run with one line (exit 1),
its last finished epoch's checkpoint kept. Outputs in `output_dir`: blocks.json (the ops, the
template and their OPs: `tools/train.py --model quicknet` retrains it, the command is printed),
search_log.jsonl (one line per epoch), config.yaml, run.json, summary.json, checkpoints/.
Running the same command again resumes after the last finished epoch.
"""
from __future__ import annotations

import json
import math
import pathlib
import time

import numpy as np
import tensorflow as tf

from ubnas_tf import config as config_lib
from ubnas_tf.errors import UserError
from ubnas_tf.io_utils import append_jsonl, atomic_write_json
from ubnas_tf.search.block_architect import (BlockArchitect, BlockCostModel, block_primitives,
                                             check_budget, check_op_weights)
from ubnas_tf.search.block_supernet import BlockSupernet
from ubnas_tf.search.config import check_output_dir, seeded_search_data
from ubnas_tf.search.schedule import (check_schedule, comparable_schedule, ramp_end, ramp_value,
                                      warmup_epochs)
from ubnas_tf.search.run import diverged, progress_bar
from ubnas_tf.search.search_log import LOG_NAME, truncate_log
from ubnas_tf.search.steps import FusedAdam, SearchSteps

__all__ = ["run_block_search", "retrain_command", "temperature", "BLOCKS_NAME"]

BLOCKS_NAME = "blocks.json"
RESUMABLE_KEYS = ("epochs",)


def check_block_config(config: dict) -> None:
    """Ranges the schema's types cannot check, naming the key to fix."""
    for key in ("epochs", "batch_size", "candidates"):
        if config[key] < 1:
            raise UserError(f"config key {key!r} must be >= 1, got {config[key]!r}")
    if config["max_examples"] is not None and config["max_examples"] < 1:
        raise UserError("config key 'max_examples' must be null or >= 1")
    check_schedule(config)
    block_primitives(config["primitives"])
    check_op_weights(config["op_weights"])
    for key, value in config["temperature"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise UserError(f"config key 'temperature.{key}' must be > 0, got {value!r}")


def temperature(config: dict, epoch: int) -> float:
    """GDAS's tau at `epoch` (from 0): `temperature.start` through the warm-up, then linear to
    `temperature.end` at the last epoch."""
    start, end = config["temperature"]["start"], config["temperature"]["end"]
    warmup, epochs = warmup_epochs(config), config["epochs"]
    if epoch <= warmup or epochs - 1 <= warmup:
        return float(start)
    return float(start + (end - start) * (epoch - warmup) / (epochs - 1 - warmup))


def retrain_command(blocks: dict, dataset: str) -> str:
    """The tools/train.py command that retrains a blocks.json."""
    def listed(values):
        return "[" + ",".join(str(v) for v in values) + "]"

    return (f"python tools/train.py --model quicknet --dataset {dataset} --output_dir OUT "
            f"--set \"baselines.quicknet.filters={listed(blocks['filters'])}\" "
            f"--set \"baselines.quicknet.blocks={listed(blocks['blocks'])}\" "
            f"--set \"baselines.quicknet.ops={listed(blocks['ops'])}\"")


class _BlockSearch:
    """One block search: what it trains, its checkpoint, and the loop over epochs."""

    def __init__(self, config, data, splits, output_dir: pathlib.Path, cost_model, print_fn):
        self.config, self.output_dir, self.print = config, output_dir, print_fn
        self.info, self.data = data.info, data
        # SPOS / RS-WS: the supernet alone is trained; the blocks come from a one-shot ranking.
        self.uniform = config["op_weights"] == "uniform"
        self.batch_size = config["batch_size"]
        self.sizes = data.search_split_sizes(config["data"]["portion"])
        self.steps_per_epoch = self.sizes[0] // self.batch_size
        self.weight_data, arch_data = splits
        budget = config["ops_budget"]
        self.supernet = BlockSupernet.from_config(self.info, config)
        self.architect = BlockArchitect(
            primitives=self.supernet.primitives, block_count=self.supernet.block_count,
            cost_model=cost_model,
            path_strength=config["regularizers"]["path"], target=budget["target"],
            strength=budget["strength"], tolerance=budget["tolerance"],
            op_weights=config["op_weights"], seed=config["seed"])
        self.supernet.build_variables(self.architect.probabilities())
        weights, arch = config["weights_optimizer"], config["arch_optimizer"]
        weight_optimizer = FusedAdam(
            self.supernet.trainable_variables, learning_rate=weights["lr"],
            beta_1=weights["beta_1"], beta_2=weights["beta_2"],
            weight_decay=weights["weight_decay"], clip_norm=weights["grad_clip"],
            name="weight_optimizer")
        arch_optimizer = FusedAdam(
            self.architect.parameters, learning_rate=arch["lr"], beta_1=arch["beta_1"],
            beta_2=arch["beta_2"], weight_decay=arch["weight_decay"], name="arch_optimizer")
        self.steps = SearchSteps(self.supernet, self.architect, weight_optimizer, arch_optimizer,
                                 tf.distribute.get_strategy())
        self.arch_iterator = iter(arch_data)
        self.completed = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_epochs")
        checkpoint = tf.train.Checkpoint(
            supernet=self.supernet, architect=self.architect, weight_optimizer=weight_optimizer,
            arch_optimizer=arch_optimizer, arch_iterator=self.arch_iterator,
            completed_epochs=self.completed)
        self.checkpoint = checkpoint
        self.manager = tf.train.CheckpointManager(checkpoint, output_dir / "checkpoints",
                                                  max_to_keep=2)
        self.log_path = output_dir / LOG_NAME
        self.records = []

    def restore(self) -> None:
        latest = self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            self.print(f"resuming {self.output_dir} after epoch {int(self.completed.numpy())}")
        completed = int(self.completed.numpy())
        # As the cell search: epoch e reads repetition e of the weight half.
        self.weight_iterator = iter(
            self.weight_data.repeat().skip(completed * self.steps_per_epoch))
        self.records = truncate_log(self.log_path, completed)

    def train_epoch(self, epoch: int, search_arch: bool, ramp: float) -> np.ndarray:
        """One epoch of steps; (loss sum, correct, arch loss sum, arch correct)."""
        totals = np.zeros(4)
        ramp_tensor = tf.constant(ramp, tf.float32)
        bar = progress_bar(self.steps_per_epoch)
        for step in range(self.steps_per_epoch):
            images, labels = next(self.weight_iterator)
            if search_arch:
                arch_images, arch_labels = next(self.arch_iterator)
                loss, correct = self.steps.arch_step(arch_images, arch_labels, images, labels,
                                                     ramp_tensor)
                totals[2:] += self._finite(float(loss), "architecture", epoch, step), \
                    float(correct)
            loss, correct = self.steps.weight_step(images, labels)
            totals[:2] += self._finite(float(loss), "weight", epoch, step), float(correct)
            done = step + 1
            bar.update(done, values=[("loss", totals[0] / done),
                                     ("acc", totals[1] / (done * self.batch_size))])
        return totals

    def _finite(self, value: float, which: str, epoch: int, step: int) -> float:
        if not math.isfinite(value):
            raise diverged(which, value, epoch, step, self.manager.latest_checkpoint,
                           self.output_dir)
        return value

    def end_epoch(self, epoch, totals, search_arch, ramp, started) -> list:
        steps, examples = self.steps_per_epoch, self.steps_per_epoch * self.batch_size
        ops = None if self.uniform else self.architect.genotype()
        previous = self.records[-1]["blocks"] if self.records else None
        record = {
            "epoch": epoch + 1, "arch_updates": search_arch,
            "train_loss": round(totals[0] / steps, 5), "train_acc": round(totals[1] / examples, 5),
            "arch_loss": round(totals[2] / steps, 5) if search_arch else None,
            "arch_acc": round(totals[3] / examples, 5) if search_arch else None,
            "ramp": round(ramp, 5), "blocks": ops, "blocks_changed": ops != previous,
            **self.architect.summary(), "seconds": round(time.time() - started, 2)}
        # Log line first, checkpoint second: a kill in between leaves one line too many,
        # which `truncate_log` drops on resume (the epoch is then run and logged again).
        self.records.append(record)
        append_jsonl(self.log_path, record)
        if ops is not None:
            atomic_write_json(self.output_dir / BLOCKS_NAME, self.blocks_record(ops, epoch + 1))
        self.completed.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)
        return ops

    def blocks_record(self, ops, epoch: int) -> dict:
        template = self.config["template"]
        return {"ops": list(ops), "filters": list(template["filters"]),
                "blocks": list(template["blocks"]), "epoch": epoch,
                "network_ops": round(self.architect.cost_model.network_ops(ops)),
                "ops_target": self.config["ops_budget"]["target"]}

    def run(self) -> list:
        self.restore()
        epochs, warmup = self.config["epochs"], warmup_epochs(self.config)
        start = int(self.completed.numpy())
        if start < epochs:
            self.print(f"block search: {self.info.name} {self.info.input_shape}, "
                       f"{self.sizes[0]} weight / {self.sizes[1]} architecture images, "
                       f"{self.supernet.block_count} blocks of {len(self.architect.primitives)} "
                       f"ops, {self.steps_per_epoch} steps per epoch, epochs {start + 1}.."
                       f"{epochs} " + ("(uniform single paths, no architecture steps)"
                                          if self.uniform else f"(warm-up {warmup})"))
        end, times = ramp_end(self.config), []
        for epoch in range(start, epochs):
            started = time.time()
            search_arch = epoch >= warmup and not self.uniform
            ramp = ramp_value(epoch, end)
            self.architect.temperature.assign(temperature(self.config, epoch))
            totals = self.train_epoch(epoch, search_arch, ramp)
            ops = self.end_epoch(epoch, totals, search_arch, ramp, started)
            times.append(time.time() - started)
            record = self.records[-1]
            eta = np.mean(times) * (epochs - epoch - 1)
            phase = "" if search_arch or self.uniform else " (warm-up)"
            self.print(f"epoch {epoch + 1}/{epochs}{phase}: "
                       f"loss {record['train_loss']:.4f}, acc {record['train_acc']:.4f}"
                       + (f", arch acc {record['arch_acc']:.4f}" if search_arch else "")
                       + (f"; blocks {', '.join(ops)} ({record['genotype_ops']:,} OPs)"
                          if ops else "") + f"; {times[-1]:.0f} s, ETA {eta / 60:.1f} min")
        return self.one_shot_best() if self.uniform else self.architect.genotype()

    def one_shot_best(self) -> list:
        """The best of `candidates` networks drawn in the budget's window by one-shot accuracy
        with the trained supernet (search/oneshot.py), every score in ranking.json."""
        from ubnas_tf.search.oneshot import RANKING_NAME, OneShotRanker, write_ranking

        epoch, path = int(self.completed.numpy()), self.output_dir / RANKING_NAME
        if path.is_file():  # a finished run run again: its ranking of the same supernet
            record = json.loads(path.read_text())
            if record.get("epoch") == epoch:
                return record["ranking"][0]["block_ops"]
        ranker = OneShotRanker.on_architecture_half(self.supernet, self.architect.cost_model,
                                                    self.config, self.data)
        self.print(f"ranking {self.config['candidates']} networks by one-shot accuracy on "
                   f"{ranker.images} architecture-half images")
        record = {"epoch": epoch, **ranker.rank(
            candidates=self.config["candidates"], seed=self.config["seed"], print_fn=self.print)}
        write_ranking(record, path, self.print)
        return record["ranking"][0]["block_ops"]


def run_block_search(config: dict, *, dataset: str, output_dir, data_dir=None,
                     manual_dir=None, print_fn=print, on_steps=None) -> dict:
    """Run (or resume) a block search; returns the blocks record (see the module docstring).
    `on_steps(steps)`: a test hook called with the `SearchSteps` before the first step."""
    started = time.time()
    check_block_config(config)
    output_dir = pathlib.Path(output_dir)
    run = {"dataset": dataset}
    # A folder saved before a key existed holds its default (`with_defaults`).
    check_output_dir(output_dir, config, run, kind="block search",
                     saved=lambda saved: config_lib.with_defaults("search_blocks", saved),
                     normalize=comparable_schedule, resumable=RESUMABLE_KEYS)
    data, splits = seeded_search_data(config, dataset, data_dir, manual_dir)
    budget = config["ops_budget"]
    cost_model = BlockCostModel.from_config(data.info, config)
    check_budget(cost_model, budget)
    output_dir.mkdir(parents=True, exist_ok=True)
    config_lib.save(config, output_dir / "config.yaml")
    atomic_write_json(output_dir / "run.json", run)
    search = _BlockSearch(config, data, splits, output_dir, cost_model, print_fn)
    if on_steps is not None:
        on_steps(search.steps)
    ops = search.run()
    blocks = search.blocks_record(ops, int(search.completed.numpy()))
    atomic_write_json(output_dir / BLOCKS_NAME, blocks)
    records = search.records
    changed = [r["epoch"] for r in records if r["blocks_changed"]]
    summary = {"dataset": data.info.name, "blocks": blocks, "epochs_run": len(records),
               "last_change_epoch": changed[-1] if changed else None,
               "search_seconds": round(sum(r["seconds"] for r in records), 2),
               "invocation_seconds": round(time.time() - started, 2)}
    atomic_write_json(output_dir / "summary.json", summary)
    print_fn(f"blocks: {', '.join(ops)} ({blocks['network_ops']:,} OPs"
             + (f", target {budget['target']:,.0f}" if budget["target"] else "")
             + f"), written to {output_dir / BLOCKS_NAME}\nretrain: "
             + retrain_command(blocks, dataset))
    return blocks
