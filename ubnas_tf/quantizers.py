"""ApproxSign: sign forward, Bi-Real Net's piecewise-polynomial gradient backward.

Liu et al., "Bi-Real Net", ECCV 2018, eq. (4); used for binary search and training by EBNAS and
UBNAS (Tan et al., TCSVT 2024). With a gradient window of half-width `w`:

    forward:   q(x) = sign(x), with sign(0) = +1
    backward:  dq/dx = (2 / w) * (1 - |x| / w)   if |x| <= w,   0 otherwise

For w = 1 this is 2 - 2|x|. The window integrates to 2, the height of the jump of sign, for
every w. The forward is written with `larq.math.sign` because Larq Compute Engine recognises a
binarizer only in that form (a plain `tf.sign` would not fuse into LceQuantize/LceBconv2d).
"""
import larq as lq
import tensorflow as tf

__all__ = ["ApproxSign", "UBNASApproxSign", "approx_sign", "resolve", "SERIALIZATION_PACKAGE"]

SERIALIZATION_PACKAGE = "ubnas_tf"


def approx_sign(x: tf.Tensor, width: float = 1.0) -> tf.Tensor:
    """Binarize `x` to +-1 with the ApproxSign gradient of half-width `width`."""
    if width <= 0:
        raise ValueError(f"ApproxSign width must be > 0, got {width}")

    @tf.custom_gradient
    def _approx_sign(inputs):
        def grad(upstream):
            distance = tf.math.abs(inputs) / width
            slope = tf.maximum(1.0 - distance, 0.0) * (2.0 / width)
            return upstream * tf.cast(slope, upstream.dtype)

        return lq.math.sign(inputs), grad

    return _approx_sign(x)


@tf.keras.utils.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class UBNASApproxSign(lq.quantizers.Quantizer):
    r"""Serializable ApproxSign quantizer (alias `"ubnas_tf>approx_sign"`).

    \\[ q(x) = \operatorname{sign}(x),\quad
        \frac{\partial q}{\partial x} = \tfrac{2}{w}\max\left(0, 1 - \tfrac{|x|}{w}\right) \\]

    Registered under our own name space: larq already owns `"approx_sign"`, and a model
    saved with ours must reload with only `import ubnas_tf`.

    # Arguments
        width: half-width `w` of the gradient window (1.0 gives Bi-Real's 2 - 2|x|).
    """

    precision = 1

    def __init__(self, width: float = 1.0, **kwargs):
        if width <= 0:
            raise ValueError(f"ApproxSign width must be > 0, got {width}")
        self.width = float(width)
        super().__init__(**kwargs)

    def call(self, inputs):
        return approx_sign(inputs, self.width)

    def get_config(self):
        return {**super().get_config(), "width": self.width}


# The public name. The class itself is named differently from larq's `ApproxSign` because
# `.h5` loading resolves a quantizer by its bare class name (the legacy path ignores the
# package prefix): with the same name a reloaded model would silently get larq's quantizer.
# The bare class name is registered too, for that legacy path.
ApproxSign = UBNASApproxSign
for _alias in (f"{SERIALIZATION_PACKAGE}>ApproxSign", f"{SERIALIZATION_PACKAGE}>approx_sign",
               UBNASApproxSign.__name__):
    tf.keras.utils.get_custom_objects()[_alias] = ApproxSign


def resolve(identifier):
    """A quantizer from a name, config dict, callable or None; unknown names name the fix."""
    from ubnas_tf.errors import UserError

    try:
        return lq.quantizers.get(identifier)
    except (ValueError, TypeError) as error:
        known = sorted(
            name
            for name, obj in tf.keras.utils.get_custom_objects().items()
            if isinstance(obj, type) and issubclass(obj, lq.quantizers.Quantizer)
        )
        raise UserError(
            f"unknown quantizer {identifier!r}: use one of {', '.join(known)} ({error})"
        ) from None
