"""Distribution: which `tf.distribute` strategy a run uses, who writes, and the batch rule.

    from ubnas_tf.distribute import make_strategy, is_chief
    strategy = make_strategy("multi_worker_mirrored")   # reads TF_CONFIG; before any other TF op

Strategies (the `--strategy` flag of tools/search.py and tools/train.py):

- `one_device`: TensorFlow's default strategy (no replication, no overhead).
- `mirrored`: `tf.distribute.MirroredStrategy` over every local GPU (or the logical CPUs made
  with `split_cpu`), gradients all-reduced across replicas.
- `multi_worker_mirrored`: `tf.distribute.MultiWorkerMirroredStrategy`, synchronous data
  parallelism over several machines (each with its GPUs, or its CPU), the cluster given by the
  `TF_CONFIG` environment variable (validated up front, `check_tf_config`). Collectives: AUTO,
  which is RING on CPU and NCCL on GPU.

Batch and learning rate (docs/distributed.md). The config's `batch_size` is the *global* batch:
each step consumes `batch_size` examples split evenly across all replicas of all workers
(`batch_size / num_replicas_in_sync` each), and it must be a multiple of the replica count. The
learning rates are given for that global batch, so the same config trains the same way on one
device or on eight; there is no implicit linear scaling (Goyal et al., 2017): when you raise
`batch_size` for more replicas, raise the learning rate yourself. Per-replica losses are means
over the replica's slice; gradients are averaged across replicas (the search's `SearchSteps`)
or the loss is divided by the replica count before Keras sums them (`train.Trainer`), so both
give the gradient of the global batch's mean loss. Batch normalisation statistics stay per
replica.

Writes. Only the chief (`is_chief`) writes a run's outputs and checkpoints into `output_dir`.
Every worker must still take part in saving a checkpoint (TensorFlow's rule for collective
strategies), so the others save into a temporary folder they delete at once
(`ChiefCheckpointManager`); all workers restore from the chief's `checkpoints/`, which must
therefore be readable by all (a shared folder, or a copy at the same path on every machine).
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import tempfile

import tensorflow as tf

from ubnas_tf.errors import UserError

__all__ = ["STRATEGIES", "make_strategy", "split_cpu", "check_tf_config", "is_chief",
           "is_multi_worker", "ChiefCheckpointManager", "summary_writer", "worker_scratch"]

STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored")
TASK_TYPES = ("chief", "worker")
_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}\'')


def split_cpu(replicas: int) -> None:
    """Split the CPU into `replicas` logical devices (to run `mirrored` without accelerators);
    before TensorFlow initialises."""
    if replicas > 1:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * replicas)


def check_tf_config(environ=None) -> dict:
    """The parsed TF_CONFIG of a multi-worker run, or a `UserError` that names the fix.

    Accepted: {"cluster": {"worker": ["host:port", ...], "chief": ["host:port"]}, "task":
    {"type": "worker" | "chief", "index": i}} with the task inside the cluster.
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG")
    if not text or not text.strip():
        raise UserError("--strategy multi_worker_mirrored reads the cluster from TF_CONFIG, "
                        f"which is not set: export {_EXAMPLE} on each machine, with its own "
                        "task index (docs/distributed.md)")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"TF_CONFIG is not valid JSON ({error.msg} at character {error.pos}): "
                        f"set it like {_EXAMPLE}") from None
    cluster = value.get("cluster") if isinstance(value, dict) else None
    task = value.get("task") if isinstance(value, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise UserError(f"TF_CONFIG has no \"cluster\" mapping of task types to host:port "
                        f"lists: set it like {_EXAMPLE}")
    for task_type, addresses in cluster.items():
        if task_type not in TASK_TYPES:
            raise UserError(f"TF_CONFIG's cluster has a {task_type!r} job: "
                            f"multi_worker_mirrored takes only {' and '.join(TASK_TYPES)} "
                            "jobs; remove it")
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and a.rpartition(":")[2].isdigit()
                           for a in addresses)):
            raise UserError(f"TF_CONFIG's cluster {task_type!r} must be a list of "
                            f"\"host:port\" strings, got {addresses!r}: set it like {_EXAMPLE}")
    if len(cluster.get("chief", [])) > 1:
        raise UserError("TF_CONFIG's cluster has more than one chief: list one, or none (then "
                        "worker 0 is the chief)")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise UserError("TF_CONFIG has no \"task\": {\"type\": ..., \"index\": ...} saying "
                        f"which cluster member this process is: set it like {_EXAMPLE}")
    task_type, index = task["type"], task["index"]
    if task_type not in cluster:
        raise UserError(f"TF_CONFIG's task type {task_type!r} is not in its cluster "
                        f"({', '.join(cluster)}): use one of them")
    if isinstance(index, bool) or not isinstance(index, int) or not (
            0 <= index < len(cluster[task_type])):
        raise UserError(f"TF_CONFIG's task index {index!r} is not in its cluster's "
                        f"{task_type!r} list of {len(cluster[task_type])}: use 0.."
                        f"{len(cluster[task_type]) - 1}")
    return value


def make_strategy(name: str, devices=None) -> tf.distribute.Strategy:
    """The strategy called `name` (one of `STRATEGIES`); `devices` for `mirrored` only.

    Create it at the start of the program, before any other TensorFlow op: a multi-worker
    strategy configures the runtime's collectives and waits until every worker has joined.
    """
    if name == "one_device":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker_mirrored":
        check_tf_config()
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise UserError(f"unknown strategy {name!r}: use one of {', '.join(STRATEGIES)}")


def _cluster(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None, None, {}
    return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def is_multi_worker(strategy: tf.distribute.Strategy | None = None) -> bool:
    """True when the strategy spans several worker processes."""
    _, _, cluster = _cluster(strategy or tf.distribute.get_strategy())
    return sum(len(cluster.get(task_type, [])) for task_type in TASK_TYPES) > 1


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """True for the process that writes: the "chief" task, or worker 0 when the cluster has
    no chief; every single-process strategy is its own chief."""
    strategy = strategy or tf.distribute.get_strategy()
    task_type, task_id, cluster = _cluster(strategy)
    if not cluster or task_type is None:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


@contextlib.contextmanager
def worker_scratch(prefix: str):
    """A temporary folder, deleted on exit, for what a non-chief worker must write (it joins
    the chief's saves, whose reads are collectives) but nobody keeps."""
    folder = tempfile.mkdtemp(prefix=prefix)
    try:
        yield pathlib.Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class ChiefCheckpointManager:
    """A `tf.train.CheckpointManager` in the chief's `directory`, readable by every worker.

    The chief saves there. The other workers take part in each save (TensorFlow's rule for
    collective strategies: a save may read synchronised variables through collectives) into a
    temporary folder of their own, deleted as soon as it is written. `latest_checkpoint` is the
    chief's on every worker, so all of them resume from the same state.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory, *, strategy=None,
                 max_to_keep: int = 2):
        self.checkpoint = checkpoint
        self.directory = str(directory)
        self.chief = is_chief(strategy)
        self._manager = (tf.train.CheckpointManager(checkpoint, self.directory,
                                                    max_to_keep=max_to_keep)
                         if self.chief else None)

    @property
    def latest_checkpoint(self):
        if self._manager is not None:
            return self._manager.latest_checkpoint
        return tf.train.latest_checkpoint(self.directory)

    def save(self, checkpoint_number=None):
        if self._manager is not None:
            return self._manager.save(checkpoint_number=checkpoint_number)
        with worker_scratch("ubnas_worker_checkpoint_") as folder:
            tf.train.CheckpointManager(self.checkpoint, str(folder), max_to_keep=1).save(
                checkpoint_number=checkpoint_number)
        return None


def summary_writer(directory, strategy=None):
    """A TensorBoard writer in `directory` on the chief, one that writes nothing elsewhere."""
    if is_chief(strategy):
        return tf.summary.create_file_writer(str(pathlib.Path(directory)))
    return tf.summary.create_noop_writer()
