"""Loading models safely, decided by content; Keras 3 objects are translated."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow._keras import keras
from edgeflow.convert import convert
from edgeflow.errors import EdgeflowError
from edgeflow.models import build, copy_model, default_loss, digits_cnn, load_model, save_model


def _lambda_model():
    inputs = keras.Input((4,))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layers_are_refused_unless_unsafe(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    _lambda_model().save(path)
    with pytest.raises(EdgeflowError, match=r"Lambda layer\(s\) double .* --unsafe"):
        load_model(path)
    model = load_model(path, safe_mode=False)
    assert model.get_layer("double") is not None


def test_saved_model_directory_converts(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.save(tmp_path / "sm", save_format="tf")
    tflite = convert(tmp_path / "sm", "float32")
    assert tflite[4:8] == b"TFL3"


def test_keras3_model_object_is_translated():
    import keras as keras3

    from edgeflow.keras3 import translation_of

    model3 = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    model = load_model(model3)
    assert isinstance(model, keras.Model) and translation_of(model).max_abs_diff <= 1e-5
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(model(x).numpy(), np.asarray(model3(x)), atol=1e-6)


@pytest.mark.parametrize(
    ("path", "message"),
    [("missing.keras", "does not exist"), ("not_a_model.keras", "is not a Keras model")],
)
def test_unreadable_files(tmp_path, path, message):
    (tmp_path / "not_a_model.keras").write_bytes(b"garbage")
    with pytest.raises(EdgeflowError, match=message):
        load_model(tmp_path / path)


def test_build_applications_offline_only():
    model = build("MobileNetV2", input_shape=(32, 32, 3), alpha=0.35, classes=3)
    assert model.output_shape == (None, 3)
    with pytest.raises(EdgeflowError, match="only weights=None"):
        build("MobileNetV2", weights="imagenet")
    with pytest.raises(EdgeflowError, match="did you mean 'MobileNetV2'"):
        build("MobileNetV22")


def test_digits_cnn_builds():
    model = build("digits_cnn")
    assert model.predict(np.zeros((1, 8, 8, 1)), verbose=0).shape == (1, 10)


def _regressor():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(1, name="out")(inputs))


def test_copy_model_has_equal_but_separate_weights():
    model = _regressor()
    copy = copy_model(model)
    assert copy is not model
    np.testing.assert_array_equal(copy.get_weights()[0], model.get_weights()[0])
    copy.layers[-1].kernel.assign(copy.layers[-1].kernel + 1.0)
    assert not np.array_equal(copy.get_weights()[0], model.get_weights()[0])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_save_model_is_atomic_and_loads_back(tmp_path, suffix):
    model = _regressor()
    path = save_model(model, tmp_path / "sub" / f"m{suffix}")
    assert path == tmp_path / "sub" / f"m{suffix}"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(load_model(path)(x).numpy(), model(x).numpy(), rtol=1e-6)


def test_save_model_leaves_nothing_behind_on_failure(tmp_path):
    class Unsavable(keras.layers.Layer):
        def get_config(self):
            raise NotImplementedError("no config")

    inputs = keras.Input((3,))
    model = keras.Model(inputs, Unsavable()(inputs))
    (tmp_path / "m.keras").write_bytes(b"old")
    with pytest.raises(Exception):  # noqa: B017 (Keras's own error type)
        save_model(model, tmp_path / "m.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
    assert (tmp_path / "m.keras").read_bytes() == b"old"
    with pytest.raises(EdgeflowError, match="not 'm.txt'"):
        save_model(_regressor(), tmp_path / "m.txt")


def test_default_loss_rules():
    classifier, regressor = digits_cnn(), _regressor()
    assert default_loss(regressor, "huber") == "huber"
    regressor.compile(loss="mae")
    assert default_loss(regressor, y=np.zeros(4, np.int64)) == "mae"
    assert default_loss(_regressor(), y=np.array([0, 2, 1])) == "sparse_categorical_crossentropy"
    assert default_loss(_regressor(), y=np.eye(3, dtype=np.float32)) == "categorical_crossentropy"
    assert default_loss(_regressor(), y=np.array([[0.5], [1.5]], np.float32)) == "mse"
    assert default_loss(classifier) == "sparse_categorical_crossentropy"
    with pytest.raises(EdgeflowError, match="needs a loss"):
        default_loss(_regressor())
