"""Shared fixtures. Importing ubnas_tf first selects the Keras 2 API for every test."""
import os
import subprocess
import sys
import pathlib

import ubnas_tf  # noqa: F401  (before tensorflow is used anywhere)
import pytest
import tensorflow as tf

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Two virtual CPUs so MirroredStrategy can be tested on a laptop (set before TF initialises).
try:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration()] * 2,
    )
except RuntimeError:  # already initialised by an earlier import in this process
    pass


@pytest.fixture
def mirrored_strategy():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        pytest.skip("TensorFlow initialised before two virtual CPUs could be configured")
    return tf.distribute.MirroredStrategy(devices[:2])


def run_tool(*args, timeout=600, env=None, **kwargs):
    """Run a tool of tools/ (or any python -c) in a fresh interpreter; returns CompletedProcess."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        **kwargs,
    )


@pytest.fixture
def tool():
    return run_tool
