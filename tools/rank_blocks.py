"""Rank networks of a finished block search by their accuracy with its supernet's weights.

    python tools/rank_blocks.py --search_dir SEARCH --output_dir DIR [--candidates N]
        [--seed S] [--networks FILE.json] [--max_images N]

Random search with weight sharing (Li & Talwalkar, UAI 2019; search/oneshot.py): each network
runs its blocks' ops alone with the weights of the search's last checkpoint, on the search's
architecture half. The networks are `--candidates` drawn uniformly among those in the search's
OPs window (all of them when the window holds fewer), or the lists of op names in
`--networks` (a JSON list). Writes DIR/ranking.json (every network's one-shot top-1 and OPs,
best first) and prints the best with the command that retrains it.
"""
import json
import os
import sys

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tools/search_blocks.py
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ubnas_tf  # noqa: E402,F401  (Keras 2 before TensorFlow)
from absl import flags  # noqa: E402

from ubnas_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("search_dir", None, "The --output_dir of a tools/search_blocks.py run.")
flags.DEFINE_string("output_dir", None, "Folder for ranking.json (not the search's own).")
flags.DEFINE_integer("candidates", 100, "Networks drawn in the search's OPs window.",
                     lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seeds the draw of the candidates.")
flags.DEFINE_string("networks", None, "A JSON file with a list of networks (each a list of op "
                    "names, one per block) to rank instead of drawn candidates.")
flags.DEFINE_integer("max_images", None, "Evaluate on the first N images of the architecture "
                     "half (default: all of it).", lower_bound=1)
flags.DEFINE_string("data_dir", None, "TFDS data directory (prepared datasets live here).")
flags.DEFINE_string("manual_dir", None, "Folder of files downloaded by hand for TFDS.")


def read_networks(path: str) -> list:
    try:
        with open(path) as handle:
            networks = json.load(handle)
    except (OSError, ValueError) as error:
        cli.fail(f"--networks {path}: cannot read a JSON list from it ({error})")
    if not isinstance(networks, list) or not networks or not all(
            isinstance(n, list) and all(isinstance(op, str) for op in n) for n in networks):
        cli.fail(f"--networks {path} must hold a non-empty JSON list of lists of op names")
    return networks


def main(argv):
    from ubnas_tf.search.block_run import BLOCKS_NAME, retrain_command
    from ubnas_tf.search.oneshot import rank_blocks

    if len(argv) > 1:
        cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: options start with --")
    cli.require_search_dir("a block search")
    cli.require_output_dir("ranking.json")
    networks = read_networks(FLAGS.networks) if FLAGS.networks else None
    record = rank_blocks(FLAGS.search_dir, FLAGS.output_dir, networks=networks,
                         candidates=FLAGS.candidates, seed=FLAGS.seed,
                         max_images=FLAGS.max_images, data_dir=FLAGS.data_dir,
                         manual_dir=FLAGS.manual_dir)
    with open(os.path.join(FLAGS.search_dir, "run.json")) as handle:
        dataset = json.load(handle)["dataset"]
    best = {**record["template"], "ops": record["ranking"][0]["block_ops"]}
    print(f"retrain the best ({BLOCKS_NAME} format): {retrain_command(best, dataset)}")


if __name__ == "__main__":
    cli.run(main)
