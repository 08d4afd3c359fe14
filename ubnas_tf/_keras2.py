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
    keep_autograph_out_of_tf_keras()


def keep_autograph_out_of_tf_keras() -> None:
    """Stop AutoGraph from converting tf-keras's own code.

    AutoGraph converts the `call` of every subclassed layer, and everything that call calls,
    except modules on its do-not-convert list. That list names `keras` but not `tf_keras`, the
    package Keras 2 lives in under TF 2.16, so each nested layer call in our ops (a layer that
    holds layers) had Keras's `Layer.__call__` itself converted: building DARTS_V2 at 20 cells
    took 140 s instead of 15 s, and so did reloading it from `.h5`. Keras's layers never needed
    conversion (Keras 2 under the `keras` name was never converted). Idempotent.
    """
    from tensorflow.python.autograph.core import config as autograph_config

    rule = autograph_config.DoNotConvert("tf_keras")
    rules = tuple(autograph_config.CONVERSION_RULES)
    if not any(getattr(r, "_prefix", None) == "tf_keras" for r in rules):
        autograph_config.CONVERSION_RULES = (rule,) + rules

