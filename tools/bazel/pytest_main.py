"""Runs one test file with pytest under `bazel test` (each tests/test_*.py is a py_test)."""
import os
import sys

import pytest

if __name__ == "__main__":
    # Bazel gives a writable TEST_TMPDIR and HOME-less sandboxes; keep caches out of the tree.
    os.environ.setdefault("MPLCONFIGDIR", os.environ.get("TEST_TMPDIR", "/tmp"))
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
