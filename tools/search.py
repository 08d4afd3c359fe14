"""Search a binary cell architecture (UBNAS/EBNAS, PC-DARTS partial channels).

    python tools/search.py --dataset D --output_dir DIR [--config F.yaml] [--set key=value ...]
        [--strategy one_device|mirrored|multi_worker_mirrored] [--cpu_replicas N]

batch_size is the global batch, split across all replicas (of all workers); the learning rates
are those of that global batch. With multi_worker_mirrored, every worker runs this same command
with its own TF_CONFIG, and only the chief writes into DIR (docs/distributed.md).

Writes DIR/genotype.json (the input of tools/train.py --genotype), DIR/genotype.png,
DIR/search_log.jsonl, DIR/config.yaml, DIR/summary.json, TensorBoard events and checkpoints;
re-running the same command resumes from the last checkpoint.
"""
import os
import sys

# oneDNN's conv and batch-norm kernels make a search step 2-2.5x faster on CPU (measured,
# benchmarks/search_step.py); they must be chosen before TensorFlow loads.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ubnas_tf  # noqa: E402,F401  (Keras 2 before TensorFlow)
from absl import flags  # noqa: E402

from ubnas_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
cli.define_config_flags()
cli.define_data_flags()
cli.define_strategy_flags()


def main(argv):
    from ubnas_tf.search.run import SearchDiverged, run_search

    if len(argv) > 1:
        cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: options start with --")
    cli.require_output_dir("the genotype, log and checkpoints")
    config = cli.resolved_config("search")
    strategy = cli.strategy_from_flags()
    try:
        run_search(config, dataset=FLAGS.dataset, output_dir=FLAGS.output_dir,
                   data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir, strategy=strategy)
    except SearchDiverged as error:
        cli.fail(str(error), code=1)


if __name__ == "__main__":
    cli.run(main)
