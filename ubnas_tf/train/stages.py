"""One training stage with checkpoints, and the stages of a run: a float teacher, stage one of
two-stage training (Martinez et al., "Real-to-Binary", ICLR 2020), the final stage.

A stage is resumable, exactly: each epoch ends with a log line, the best weights (chosen on the
validation split) and then a checkpoint of the network, the optimizer (its step drives the
schedule) and the stage state; running it again goes on from the last finished epoch, drops
log lines written after that checkpoint, and reads the training data from where an
uninterrupted run would be (`_epochs_from`).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import pathlib
import sys
import time

import tensorflow as tf

from ubnas_tf import config as config_lib
from ubnas_tf.distribute import ChiefCheckpointManager, is_chief, is_multi_worker, worker_scratch
from ubnas_tf.io_utils import append_jsonl, atomic_write_json, atomic_write_text
from ubnas_tf.network.genotype_network import set_drop_path_rate
from ubnas_tf.search_space import ModuleStructure, get_space
from ubnas_tf.train.optimizer import make_optimizer
from ubnas_tf.train.trainer import Trainer

__all__ = ["Stage", "fit_stage", "save_weights", "train_stages", "train_teacher"]

CONFIG_FILE = "train_config.yaml"
RUN_FILE = "train_run.json"


# --- callbacks -------------------------------------------------------------------------------

class _DropPathSchedule(tf.keras.callbacks.Callback):
    """DARTS: drop_path_prob * epoch / epochs at the start of each epoch; the masks' draw
    counter starts from a value fixed by the seed and the epoch, so that a resumed epoch drops
    the paths an uninterrupted one would."""

    def __init__(self, network, epochs, seed):
        super().__init__()
        self.network, self.epochs, self.seed = network, epochs, int(seed)

    def on_epoch_begin(self, epoch, logs=None):
        # seed (24 bits) | epoch (16 bits) | draw within the epoch (24 bits)
        draws_from = ((self.seed & 0xFFFFFF) << 40) | ((epoch & 0xFFFF) << 24)
        set_drop_path_rate(self.network, epoch / max(1, self.epochs), draws_from=draws_from)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or Inf: the run stops, its finished epochs' checkpoints kept
    (as the search's SearchDiverged; tools/train.py: one line, diverged.json, exit 1; tune: the
    trial fails). `record`: where it happened, JSON-ready."""

    def __init__(self, message: str, record: dict | None = None):
        super().__init__(message)
        self.record = {"error": " ".join(message.split()), **(record or {})}


class _StopOnNonFiniteLoss(tf.keras.callbacks.Callback):
    """A NaN or Inf training loss ends the run at once with one line: raised from the batch,
    before the epoch's end saves a checkpoint, best weights or a log line of the broken state,
    so the finished epochs' checkpoints are what a rerun resumes from."""

    def __init__(self, stage_name: str):
        super().__init__()
        self.stage_name = stage_name
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"training loss became {loss} at epoch {self._epoch + 1}, step {batch + 1} "
                f"(stage {self.stage_name}); nothing of this epoch was saved (a rerun resumes "
                f"after epoch {self._epoch}): lower the learning rate (--set optimizer.lr=...) "
                "or keep BatchNorm before the binary convs (module.pre_bn: true)",
                {"epoch": self._epoch + 1, "step": batch + 1, "loss": str(loss),
                 "stage": self.stage_name})


class _EpochEnd(tf.keras.callbacks.Callback):
    """At the end of each epoch: the run state, a log line, the best weights, a checkpoint."""

    def __init__(self, stage):
        super().__init__()
        self.stage = stage
        self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        stage = self.stage
        logs = {key: float(value) for key, value in (logs or {}).items()}
        seconds = time.monotonic() - self._started
        stage.state["epoch"].assign(epoch + 1)
        stage.state["train_seconds"].assign_add(seconds)
        score = logs.get("val_top1")
        optimizer = self.model.optimizer
        record = {"stage": stage.name, "epoch": epoch + 1, **logs, "seconds": round(seconds, 3),
                  "lr": float(tf.keras.backend.get_value(optimizer.learning_rate))}
        if score is not None and score > float(stage.state["best_top1"].numpy()):
            stage.state["best_top1"].assign(score)
            stage.state["best_epoch"].assign(epoch + 1)
            save_weights(stage.network, stage.directory / "best_weights.h5", stage.chief)
            record["best"] = True
        if stage.chief:
            append_jsonl(stage.directory / "train_log.jsonl", record)
        stage.manager.save(checkpoint_number=epoch + 1)


# --- one stage: fit a network with checkpoints -----------------------------------------------

@dataclasses.dataclass
class Stage:
    name: str
    directory: pathlib.Path
    network: tf.keras.Model
    epochs: int
    state: dict = dataclasses.field(default_factory=dict)
    manager: ChiefCheckpointManager | None = None
    chief: bool = True  # only the chief writes into `directory`


def save_weights(network, path: pathlib.Path, chief: bool) -> None:
    """Save `network`'s weights to `path` atomically on the chief. The other workers save too,
    into a temporary folder deleted at once: reading batch-norm statistics synchronised on read
    is a collective every worker must join."""
    if chief:
        temporary = path.with_name(path.stem + ".tmp.h5")
        network.save_weights(str(temporary))
        os.replace(temporary, path)
        return
    with worker_scratch("ubnas_worker_weights_") as folder:
        network.save_weights(str(folder / path.name))


def _verbosity(verbose):
    if verbose is not None:
        return verbose
    return 1 if sys.stdout.isatty() else 2


def _distributed(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Every worker reads the whole (identically seeded) dataset and keeps its own share of
    each global batch: DATA sharding, whatever the source's files."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)


def _epochs_from(data, batch_size: int, replicas: int, steps: int, epoch: int):
    """The training batches of epochs `epoch`, `epoch` + 1, ..., exactly as an uninterrupted run
    reads them: one pipeline repeated (each repetition reshuffled and re-augmented from the
    run's seed, `ubnas_tf.data.pipeline`), skipped forward by the epochs already done. As the
    search does (`ubnas_tf.search.run`): a resumed run sees the same images, order, crops and
    flips as one never killed (issue 18.2). Skipping costs one pass of input preparation per
    epoch skipped (no training step), paid once when a run resumes."""
    if replicas > 1:
        batches = data.train(batch_size, drop_remainder=True)
    else:
        batches = data.train(batch_size)
    batches = batches.repeat()
    if epoch:
        batches = batches.skip(epoch * steps)
    return _distributed(batches) if replicas > 1 else batches


def fit_stage(stage: Stage, data, config: dict, *, teacher=None, start_from=None,
              verbose=None, strategy=None) -> Trainer:
    """Train `stage.network` to `stage.epochs`, resuming from the stage's last checkpoint;
    returns the compiled trainer (its test step is already traced: evaluate with it).
    Called inside `strategy.scope()`, with `stage.network` built there."""
    info = data.info
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    batch_size = config["batch_size"]
    if replicas > 1:  # whole global batches only, split evenly
        steps = max(1, info.train_size // batch_size)
    else:
        steps = max(1, math.ceil(info.train_size / batch_size))
    optimizer = make_optimizer(config["optimizer"], total_steps=steps * stage.epochs)
    distill = config.get("distill") or {}
    auxiliary = config.get("auxiliary") or {}
    trainer = Trainer(stage.network, num_classes=info.num_classes,
                      label_smoothing=config.get("label_smoothing", 0.0),
                      aux_weight=auxiliary.get("weight", 0.0) if auxiliary.get("enabled") else 0.0,
                      teacher=teacher, temperature=distill.get("temperature", 1.0),
                      alpha=distill.get("alpha", 0.0), name=f"trainer_{stage.name}")
    trainer.compile(optimizer=optimizer)
    # Variables now, so that a checkpoint restores into them (not lazily on the first step).
    optimizer.build(stage.network.trainable_variables)
    stage.state = {
        "epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
        "best_top1": tf.Variable(-1.0, dtype=tf.float64, trainable=False),
        "best_epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
        "train_seconds": tf.Variable(0.0, dtype=tf.float64, trainable=False),
    }
    checkpoint = tf.train.Checkpoint(network=stage.network, optimizer=optimizer, **stage.state)
    stage.chief = is_chief(strategy)
    stage.manager = ChiefCheckpointManager(checkpoint, stage.directory / "checkpoints",
                                           strategy=strategy, max_to_keep=2)
    log_path = stage.directory / "train_log.jsonl"
    if stage.manager.latest_checkpoint:
        checkpoint.restore(stage.manager.latest_checkpoint).assert_existing_objects_matched()
        done = int(stage.state["epoch"].numpy())
        print(f"[{stage.name}] resuming after epoch {done} from {stage.manager.latest_checkpoint}",
              flush=True)
        if stage.chief:
            _truncate_log(log_path, done)
    else:
        if start_from is not None:
            stage.network.load_weights(str(start_from))
        if stage.chief and log_path.exists():
            log_path.unlink()
    initial_epoch = int(stage.state["epoch"].numpy())
    if initial_epoch >= stage.epochs:
        return trainer
    callbacks = [_DropPathSchedule(stage.network, stage.epochs, config.get("seed", 0)),
                 _StopOnNonFiniteLoss(stage.name), _EpochEnd(stage)]
    if config.get("tensorboard", True) and stage.chief:
        callbacks.append(tf.keras.callbacks.TensorBoard(
            log_dir=str(stage.directory / "tensorboard"), write_graph=False, profile_batch=0))
        if initial_epoch == 0:
            writer = tf.summary.create_file_writer(str(stage.directory / "tensorboard" / "config"))
            with writer.as_default():
                tf.summary.text("config", config_lib.to_markdown(config), step=0)
            writer.close()
    # Per epoch, the validation split only (never the test split): its top-1 picks
    # best_weights.h5. Without a validation split nothing is evaluated nor selected.
    validation = None
    if config.get("eval_every_epoch", True) and info.validation_size:
        validation = data.validation(batch_size)
        if replicas > 1:
            validation = _distributed(validation)
    trainer.fit(
        _epochs_from(data, batch_size, replicas, steps, initial_epoch),
        epochs=stage.epochs,
        steps_per_epoch=steps,
        initial_epoch=initial_epoch,
        validation_data=validation,
        callbacks=callbacks,
        verbose=_verbosity(verbose),
    )
    return trainer


def _truncate_log(path: pathlib.Path, epochs_done: int) -> None:
    """Drop log lines of epochs that ran after the checkpoint a run resumes from."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("epoch", 0) <= epochs_done:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def train_teacher(config, genotype, data, directory, verbose, strategy=None):
    """Train the float version of the genotype in `directory` (resumable) and return it;
    inside `strategy.scope()`."""
    from ubnas_tf.network import baselines

    distill = config["distill"]
    teacher_config = copy.deepcopy(config)
    teacher_config["distill"] = {**distill, "teacher": None}
    teacher_config["two_stage"] = {**config.get("two_stage", {}), "enabled": False}
    teacher_config["epochs"] = distill.get("teacher_epochs") or config["epochs"]
    network = baselines.build_baseline("float", data.info, teacher_config, genotype)
    if is_chief(strategy):
        directory.mkdir(parents=True, exist_ok=True)
    stage = Stage("teacher", directory, network, teacher_config["epochs"])
    fit_stage(stage, data, teacher_config, verbose=verbose, strategy=strategy)
    network.trainable = False
    return network


def train_stages(config, plan, network, genotype, teacher, teacher_spec, two_stage, data, out,
                 run, resuming, chief, verbose, strategy):
    """The teacher, stage one and the final stage, inside `strategy.scope()`; returns the final
    stage, its trainer and stage one's training seconds."""
    info = data.info
    # Only now, with every input checked, does the run write anything.
    if chief:
        out.mkdir(parents=True, exist_ok=True)
        if not resuming:
            config_lib.save(config, out / CONFIG_FILE)
            atomic_write_json(out / RUN_FILE, run)
    print(f"{plan.name} network for {info.name} {info.input_shape}, {info.num_classes} classes, "
          f"{info.train_size} training images -> {out}", flush=True)

    if teacher_spec == "float":
        teacher = train_teacher(config, genotype, data, out / "teacher", verbose, strategy)

    start_from = None
    stage1_seconds = 0.0
    with contextlib.ExitStack() as cleanup:
        if two_stage:
            stage1_module = dataclasses.replace(
                ModuleStructure.from_config(config.get("module") or get_space(genotype.space)
                                            .network_module), weights="real")
            stage1 = Stage("stage1", out / "stage1",
                           plan.build(module=stage1_module),
                           config["two_stage"].get("stage1_epochs") or config["epochs"])
            if chief:
                stage1.directory.mkdir(parents=True, exist_ok=True)
            fit_stage(stage1, data, config, teacher=teacher, verbose=verbose,
                      strategy=strategy)
            start_from = stage1.directory / "final_weights.h5"
            if not chief:  # its own copy (the chief's may not be written yet), read and deleted
                scratch = cleanup.enter_context(worker_scratch("ubnas_worker_stage1_"))
                start_from = scratch / "final_weights.h5"
                stage1.network.save_weights(str(start_from))
            elif not start_from.exists() or is_multi_worker(strategy):
                # (with several workers, all of them save: reading the weights is a collective)
                save_weights(stage1.network, start_from, chief)
            stage1_seconds = float(stage1.state["train_seconds"].numpy())

        stage = Stage("final", out, network, config["epochs"])
        trainer = fit_stage(stage, data, config, teacher=teacher, start_from=start_from,
                            verbose=verbose, strategy=strategy)
    return stage, trainer, stage1_seconds

