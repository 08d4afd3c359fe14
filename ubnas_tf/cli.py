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
