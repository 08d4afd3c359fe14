#!/bin/bash
echo "error: coverage tools are not available offline (docs/bazel.md); use 'bazel test'" >&2
exit 1
