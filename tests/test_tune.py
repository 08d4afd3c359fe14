"""tools/tune.py and ubnas_tf.tune.run, tune_space, tune_data, tune_reports: keras-tuner over the
search's and the retraining's keys."""
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest
import yaml

from ubnas_tf import config as config_lib
from ubnas_tf.tune import run as tune
from ubnas_tf.errors import UserError
from ubnas_tf.tune.space import TuningSpace, load_config

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The smallest trials that still run every stage: 128 demo images (96 to train on, 32 to
# validate), a 3-cell supernet of 2 nodes and 4 channels searched for 1 epoch (no warm-up, so
# the architecture steps run), 1 epoch of retraining with no per-epoch evaluation, TensorBoard
# or SavedModel.
TINY = {
    "max_trials": 2,
    "max_examples": 128,
    "validation": 0.25,
    "search": {"epochs": 1, "batch_size": 32, "cells": 5, "channels": 4, "nodes": 2,
               "multiplier": 2, "stem_multiplier": 1, "warmup_epochs": 0,
               "primitives": ["skip_connect", "max_pool_3x3", "bin_conv_3x3"],
               "regularizers": {"ramp_epochs": 1}, "early_stop": {"patience": None}},
    "train": {"epochs": 1, "batch_size": 32, "cells": 5, "channels": 4,
              "auxiliary": {"enabled": False}, "drop_path": 0.0, "tensorboard": False,
              "saved_model": False, "eval_every_epoch": False},
    "hyperparameters": {"search": {"partial_channels": {"normal": {"values": [1, 2, 4]},
                                                        "reduce": {"values": [2, 4]}},
                                   "warmup_epochs": {"values": [0]},
                                   "module": {"values": ["ebnas_search", "bireal"]}}},
}


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny_tune.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _error_lines(result):
    """Our error lines (TensorFlow's C++ start-up chatter on stderr is not ours)."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def _tune(tool, config_file, out, *sets):
    args = ["tools/tune.py", "--dataset", "demo", "--config", str(config_file),
            "--output_dir", str(out)]
    for item in sets:
        args += ["--set", item]
    return tool(*args)


# -- the config -------------------------------------------------------------------------------
def test_default_config_tunes_the_issue_keys():
    config = load_config()
    space = TuningSpace(config)
    assert [t.name for t in space.tuned] == [
        "search.partial_channels.normal", "search.partial_channels.reduce",
        "search.arch_optimizer.lr", "search.warmup_epochs", "search.module",
        "train.optimizer.lr"]
    assert config["search"] == config_lib.load("search")  # the fixed part: the search defaults
    assert config["train"]["saved_model"] is False and config["train"]["epochs"] == 600
    lr = space.tuned[2]
    assert (lr.minimum, lr.maximum, lr.sampling, lr.integer) == (0.0003, 0.01, "log", False)
    hp = space.hyperparameters()
    assert hp.get("search.module") == "ebnas_search"
    configs = space.configs({"search.partial_channels.normal": 2, "search.module": "bireal",
                             "train.optimizer.lr": 0.002})
    assert configs["search"]["partial_channels"] == {"normal": 2, "reduce": 4}
    assert configs["search"]["module"] == "bireal"
    assert configs["train"]["optimizer"]["lr"] == 0.002


def test_config_layers_files_and_overrides(tiny_file):
    config = load_config([tiny_file], [
        "search.epochs=3", "search.cells=8",  # two overrides of one section both apply
        "hyperparameters.search.warmup_epochs.min=1",  # a range replaces the choice
        "hyperparameters.search.warmup_epochs.max=2",
        "hyperparameters.search.module=null",  # not tuned any more
        "hyperparameters.train.optimizer.lr.values=[0.001, 0.005]",
        "hyperparameters.search.weights_optimizer.lr.values=[0.001, 0.002]",  # any search key
    ])
    assert (config["search"]["epochs"], config["search"]["cells"]) == (3, 8)
    space = TuningSpace(config)
    names = {t.name: t for t in space.tuned}
    assert "search.module" not in names and "search.weights_optimizer.lr" in names
    warmup = names["search.warmup_epochs"]
    assert (warmup.values, warmup.minimum, warmup.maximum, warmup.integer) == (None, 1, 2, True)
    assert names["train.optimizer.lr"].values == [0.001, 0.005]
    # module mappings (the retraining's `module` takes them) cannot be keras-tuner choices:
    # they travel as JSON
    config = load_config([tiny_file], [
        "hyperparameters.train.module.values=[bireal, {preset: bireal, sign_width: 2.0}]"])
    module = next(t for t in TuningSpace(config).tuned if t.name == "train.module")
    assert module.encoded
    chosen = TuningSpace(config).configs({"train.module": module.encode(
        {"preset": "bireal", "sign_width": 2.0})})
    assert chosen["train"]["module"] == {"preset": "bireal", "sign_width": 2.0}


@pytest.mark.parametrize("override, message", [
    ("hyperparameters.search.partial_channel.normal.values=[2]", "did you mean partial_channels"),
    ("hyperparameters.searchh.epochs.values=[2]", "unknown config key 'hyperparameters.searchh'"),
    ("hyperparameters.search.partial_channels.values=[2]", "is a mapping: tune its sub-keys"),
    ("hyperparameters.search.epochs.mode=[2]", "must be {values: [...]}, {min: A, max: B}"),
    ("hyperparameters.search.epochs=3", "must be {values: [...]}, {min: A, max: B}"),
    ("hyperparameters.search.epochs.values=[]", "non-empty list"),
    ("hyperparameters.search.epochs.values=[2, two]", "needs an int"),
    ("hyperparameters.search.arch_optimizer.lr.min=0.1", "min < max"),
    ("hyperparameters.search.arch_optimizer.lr.sampling=cubic", "sampling' must be one of"),
    ("hyperparameters.search.warmup_epochs={min: 0.5, max: 2}", "is an integer"),
    ("hyperparameters.search.warmup_epochs.min=1", "needs numbers min and max"),
    ("hyperparameters.search.warmup_epochs={values: [1], max: 2}", "either values or a min/max"),
    ("search.bogus=1", "unknown config key 'search.bogus'"),
    ("train.optimizer.lr=fast", "'train.optimizer.lr' needs a float"),
    ("algorithm=hyperband", "'algorithm' must be one of random, bayesian, grid"),
    ("validation=1.5", "'validation' must be in (0, 1)"),
    ("max_trial=3", "did you mean max_trials"),
    ("hyperparameters.train.lrate.values=[1]", "unknown config key 'hyperparameters.train.lrate'"),
])
def test_bad_config_is_a_user_error(tiny_file, override, message):
    with pytest.raises(UserError) as error:
        load_config([tiny_file], [override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_bad_tune_config_exits_2_with_one_line(tool, tiny_file, tmp_path):
    # The CLI's exit-2 path, once: K=3 cannot split the supernet's 4 channels, which is found
    # after the data is prepared and before any trial runs.
    result = _tune(tool, tiny_file, tmp_path / "out",
                   "hyperparameters.search.partial_channels.normal.values=[1, 3]")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = _error_lines(result)
    assert len(lines) == 1 and result.stderr.strip().splitlines()[-1] == lines[0]
    assert "search.partial_channels.normal=3" in lines[0] and "channels" in lines[0]
    assert (tmp_path / "out" / "data" / "manifest.json").is_file()
    assert not (tmp_path / "out" / "oracle.json").exists()


# -- whole runs -------------------------------------------------------------------------------
def _trial_ids(out):
    return sorted(json.loads(p.read_text())["trial_id"]
                  for p in out.glob("trial_*/trial.json"))


@pytest.mark.slow
def test_tune_end_to_end_then_resume_with_more_trials(tool, tiny_file, tmp_path):
    out = tmp_path / "tune"
    started = time.time()
    first = _tune(tool, tiny_file, out, "max_trials=1")
    first_seconds = time.time() - started
    assert first.returncode == 0, first.stderr[-3000:]
    assert _trial_ids(out) == ["0"]
    progress = [line for line in first.stdout.splitlines() if line.startswith("trial ")
                and " val_top1 " in line]
    assert len(progress) == 1 and "(1/1, tuner0)" in progress[0]
    best = json.loads((out / "best.json").read_text())
    records = json.loads((out / "trials.json").read_text())
    assert [r["status"] for r in records] == ["COMPLETED"]
    assert best["objective"] == "val_top1" and 0 <= best["score"] <= 1
    assert pathlib.Path(best["genotype"]).is_file()
    assert set(best["hyperparameters"]) == {
        "search.partial_channels.normal", "search.partial_channels.reduce",
        "search.arch_optimizer.lr", "search.warmup_epochs", "search.module",
        "train.optimizer.lr"}
    trial = pathlib.Path(best["genotype"]).parent.parent
    searched = yaml.safe_load((trial / "search" / "config.yaml").read_text())
    for name, value in best["hyperparameters"].items():
        section, *path = name.split(".")
        node = searched if section == "search" else yaml.safe_load(
            (trial / "train" / "train_config.yaml").read_text())
        for key in path:
            node = node[key]
        assert node == value, name
    # scored on the hold-out, not the test split: 32 of the 128 capped training images
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert (manifest["train_size"], manifest["validation_size"]) == (96, 32)
    metrics = json.loads((trial / "train" / "metrics.json").read_text())
    assert metrics["test_size"] == 32 and metrics["train_size"] == 96
    assert metrics["test_top1"] == best["score"]
    table = (out / "trials.md").read_text()
    assert table.count("| completed |") == 1 and "**best**" in table

    log_before = (out / "trial_0" / "search" / "search_log.jsonl").read_text()
    model_time = (out / "trial_0" / "train" / "model.h5").stat().st_mtime
    resumed = _tune(tool, tiny_file, out, "max_trials=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _trial_ids(out) == ["0", "1"]
    started_trials = [line.split()[1] for line in resumed.stdout.splitlines()
                      if line.startswith("trial ") and " on tuner0: " in line]
    assert started_trials == ["1"]  # trial 0 is not redone
    assert (out / "trial_0" / "search" / "search_log.jsonl").read_text() == log_before
    assert (out / "trial_0" / "train" / "model.h5").stat().st_mtime == model_time
    records = json.loads((out / "trials.json").read_text())
    assert [r["status"] for r in records] == ["COMPLETED", "COMPLETED"]
    best = json.loads((out / "best.json").read_text())
    assert best["trials"] == 2 and best["score"] == max(r["score"] for r in records)
    assert (out / "trials.md").read_text().count("| completed |") == 2

    with pytest.raises(UserError, match=r"another config \(validation differ\)"):
        tune.run_tune(load_config([tiny_file], ["validation=0.3"]), dataset="demo",
                      output_dir=out)
    assert json.loads((out / "best.json").read_text())["trials"] == 2  # nothing overwritten
    print(f"1 trial in {first_seconds:.0f} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_distributed_chief_and_two_workers_on_localhost(tiny_file, tmp_path):
    """keras-tuner's distributed mode: the chief serves the oracle over gRPC, the workers run
    the trials; both trials run, one per worker, and the chief writes best.json."""
    out = tmp_path / "tune"
    port = _free_port()
    processes = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERASTUNER_TUNER_ID": tuner_id,
               "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
        processes[tuner_id] = subprocess.Popen(
            [sys.executable, "tools/tune.py", "--dataset", "demo", "--config", str(tiny_file),
             "--output_dir", str(out)], cwd=ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    outputs = {}
    try:
        for tuner_id, process in processes.items():
            outputs[tuner_id] = process.communicate(timeout=900)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    for tuner_id, process in processes.items():
        assert process.returncode == 0, (tuner_id, outputs[tuner_id][1][-3000:])
    ran = {tuner_id: [line.split()[1] for line in outputs[tuner_id][0].splitlines()
                      if line.startswith(f"trial ") and f" on {tuner_id}: " in line]
           for tuner_id in ("tuner0", "tuner1")}
    assert sorted(ran["tuner0"] + ran["tuner1"]) == ["0", "1"]
    assert len(ran["tuner0"]) == 1 and len(ran["tuner1"]) == 1  # one trial each
    assert "(random, chief)" in outputs["chief"][0] and "best: trial" in outputs["chief"][0]
    records = json.loads((out / "trials.json").read_text())
    assert sorted(r["tuner_id"] for r in records) == ["tuner0", "tuner1"]
    assert all(r["status"] == "COMPLETED" for r in records)
    best = json.loads((out / "best.json").read_text())
    assert best["score"] == max(r["score"] for r in records)
    assert pathlib.Path(best["genotype"]).is_file()


def test_distributed_environment_must_be_complete(monkeypatch, tiny_file, tmp_path):
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.delenv("KERASTUNER_ORACLE_PORT", raising=False)
    with pytest.raises(UserError, match="KERASTUNER_ORACLE_PORT is not"):
        tune.run_tune(load_config([tiny_file]), dataset="demo", output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
