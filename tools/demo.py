"""`make demo`: the whole path on the dataset shipped in the package, offline.

    python tools/demo.py [--output_dir demo_run] [--dataset demo]

search -> genotype (+ picture) -> retrain -> evaluate -> lce_convert --verify -> host
benchmark, for the searched network, a hand-designed binary baseline and the float network;
ends with a comparison table (demo_run/results.md).
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import flags  # noqa: E402

from ubnas_tf import cli, pipeline  # noqa: E402

flags.DEFINE_string("output_dir", "demo_run", "Folder for every output of the demo.")
flags.DEFINE_string("dataset", "demo", "Dataset (default: the subset shipped in the package).")
flags.DEFINE_string("search_config", "configs/search_demo.yaml", "Config of the search.")
flags.DEFINE_string("train_config", "configs/train_demo.yaml", "Config of the retraining.")
flags.DEFINE_list("baselines", ["bireal"], "Hand-designed binary baselines to compare with "
                  "(bireal, quicknet).")
flags.DEFINE_multi_string("set", [], "key=value overrides passed to search and train.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    pipeline.run(dataset=FLAGS.dataset, output_dir=FLAGS.output_dir,
                 search_config=FLAGS.search_config, train_config=FLAGS.train_config,
                 baselines=FLAGS.baselines, overrides=FLAGS.set)


if __name__ == "__main__":
    cli.run(main)
