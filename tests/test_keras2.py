"""Importing ubnas_tf selects tf-keras, and refuses a TensorFlow already bound to Keras 3."""


def test_import_selects_keras2(tool):
    result = tool("-c", "import os, ubnas_tf, tensorflow as tf; "
                        "print(os.environ['TF_USE_LEGACY_KERAS'], tf.keras.layers.Layer.__module__)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1", "tf_keras.src.engine.base_layer"]


def test_import_after_keras3_gives_clear_error(tool):
    script = ("import os; os.environ.pop('TF_USE_LEGACY_KERAS', None)\n"
              "import tensorflow as tf; tf.keras.layers.Layer\n"
              "import ubnas_tf\n")
    result = tool("-c", script, env={"TF_USE_LEGACY_KERAS": ""})
    assert result.returncode != 0
    assert "ImportError: ubnas_tf needs the Keras 2 API" in result.stderr
    assert "import ubnas_tf before tensorflow" in result.stderr
