"""Tune the search's and the retraining's hyperparameters with keras-tuner.

    python tools/tune.py --dataset D --output_dir DIR [--config F.yaml] [--set key=value ...]

Each trial searches a genotype and retrains it with the trial's values of the keys that
configs/tune.yaml (or --config) lists under `hyperparameters`, and is scored by top-1 on a
validation set held out from the training split. Writes DIR/best.json, DIR/trials.md,
DIR/trials.json and DIR/trial_ID/{search,train}/; re-running the same command (with a larger
max_trials to add trials) goes on where it stopped. Distributed tuning: set KERASTUNER_TUNER_ID
(chief / tuner0, tuner1, ...), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT, and run the
same command in every process (see docs/tuning.md).
"""
import os
import sys

# As tools/search.py: oneDNN's kernels make search steps 2-2.5x faster on CPU; chosen before
# TensorFlow loads.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ubnas_tf  # noqa: E402,F401  (Keras 2 before TensorFlow)
from absl import flags  # noqa: E402

from ubnas_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
cli.define_config_flags()
cli.define_data_flags()


def main(argv):
    from ubnas_tf.tune import run as tune
    from ubnas_tf.tune import space as tune_space

    if len(argv) > 1:
        cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: options start with --")
    cli.require_output_dir("the trials and the results")
    config = tune_space.load_config(FLAGS.config, FLAGS.set)
    tune.run_tune(config, dataset=FLAGS.dataset, output_dir=FLAGS.output_dir,
                  data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir)


if __name__ == "__main__":
    cli.run(main)
