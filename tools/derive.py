"""Derive a finished search's genotype again, from one of its checkpoints, by another rule.

    python tools/derive.py --search_dir SEARCH --output_dir DIR [--method perturbation|magnitude]
        [--epoch N] [--batches N] [--tune_steps N] [--criterion accuracy|loss]

perturbation (default): DARTS-PT's selection (Wang et al., ICLR 2021), the op and the edges
whose removal costs the trained supernet the most accuracy on the search's architecture half;
magnitude: the search's own rule (largest weights). The checkpoint defaults to the epoch whose
genotype the search returned. Writes DIR/genotype.json (the input of tools/train.py --genotype),
DIR/genotype.png and DIR/derivation.json (every score that decided it).
"""
import os
import sys

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tools/search.py: the same kernels
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ubnas_tf  # noqa: E402,F401  (Keras 2 before TensorFlow)
from absl import flags  # noqa: E402

from ubnas_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("search_dir", None, "The --output_dir of a finished tools/search.py run.")
flags.DEFINE_string("output_dir", None, "Folder for genotype.json, genotype.png and "
                    "derivation.json (not the search's own).")
flags.DEFINE_enum("method", "perturbation", ["perturbation", "magnitude"],
                  "perturbation: DARTS-PT's selection; magnitude: the search's own rule.")
flags.DEFINE_integer("epoch", None, "The checkpoint's epoch (default: the epoch whose genotype "
                     "the search returned).", lower_bound=1)
flags.DEFINE_integer("batches", 0, "Architecture-half batches per evaluation (0: all of them).",
                     lower_bound=0)
flags.DEFINE_integer("tune_steps", 0, "perturbation: weight steps on the search's weight half "
                     "after each round of decisions (DARTS-PT's fine-tuning; 0: none).",
                     lower_bound=0)
flags.DEFINE_enum("criterion", "accuracy", ["accuracy", "loss"], "perturbation: what a "
                  "removal costs, the accuracy (ties broken by the loss) or the loss.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (prepared datasets live here).")
flags.DEFINE_string("manual_dir", None, "Folder of files downloaded by hand for TFDS.")


def main(argv):
    from ubnas_tf.search.derive import derive

    if len(argv) > 1:
        cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: options start with --")
    cli.require_search_dir("a finished search")
    cli.require_output_dir("the derived genotype")
    derive(FLAGS.search_dir, FLAGS.output_dir, method=FLAGS.method, epoch=FLAGS.epoch,
           batches=FLAGS.batches, tune_steps=FLAGS.tune_steps, criterion=FLAGS.criterion,
           data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir)


if __name__ == "__main__":
    cli.run(main)
