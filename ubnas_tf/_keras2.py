"""Select the Keras 2 API (tf-keras) before TensorFlow decides which Keras `tf.keras` means.

TensorFlow 2.16 resolves `tf.keras` lazily, on first access, to Keras 3 unless
`TF_USE_LEGACY_KERAS=1`. Larq 0.14 and Larq Compute Engine 0.16 need Keras 2, so the variable
must be set before anything touches `tf.keras`.
"""
import os
import sys

_HOW_TO_FIX = (
    "ubnas_tf needs the Keras 2 API (tf-keras) but tf.keras was already loaded as Keras 3: "
    "import ubnas_tf before tensorflow touches tf.keras, or set TF_USE_LEGACY_KERAS=1 in the "
    "environment."
)


def select_keras2() -> None:
    """Set TF_USE_LEGACY_KERAS=1 and check that tf.keras really is tf-keras."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    keras3_loaded_first = "keras.src" in sys.modules and "tf_keras" not in sys.modules
    import tensorflow as tf  # noqa: E402  (after the variable is set, on purpose)

    layer_module = tf.keras.layers.Layer.__module__
    if keras3_loaded_first or not layer_module.startswith("tf_keras"):
        raise ImportError(_HOW_TO_FIX)
