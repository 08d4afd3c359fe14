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


def randomize_batch_norm(model, seed: int = 0) -> None:
    """Move every BatchNormalization's moving statistics away from their initial 0 and 1, as
    training would (a converter that mishandles them is then caught)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.submodules:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, channels))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels))


def assert_reloads_in_fresh_process(tool, model_path, inputs, expected, checks="", atol=1e-5):
    """Load `model_path` in a new interpreter with only `import ubnas_tf` and compare outputs.

    `checks`: extra Python lines run with the model bound to `m`.
    """
    folder = pathlib.Path(model_path).parent
    import numpy as np

    np.save(folder / "reload_x.npy", inputs)
    np.save(folder / "reload_y.npy", expected)
    script = (
        "import numpy as np, ubnas_tf, tensorflow as tf\n"
        f"m = tf.keras.models.load_model(r'{model_path}', compile=False)\n"
        f"{checks}\n"
        f"y = m.predict(np.load(r'{folder / 'reload_x.npy'}'), verbose=0)\n"
        f"np.testing.assert_allclose(y, np.load(r'{folder / 'reload_y.npy'}'), atol={atol})\n"
        "print('reloaded')\n"
    )
    result = tool("-c", script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reloaded" in result.stdout
