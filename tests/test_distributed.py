"""Distribution: TF_CONFIG checks, the chief, the training loss under replicas, and two worker
processes on 127.0.0.1 running tools/search.py and tools/train.py (docs/distributed.md)."""
import json
import os
import socket
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from ubnas_tf.distribute import ChiefCheckpointManager, check_tf_config, is_chief
from ubnas_tf.errors import UserError

from conftest import ROOT
from test_search import TINY as TINY_SEARCH

TINY_TRAIN = ["batch_size=32", "max_examples=128", "auxiliary.enabled=false", "drop_path=0.0",
              "saved_model=false", "tensorboard=false", "baselines.bireal.width=8",
              "baselines.bireal.blocks=[1, 1]"]


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# -- TF_CONFIG and the chief ----------------------------------------------------------------
def _tf_config(cluster, task_type="worker", index=0):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type,
                                                                  "index": index}})}


def test_tf_config_is_checked_up_front_with_the_fix():
    two = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}
    assert check_tf_config(_tf_config(two, index=1))["task"]["index"] == 1
    cases = {
        "not set": ({}, "export TF_CONFIG="),
        "empty": ({"TF_CONFIG": " "}, "export TF_CONFIG="),
        "bad JSON": ({"TF_CONFIG": "{'cluster': 1}"}, "not valid JSON"),
        "no cluster": ({"TF_CONFIG": '{"task": {"type": "worker", "index": 0}}'},
                       "no \"cluster\""),
        "no task": ({"TF_CONFIG": json.dumps({"cluster": two})}, "no \"task\""),
        "task type": (_tf_config(two, task_type="chief"), "'chief' is not in its cluster"),
        "task index": (_tf_config(two, index=2), "use 0..1"),
        "ps job": (_tf_config({**two, "ps": ["127.0.0.1:2224"]}), "'ps' job"),
        "address": (_tf_config({"worker": ["127.0.0.1"]}), "host:port"),
    }
    for name, (environ, expected) in cases.items():
        with pytest.raises(UserError, match=expected) as raised:
            check_tf_config(environ)
        assert "\n" not in str(raised.value), name


def _strategy_of(cluster, task_type, index):
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=index)
    return types.SimpleNamespace(cluster_resolver=resolver)


def test_the_chief_is_the_chief_task_or_else_worker_0(tmp_path):
    assert is_chief(tf.distribute.get_strategy())
    workers = {"worker": ["a:1", "b:1"]}
    assert is_chief(_strategy_of(workers, "worker", 0))
    assert not is_chief(_strategy_of(workers, "worker", 1))
    with_chief = {"chief": ["c:1"], **workers}
    assert is_chief(_strategy_of(with_chief, "chief", 0))
    assert not is_chief(_strategy_of(with_chief, "worker", 0))
    # A worker that is not the chief saves nowhere it can be seen, and reads the chief's folder.
    variable = tf.Variable(3.0)
    checkpoint = tf.train.Checkpoint(v=variable)
    chief = ChiefCheckpointManager(checkpoint, tmp_path / "ckpt",
                                   strategy=_strategy_of(workers, "worker", 0))
    other = ChiefCheckpointManager(checkpoint, tmp_path / "ckpt",
                                   strategy=_strategy_of(workers, "worker", 1))
    other.save(checkpoint_number=1)
    assert other.latest_checkpoint is None and not (tmp_path / "ckpt").exists()
    chief.save(checkpoint_number=2)
    assert other.latest_checkpoint == chief.latest_checkpoint
    assert other.latest_checkpoint.endswith("ckpt-2")


_REPLICA_GRADIENT_CHECK = """
import numpy as np, ubnas_tf, tensorflow as tf
from ubnas_tf.distribute import split_cpu
from ubnas_tf.train.trainer import Trainer
split_cpu(2)
images = np.random.default_rng(0).normal(size=(8, 4, 4, 1)).astype("float32")
labels = np.arange(8) % 3
changes = []
for strategy in (tf.distribute.get_strategy(),
                 tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])):
    with strategy.scope():
        tf.keras.utils.set_random_seed(1)
        network = tf.keras.Sequential([tf.keras.layers.Flatten(input_shape=(4, 4, 1)),
                                       tf.keras.layers.Dense(3)])
        trainer = Trainer(network, num_classes=3)
        trainer.compile(optimizer=tf.keras.optimizers.SGD(0.5))
    before = network.get_weights()[0]
    trainer.fit(tf.data.Dataset.from_tensor_slices((images, labels)).batch(8), epochs=1,
                verbose=0)
    changes.append(network.get_weights()[0] - before)
assert strategy.num_replicas_in_sync == 2
assert np.abs(changes[0]).max() > 1e-3
np.testing.assert_allclose(changes[1], changes[0], rtol=1e-5, atol=1e-7)
print("same step")
"""


def test_training_loss_gives_the_global_batch_gradient_on_replicas(tool):
    """Keras sums the replicas' gradients, so each replica's mean loss is divided by their
    number: one SGD step on two replicas equals the step on one device (no batch norm here,
    whose statistics are per replica). In a fresh process: a second MirroredStrategy in the
    test process would reuse the collective keys of the one the other tests use."""
    result = tool("-c", _REPLICA_GRADIENT_CHECK, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "same step" in result.stdout


# -- worker processes on 127.0.0.1 ----------------------------------------------------------
def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _run_workers(tool, commands, tmp_path, timeout=400):
    """Start one process per command as worker i of a local cluster; wait for all of them
    (killing the rest when one fails or the time is up). Returns [(returncode, stdout,
    stderr)]. Each worker's temporary folder is `tmp_path/tmp_i`, to check it is left empty."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(len(commands))]}
    processes = []
    for index, command in enumerate(commands):
        temporary = tmp_path / f"tmp_{index}"
        temporary.mkdir(exist_ok=True)
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(temporary),
                       **_tf_config(cluster, index=index)}
        processes.append(subprocess.Popen(
            [sys.executable, tool, *command, "--strategy", "multi_worker_mirrored"], cwd=ROOT,
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=timeout)
            results.append((process.returncode, stdout, stderr))
            assert process.returncode == 0, stderr[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for index in range(len(commands)):
        assert not list((tmp_path / f"tmp_{index}").glob("ubnas_worker_*")), index
    return results


def _cell_lines(stdout):
    return [line for line in stdout.splitlines() if line.strip().startswith(("normal cell",
                                                                            "reduction cell"))]


def _log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_two_workers_search_the_genotype_of_one_worker_with_two_replicas(tool, tmp_path):
    """Two worker processes (one replica each) agree on the genotype, only the chief writes,
    and one process with two replicas (mirrored over two logical CPUs) finds the same genotype
    with the same losses: the same global batches, split the same way. (On one replica the
    batch-norm statistics are over the whole batch, not each half: another search; see
    docs/distributed.md.)"""
    search = [*_sets([*TINY_SEARCH, "epochs=3"]), "--dataset", "demo"]
    chief_dir, other_dir = tmp_path / "chief", tmp_path / "other"
    (_, chief_out, _), (_, other_out, _) = _run_workers(
        "tools/search.py", [["--output_dir", str(chief_dir), *search],
                            ["--output_dir", str(other_dir), *search]], tmp_path)
    for name in ("genotype.json", "genotype.png", "search_log.jsonl", "summary.json",
                 "config.yaml", "run.json"):
        assert (chief_dir / name).is_file(), name
    assert list((chief_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert tf.train.latest_checkpoint(str(chief_dir / "checkpoints")).endswith("ckpt-3")
    assert not other_dir.exists()  # the other worker wrote nothing
    assert len(_cell_lines(chief_out)) == 2
    assert _cell_lines(other_out) == _cell_lines(chief_out)
    assert "2 replica(s)" in chief_out

    mirrored_dir = tmp_path / "mirrored"
    mirrored = tool("tools/search.py", "--output_dir", str(mirrored_dir), *search,
                    "--strategy", "mirrored", "--cpu_replicas", "2")
    assert mirrored.returncode == 0, mirrored.stderr[-3000:]
    assert ((mirrored_dir / "genotype.json").read_text()
            == (chief_dir / "genotype.json").read_text())
    for two_workers, one_worker in zip(_log(chief_dir / "search_log.jsonl"),
                                       _log(mirrored_dir / "search_log.jsonl")):
        for key in ("train_loss", "train_acc", "arch_loss", "alphas_normal", "betas_reduce"):
            np.testing.assert_allclose(np.asarray(two_workers[key], dtype=float),
                                       np.asarray(one_worker[key], dtype=float),
                                       rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.slow
def test_two_workers_train_write_only_in_the_chief_folder_and_resume_from_it(tmp_path):
    chief_dir, other_dir = tmp_path / "chief", tmp_path / "other"
    train = ["--model", "bireal", "--dataset", "demo", *_sets(TINY_TRAIN)]
    first = _run_workers("tools/train.py", [
        ["--output_dir", str(chief_dir), *train, *_sets(["epochs=1"])],
        ["--output_dir", str(other_dir), *train, *_sets(["epochs=1"])]], tmp_path)
    for name in ("model.h5", "metrics.json", "summary.txt", "train_log.jsonl",
                 "train_config.yaml"):
        assert (chief_dir / name).is_file(), name
    assert not other_dir.exists()
    assert json.loads((chief_dir / "metrics.json").read_text())["epochs"] == 1
    top1 = [line for _, stdout, _ in first for line in stdout.splitlines()
            if line.startswith("test top-1")]
    assert len(top1) == 2 and top1[0].split(";")[0] == top1[1].split(";")[0]

    # Resume: every worker reads the chief's checkpoints (a folder all of them can read).
    again = _run_workers("tools/train.py", [
        ["--output_dir", str(chief_dir), *train, *_sets(["epochs=2"])]] * 2, tmp_path)
    for _, stdout, _ in again:
        assert "[final] resuming after epoch 1" in stdout
    assert [r["epoch"] for r in _log(chief_dir / "train_log.jsonl")] == [1, 2]
    assert json.loads((chief_dir / "metrics.json").read_text())["epochs"] == 2


def test_cli_bad_tf_config_is_one_line_exit_2(tool, tmp_path):
    environment = {"TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": '}
    search = tool("tools/search.py", "--dataset", "demo", "--output_dir", str(tmp_path / "s"),
                  "--strategy", "multi_worker_mirrored", env=environment, timeout=120)
    assert search.returncode == 2, search.stderr[-2000:]
    assert _error_lines(search.stderr) == [search.stderr.strip().splitlines()[-1]]
    assert "TF_CONFIG is not valid JSON" in search.stderr
    environment = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                            "task": {"type": "worker", "index": 3}})}
    train = tool("tools/train.py", "--model", "bireal", "--dataset", "demo", "--output_dir",
                 str(tmp_path / "t"), "--strategy", "multi_worker_mirrored", env=environment,
                 timeout=120)
    assert train.returncode == 2, train.stderr[-2000:]
    assert len(_error_lines(train.stderr)) == 1 and "task index 3" in train.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "t").exists()
