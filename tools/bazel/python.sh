#!/bin/bash
# The Python interpreter Bazel runs targets with: the project's .venv (make install creates it).
# This script is reached through Bazel's runfiles symlinks; resolving them finds the checkout.
here="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
venv_python="${here}/../../.venv/bin/python"
if [[ ! -x "${venv_python}" ]]; then
  echo "error: ${venv_python} is missing; run 'make install' in the checkout first" >&2
  exit 2
fi
exec "${venv_python}" "$@"
