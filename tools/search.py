"""Search a binary cell architecture (UBNAS/EBNAS, PC-DARTS partial channels).

    python tools/search.py --dataset D --output_dir DIR [--config F.yaml] [--set key=value ...]
        [--strategy one_device|mirrored]

Writes DIR/genotype.json (the input of tools/train.py --genotype), DIR/genotype.png,
DIR/search_log.jsonl, DIR/config.yaml, DIR/summary.json, TensorBoard events and checkpoints;
re-running the same command resumes from the last checkpoint.
"""
import os
import sys

# oneDNN's conv and batch-norm kernels make a search step 2-2.5x faster on CPU (measured,
# benchmarks/search_step.py); they must be chosen before TensorFlow loads.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ubnas_tf  # noqa: E402,F401  (Keras 2 before TensorFlow)
from absl import flags  # noqa: E402

from ubnas_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
cli.define_config_flags()
cli.define_data_flags()
flags.DEFINE_enum("strategy", "one_device", ["one_device", "mirrored"],
                  "tf.distribute strategy: one_device, or mirrored over every local device.")
flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into this many logical devices (to run "
                     "--strategy mirrored without accelerators; 0: as TensorFlow sees it).")


def main(argv):
    import tensorflow as tf
    from absl import logging

    from ubnas_tf.search import SearchDiverged, make_strategy, run_search

    if len(argv) > 1:
        cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: options start with --")
    if not FLAGS.output_dir:
        cli.fail("--output_dir is required: pass the folder for the genotype, log and "
                 "checkpoints")
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines about checkpoint saving
    config = cli.resolved_config("search")
    if FLAGS.cpu_replicas > 1:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_replicas)
    strategy = make_strategy(FLAGS.strategy)
    try:
        run_search(config, dataset=FLAGS.dataset, output_dir=FLAGS.output_dir,
                   data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir, strategy=strategy)
    except SearchDiverged as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli.run(main)
