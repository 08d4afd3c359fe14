"""ApproxSign: forward against sign, gradient against Bi-Real's formula, serialization."""
import numpy as np
import pytest
import tensorflow as tf

import ubnas_tf  # noqa: F401
from conftest import assert_reloads_in_fresh_process
from ubnas_tf.errors import UserError
from ubnas_tf.quantizers import ApproxSign, approx_sign, resolve

# Many points, including 0, the window edges +-1 and just inside/outside them.
POINTS = np.concatenate(
    [np.linspace(-2.0, 2.0, 401), [0.0, -0.0, 1.0, -1.0, 0.999, -0.999, 1.001, -1.001, 1e-7]]
).astype(np.float32)


def expected_gradient(x, width=1.0):
    """Bi-Real Net eq. (4), scaled to a window of half-width w: (2/w)(1-|x|/w) on |x|<=w."""
    return np.where(np.abs(x) <= width, (2.0 / width) * (1.0 - np.abs(x) / width), 0.0)


def gradient(fn, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return y.numpy(), tape.gradient(y, x).numpy()


def test_forward_is_sign_with_sign_zero_positive():
    y, _ = gradient(approx_sign, POINTS)
    np.testing.assert_array_equal(y, np.where(POINTS >= 0, 1.0, -1.0))
    assert set(np.unique(y)) == {-1.0, 1.0}


@pytest.mark.parametrize("width", [1.0, 0.5, 2.0])
def test_gradient_matches_formula(width):
    _, grad = gradient(lambda x: approx_sign(x, width), POINTS)
    np.testing.assert_allclose(grad, expected_gradient(POINTS, width), atol=1e-6)


def test_gradient_values_at_landmarks():
    _, grad = gradient(approx_sign, np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.5], np.float32))
    np.testing.assert_allclose(grad, [2.0, 1.0, 1.0, 0.0, 0.0, 0.0], atol=1e-6)


def test_gradient_window_integrates_to_two():
    """The window replaces sign's jump of height 2, for every width."""
    for width in (0.5, 1.0, 3.0):
        x = np.linspace(-4, 4, 80001, dtype=np.float32)
        _, grad = gradient(lambda t: approx_sign(t, width), x)
        assert np.trapz(grad, x) == pytest.approx(2.0, abs=1e-3)


def test_upstream_gradient_is_multiplied():
    x = tf.constant([0.25, -0.75, 3.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(approx_sign(x) * tf.constant([3.0, -2.0, 5.0]))
    np.testing.assert_allclose(tape.gradient(loss, x), [3.0 * 1.5, -2.0 * 0.5, 0.0], atol=1e-6)


def test_layer_in_eager_and_tf_function():
    quantizer = ApproxSign(width=0.5)
    compiled = tf.function(lambda x: gradient(quantizer, x), autograph=False)
    eager_y, eager_grad = gradient(quantizer, POINTS)

    @tf.function
    def graph_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = quantizer(x)
        return y, tape.gradient(y, x)

    graph_y, graph_grad = graph_gradient(tf.constant(POINTS))
    np.testing.assert_array_equal(eager_y, graph_y)
    np.testing.assert_allclose(eager_grad, graph_grad, atol=1e-6)
    del compiled


def test_under_mirrored_strategy(mirrored_strategy):
    with mirrored_strategy.scope():
        variable = tf.Variable(POINTS)

    @tf.function
    def replica_step():
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(ApproxSign()(variable))
        return tape.gradient(y, variable)

    per_replica = mirrored_strategy.run(replica_step)
    for grad in mirrored_strategy.experimental_local_results(per_replica):
        np.testing.assert_allclose(tf.convert_to_tensor(grad), expected_gradient(POINTS), atol=1e-6)


def test_registered_name_does_not_clash_with_larq():
    import larq as lq

    objects = tf.keras.utils.get_custom_objects()
    assert objects["ubnas_tf>ApproxSign"] is ApproxSign
    assert objects["ubnas_tf>UBNASApproxSign"] is ApproxSign
    assert ApproxSign.__name__ != lq.quantizers.ApproxSign.__name__  # see quantizers.py
    assert objects["ubnas_tf>approx_sign"] is ApproxSign
    assert objects["approx_sign"] is lq.quantizers.ApproxSign  # larq's own, untouched
    assert isinstance(resolve("ubnas_tf>approx_sign"), ApproxSign)


def test_unknown_quantizer_name_is_a_user_error():
    with pytest.raises(UserError, match="unknown quantizer 'aprox_sign'.*ubnas_tf>approx_sign"):
        resolve("aprox_sign")


def test_h5_round_trip_reloads_with_only_import_ubnas_tf(tmp_path, tool):
    import larq as lq

    inputs = tf.keras.Input((6,))
    outputs = lq.layers.QuantDense(
        3, input_quantizer=ApproxSign(width=0.75), kernel_quantizer="ste_sign"
    )(inputs)
    model = tf.keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    path = tmp_path / "model.h5"
    model.save(path)
    checks = ("q = m.layers[1].input_quantizer\n"
              "assert type(q) is ubnas_tf.ApproxSign, type(q)\n"
              "assert q.width == 0.75")
    assert_reloads_in_fresh_process(tool, path, x, model.predict(x, verbose=0), checks, atol=1e-6)
