"""Evaluate a saved model on the test split of a dataset: prints top-1 (and top-5).

    python tools/evaluate.py MODEL.h5 --dataset D [--set batch_size=N] [--set max_examples=N]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ubnas_tf  # noqa: E402,F401  (Keras 2 before TensorFlow)
from absl import flags  # noqa: E402

from ubnas_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
cli.define_config_flags(output_dir=False)
cli.define_data_flags()
flags.DEFINE_bool("top5", False, "Print top-5 as well, whatever the number of classes.")
cli.define_model_loading_flags()


def main(argv):
    from ubnas_tf.train.evaluate import evaluate_file

    if len(argv) != 2:
        cli.fail("usage: tools/evaluate.py MODEL.h5 --dataset D")
    config = cli.resolved_config("train")
    cli.import_modules_from_flags()
    result = evaluate_file(argv[1], FLAGS.dataset, batch_size=config["batch_size"],
                           data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir,
                           max_examples=config["max_examples"], seed=config["seed"],
                           top5=FLAGS.top5, allow_lambda=FLAGS.allow_lambda)
    line = f"test top-1 {result['test_top1']:.4f}"
    if "test_top5" in result:
        line += f"  top-5 {result['test_top5']:.4f}"
    print(f"{line}  ({result['test_size']} images of {result['dataset']})")


if __name__ == "__main__":
    cli.run(main)
