"""Training: the loss, weight clipping, the schedule, whole runs, resume after a kill, the CLIs."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import yaml

import ubnas_tf  # noqa: F401
from ubnas_tf import config as config_lib
from ubnas_tf.errors import UserError
from ubnas_tf.search_space import BinaryConvModule
from ubnas_tf.train import Trainer, learning_rate_schedule, make_optimizer, run_training
from ubnas_tf.train.stages import TrainingDiverged

from conftest import ROOT, run_tool
from test_network import BINARY_GENOTYPE

# One tiny epoch on the shipped demo data: 64 training images (6 of them held out for validation),
# evaluated on the 1000 test images.
TINY = {"epochs": 1, "batch_size": 32, "max_examples": 64, "cells": 5, "channels": 4,
        "auxiliary": {"enabled": False}, "drop_path": 0.0, "tensorboard": False,
        "saved_model": False,
        "baselines": {"bireal": {"width": 8, "blocks": [1, 1]},
                      "quicknet": {"filters": [8, 16], "blocks": [1, 1]}}}
METRIC_KEYS = {"test_top1", "params_binary", "params_float", "binary_macs", "float_macs", "ops",
               "model_size_bytes", "train_seconds"}


def tiny_config(**overrides):
    config = config_lib.merge(config_lib.load("train"), TINY)
    return config_lib.merge(config, overrides)


@pytest.fixture(scope="module")
def genotype_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("genotype") / "genotype.json"
    BINARY_GENOTYPE.save(path)
    return path


@pytest.fixture(scope="module")
def tiny_config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def check_metrics(metrics, *, binary=True):
    assert METRIC_KEYS <= set(metrics)
    assert 0.0 <= metrics["test_top1"] <= 1.0
    assert "test_top5" not in metrics  # 10 classes: top-5 only above 10
    assert metrics["params_float"] > 0 and metrics["float_macs"] > 0
    assert (metrics["params_binary"] > 0) == binary and (metrics["binary_macs"] > 0) == binary
    assert metrics["ops"] == pytest.approx(metrics["float_macs"] + metrics["binary_macs"] / 64)
    weights = metrics["params_binary"] + metrics["params_float"]
    assert 0 < metrics["model_size_bytes"] < 4 * weights + 4096
    assert metrics["train_seconds"] > 0


# --- units -----------------------------------------------------------------------------------

def test_latent_binary_weights_are_clipped_after_each_step():
    inputs = tf.keras.Input((6, 6, 4))
    module = BinaryConvModule(4, 3, structure="ebnas_retrain", name="module")
    x = tf.keras.layers.GlobalAveragePooling2D()(module(inputs))
    network = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(x))
    latent = module.conv.kernel.latent_variable
    latent.assign(tf.fill(latent.shape, 5.0))
    trainer = Trainer(network, num_classes=3)
    trainer.compile(optimizer=tf.keras.optimizers.SGD(1.0))
    images = np.random.default_rng(0).normal(size=(8, 6, 6, 4)).astype(np.float32)
    trainer.fit(images, np.arange(8) % 3, batch_size=8, epochs=1, verbose=0)
    assert float(tf.reduce_max(tf.abs(latent))) <= 1.0
    assert float(tf.reduce_max(tf.abs(latent))) == 1.0  # it was clipped, not reset


def test_loss_terms():
    network = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(3)])
    trainer = Trainer(network, num_classes=3, label_smoothing=0.1, temperature=2.0)
    logits = tf.constant([[2.0, 0.0, -1.0]])
    target = np.array([0.1 / 3 + 0.9, 0.1 / 3, 0.1 / 3])
    log_p = logits.numpy()[0] - np.log(np.exp(logits.numpy()[0]).sum())
    assert float(trainer._cross_entropy(tf.constant([0]), logits, 0.1)) == pytest.approx(
        -(target * log_p).sum(), rel=1e-5)
    teacher = tf.constant([[0.0, 1.0, 0.0]])
    t, s = teacher.numpy()[0] / 2, logits.numpy()[0] / 2
    p_t = np.exp(t) / np.exp(t).sum()
    kl = (p_t * (np.log(p_t) - (s - np.log(np.exp(s).sum())))).sum() * 4
    assert float(trainer._distillation(teacher, logits)) == pytest.approx(kl, rel=1e-4)
    assert float(trainer._distillation(logits, logits)) == pytest.approx(0.0, abs=1e-6)


def test_cosine_schedule_and_optimizers():
    schedule = learning_rate_schedule({"lr": 1e-3, "schedule": "cosine"}, total_steps=10)
    assert [float(schedule(step)) for step in (0, 5, 10)] == pytest.approx([1e-3, 5e-4, 0.0],
                                                                          abs=1e-9)
    assert learning_rate_schedule({"lr": 0.1, "schedule": "constant"}, total_steps=10) == 0.1
    assert isinstance(make_optimizer({"name": "adam"}, total_steps=1), tf.keras.optimizers.Adam)
    assert isinstance(make_optimizer({"name": "adam", "weight_decay": 1e-4}, total_steps=1),
                      tf.keras.optimizers.AdamW)
    assert make_optimizer({"name": "sgd", "grad_clip": 5.0}, total_steps=1).global_clipnorm == 5.0
    with pytest.raises(UserError, match="use adam or sgd"):
        make_optimizer({"name": "lamb"}, total_steps=1)


# --- whole runs, in process ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("model", ["bireal", "quicknet", "float"])
def test_baselines_train_under_the_same_budget(model, genotype_file, tmp_path):
    metrics = run_training(tiny_config(), dataset="demo", output_dir=tmp_path, model=model,
                           genotype=genotype_file if model == "float" else None, verbose=0)
    check_metrics(metrics, binary=model != "float")
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert (tmp_path / "model.h5").is_file() and (tmp_path / "summary.txt").is_file()
    assert metrics["model"] == model
    if model == "bireal":
        # the same folder with another config or another model: refused, nothing overwritten
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
        with pytest.raises(UserError, match=r"differs in baselines.bireal.width\): pass a "
                                            "new --output_dir"):
            run_training(tiny_config(baselines={"bireal": {"width": 16}}), dataset="demo",
                         output_dir=tmp_path, model=model)
        with pytest.raises(UserError, match="differs in --model"):
            run_training(tiny_config(), dataset="demo", output_dir=tmp_path, model="quicknet")
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


@pytest.mark.slow
def test_two_stage_training_with_a_float_teacher(tmp_path):
    # lr 0 leaves every kernel as it starts, so the final kernels show where stage 2 started.
    # With the default auxiliary head and drop-path, which the saved model leaves out.
    config = tiny_config(two_stage={"enabled": True, "stage1_epochs": 1},
                         distill={"teacher": "float", "teacher_epochs": 1, "alpha": 0.5},
                         optimizer={"lr": 0.0, "schedule": "constant"}, eval_every_epoch=False,
                         auxiliary={"enabled": True}, drop_path=0.2)
    metrics = run_training(config, dataset="demo", output_dir=tmp_path, genotype=BINARY_GENOTYPE,
                           verbose=0)
    check_metrics(metrics)
    assert (tmp_path / "teacher" / "checkpoints").is_dir()
    stage1 = tf.keras.models.load_model(tmp_path / "model.h5", compile=False)
    final = {w.name: w.numpy() for w in stage1.weights if "kernel" in w.name}
    from ubnas_tf.network.genotype_network import build_from_config
    from ubnas_tf.data import load_dataset
    reference = build_from_config(BINARY_GENOTYPE, load_dataset("demo", max_examples=64).info,
                                  config, module={"preset": "ebnas_retrain", "weights": "real"})
    reference.load_weights(str(tmp_path / "stage1" / "final_weights.h5"))
    stage1_kernels = {w.name: w.numpy() for w in reference.weights if "kernel" in w.name}
    assert len(stage1.outputs) == 1 and not any("drop" in l.name for l in stage1.layers)
    assert set(final) == {name for name in stage1_kernels if not name.startswith("auxiliary")}
    for name, value in final.items():
        np.testing.assert_array_equal(value, stage1_kernels[name])
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [entry["stage"] for entry in log] == ["final"]


def test_nan_loss_stops_with_one_line_and_saves_nothing_of_the_broken_epoch(tmp_path,
                                                                            genotype_file):
    # An infinite learning rate makes the first update non-finite, so a later step's loss is.
    out = tmp_path / "run"
    config = tiny_config(optimizer={"lr": float("inf"), "schedule": "constant"})
    with pytest.raises(TrainingDiverged, match=r"training loss became (nan|inf) at epoch 1, step \d+ "
                                        r"\(stage final\).*optimizer\.lr") as error:
        run_training(config, dataset="demo", output_dir=out, genotype=genotype_file, verbose=0)
    assert "\n" not in str(error.value)
    assert error.value.record["epoch"] == 1 and error.value.record["stage"] == "final"
    for written in ("model.h5", "metrics.json", "best_weights.h5", "train_log.jsonl"):
        assert not (out / written).exists(), written
    assert not list((out / "checkpoints").glob("ckpt-*"))


@pytest.mark.slow
def test_bad_input_writes_nothing(tmp_path, genotype_file):
    from ubnas_tf.search_space.genotype import published

    out = tmp_path / "run"
    with pytest.raises(UserError, match="--set space=darts"):
        run_training(tiny_config(), dataset="demo", output_dir=out, genotype=published("DARTS_V2"))
    with pytest.raises(UserError, match="too small"):
        run_training(tiny_config(data={"input_size": 3}), dataset="demo", output_dir=out,
                     genotype=genotype_file)
    with pytest.raises(UserError, match="needs a binary network"):
        run_training(tiny_config(two_stage={"enabled": True}), dataset="demo", output_dir=out,
                     genotype=genotype_file, model="float")
    with pytest.raises(UserError, match="pass --genotype G.json or --model"):
        run_training(tiny_config(), dataset="demo", output_dir=out)
    with pytest.raises(UserError, match="float version of a genotype"):
        run_training(tiny_config(), dataset="demo", output_dir=out, model="float")
    assert not out.exists()


class _CountingData:
    """A loaded dataset that counts the pipelines made over its test and validation splits."""

    def __init__(self, data, calls):
        self._data, self._calls = data, calls

    def __getattr__(self, name):
        return getattr(self._data, name)

    def test(self, batch_size):
        self._calls.append("test")
        return self._data.test(batch_size)

    def validation(self, batch_size):
        self._calls.append("validation")
        return self._data.validation(batch_size)


@pytest.mark.slow
def test_selection_on_validation_and_the_test_split_read_once(tmp_path, monkeypatch):
    import ubnas_tf.data
    from ubnas_tf.data import load_dataset
    from ubnas_tf.train import evaluate

    calls = []
    loaded = []

    def counting_load(*args, **kwargs):
        loaded.append(_CountingData(load_dataset(*args, **kwargs), calls))
        return loaded[-1]

    monkeypatch.setattr(ubnas_tf.data, "load_dataset", counting_load)
    # A high constant rate on 3 epochs: the validation curve is not monotone at this budget.
    config = tiny_config(epochs=3, max_examples=128, seed=5,
                         optimizer={"lr": 0.05, "schedule": "constant"})
    metrics = run_training(config, dataset="demo", output_dir=tmp_path, model="bireal",
                           verbose=0)
    # per epoch the validation split only (one pipeline, iterated each epoch); at the end the
    # final weights on the test split, once, and on the validation split
    assert calls == ["validation", "test", "validation"]
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert not any(key.startswith("test") for entry in log for key in entry)
    curve = [entry["val_top1"] for entry in log]
    assert metrics["best_epoch"] == 1 + int(np.argmax(curve))  # the first of equal bests
    assert metrics["best_val_top1"] == pytest.approx(max(curve))
    assert metrics["val_top1"] == pytest.approx(curve[-1])  # the final weights, not the best
    held = round(0.1 * 128)
    assert (metrics["train_size"], metrics["val_size"], metrics["test_size"]) == (
        128 - held, held, 1000)
    # best_weights.h5 holds the best epoch's weights: their validation top-1 is the best one
    network = tf.keras.models.load_model(tmp_path / "model.h5", compile=False)
    network.load_weights(str(tmp_path / "best_weights.h5"))
    data = loaded[0]._data
    assert evaluate(network, data, 32, split="validation")["val_top1"] == pytest.approx(
        metrics["best_val_top1"])
    assert "best_test_top1" not in metrics


@pytest.mark.slow
def test_without_a_validation_split_nothing_is_selected(tmp_path):
    metrics = run_training(tiny_config(data={"validation_fraction": 0.0}), dataset="demo",
                           output_dir=tmp_path, model="bireal", verbose=0)
    assert (metrics["train_size"], metrics["val_size"]) == (64, 0)
    assert metrics["best_epoch"] is metrics["best_val_top1"] is metrics["val_top1"] is None
    assert not (tmp_path / "best_weights.h5").exists()
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert not any(key.startswith(("val", "test")) for entry in log for key in entry)
    with pytest.raises(UserError, match=r"data.validation_fraction must be in \[0, 1\)"):
        run_training(tiny_config(data={"validation_fraction": 1.0}), dataset="demo",
                     output_dir=tmp_path / "bad", model="bireal")
    assert not (tmp_path / "bad").exists()


def test_a_model_is_checked_against_the_dataset():
    from ubnas_tf.data.info import DatasetInfo
    from ubnas_tf.train.evaluate import check_model_fits

    model = tf.keras.Sequential([tf.keras.Input((8, 8, 1)), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(10)])
    rgb = DatasetInfo("rgb", 10, (8, 8, 3), 1, 1, tuple("abcdefghij"), (0,) * 3, (1,) * 3)
    with pytest.raises(UserError, match=r"takes images of \(8, 8, 1\) but dataset rgb gives"):
        check_model_fits(model, rgb)
    hundred = DatasetInfo("c100", 100, (8, 8, 1), 1, 1, tuple(map(str, range(100))), (0,), (1,))
    with pytest.raises(UserError, match="predicts 10 classes but dataset c100 has 100"):
        check_model_fits(model, hundred)


# --- the command line ------------------------------------------------------------------------

def wait_for(path, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"finished before {path} appeared: {process.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.5)


@pytest.mark.slow
def test_cli_trains_resumes_after_a_kill_and_saves_a_reloadable_model(
        tmp_path, genotype_file, tiny_config_file):
    out = tmp_path / "run"
    command = [sys.executable, "tools/train.py", "--genotype", str(genotype_file),
               "--dataset", "demo", "--config", str(tiny_config_file), "--output_dir", str(out),
               "--set", "saved_model=true", "--set", "eval_every_epoch=false"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    killed = subprocess.Popen(command + ["--set", "epochs=500"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(out / "checkpoints" / "checkpoint", killed)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert not (out / "metrics.json").exists()

    resumed = run_tool("tools/train.py", *command[2:], "--set", "epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch" in resumed.stdout
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    epochs = [entry["epoch"] for entry in log]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= 2
    metrics = json.loads((out / "metrics.json").read_text())
    check_metrics(metrics)
    assert metrics["space"] == "binary" and metrics["input_shape"] == [28, 28, 1]
    assert (out / "saved_model" / "saved_model.pb").is_file()
    summary = (out / "summary.txt").read_text()
    assert "Total params" in summary and "OPs = FLOPs + BOPs/64" in summary

    # model.h5 reloads in a fresh interpreter with nothing but `import ubnas_tf`
    images = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    reload = run_tool("-c", (
        "import sys, numpy as np, ubnas_tf, tensorflow as tf\n"
        f"model = tf.keras.models.load_model({str(out / 'model.h5')!r}, compile=False)\n"
        f"np.save({str(tmp_path / 'logits.npy')!r}, "
        f"model(np.load({str(tmp_path / 'images.npy')!r}), training=False).numpy())\n"
        "print(sorted({type(l).__module__.split('.')[0] for l in model.layers}))\n"))
    assert reload.returncode == 0, reload.stderr[-3000:]
    model = tf.keras.models.load_model(out / "model.h5", compile=False)
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"),
                               model(images, training=False).numpy(), atol=1e-5)

    # max_examples capped the training images only (issue 18.12): metrics.json's test top-1 is
    # on the whole test split, the figure evaluate.py gives for the same model
    assert metrics["train_size"] + metrics["val_size"] == 64 and metrics["test_size"] == 1000
    # (the training's batch size: binary signs of near-zero sums can flip with the summation
    # order a batch size brings)
    evaluated = run_tool("tools/evaluate.py", str(out / "model.h5"), "--dataset", "demo",
                         "--set", "batch_size=32")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (f"test top-1 {metrics['test_top1']:.4f}  (1000 images of demo)"
            in evaluated.stdout)


def _listing(folder):
    return sorted((str(path.relative_to(folder)), path.stat().st_mtime_ns)
                  for path in folder.rglob("*"))


@pytest.mark.slow
def test_cli_refuses_a_search_folder_with_one_line_and_writes_nothing(tmp_path):
    from ubnas_tf.search.run import run_search

    search = tmp_path / "search"
    from test_search import tiny_config as tiny_search_config

    config = tiny_search_config("epochs=1", "warmup_epochs=0", "max_examples=64")
    result = run_search(config, dataset="demo", output_dir=search, print_fn=lambda *_: None)
    genotype = search / "genotype.json"
    assert result.epochs_run == 1 and (search / "checkpoints").is_dir()
    before = _listing(search)
    refused = run_tool("tools/train.py", "--genotype", str(genotype), "--dataset", "demo",
                       "--output_dir", str(search))
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr  # was ~1,550 lines of a failed restore (18.4)
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: {search} holds a search run (search_log.jsonl, genotype.json, config.yaml, "
        f"run.json), not a train run: pass another --output_dir, e.g. {search / 'train'}")
    assert _listing(search) == before


@pytest.mark.slow
def test_cli_refuses_a_genotype_of_another_space(tmp_path):
    result = run_tool("tools/train.py", "--genotype", "configs/genotypes/DARTS_V2.json",
                      "--dataset", "demo", "--output_dir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: the genotype is from search "
                                                              "space 'darts'")
    assert "--set space=darts" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unknown_reduction_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(UserError, match="reduction must be one of searched, quicknet"):
        run_training(tiny_config(reduction="float"), dataset="demo", output_dir=tmp_path / "bad",
                     model="bireal")
    assert not (tmp_path / "bad").exists()
