"""Magnitude pruning on TF-MOT: schedules, per-layer targets, m:n, policies, strip."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow import prune
from edgeflow._keras import keras
from edgeflow.errors import EdgeflowError
from edgeflow.prune import schedules
from edgeflow.quantize import qat


def _accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


def _wrapped_names(model) -> list[str]:
    return [layer.layer.name for layer in model.layers if hasattr(layer, "pruning_vars")]


def test_80_percent_keeps_digits_accuracy_within_one_point(trained_cnn, digits, recwarn):
    (x_tr, y_tr), (x_te, y_te) = digits
    before = [w.copy() for w in trained_cnn.get_weights()]
    keras.utils.set_random_seed(1)
    # The first convolution has 9 weights per filter on a 1-channel input: kept dense, as
    # TF-MOT's guide advises for the first layer.
    result = prune.magnitude(
        trained_cnn, 0.8, data=(x_tr, y_tr), epochs=5, per_layer={"conv1": 0}
    )
    base = _accuracy(trained_cnn, x_te, y_te)
    pruned = _accuracy(result.model, x_te, y_te)
    assert pruned >= base - 0.01, (base, pruned)
    for name in ("conv2", "fc1", "logits"):
        assert result.sparsity[name] == pytest.approx(0.8, abs=0.005)
    assert result.sparsity["conv1"] == 0.0
    assert result.overall_sparsity > 0.79
    assert result.skipped_layers == ["conv1: sparsity 0 requested"]
    assert not [w for w in recwarn if "left dense" in str(w.message)]  # asked for: no warning
    assert not result.wrapped
    assert not _wrapped_names(result.model)
    # sparsity() measures the returned model itself, and the input was not touched.
    assert prune.sparsity(result.model) == {**result.sparsity, "overall": result.overall_sparsity}
    assert all(np.array_equal(a, b) for a, b in zip(before, trained_cnn.get_weights(), strict=True))
    assert set(result.history) >= {"loss", "accuracy"}


def test_threshold_on_hand_computed_3x3_kernel():
    """A 3×3 kernel at 1/3 sparsity keeps the 6 largest |w|: round(9 · (1 - 1/3)) = 6."""
    kernel = np.array([[0.9, -0.1, 0.4], [-0.7, 0.05, 0.3], [0.2, -0.8, 0.6]], np.float32)
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(3, use_bias=False, name="d")(inputs)
    model = keras.Model(inputs, outputs)
    model.get_layer("d").set_weights([kernel])
    x = np.ones((4, 3), np.float32)
    result = prune.magnitude(
        model, 1 / 3, data=(x, x), epochs=1, batch_size=4, schedule="constant",
        optimizer=keras.optimizers.SGD(0.0), loss="mse", metrics=(),
    )
    expected = np.where(np.abs(kernel) >= 0.3, kernel, 0.0)  # zeroes 0.05, -0.1, 0.2
    np.testing.assert_array_equal(result.model.get_layer("d").get_weights()[0], expected)
    assert result.sparsity == {"d": pytest.approx(3 / 9)}


def test_m_by_n_two_of_four(trained_cnn, digits):
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

    (x_tr, y_tr), _ = digits
    with pytest.warns(UserWarning, match="conv1: m:n sparsity needs input channels divisible by 4"):
        result = prune.magnitude(
            trained_cnn, data=(x_tr[:256], y_tr[:256]), epochs=1, m_by_n="2:4"
        )
    for name in ("conv2", "fc1", "logits"):
        kernel = result.model.get_layer(name).kernel
        assert bool(pruning_utils.is_pruned_m_by_n(kernel, (2, 4))), name
        assert result.sparsity[name] == pytest.approx(0.5, abs=0.01)
    assert result.sparsity["conv1"] == 0.0


def test_depthwise_left_dense_with_warning_naming_it(digits):
    (x_tr, y_tr), _ = digits
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="out")(x)
    model = keras.Model(inputs, outputs)
    with pytest.warns(UserWarning, match="dw: TF-MOT cannot prune DepthwiseConv2D"):
        result = prune.magnitude(model, 0.5, data=(x_tr[:128], y_tr[:128]), epochs=1)
    assert result.sparsity["dw"] == 0.0
    assert result.sparsity["c"] == pytest.approx(0.5, abs=0.01)
    assert [s.split(":")[0] for s in result.skipped_layers] == ["dw"]


def test_without_data_user_trains_with_callbacks_then_strips(trained_cnn, digits):
    (x_tr, y_tr), _ = digits
    result = prune.magnitude(trained_cnn, 0.6, schedule="constant", frequency=2)
    assert result.wrapped
    assert set(_wrapped_names(result.model)) == {"conv1", "conv2", "fc1", "logits"}
    result.model.fit(x_tr[:128], y_tr[:128], batch_size=32, epochs=1, verbose=0,
                     callbacks=prune.callbacks())
    plain = prune.strip(result.model)
    assert not _wrapped_names(plain)
    assert prune.sparsity(plain)["fc1"] == pytest.approx(0.6, abs=0.005)
    # The same figures through pruning wrappers and through QAT wrappers, keyed by layer name.
    assert prune.sparsity(result.model) == prune.sparsity(plain)
    assert prune.sparsity(qat(plain).model) == prune.sparsity(plain)
    with pytest.raises(EdgeflowError, match="needs end_step"):
        prune.magnitude(trained_cnn, 0.6)  # polynomial without data or end_step


def test_xnnpack_policy_prunes_only_1x1_convolutions():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.ZeroPadding2D(1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="valid", name="stem")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Conv2D(16, 1, name="pw")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    with pytest.warns(UserWarning, match="head: excluded by the xnnpack policy"):
        result = prune.magnitude(model, 0.5, end_step=10, policy="xnnpack")
    assert _wrapped_names(result.model) == ["pw"]


def test_xnnpack_policy_says_which_condition_fails(trained_cnn):
    with pytest.raises(EdgeflowError, match="XNNPACK latency policy does not apply.*Conv2D 3x3"):
        prune.magnitude(trained_cnn, 0.5, end_step=10, policy="xnnpack")


def test_bad_arguments_give_clear_errors(trained_cnn):
    with pytest.raises(EdgeflowError, match="did you mean 'polynomial'"):
        prune.magnitude(trained_cnn, 0.5, end_step=10, schedule="polynomal")
    with pytest.raises(EdgeflowError, match=r"target_sparsity must be a fraction in \[0, 1\)"):
        prune.magnitude(trained_cnn, 1.0, end_step=10)
    with pytest.raises(EdgeflowError, match="matches no layer.*did you mean 'conv2'"):
        prune.magnitude(trained_cnn, 0.5, end_step=10, per_layer={"conv3": 0.5})
    with pytest.raises(EdgeflowError, match="need 0 < m < n"):
        prune.magnitude(trained_cnn, end_step=10, m_by_n=(4, 2))
    with pytest.raises(EdgeflowError, match="unknown pruning policy"):
        prune.magnitude(trained_cnn, 0.5, end_step=10, policy="edgetpu")


def test_schedule_registry_get():
    assert schedules.get("constant") is schedules.SCHEDULES["constant"]
    poly = schedules.get("polynomial")(0.8, begin_step=0, end_step=100, frequency=10)
    should_prune, value = poly(np.int64(100))
    assert bool(should_prune) and float(value) == pytest.approx(0.8)
    _, halfway = poly(np.int64(50))
    # s(t) = s_f + (s_i - s_f)(1 - t/T)^3 = 0.8 - 0.8 · 0.5³
    assert float(halfway) == pytest.approx(0.8 - 0.8 * 0.125)
    with pytest.raises(EdgeflowError, match="not int"):
        schedules.get(3)
