"""Results report on full Fashion-MNIST (60000 train / 10000 test), from local files, offline.

    python experiments/fashion_mnist.py [--output_dir experiments/fashion_mnist_run]

The images are Debian's `dataset-fashion-mnist` package (`apt-get install dataset-fashion-mnist`
puts the four IDX .gz files in /usr/share/datasets/fashion-mnist/; `--dataset idx:PATH` reads a
copy elsewhere). One command runs the documented path, each step a fresh process:

    search (configs/search_fashion_mnist.yaml) -> genotype -> retrain the searched network,
    Bi-Real, QuickNet and the searched cells in float under one budget
    (configs/train_fashion_mnist.yaml) -> lce_convert --verify -> host benchmark

and writes results.md / results.json (top-1, parameters, OPs, .tflite size, host latency,
search cost) and accuracy_vs_ops.png. The README's Fashion-MNIST table and plot come from it.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import flags  # noqa: E402

from ubnas_tf import cli, pipeline  # noqa: E402
from ubnas_tf.config import CONFIG_DIR  # noqa: E402

flags.DEFINE_string("output_dir", "experiments/fashion_mnist_run", "Folder for every output.")
flags.DEFINE_string("dataset", "fashion_mnist_local", "Fashion-MNIST: fashion_mnist_local "
                    "(Debian's files) or idx:PATH (the four IDX .gz files elsewhere).")
flags.DEFINE_list("baselines", ["bireal", "quicknet"], "Hand-designed binary baselines.")
flags.DEFINE_multi_string("set", [], "key=value overrides passed to search and train.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    pipeline.run(dataset=FLAGS.dataset, output_dir=FLAGS.output_dir,
                 search_config=CONFIG_DIR / "search_fashion_mnist.yaml",
                 train_config=CONFIG_DIR / "train_fashion_mnist.yaml", baselines=FLAGS.baselines,
                 overrides=FLAGS.set, plot_title="Fashion-MNIST: top-1 vs OPs (same budget)")


if __name__ == "__main__":
    cli.run(main)
