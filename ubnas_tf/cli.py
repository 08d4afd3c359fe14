"""What every tool shares: flags, config resolution, and the exit-code contract.

Exit codes (shared/INTERFACES.md): 0 success; 2 bad input, with one line on stderr that names
the fix; 1 any other failure.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out

from absl import app, flags  # noqa: E402

from ubnas_tf.errors import UserError  # noqa: E402

FLAGS = flags.FLAGS
EXIT_BAD_INPUT = 2


def define_config_flags() -> None:
    flags.DEFINE_multi_string("config", [], "YAML config file(s); later files win.")
    flags.DEFINE_multi_string(
        "set", [], "Override a config key: key=value (dotted keys allowed; repeatable)."
    )
    flags.DEFINE_string("output_dir", None, "Folder for every output of the run.")


def define_data_flags(required: bool = True) -> None:
    flags.DEFINE_string(
        "dataset",
        None,
        "A TFDS name (cifar10, fashion_mnist, ...), folder:PATH, idx:PATH, or demo.",
    )
    flags.DEFINE_string("data_dir", None, "TFDS data directory (prepared datasets live here).")
    flags.DEFINE_string("manual_dir", None, "Folder of files downloaded by hand for TFDS.")
    if required:
        flags.mark_flag_as_required("dataset")


def define_strategy_flags() -> None:
    """--strategy and --cpu_replicas (tools/search.py, tools/train.py)."""
    flags.DEFINE_enum("strategy", "one_device",
                      ["one_device", "mirrored", "multi_worker_mirrored"],
                      "tf.distribute strategy: one_device; mirrored over every local device; "
                      "multi_worker_mirrored over the cluster in TF_CONFIG "
                      "(docs/distributed.md).")
    flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into this many logical devices (to "
                         "run --strategy mirrored without accelerators; 0: as TensorFlow sees "
                         "it).")


def strategy_from_flags():
    """The strategy the flags ask for; made before any other TensorFlow op runs."""
    from ubnas_tf.distribute import make_strategy, split_cpu

    strategy_name = flags.FLAGS.strategy
    if flags.FLAGS.cpu_replicas > 1 and strategy_name == "multi_worker_mirrored":
        fail("--cpu_replicas splits the CPU for --strategy mirrored; a multi-worker strategy "
             "uses one CPU replica per worker: drop --cpu_replicas")
    split_cpu(flags.FLAGS.cpu_replicas)
    return make_strategy(strategy_name)


def resolved_config(tool: str) -> dict:
    from ubnas_tf import config

    return config.load(tool, FLAGS.config, FLAGS.set)


def fail(message: str) -> None:
    """Print a one-line error and exit with the bad-input code."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as error:
        fail(f"{error} (see --helpfull)")


def run(main) -> None:
    """`absl.app.run(main)` with UserError mapped to exit 2 and bad flags to exit 2."""

    def guarded(argv):
        try:
            return main(argv)
        except UserError as error:
            fail(str(error))

    app.run(guarded, flags_parser=_parse_flags)
