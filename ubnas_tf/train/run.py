"""Retraining: train a genotype's network (or a baseline), evaluate it, save it for conversion.

    from ubnas_tf import config, train
    metrics = train.run_training(config.load("train"), dataset="cifar10",
                                 output_dir="runs/t1", genotype="runs/s1/genotype.json")

One run writes into its output folder:

    model.h5, saved_model/   the inference network (no auxiliary head, no drop-path layers)
    metrics.json             test_top1 (0..1), test_top5 (> 10 classes), parameters, MACs, OPs,
                             model size, train time (see `ubnas_tf.network.cost`)
    summary.txt              the Larq summary and the per-layer cost table
    train_config.yaml, train_run.json   what the run was made of (checked on resume)
    train_log.jsonl          one JSON object per epoch
    checkpoints/, tensorboard/, best_weights.h5
    stage1/, teacher/        the same, for two-stage training and a trained float teacher

Training (EBNAS/UBNAS retraining, shared/reference/UBNAS.md): Adam with cosine decay, label
smoothing, DARTS's auxiliary loss (weight 0.4) and linearly increasing drop-path, the latent
binary weights clipped by their kernel constraint after every step (the optimizer applies a
variable's constraint). Optional:

- two-stage training (Martinez et al., "Real-to-Binary", ICLR 2020; ReActNet): stage one
  trains real weights with binary activations, stage two the fully binary network from it;
- knowledge distillation (Hinton et al., 2015) from a float teacher: the float version of the
  same genotype, trained first in teacher/, or any saved model:
  loss = (1 - alpha) * CE + alpha * T^2 * KL(softmax(t / T) || softmax(s / T)).

A run is resumable: each epoch ends with a checkpoint of the network, the optimizer (its
step drives the schedule) and the run state; re-running the same command after a kill goes
on from the last finished epoch. A folder holding a run of another config is refused.

Distributed (`strategy`, `ubnas_tf.distribute`): `batch_size` is the global batch, split
across the replicas, and the learning rate is the one of that global batch (no implicit
scaling). With several replicas the training batches drop their remainder (every replica gets
an equal, non-empty slice) and every worker reads the whole, identically seeded data and keeps
its own share (DATA sharding). Only the chief writes into the output folder; every worker
takes part in the saves (reading batch-norm statistics is a collective), the others into
temporary folders.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Callable

import tensorflow as tf

from ubnas_tf import config as config_lib
from ubnas_tf.distribute import ChiefCheckpointManager, is_chief, is_multi_worker, worker_scratch
from ubnas_tf.errors import UserError
from ubnas_tf.search_space.genotype import Genotype
from ubnas_tf.io_utils import append_jsonl, atomic_write_json, atomic_write_text
from ubnas_tf.network.genotype_network import build_from_config, check_space, set_drop_path_rate
from ubnas_tf.search_space import ModuleStructure, get_space

__all__ = ["Trainer", "run_training", "evaluate", "evaluate_file", "load_model", "make_optimizer",
           "learning_rate_schedule"]

CONFIG_FILE = "train_config.yaml"
RUN_FILE = "train_run.json"


# --- the training step -----------------------------------------------------------------------

class Trainer(tf.keras.Model):
    """Wraps a network for `fit`: the loss (label smoothing, auxiliary head, distillation) and
    the top-1/top-5 metrics. Only `network` is saved; the trainer is a training-time shell."""

    def __init__(self, network, *, num_classes, label_smoothing=0.0, aux_weight=0.0,
                 teacher=None, temperature=1.0, alpha=0.0, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.aux_weight = float(aux_weight)
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha) if teacher is not None else 0.0
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        self.top1 = tf.keras.metrics.SparseCategoricalAccuracy(name="top1")
        self.top5 = tf.keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, num_classes),
                                                                   name="top5")

    @property
    def metrics(self):
        return [self.loss_tracker, self.top1, self.top5]

    def call(self, images, training=False):
        outputs = self.network(images, training=training)
        return outputs[0] if isinstance(outputs, (list, tuple)) else outputs

    def _per_example_cross_entropy(self, labels, logits, smoothing):
        one_hot = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes, dtype=logits.dtype)
        return tf.keras.losses.categorical_crossentropy(
            one_hot, logits, from_logits=True, label_smoothing=smoothing)

    def _cross_entropy(self, labels, logits, smoothing):
        return tf.reduce_mean(self._per_example_cross_entropy(labels, logits, smoothing))

    def _distillation(self, teacher_logits, logits):
        t = self.temperature
        target = tf.nn.softmax(tf.cast(teacher_logits, logits.dtype) / t)
        log_student = tf.nn.log_softmax(logits / t)
        kl = tf.reduce_sum(target * (tf.math.log(target + 1e-12) - log_student), axis=-1)
        return tf.reduce_mean(kl) * t * t

    def train_step(self, data):
        images, labels = data
        with tf.GradientTape() as tape:
            outputs = self.network(images, training=True)
            if isinstance(outputs, (list, tuple)):
                logits, aux_logits = outputs
            else:
                logits, aux_logits = outputs, None
            loss = self._cross_entropy(labels, logits, self.label_smoothing)
            if aux_logits is not None and self.aux_weight:
                loss += self.aux_weight * self._cross_entropy(labels, aux_logits,
                                                              self.label_smoothing)
            if self.teacher is not None and self.alpha:
                teacher_logits = self.teacher(images, training=False)
                loss = (1.0 - self.alpha) * loss + self.alpha * self._distillation(
                    teacher_logits, logits)
            if self.network.losses:
                loss += tf.add_n(self.network.losses)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            # Keras sums the replicas' gradients: each replica's mean loss divided by their
            # number gives the gradient of the global batch's mean loss.
            scaled_loss = loss / replicas if replicas > 1 else loss
        variables = self.network.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        # apply_gradients also applies each variable's constraint: the latent binary weights'
        # WeightClip keeps them in [-1, 1] after every step.
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.loss_tracker.update_state(loss)
        self.top1.update_state(labels, logits)
        self.top5.update_state(labels, logits)
        return {metric.name: metric.result() for metric in self.metrics}

    def test_step(self, data):
        images, labels = data
        logits = self(images, training=False)
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            # A replica's slice of the last, partial test batch may be empty: per-example
            # losses count each example once (an empty slice adds nothing, not a NaN mean).
            self.loss_tracker.update_state(
                self._per_example_cross_entropy(labels, logits, 0.0))
        else:
            self.loss_tracker.update_state(self._cross_entropy(labels, logits, 0.0))
        self.top1.update_state(labels, logits)
        self.top5.update_state(labels, logits)
        return {metric.name: metric.result() for metric in self.metrics}


def learning_rate_schedule(settings: dict, *, total_steps: int):
    """Cosine decay from `lr` to `lr_min` over `total_steps` (Loshchilov & Hutter, SGDR, without
    restarts), or a constant `lr`."""
    lr = float(settings.get("lr", 1e-3))
    schedule_name = settings.get("schedule", "cosine")
    if schedule_name == "cosine":
        lr_min = float(settings.get("lr_min") or 0.0)
        return tf.keras.optimizers.schedules.CosineDecay(
            lr, decay_steps=max(1, total_steps), alpha=lr_min / lr if lr else 0.0)
    if schedule_name == "constant":
        return lr
    raise UserError(f"optimizer.schedule={schedule_name!r} is not known: use cosine or constant")


def make_optimizer(settings: dict, *, total_steps: int):
    """Adam (AdamW with weight decay) or SGD, with `learning_rate_schedule`."""
    name = settings.get("name", "adam")
    schedule = learning_rate_schedule(settings, total_steps=total_steps)
    clip = settings.get("grad_clip")
    extra = {"global_clipnorm": float(clip)} if clip else {}
    weight_decay = float(settings.get("weight_decay") or 0.0)
    if name == "adam":
        if weight_decay:
            optimizer = tf.keras.optimizers.AdamW(schedule, weight_decay=weight_decay, **extra)
            # Decay the conv and dense kernels only, not BN, biases and PReLU slopes.
            optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "alpha"])
            return optimizer
        return tf.keras.optimizers.Adam(schedule, **extra)
    if name == "sgd":
        return tf.keras.optimizers.SGD(schedule, momentum=float(settings.get("momentum", 0.9)),
                                       weight_decay=weight_decay or None, **extra)
    raise UserError(f"optimizer.name={name!r} is not known: use adam or sgd")


# --- callbacks -------------------------------------------------------------------------------

class _DropPathSchedule(tf.keras.callbacks.Callback):
    """DARTS: drop_path_prob * epoch / epochs at the start of each epoch."""

    def __init__(self, network, epochs):
        super().__init__()
        self.network, self.epochs = network, epochs

    def on_epoch_begin(self, epoch, logs=None):
        set_drop_path_rate(self.network, epoch / max(1, self.epochs))


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
            _save_weights(stage.network, stage.directory / "best_weights.h5", stage.chief)
            record["best"] = True
        if stage.chief:
            append_jsonl(stage.directory / "train_log.jsonl", record)
        stage.manager.save(checkpoint_number=epoch + 1)


# --- one stage: fit a network with checkpoints -----------------------------------------------

@dataclasses.dataclass
class _Stage:
    name: str
    directory: pathlib.Path
    network: tf.keras.Model
    epochs: int
    state: dict = dataclasses.field(default_factory=dict)
    manager: ChiefCheckpointManager | None = None
    chief: bool = True  # only the chief writes into `directory`


def _save_weights(network, path: pathlib.Path, chief: bool) -> None:
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


def _fit_stage(stage: _Stage, data, config: dict, *, teacher=None, start_from=None,
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
        train_data = _distributed(data.train(batch_size, drop_remainder=True))
    else:
        steps = max(1, math.ceil(info.train_size / batch_size))
        train_data = data.train(batch_size)
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
    callbacks = [_DropPathSchedule(stage.network, stage.epochs), _EpochEnd(stage)]
    if config.get("tensorboard", True) and stage.chief:
        callbacks.append(tf.keras.callbacks.TensorBoard(
            log_dir=str(stage.directory / "tensorboard"), write_graph=False, profile_batch=0))
        if initial_epoch == 0:
            writer = tf.summary.create_file_writer(str(stage.directory / "tensorboard" / "config"))
            with writer.as_default():
                tf.summary.text("config", config_lib.to_markdown(config), step=0)
            writer.close()
    validation = data.test(batch_size) if config.get("eval_every_epoch", True) else None
    if validation is not None and replicas > 1:
        validation = _distributed(validation)
    trainer.fit(
        train_data,
        epochs=stage.epochs,
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


# --- loading and evaluating saved models -----------------------------------------------------

def load_model(path, *, allow_lambda: bool = False) -> tf.keras.Model:
    """Load a saved model for inference; refuses models holding Lambda layers when the export
    package's safe loader is there."""
    from ubnas_tf.network import baselines  # noqa: F401  (registers FloatConvModule)

    try:
        from ubnas_tf.model_io import load_model as safe_load
    except ImportError:
        safe_load = None
    if safe_load is not None:
        return safe_load(path, allow_lambda=allow_lambda)
    path = pathlib.Path(path)
    if not path.exists():
        raise UserError(f"model file {path} does not exist: pass the model.h5 of a train run")
    return tf.keras.models.load_model(str(path), compile=False)


def _check_model_fits(model, info, what="the model") -> None:
    expected = tuple(model.input_shape[1:])
    given = tuple(info.input_shape)
    if len(expected) != 3 or any(e is not None and e != g for e, g in zip(expected, given)):
        raise UserError(f"{what} takes images of {expected} but dataset {info.name} gives "
                        f"{given}: set data.input_size (and use a dataset with "
                        f"{expected[-1]} channels)")
    classes = model.output_shape[-1]
    if classes != info.num_classes:
        raise UserError(f"{what} predicts {classes} classes but dataset {info.name} has "
                        f"{info.num_classes}: use the dataset it was trained on")


def evaluate(model, data, batch_size: int = 256, *, top5: bool = False) -> dict:
    """Top-1 (and top-5 when there are more than 10 classes, or when asked) of `model` (or of
    the network of a compiled `Trainer`) on the test split, with the test loss."""
    info = data.info
    trainer = model
    if not isinstance(model, Trainer):
        trainer = Trainer(model, num_classes=info.num_classes)
        trainer.compile()
    results = trainer.evaluate(data.test(batch_size), return_dict=True, verbose=0)
    metrics = {"test_top1": float(results["top1"]), "test_loss": float(results["loss"])}
    if info.num_classes > 10 or top5:
        metrics["test_top5"] = float(results["top5"])
    return metrics


def evaluate_file(path, dataset: str, *, batch_size: int = 256, data_dir=None, manual_dir=None,
                  max_examples=None, seed: int = 0, top5: bool = False,
                  allow_lambda: bool = False) -> dict:
    """Load a saved model and evaluate it on the test split of `dataset` (`allow_lambda`:
    load Lambda layers, whose Python code runs on load; only for files you trust)."""
    from ubnas_tf.data import load_dataset

    model = load_model(path, allow_lambda=allow_lambda)
    shape = model.input_shape[1:3]
    data = load_dataset(dataset, data_dir=data_dir, manual_dir=manual_dir,
                        input_size=tuple(shape) if None not in shape else None,
                        max_examples=max_examples, seed=seed)
    _check_model_fits(model, data.info, f"model {path}")
    return {**evaluate(model, data, batch_size, top5=top5), "dataset": data.info.name,
            "test_size": data.info.test_size}


# --- a whole run -----------------------------------------------------------------------------

@dataclasses.dataclass
class _Plan:
    """What to build: `build(export)` gives the training network, or with export=True the
    inference network (no auxiliary head, no drop-path) that receives its weights."""

    name: str
    build: Callable[..., tf.keras.Model]
    binary: bool


def _network_plan(config, genotype, model_name, info) -> _Plan:
    from ubnas_tf.network import baselines

    def for_export(settings):
        settings = copy.deepcopy(settings)
        settings["auxiliary"] = {**(settings.get("auxiliary") or {}), "enabled": False}
        settings["drop_path"] = 0.0
        return settings

    if model_name in ("bireal", "quicknet"):
        return _Plan(model_name, lambda export=False, **_: baselines.build_baseline(
            model_name, info, config), binary=True)
    if model_name == "float":
        return _Plan("float", lambda export=False, **_: baselines.build_baseline(
            "float", info, for_export(config) if export else config, genotype), binary=False)
    if model_name is not None:
        baselines.build_baseline(model_name, info, config, genotype)  # raises the UserError
    space = get_space(genotype.space)

    def build(export=False, module=None):
        settings = for_export(config) if export else config
        return build_from_config(genotype, info, settings, module=module)

    return _Plan("genotype", build, binary=space.binary)


def _copy_weights(source: tf.keras.Model, target: tf.keras.Model) -> None:
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def _validate_config(config: dict) -> None:
    for key in ("epochs", "batch_size"):
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{key} must be a positive integer, got {value!r}")
    two_stage = config.get("two_stage") or {}
    stage1 = two_stage.get("stage1_epochs")
    if stage1 is not None and (isinstance(stage1, bool) or not isinstance(stage1, int)
                               or stage1 < 1):
        raise UserError(
            f"two_stage.stage1_epochs must be a positive integer or null, got {stage1!r}")
    distill = config.get("distill") or {}
    alpha = distill.get("alpha", 0.0)
    if not 0.0 <= float(alpha) <= 1.0:
        raise UserError(f"distill.alpha must be in [0, 1], got {alpha}")
    if float(distill.get("temperature", 1.0)) <= 0:
        raise UserError("distill.temperature must be > 0")
    smoothing = float(config.get("label_smoothing") or 0.0)
    if not 0.0 <= smoothing < 1.0:
        raise UserError(f"label_smoothing must be in [0, 1), got {smoothing}")


def _check_output_dir(out: pathlib.Path, config: dict, run: dict) -> bool:
    """True when `out` holds this same run (to resume); refuses another run's folder."""
    saved_config_path, saved_run_path = out / CONFIG_FILE, out / RUN_FILE
    if not saved_config_path.exists():
        return False
    try:
        import yaml

        saved_config = yaml.safe_load(saved_config_path.read_text()) or {}
        saved_run = json.loads(saved_run_path.read_text()) if saved_run_path.exists() else {}
    except (OSError, ValueError) as error:
        raise UserError(f"{out} holds an unreadable {CONFIG_FILE} ({error}): pass a new "
                        "--output_dir") from None
    differences = config_lib.same_run(config_lib.with_defaults("train", saved_config), config)
    differences += [f"--{key}" for key in sorted(set(run) | set(saved_run))
                    if run.get(key) != saved_run.get(key)]
    if differences:
        raise UserError(f"{out} holds a train run with another config (differs in "
                        f"{', '.join(differences)}): pass a new --output_dir, or the same "
                        f"command and config as that run ({saved_config_path})")
    return True


def _summary_text(model, cost) -> str:
    import larq as lq

    lines: list[str] = []
    try:
        lq.models.summary(model, print_fn=lines.append)
    except Exception as error:  # noqa: BLE001  (larq's profiler is experimental)
        lines.append(f"(larq summary unavailable: {type(error).__name__}: {error})")
    lines += ["", "Per-layer cost (ubnas_tf.network.cost; nested layers included, auxiliary head "
              "excluded):", cost.table()]
    return "\n".join(lines) + "\n"


def _save_model(model, out: pathlib.Path, saved_model: bool) -> None:
    temporary = out / "model.h5.tmp"
    model.save(str(temporary), save_format="h5", include_optimizer=False)
    os.replace(temporary, out / "model.h5")
    if saved_model:
        staging = out / ".saved_model.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        # Without per-layer traces: much faster, and the serving signature is what the LCE
        # converter reads; reloading in Keras needs `import ubnas_tf`, as the .h5 does.
        model.save(str(staging), save_format="tf", include_optimizer=False, save_traces=False)
        shutil.rmtree(out / "saved_model", ignore_errors=True)
        os.replace(staging, out / "saved_model")


def _train_teacher(config, genotype, data, directory, verbose, strategy=None):
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
    stage = _Stage("teacher", directory, network, teacher_config["epochs"])
    _fit_stage(stage, data, teacher_config, verbose=verbose, strategy=strategy)
    network.trainable = False
    return network


def run_training(config: dict, *, dataset: str, output_dir, genotype=None, model: str | None = None,
                 data_dir=None, manual_dir=None, verbose=None,
                 strategy: tf.distribute.Strategy | None = None) -> dict:
    """Train, evaluate and save one network; returns the metrics written to metrics.json.

    # Arguments
        config: a resolved train config (`ubnas_tf.config.load("train", ...)`).
        dataset: a dataset spec for `ubnas_tf.data.load_dataset`.
        output_dir: the run's folder (resumed when it holds this same run).
        genotype: a `Genotype` or the path of a genotype.json (for a searched network and for
            `model="float"`).
        model: a baseline name (`ubnas_tf.network.baselines.BASELINES`) instead of a genotype.
        strategy: a `tf.distribute.Strategy` (`ubnas_tf.distribute.make_strategy`); the
            default strategy when None. Only its chief writes into `output_dir`.

    # Raises
        UserError: bad input, before anything is written.
    """
    from ubnas_tf.network import baselines
    from ubnas_tf.data import load_dataset

    config = copy.deepcopy(config)
    _validate_config(config)
    if output_dir is None:
        raise UserError("no output folder: pass --output_dir DIR")
    if genotype is None and model is None:
        raise UserError("nothing to train: pass --genotype G.json or --model NAME "
                        f"({', '.join(baselines.BASELINES)})")
    if model is not None and model not in baselines.BASELINES:
        raise UserError(f"unknown model {model!r}: use one of {', '.join(baselines.BASELINES)}")
    if model == "float" and genotype is None:
        raise UserError("--model float is the float version of a genotype: pass --genotype "
                        "G.json as well")
    if model in ("bireal", "quicknet") and genotype is not None:
        raise UserError(f"--model {model} is a hand-designed network: drop --genotype, or use "
                        "--model float for the float version of the genotype")
    if isinstance(genotype, (str, os.PathLike)):
        genotype = Genotype.load(genotype)
    if genotype is not None:
        check_space(genotype, config.get("space"), "the genotype")
    two_stage = bool((config.get("two_stage") or {}).get("enabled"))
    distill = config.get("distill") or {}
    teacher_spec = distill.get("teacher")
    if teacher_spec == "float" and genotype is None:
        raise UserError("distill.teacher=float is the float version of the genotype: pass "
                        "--genotype, or set distill.teacher to a saved teacher model .h5")

    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if config["batch_size"] % replicas:
        raise UserError(f"batch_size {config['batch_size']} is the global batch and must be a "
                        f"multiple of the {replicas} replicas: change --set batch_size")
    chief = is_chief(strategy)
    out = pathlib.Path(output_dir)
    run = {"dataset": dataset, "model": model,
           "genotype": genotype.to_dict() if genotype is not None else None}
    resuming = _check_output_dir(out, config, run)

    data_settings = config.get("data") or {}
    tf.keras.utils.set_random_seed(int(config.get("seed", 0)))
    data = load_dataset(dataset, data_dir=data_dir, manual_dir=manual_dir,
                        input_size=data_settings.get("input_size"),
                        max_examples=config.get("max_examples"), seed=int(config.get("seed", 0)),
                        augment=data_settings.get("augment") or None,
                        skip_corrupt=bool(data_settings.get("skip_corrupt", False)))
    info = data.info
    plan = _network_plan(config, genotype, model, info)
    if two_stage and not plan.binary:
        raise UserError("two_stage trains real weights first and then binary ones: it needs a "
                        "binary network; set two_stage.enabled=false for this one")
    with strategy.scope():  # the networks, optimizers and metrics are the strategy's
        network = plan.build()  # raises UserError for data the network cannot take
        teacher = None
        if teacher_spec not in (None, "float"):
            teacher = load_model(teacher_spec)
            _check_model_fits(teacher, info, f"teacher {teacher_spec}")
        stage, trainer, stage1_seconds = _train_stages(
            config, plan, network, genotype, teacher, teacher_spec, two_stage, data, out,
            run, resuming, chief, verbose, strategy)
    return _finish_training(config, plan, network, genotype, stage, trainer, stage1_seconds,
                            data, out, chief)


def _train_stages(config, plan, network, genotype, teacher, teacher_spec, two_stage, data, out,
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
        teacher = _train_teacher(config, genotype, data, out / "teacher", verbose, strategy)

    start_from = None
    stage1_seconds = 0.0
    with contextlib.ExitStack() as cleanup:
        if two_stage:
            stage1_module = dataclasses.replace(
                ModuleStructure.from_config(config.get("module") or get_space(genotype.space)
                                            .network_module), weights="real")
            stage1 = _Stage("stage1", out / "stage1",
                            plan.build(module=stage1_module),
                            config["two_stage"].get("stage1_epochs") or config["epochs"])
            if chief:
                stage1.directory.mkdir(parents=True, exist_ok=True)
            _fit_stage(stage1, data, config, teacher=teacher, verbose=verbose,
                       strategy=strategy)
            start_from = stage1.directory / "final_weights.h5"
            if not chief:  # its own copy (the chief's may not be written yet), read and deleted
                scratch = cleanup.enter_context(worker_scratch("ubnas_worker_stage1_"))
                start_from = scratch / "final_weights.h5"
                stage1.network.save_weights(str(start_from))
            elif not start_from.exists() or is_multi_worker(strategy):
                # (with several workers, all of them save: reading the weights is a collective)
                _save_weights(stage1.network, start_from, chief)
            stage1_seconds = float(stage1.state["train_seconds"].numpy())

        stage = _Stage("final", out, network, config["epochs"])
        trainer = _fit_stage(stage, data, config, teacher=teacher, start_from=start_from,
                             verbose=verbose, strategy=strategy)
    return stage, trainer, stage1_seconds


def _finish_training(config, plan, network, genotype, stage, trainer, stage1_seconds, data, out,
                     chief) -> dict:
    """Evaluate, profile and (on the chief) save the inference network and its metrics."""
    from ubnas_tf.network.cost import profile

    info = data.info

    exported = plan.build(export=True)
    if exported is not network:
        _copy_weights(network, exported)
    # The trainer's test step is the exported network's computation (inference ignores the
    # auxiliary head and drop-path) and is already traced.
    metrics = evaluate(trainer, data, config["batch_size"])
    cost = profile(exported)
    metrics.update(cost.to_dict())
    best_epoch = int(stage.state["best_epoch"].numpy())
    metrics.update({
        "train_seconds": float(stage.state["train_seconds"].numpy()) + stage1_seconds,
        "epochs": config["epochs"],
        "best_test_top1": float(stage.state["best_top1"].numpy()) if best_epoch else None,
        "best_epoch": best_epoch or None,
        "model": plan.name,
        "dataset": info.name,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "train_size": info.train_size,
        "test_size": info.test_size,
    })
    if genotype is not None:
        metrics["space"] = genotype.space
    if chief:
        _save_model(exported, out, bool(config.get("saved_model", True)))
        atomic_write_text(out / "summary.txt", _summary_text(exported, cost))
        atomic_write_json(out / "metrics.json", metrics)
    top5 = f", top-5 {metrics['test_top5']:.4f}" if "test_top5" in metrics else ""
    print(f"test top-1 {metrics['test_top1']:.4f}{top5}; {metrics['params_binary']:,} 1-bit + "
          f"{metrics['params_float']:,} 32-bit parameters, OPs {metrics['ops']:.4g}; "
          f"{metrics['train_seconds']:.0f} s -> {out / 'model.h5'}"
          + ("" if chief else " (written by the chief)"), flush=True)
    return metrics
