"""QAT on real architectures and on the layers TF-MOT refuses, through full int8 conversion."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow._keras import keras, tfmot
from edgeflow.convert import convert
from edgeflow.quantize import custom_objects, qat, verify_int8
from edgeflow.runtime.litert import predict

SIZE = 64


def _random_images(n=16, high=1.0):
    rng = np.random.default_rng(0)
    return rng.uniform(0, high, (n, SIZE, SIZE, 3)).astype(np.float32), np.arange(n) % 2


def _qat_int8(model, x, y):
    result = qat(model, data=(x, y), epochs=1, batch_size=8)
    tflite = convert(result.model, "int8")
    return result, tflite


def _runs_on_litert(tflite, x):
    """LiteRT runs the int8 model and gives a probability per class for every sample."""
    out = predict(tflite, x)
    assert out.shape == (len(x), 2) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=0.05)


@pytest.mark.slow
def test_mobilenet_v2_qat_converts_to_full_int8():
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=0.35,
                                           weights=None, classes=2)
    x, y = _random_images()
    result, tflite = _qat_int8(model, x, y)
    assert result.float_layers == []
    check = verify_int8(tflite)
    assert check.ok, check.summary()
    assert np.isfinite(result.history["loss"][0])
    _runs_on_litert(tflite, x)


@pytest.mark.slow
def test_mobilenet_v3_small_qat_converts_to_full_int8():
    """Hard-swish as TF ops, squeeze-excite Multiply, Rescaling: TF-MOT alone fails here."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(input_shape=(SIZE, SIZE, 3), weights=None,
                                                classes=2, minimalistic=False)
    with pytest.raises(AttributeError):
        tfmot.quantization.keras.quantize_model(model)
    x, y = _random_images(high=255.0)
    result, tflite = _qat_int8(model, x, y)
    assert result.float_layers == []
    assert any("TensorOp" in n for n in result.notes)
    assert any("Rescaling" in n for n in result.notes)
    check = verify_int8(tflite)
    assert check.ok, check.summary()
    assert np.isfinite(result.history["loss"][0])
    _runs_on_litert(tflite, x)


def _fit_small(model, x, y):
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    return model


@pytest.fixture(scope="module")
def odd_layers_model(digits):
    """Nested model, Rescaling, BN after Dense, Multiply, ReLU6 as a TF op, Reshape, Conv1D."""
    (x_tr, y_tr), _ = digits
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="inner_conv")(inner_in)
    inner = keras.Model(inner_in, h, name="backbone")

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="rescale")(inputs)
    x = keras.layers.ZeroPadding2D(1, name="pad")(x)
    x = keras.layers.Cropping2D(1, name="crop")(x)
    x = inner(x)
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
    gate = keras.layers.Activation("sigmoid", name="gate")(gate)
    x = keras.layers.Multiply(name="excite")([x, gate])
    x = keras.layers.Reshape((8, 64), name="to_seq")(x)
    x = keras.layers.Conv1D(8, 3, padding="same", activation="relu", name="conv1d")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(16, name="fc")(x)
    x = keras.layers.BatchNormalization(name="bn_after_dense")(x)
    x = keras.activations.relu(x, max_value=6.0)  # a TFOpLambda, not a layer
    outputs = keras.layers.Dense(10, activation="softmax", name="out")(x)
    model = keras.Model(inputs, outputs, name="odd")
    return _fit_small(model, x_tr, y_tr)


def test_unsupported_layers_are_quantized_and_convert_to_full_int8(odd_layers_model, digits):
    (x_tr, y_tr), (x_te, y_te) = digits
    float_acc = np.mean(odd_layers_model.predict(x_te, verbose=0).argmax(1) == y_te)
    result = qat(odd_layers_model, data=(x_tr, y_tr), epochs=1)
    assert result.float_layers == []
    notes = " | ".join(result.notes)
    assert "inlined nested model 'backbone'" in notes
    assert "bn_after_dense" in notes and "rescale" in notes
    assert "inner_conv" in [layer.name.removeprefix("quant_") for layer in result.model.layers]

    tflite = convert(result.model, "int8")
    check = verify_int8(tflite)
    assert check.ok, check.summary()
    acc = np.mean(predict(tflite, x_te).argmax(1) == y_te)
    assert acc >= float_acc - 0.1, (float_acc, acc)


def test_qat_model_saves_and_loads_with_custom_objects(odd_layers_model, tmp_path, digits):
    _, (x_te, _) = digits
    model = qat(odd_layers_model).model
    path = tmp_path / "qat.h5"
    model.save(path)
    with tfmot.quantization.keras.quantize_scope(custom_objects()):
        loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(loaded.predict(x_te[:8], verbose=0),
                               model.predict(x_te[:8], verbose=0), atol=1e-5)


class _Custom(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


def test_layer_without_config_stays_float_and_is_named(digits):
    (x_tr, y_tr), _ = digits
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="c")(inputs)
    x = _Custom(name="mystery")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    with tfmot.quantization.keras.quantize_scope({"_Custom": _Custom}):
        result = qat(model)
    assert len(result.float_layers) == 1
    assert result.float_layers[0].startswith("mystery (_Custom)")
    tflite = convert(result.model, "int8")
    check = verify_int8(tflite)
    assert not check.ok and check.float_ops, check.summary()


def test_activations_quantized_or_named_as_float(digits):
    (x_tr, y_tr), _ = digits

    def model_with(activation):
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.Conv2D(4, 3, name="c")(inputs)
        x = keras.layers.Activation(activation, name="act")(x)
        x = keras.layers.Flatten()(x)
        return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))

    gelu = qat(model_with("gelu"), data=(x_tr[:64], y_tr[:64]), epochs=1)
    assert gelu.float_layers == [] and verify_int8(convert(gelu.model, "int8")).ok
    softplus = qat(model_with("softplus"), data=(x_tr[:64], y_tr[:64]), epochs=1)
    assert softplus.float_layers[0].startswith("act (TensorOp): activation softplus")
    check = verify_int8(convert(softplus.model, "int8"))
    assert any("act/Softplus" in op for op in check.float_ops), check.summary()


def test_batchnorm_after_conv2d_transpose_is_quantized_not_left_float():
    """Conv2DTranspose subclasses Conv2D, but TF-MOT does not fold a BN after it: edgeflow
    splits that BN into a quantized multiply and add, so no float MUL/ADD is left."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 3))
    h = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", name="up")(inputs)
    h = keras.layers.BatchNormalization(name="up_bn")(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(h))
    x = np.random.default_rng(0).normal(0, 1, (32, 4, 4, 3)).astype(np.float32)
    result = qat(model, data=(x, np.arange(32) % 2), epochs=1, batch_size=8)
    assert "up_bn: BatchNormalization not after Conv2D/DepthwiseConv2D → frozen multiply, add" in result.notes
    check = verify_int8(convert(result.model, "int8"))
    assert check.ok, check.summary()


def test_multi_head_attention_quantized_from_the_calibration_data_after_qat():
    """TF-MOT has no QAT config for MultiHeadAttention or LayerNormalization (TF-MOT #718,
    #942); quantize_to_tflite calibrates them with the training data at hand: full int8."""
    from edgeflow.quantize import quantize_to_tflite

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 96)
    x = rng.normal(0, 1, (96, 8, 6)).astype(np.float32)
    x[y == 1, :, :2] += 1.5
    inputs = keras.Input((8, 6))
    h = keras.layers.Dense(8, name="embed")(inputs)
    a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(h, h)
    h = keras.layers.LayerNormalization(name="ln")(keras.layers.Add(name="res")([h, a]))
    h = keras.layers.GlobalAveragePooling1D(name="gap")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    outcome = quantize_to_tflite(model, "qat", (x, y), epochs=1, max_drop=100)
    assert outcome.int8_check.ok, outcome.int8_check.summary()
    assert outcome.float_layers == [] and outcome.exit_code == 0
    assert "layers without a QAT config quantized from the calibration data" in outcome.notes
