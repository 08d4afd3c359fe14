"""ubnas_tf: binary neural networks designed by differentiable architecture search (UBNAS).

Importing the package selects the Keras 2 API (TF_USE_LEGACY_KERAS=1) before TensorFlow
resolves `tf.keras`, and registers every custom object a saved model needs, so that a `.h5`
written by the tools reloads with nothing but `import ubnas_tf`.
"""
from ubnas_tf._startup import quiet_tensorflow_in_tools

quiet_tensorflow_in_tools()  # before TensorFlow loads: it reads its log level once

from ubnas_tf._keras2 import select_keras2  # noqa: E402

select_keras2()

from ubnas_tf.errors import UserError  # noqa: E402
from ubnas_tf.quantizers import ApproxSign, approx_sign  # noqa: E402
# Registers every layer a saved model may hold: the op library, the network's own layers
# (drop-path) and the baselines' (the float conv module).
from ubnas_tf import search_space, network  # noqa: E402,F401
from ubnas_tf.network import baselines  # noqa: E402,F401
from ubnas_tf.search_space.genotype import Genotype  # noqa: E402

__version__ = "0.1.0"
__all__ = ["ApproxSign", "approx_sign", "Genotype", "UserError", "search_space", "__version__"]
