"""Search one op per block of QuickNet's template (a block-level search, search/block_run.py).

    python tools/search_blocks.py --dataset D --output_dir DIR [--config F.yaml]
        [--set key=value ...]

Writes DIR/blocks.json (the ops; `tools/train.py --model quicknet --set
baselines.quicknet.ops=[...]` retrains them, the command is printed), DIR/search_log.jsonl,
DIR/config.yaml, DIR/summary.json and checkpoints; re-running the same command resumes after
the last finished epoch. Defaults: configs/search_blocks.yaml.
"""
import os
import sys

# oneDNN's conv and batch-norm kernels: faster search steps on CPU (as tools/search.py).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ubnas_tf  # noqa: E402,F401  (Keras 2 before TensorFlow)
from absl import flags  # noqa: E402

from ubnas_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
cli.define_config_flags()
cli.define_data_flags()


def main(argv):
    from ubnas_tf.search.block_run import run_block_search
    from ubnas_tf.search.run import SearchDiverged

    if len(argv) > 1:
        cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: options start with --")
    cli.require_output_dir("the blocks, log and checkpoints")
    config = cli.resolved_config("search_blocks")
    try:
        run_block_search(config, dataset=FLAGS.dataset, output_dir=FLAGS.output_dir,
                         data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir)
    except SearchDiverged as error:
        cli.fail(str(error), code=1)


if __name__ == "__main__":
    cli.run(main)
