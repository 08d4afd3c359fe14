"""What every tool shares: flags, --help, config resolution, output checks, and the exit codes.

Exit codes (shared/INTERFACES.md): 0 success; 2 bad input, with one line on stderr that names
the fix; 1 any other failure. `--help` lists the tool's own flags (those its script and this
package define) and exits 0; `--helpfull` lists every flag, absl's and TensorFlow's too.
TensorFlow's C++ start-up lines are kept out by `import ubnas_tf` (see `_startup`); `--verbose`
lets them, and TensorFlow's INFO log, through.
"""
import sys
import textwrap

from absl import app, flags

from ubnas_tf.errors import UserError

FLAGS = flags.FLAGS
EXIT_BAD_INPUT = 2
_HELP_FLAGS = ("help", "helpshort", "h", "?")
_HELPFULL_FLAGS = ("helpfull",)

flags.DEFINE_bool("verbose", False, "Show TensorFlow's C++ start-up and log lines and its INFO "
                  "log (hidden otherwise; a TF_CPP_MIN_LOG_LEVEL you set also wins).")


def define_config_flags(output_dir: bool = True) -> None:
    """--config, --set and (unless the tool writes nothing, as evaluate.py) --output_dir."""
    flags.DEFINE_multi_string("config", [], "YAML config file(s); later files win.")
    flags.DEFINE_multi_string(
        "set", [], "Override a config key: key=value (dotted keys allowed)."
    )
    if output_dir:
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
                         "it).", lower_bound=0)


def define_model_loading_flags() -> None:
    """--import and --allow_lambda (lce_convert, tools/evaluate.py): what loading a model may run."""
    flags.DEFINE_multi_string(
        "import", [], "Import this Python module before loading the model, for the custom "
        "layers it registers (e.g. --import larq_zoo; a module name found from the working "
        "folder, or a path to a .py file).")
    flags.DEFINE_boolean("allow_lambda", False, "Load models holding Lambda layers (Python "
                         "bytecode that runs on load): only for files you trust.")


def import_modules_from_flags() -> None:
    """Import the modules of --import (a module that cannot be imported exits 2)."""
    from ubnas_tf.model_io import import_modules

    import_modules(FLAGS["import"].value)


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


def require_output_dir(purpose: str) -> str:
    """FLAGS.output_dir, present and a folder that can be created or written (else exit 2)."""
    if not FLAGS.output_dir:
        fail(f"--output_dir is required: pass the folder for {purpose}")
    check_output(FLAGS.output_dir, folder=True, flag="--output_dir")
    return FLAGS.output_dir


def require_search_dir(kind: str) -> str:
    """FLAGS.search_dir (a tool's own flag), present, else exit 2 naming what to pass."""
    if not FLAGS.search_dir:
        fail(f"--search_dir is required: pass the --output_dir of {kind}")
    return FLAGS.search_dir


def check_output(path, *, folder: bool, flag: str) -> None:
    """Exit 2 with one line unless `path` can be written: see io_utils.check_writable."""
    from ubnas_tf.io_utils import check_writable

    try:
        check_writable(path, folder=folder, what=flag)
    except UserError as error:
        fail(str(error))


def quiet_python_logging() -> None:
    """absl/TensorFlow INFO lines (checkpoint saving, SavedModel export during conversion,
    collectives) only with --verbose; `run` calls it once the flags are parsed."""
    from absl import logging

    if not FLAGS.verbose:
        logging.set_verbosity(logging.WARNING)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print a one-line error and exit with `code` (default: the bad-input code; 1 for a run
    that failed on good input, e.g. a diverged loss)."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(code)


def _main_module_names() -> set:
    main = sys.modules.get("__main__")
    return {"__main__", sys.argv[0], getattr(main, "__file__", None) or "__main__"}


def own_flags() -> list:
    """The flags the running tool defines: its script's and this package's (not absl's or
    TensorFlow's), sorted by name."""
    mains = _main_module_names()
    found = {}
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        if module in mains or module.startswith("ubnas_tf"):
            found.update((flag.name, flag) for flag in module_flags)
    return [found[name] for name in sorted(found)]


def _describe(flag) -> str:
    names = f"-{flag.short_name}, " if flag.short_name else ""
    names += f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    text = " ".join(str(flag.help).split())  # absl appends its own spaced notes
    lines = textwrap.wrap(f"{names}: {text}", width=96, subsequent_indent="      ")
    details = []
    if flag.default_as_str:
        details.append(f"default: {flag.default_as_str}")
    if flag.parser.syntactic_help:
        details.append(flag.parser.syntactic_help)
    if details:
        lines += textwrap.wrap(f"({'; '.join(details)})", width=96, initial_indent="      ",
                               subsequent_indent="      ")
    return "\n".join("  " + line for line in lines)


def help_text(usage: str) -> str:
    """The tool's usage (its docstring) and its own flags with their help."""
    listing = "\n".join(_describe(flag) for flag in own_flags())
    return (f"{usage.strip()}\n\nflags:\n{listing}\n\n"
            "--helpfull lists every flag (absl's and TensorFlow's too).")


def _help_request(argv) -> str | None:
    """'help' or 'helpfull' when argv asks for help (before a `--`), else None."""
    for arg in argv[1:]:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            continue
        name, _, value = arg.lstrip("-").partition("=")
        if value.lower() in ("false", "0"):
            continue
        if name in _HELP_FLAGS:
            return "help"
        if name in _HELPFULL_FLAGS:
            return "helpfull"
    return None


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as error:
        fail(f"{error} (see --help)")


def run(main, usage: str | None = None) -> None:
    """`absl.app.run(main)` with --help exiting 0 after the tool's own flags, UserError mapped
    to exit 2 and bad flags to exit 2. `usage`: the help's heading (default: the docstring of
    the `__main__` module)."""
    request = _help_request(sys.argv)
    if request:
        if usage is None:
            usage = getattr(sys.modules.get("__main__"), "__doc__", None) or ""
        print(help_text(usage) if request == "help" else f"{usage.strip()}\n{FLAGS.get_help()}")
        sys.exit(0)

    def guarded(argv):
        quiet_python_logging()
        try:
            return main(argv)
        except UserError as error:
            fail(str(error))

    app.run(guarded, flags_parser=_parse_flags)
