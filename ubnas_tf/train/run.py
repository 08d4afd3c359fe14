"""Retraining: train a genotype's network (or a baseline), evaluate it, save it for conversion.

    from ubnas_tf import config, train
    metrics = train.run_training(config.load("train"), dataset="cifar10",
                                 output_dir="runs/t1", genotype="runs/s1/genotype.json")

One run writes into its output folder:

    model.h5, saved_model/   the inference network (no auxiliary head, no drop-path layers),
                             with the final weights
    metrics.json             test_top1, test_loss (test_top5 for > 10 classes) of the final
                             weights, with test_size; val_top1, val_loss of the final weights,
                             best_val_top1, best_epoch, train_size, val_size; parameters, MACs,
                             OPs, model size, train time (see `ubnas_tf.network.cost`)
    summary.txt              the Larq summary and the per-layer cost table
    train_config.yaml, train_run.json   what the run was made of (checked on resume)
    train_log.jsonl          one JSON object per epoch (loss, top1, val_loss, val_top1, lr, ...)
    checkpoints/, tensorboard/
    best_weights.h5          the weights of the epoch with the best validation top-1
    stage1/, teacher/        the same, for two-stage training and a trained float teacher

Model selection is honest (issue 13): `data.validation_fraction` of the training split is held
out (class-stratified, seeded: `ubnas_tf.data.splits.holdout_indices`); each epoch is scored on
that validation split only, which picks best_weights.h5; the test split is read once, at the
end, for the final weights' figures. With `data.validation_fraction: 0` there is no
validation split and nothing is selected (best_val_top1 and best_epoch are null).

Training (EBNAS/UBNAS retraining, shared/reference/UBNAS.md): Adam with cosine decay, label
smoothing, DARTS's auxiliary loss (weight 0.4) and linearly increasing drop-path, the latent
binary weights clipped by their kernel constraint after every step (the optimizer applies a
variable's constraint). Optional:

- two-stage training (Martinez et al., "Real-to-Binary", ICLR 2020; ReActNet): stage one
  trains real weights with binary activations, stage two the fully binary network from it;
- knowledge distillation (Hinton et al., 2015) from a float teacher: the float version of the
  same genotype, trained first in teacher/, or any saved model:
  loss = (1 - alpha) * CE + alpha * T^2 * KL(softmax(t / T) || softmax(s / T)).

A run is resumable, exactly: each epoch ends with a checkpoint of the network, the optimizer
(its step drives the schedule) and the run state; re-running the same command after a kill
goes on from the last finished epoch, with the data order and augmentation an uninterrupted
run would have had (`ubnas_tf.train.stages`), so it ends with the same weights and
metrics.json (same seed and machine). A folder holding a run of another config, or another
kind of run (a search's), is refused before anything is written.

Distributed (`strategy`, `ubnas_tf.distribute`): `batch_size` is the global batch, split
across the replicas, and the learning rate is the one of that global batch (no implicit
scaling). With several replicas the training batches drop their remainder (every replica gets
an equal, non-empty slice) and every worker reads the whole, identically seeded data and keeps
its own share (DATA sharding). Only the chief writes into the output folder; every worker
takes part in the saves (reading batch-norm statistics is a collective), the others into
temporary folders.

Modules: `trainer` (the Trainer model and its losses), `optimizer` (optimizer and schedule),
`stages` (one stage with checkpoints; two-stage; the float teacher), `evaluate` (loading and
evaluating saved models), and this one (the run: checks, outputs, metrics).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import pathlib
import shutil
from collections.abc import Callable

import tensorflow as tf

from ubnas_tf import config as config_lib
from ubnas_tf.distribute import is_chief
from ubnas_tf.errors import UserError
from ubnas_tf.io_utils import atomic_write_json, atomic_write_text
from ubnas_tf.network.genotype_network import build_from_config, check_reduction, check_space
from ubnas_tf.search_space import get_space
from ubnas_tf.search_space.genotype import Genotype
from ubnas_tf.train.evaluate import check_model_fits, evaluate, load_model
from ubnas_tf.train.stages import CONFIG_FILE, RUN_FILE, train_stages
from ubnas_tf.search_space.stems import resolve_stem

__all__ = ["run_training"]


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
    fraction = (config.get("data") or {}).get("validation_fraction") or 0.0
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
            0.0 <= fraction < 1.0):
        raise UserError(f"data.validation_fraction must be in [0, 1) (0: no validation split), "
                        f"got {fraction!r}")
    resolve_stem(config.get("stem", "auto"), (1, 1))  # a bad stem kind fails before any write
    check_reduction(config.get("reduction", "searched"))


# What a search run leaves in its folder (`ubnas_tf.search.run`), and what a train run writes or
# reads back: a folder holding any of these without a train_config.yaml is another run's.
_SEARCH_FILES = ("search_log.jsonl", "genotype.json", "config.yaml", "run.json")
_TRAIN_FILES = ("checkpoints", "train_log.jsonl", "model.h5", "metrics.json", "best_weights.h5",
                "saved_model", "summary.txt", "stage1", "teacher", RUN_FILE)


def _refuse_foreign_run(out: pathlib.Path) -> None:
    """Refuse a folder that holds another run (a search's, or a train run without its config):
    resuming from its checkpoints would fail half-way, after writing into it (issue 18.4)."""
    if not out.is_dir():
        return
    search = [name for name in _SEARCH_FILES if (out / name).exists()]
    if search:
        raise UserError(f"{out} holds a search run ({', '.join(search)}), not a train run: pass "
                        f"another --output_dir, e.g. {out / 'train'}")
    found = [name for name in _TRAIN_FILES if (out / name).exists()]
    if found:
        raise UserError(f"{out} holds files of another run ({', '.join(found)}) but no "
                        f"{CONFIG_FILE}: pass a new --output_dir")


def _check_output_dir(out: pathlib.Path, config: dict, run: dict) -> bool:
    """True when `out` holds this same run (to resume); refuses another run's folder."""
    saved_config_path, saved_run_path = out / CONFIG_FILE, out / RUN_FILE
    if not saved_config_path.exists():
        _refuse_foreign_run(out)
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
                        validation_fraction=data_settings.get("validation_fraction") or 0.0,
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
            check_model_fits(teacher, info, f"teacher {teacher_spec}")
        stage, trainer, stage1_seconds = train_stages(
            config, plan, network, genotype, teacher, teacher_spec, two_stage, data, out,
            run, resuming, chief, verbose, strategy)
    return _finish_training(config, plan, network, genotype, stage, trainer, stage1_seconds,
                            data, out, chief)


def _finish_training(config, plan, network, genotype, stage, trainer, stage1_seconds, data, out,
                     chief) -> dict:
    """Evaluate, profile and (on the chief) save the inference network and its metrics."""
    from ubnas_tf.network.cost import profile

    info = data.info

    exported = plan.build(export=True)
    if exported is not network:
        _copy_weights(network, exported)
    # The trainer's test step is the exported network's computation (inference ignores the
    # auxiliary head and drop-path) and is already traced. The final weights are scored: the
    # test split is read here, once per run, and chooses nothing (issue 13); best_weights.h5
    # was chosen on the validation split.
    metrics = evaluate(trainer, data, config["batch_size"])
    metrics["val_top1"] = metrics["val_loss"] = None
    if info.validation_size:
        metrics.update(evaluate(trainer, data, config["batch_size"], split="validation"))
    cost = profile(exported)
    metrics.update(cost.to_dict())
    best_epoch = int(stage.state["best_epoch"].numpy())
    metrics.update({
        "train_seconds": float(stage.state["train_seconds"].numpy()) + stage1_seconds,
        "epochs": config["epochs"],
        "best_val_top1": float(stage.state["best_top1"].numpy()) if best_epoch else None,
        "best_epoch": best_epoch or None,
        "model": plan.name,
        "dataset": info.name,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "train_size": info.train_size,
        "val_size": info.validation_size,
        "test_size": info.test_size,
    })
    if genotype is not None:
        metrics["space"] = genotype.space
    if chief:
        _save_model(exported, out, bool(config.get("saved_model", True)))
        atomic_write_text(out / "summary.txt", _summary_text(exported, cost))
        atomic_write_json(out / "metrics.json", metrics)
    top5 = f", top-5 {metrics['test_top5']:.4f}" if "test_top5" in metrics else ""
    print(f"test top-1 {metrics['test_top1']:.4f}{top5} on {info.test_size} images; "
          f"{metrics['params_binary']:,} 1-bit + "
          f"{metrics['params_float']:,} 32-bit parameters, OPs {metrics['ops']:.4g}; "
          f"{metrics['train_seconds']:.0f} s -> {out / 'model.h5'}"
          + ("" if chief else " (written by the chief)"), flush=True)
    return metrics
