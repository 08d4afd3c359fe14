"""`make demo`: the whole path on the dataset shipped in the package, offline.

    python tools/demo.py [--output_dir demo_run] [--dataset demo] [--baselines bireal,quicknet]

search -> genotype (+ picture) -> retrain -> evaluate -> lce_convert --verify -> host
benchmark, for the searched network, a hand-designed binary baseline and the float network;
ends with a comparison table (demo_run/results.md). Relative paths are from the working
folder (`make demo` runs in the checkout: demo_run/ lands there).
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import flags  # noqa: E402

from ubnas_tf import cli, pipeline  # noqa: E402
from ubnas_tf.config import CONFIG_DIR  # noqa: E402

flags.DEFINE_string("output_dir", "demo_run", "Folder for every output of the demo (relative "
                    "to the working folder).")
flags.DEFINE_string("dataset", "demo", "Dataset (default: the subset shipped in the package).")
flags.DEFINE_string("search_config", None, "Config of the search (default: the shipped "
                    "configs/search_demo.yaml).")
flags.DEFINE_string("train_config", None, "Config of the retraining (default: the shipped "
                    "configs/train_demo.yaml).")
flags.DEFINE_list("baselines", ["bireal"], "Hand-designed binary baselines to compare with "
                  "(bireal, quicknet).")
flags.DEFINE_multi_string("set", [], "key=value overrides passed to search and train.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: options start with --")
    pipeline.run(dataset=FLAGS.dataset, output_dir=FLAGS.output_dir,
                 search_config=FLAGS.search_config or CONFIG_DIR / "search_demo.yaml",
                 train_config=FLAGS.train_config or CONFIG_DIR / "train_demo.yaml",
                 baselines=FLAGS.baselines, overrides=FLAGS.set)


if __name__ == "__main__":
    cli.run(main)
