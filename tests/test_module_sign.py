"""`ModuleStructure.sign`: ApproxSign or larq's clipped straight-through sign, both fusable."""
import numpy as np
import pytest
import tensorflow as tf

from test_convert_ops import check_against_keras, op_model
from ubnas_tf.errors import UserError
from ubnas_tf.export import convert_model, op_counts
from ubnas_tf.quantizers import ApproxSign
from ubnas_tf.search_space import PRESETS, BinaryConvModule, ModuleStructure

POINTS = np.concatenate([np.linspace(-2.0, 2.0, 401),
                         [0.0, 0.5, 0.75, -0.75, 0.7501, -0.7501, 1.0, -1.0]]).astype(np.float32)


def _quantizer(structure):
    module = BinaryConvModule(4, 3, structure=structure)
    module(tf.zeros([1, 5, 5, 4]))
    return module.conv.input_quantizer


@pytest.mark.parametrize("width", [1.0, 0.75])
def test_ste_forward_is_sign_and_gradient_is_the_clipped_identity(width):
    """STE (Hubara et al. 2016, as larq's ste_sign): q(x) = sign(x) with sign(0) = +1,
    dq/dx = 1 where |x| <= w and 0 elsewhere; w is `sign_width`."""
    quantizer = _quantizer({"preset": "ebnas_retrain", "sign": "ste", "sign_width": width})
    x = tf.constant(POINTS)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = quantizer(x)
    grad = tape.gradient(y, x).numpy()
    np.testing.assert_array_equal(y.numpy(), np.where(POINTS >= 0, 1.0, -1.0))
    np.testing.assert_array_equal(grad, (np.abs(POINTS) <= width).astype(np.float32))


def test_default_sign_is_approx_sign_and_ste_presets_differ_only_in_sign():
    assert isinstance(_quantizer("ebnas_retrain"), ApproxSign)
    for name in ("ebnas_search", "ebnas_retrain"):
        ste = PRESETS[f"{name}_ste"]
        assert ste.sign == "ste" and PRESETS[name].sign == "approx"
        assert ModuleStructure.from_config({**ste.to_config(), "sign": "approx"}) == PRESETS[name]


def test_unknown_sign_is_a_user_error():
    with pytest.raises(UserError, match="module.sign='tanh'.*approx"):
        ModuleStructure(sign="tanh")


def test_ste_module_fuses_into_one_bconv_and_matches_keras():
    model = op_model("bin_conv_3x3", "ebnas_retrain_ste", 1)
    tflite_bytes = convert_model(model)
    counts = op_counts(tflite_bytes)
    assert counts.get("LceBconv2d") == 1 and counts.get("LceQuantize") == 1, counts
    assert "CONV_2D" not in counts, counts
    check_against_keras(model, tflite_bytes)
