"""One measurement in a fresh Python process: its own peak RSS and time to first step.

The benchmarks run themselves again with private flags; the child prints one `RESULT {json}`
line (`emit`), which the parent reads back (`run_child`).
"""
import json
import os
import subprocess
import sys

PREFIX = "RESULT "


def emit(result: dict) -> None:
    print(PREFIX + json.dumps(result), flush=True)


def run_child(command: list, what: str) -> dict:
    """Run `command` (TensorFlow's info lines off); its result, or exit naming `what`."""
    output = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = [line for line in output.stdout.splitlines() if line.startswith(PREFIX)]
    if output.returncode or not lines:
        sys.stderr.write(output.stderr[-3000:])
        raise SystemExit(f"{what} failed (exit {output.returncode})")
    return json.loads(lines[-1][len(PREFIX):])
