"""Regenerates the dataset shipped in the package (`--dataset demo`) from Fashion-MNIST.

    python tools/make_demo_data.py [--source /usr/share/datasets/fashion-mnist]

Takes a class-balanced subset of Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; Zalando, MIT
licence): 500 training and 100 test images per class, drawn with a fixed seed, and writes them
as the four MNIST-format IDX files into ubnas_tf/data/demo/, so that `demo` reads through the
same IDX reader as `idx:PATH`. The output is byte-identical between runs.
"""

import os
import sys

import numpy as np
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ubnas_tf import cli  # noqa: E402
from ubnas_tf.data.idx import IDX_FILES, read_idx_folder, write_idx  # noqa: E402
from ubnas_tf.data.sources import DEMO_DIR, FASHION_MNIST_LOCAL_DIR  # noqa: E402

flags.DEFINE_string("source", FASHION_MNIST_LOCAL_DIR, "Folder of the Fashion-MNIST IDX files.")
flags.DEFINE_string("output_dir", DEMO_DIR, "Where to write the subset.")
flags.DEFINE_integer("train_per_class", 500, "Training images per class.")
flags.DEFINE_integer("test_per_class", 100, "Test images per class.")
flags.DEFINE_integer("seed", 0, "Seed of the draw.")
FLAGS = flags.FLAGS


def balanced_subset(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `per_class` examples of every class, in a random (seeded) order."""
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(f"class {label} has only {len(members)} examples")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return rng.permutation(np.concatenate(chosen))


def main(argv):
    del argv
    splits = read_idx_folder(FLAGS.source)
    rng = np.random.default_rng(FLAGS.seed)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    for split, per_class in (("train", FLAGS.train_per_class), ("test", FLAGS.test_per_class)):
        images, labels = splits[split]
        chosen = balanced_subset(labels, per_class, rng)
        write_idx(
            os.path.join(FLAGS.output_dir, IDX_FILES[(split, "images")]), images[chosen, ..., 0]
        )
        write_idx(
            os.path.join(FLAGS.output_dir, IDX_FILES[(split, "labels")]),
            labels[chosen].astype(np.uint8),
        )
        print(f"{split}: {len(chosen)} images ({per_class} per class)")


if __name__ == "__main__":
    cli.run(main)
