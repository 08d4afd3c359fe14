"""Exact resume of a training (issue 18.2): a run killed before, during and after a checkpoint
and run again ends with the metrics.json, log and weights of a run never killed."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

from conftest import ROOT

# Three epochs of 8 batches on 256 demo images (230 train / 26 validation), with random crops
# and flips (the demo's default augmentation): the data order and the augmentation after the
# first epoch are what a resume used to get wrong. A tiny Bi-Real net: each process costs
# mostly TensorFlow's start (a genotype network with drop-path, 0.3, also passed this test, at
# 2.5x the time; its masks' resume is checked below, in process).
RESUME_CONFIG = {"epochs": 3, "batch_size": 32, "max_examples": 256, "seed": 11,
                 "tensorboard": False, "saved_model": False,
                 "baselines": {"bireal": {"width": 8, "blocks": [1, 1]}}}

# Runs tools/train.py in this process, after arranging a hard kill (os._exit: no clean-up, as
# SIGKILL) at the point named by UBNAS_KILL_AT:
#   batch:N        after the N-th training batch this process runs (mid-epoch)
#   before_save:E  in epoch E's end, after its log line and best weights, before its checkpoint
#   after_save:E   just after epoch E's checkpoint is written
KILLING_TRAIN = """
import os, runpy, sys
sys.path.insert(0, {root!r})
import ubnas_tf
from ubnas_tf.train import stages

kind, _, value = os.environ["UBNAS_KILL_AT"].partition(":")
value = int(value)
if kind == "batch":
    class KillingEpochEnd(stages._EpochEnd):
        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            KillingEpochEnd.batches += 1
            if KillingEpochEnd.batches == value:
                os._exit(9)

    stages._EpochEnd = KillingEpochEnd
else:
    save = stages.ChiefCheckpointManager.save

    def killing_save(self, checkpoint_number=None, **kwargs):
        if kind == "before_save" and checkpoint_number == value:
            os._exit(9)
        path = save(self, checkpoint_number=checkpoint_number, **kwargs)
        if kind == "after_save" and checkpoint_number == value:
            os._exit(9)
        return path

    stages.ChiefCheckpointManager.save = killing_save
sys.argv = ["tools/train.py"] + sys.argv[1:]
runpy.run_path({train!r}, run_name="__main__")
"""


def test_drop_path_masks_are_set_by_the_epoch_not_by_the_process():
    import tensorflow as tf

    from ubnas_tf.network.genotype_network import DropPath, set_drop_path_rate

    inputs = tf.keras.Input((3,))
    model = tf.keras.Model(inputs, DropPath(0.5, name="drop")(inputs))
    ones = tf.ones((64, 3))

    def masks(draws_from, steps=2):
        set_drop_path_rate(model, 1.0, draws_from=draws_from)
        return [model(ones, training=True).numpy() for _ in range(steps)]

    first, second = masks(1 << 24)
    assert set(np.unique(first)) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - 0.5)
    assert not np.array_equal(first, second)  # a new mask every step
    again = masks(1 << 24)  # as a resumed process sets the epoch's counter again
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)
    assert not np.array_equal(masks(2 << 24)[0], first)  # another epoch, other masks
    np.testing.assert_array_equal(model(ones, training=False).numpy(), ones.numpy())


def _train(arguments, kill_at=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if kill_at is None:
        command = [sys.executable, "tools/train.py", *arguments]
    else:
        env["UBNAS_KILL_AT"] = kill_at
        script = KILLING_TRAIN.format(root=str(ROOT), train=str(ROOT / "tools" / "train.py"))
        command = [sys.executable, "-c", script, *arguments]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def _weights(path):
    arrays = {}
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                        if isinstance(item, h5py.Dataset) else None)
    return arrays


def _log(path):
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        record.pop("seconds")
    return records


@pytest.mark.slow
def test_a_run_killed_before_during_and_after_checkpoints_ends_as_an_uninterrupted_one(
        tmp_path):
    config = tmp_path / "resume.yaml"
    config.write_text(yaml.safe_dump(RESUME_CONFIG))
    common = ["--model", "bireal", "--dataset", "demo", "--config", str(config)]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    finished = _train(common + ["--output_dir", str(reference)])
    assert finished.returncode == 0, finished.stderr[-3000:]

    arguments = common + ["--output_dir", str(resumed)]
    # 8 batches per epoch: killed in epoch 1 (no checkpoint yet), then between epoch 1's log
    # line (and best weights) and its checkpoint, then right after epoch 2's checkpoint.
    for kill_at, checkpoints in (("batch:3", []), ("before_save:1", []),
                                 ("after_save:2", ["ckpt-1", "ckpt-2"])):
        killed = _train(arguments, kill_at)
        assert killed.returncode == 9, (kill_at, killed.stderr[-3000:])
        assert not (resumed / "metrics.json").exists()
        saved = sorted(path.stem for path in (resumed / "checkpoints").glob("ckpt-*.index"))
        assert saved == checkpoints, kill_at
    final = _train(arguments)
    assert final.returncode == 0, final.stderr[-3000:]
    assert "resuming after epoch 2" in final.stdout

    expected = json.loads((reference / "metrics.json").read_text())
    got = json.loads((resumed / "metrics.json").read_text())
    for metrics in (expected, got):
        metrics.pop("train_seconds")
    assert got == expected
    assert _log(resumed / "train_log.jsonl") == _log(reference / "train_log.jsonl")
    for name in ("model.h5", "best_weights.h5"):
        want, have = _weights(reference / name), _weights(resumed / name)
        assert sorted(have) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(have[key], want[key], err_msg=f"{name}: {key}")
