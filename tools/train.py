"""Retrain a searched genotype (or a hand-designed baseline), evaluate it and save it.

    python tools/train.py (--genotype G.json | --model NAME) --dataset D --output_dir DIR
        [--config configs/train_demo.yaml] [--set key=value ...]
        [--strategy one_device|mirrored|multi_worker_mirrored] [--cpu_replicas N]

NAME is bireal, quicknet, or float (the float version of --genotype). Writes DIR/model.h5,
DIR/saved_model/, DIR/metrics.json and DIR/summary.txt; re-running the same command resumes.
A NaN or Inf loss ends the run with one line, exit 1 and DIR/diverged.json (where it
happened: what experiments record instead of metrics).
batch_size is the global batch, split across all replicas (of all workers); the learning rate
is that of the global batch. With multi_worker_mirrored, every worker runs this same command
with its own TF_CONFIG, and only the chief writes into DIR (docs/distributed.md).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ubnas_tf  # noqa: E402,F401  (Keras 2 before TensorFlow)
from absl import flags  # noqa: E402

from ubnas_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
cli.define_config_flags()
cli.define_data_flags()
flags.DEFINE_string("genotype", None, "genotype.json of the network to train.")
flags.DEFINE_string("model", None, "A baseline instead: bireal, quicknet, or float (the float "
                    "version of --genotype).")
cli.define_strategy_flags()


def main(argv):
    from ubnas_tf.train.run import run_training
    from ubnas_tf.train.stages import TrainingDiverged

    if len(argv) > 1:
        cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: use --genotype or --model")
    cli.require_output_dir("the model, its metrics and checkpoints")
    diverged = os.path.join(FLAGS.output_dir, "diverged.json")
    config = cli.resolved_config("train")
    strategy = cli.strategy_from_flags()  # before any other TensorFlow op
    try:
        run_training(config, dataset=FLAGS.dataset, output_dir=FLAGS.output_dir,
                     genotype=FLAGS.genotype, model=FLAGS.model, data_dir=FLAGS.data_dir,
                     manual_dir=FLAGS.manual_dir, strategy=strategy)
    except TrainingDiverged as error:
        from ubnas_tf.io_utils import atomic_write_json

        atomic_write_json(diverged, error.record)
        cli.fail(error.record["error"], code=1)
    if os.path.exists(diverged):  # an earlier attempt's record, now resumed to the end
        os.remove(diverged)


if __name__ == "__main__":
    cli.run(main)
