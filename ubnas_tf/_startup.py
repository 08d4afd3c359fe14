"""Keep TensorFlow's C++ start-up chatter out of the tools' output.

On import TensorFlow prints lines that tell a user of our tools nothing (oneDNN's notice, the
CUDA stub and cuFFT/cuDNN/cuBLAS factory lines, the CPU-feature guard, TF-TRT's warning); some
are ERROR-level, so only `TF_CPP_MIN_LOG_LEVEL=3` hides them. TensorFlow reads the level once,
when its library loads, i.e. during `import ubnas_tf` in every tool and in the `lce_convert`
script, so `ubnas_tf/__init__.py` calls `quiet_tensorflow_in_tools` before anything imports
TensorFlow. It acts only in a tool's process: a library user's own program keeps TensorFlow's
logging as TensorFlow sets it. A user who wants the lines back passes `--verbose` or sets
`TF_CPP_MIN_LOG_LEVEL` themselves (theirs always wins).
"""
import os
import pathlib
import sys

_ROOT = pathlib.Path(__file__).resolve().parent.parent
# Programs of this checkout that are tools: tools/*.py, experiments/*.py, and the console
# script `lce_convert` (setup.py), wherever it is installed.
_TOOL_FOLDERS = (_ROOT / "tools", _ROOT / "experiments")
_CONSOLE_SCRIPTS = ("lce_convert",)
QUIET_LEVEL = "3"  # 3: FATAL only (2 still lets the ERROR-level factory lines through)


def _is_tool(program: str) -> bool:
    if not program:
        return False
    path = pathlib.Path(program)
    if path.name in _CONSOLE_SCRIPTS:
        return True
    try:
        return path.suffix == ".py" and path.resolve().parent in _TOOL_FOLDERS
    except OSError:
        return False


def verbose_requested(argv) -> bool:
    """`--verbose` (or `--verbose=true`) among the arguments before `--`."""
    for arg in argv[1:]:
        if arg == "--":
            return False
        name, _, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name == "verbose":
            return value.lower() not in ("false", "0", "no")
    return False


def quiet_tensorflow_in_tools(argv=None, environ=None) -> bool:
    """Set TF_CPP_MIN_LOG_LEVEL=3 when this process is a tool, the user did not set the
    level and did not pass --verbose. Returns whether it did."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if not argv or "TF_CPP_MIN_LOG_LEVEL" in environ or not _is_tool(argv[0]):
        return False
    if verbose_requested(argv):
        return False
    environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_LEVEL
    return True
