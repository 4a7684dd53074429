"""LiteRT: predictions agree with Keras, evaluation side by side, benchmark, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow._keras import keras
from edgeflow.convert import convert
from edgeflow.errors import EdgeflowError
from edgeflow.runtime import litert
from edgeflow.runtime.metrics import evaluate_keras


def test_predict_agrees_with_keras_on_digits(trained_cnn, int8_cnn, digits):
    _, (x_te, _) = digits
    tflite = litert.predict(int8_cnn, x_te)
    ref = trained_cnn.predict(x_te, verbose=0)
    assert tflite.shape == ref.shape and tflite.dtype == np.float32
    assert np.mean(tflite.argmax(1) == ref.argmax(1)) >= 0.97
    # int8 softmax output: steps of 1/256; calibration error stays within a few steps.
    assert np.abs(tflite - ref).mean() < 0.01


def test_batches_and_single_samples_give_the_same_outputs(int8_cnn, digits):
    _, (x_te, _) = digits
    x = x_te[:37]
    batched = litert.predict(int8_cnn, x, batch_size=16)  # last chunk padded
    one_by_one = np.concatenate([litert.predict(int8_cnn, row) for row in x])
    np.testing.assert_array_equal(batched, one_by_one)


def test_evaluate_shows_keras_and_tflite_side_by_side(trained_cnn, int8_cnn, digits):
    _, (x_te, y_te) = digits
    keras_result = evaluate_keras(trained_cnn, x_te, y_te)
    tflite_result = litert.evaluate(int8_cnn, x_te, y_te)
    assert keras_result.keys() == tflite_result.keys() == {"task", "accuracy", "n"}
    assert tflite_result["n"] == len(x_te)
    assert keras_result["accuracy"] > 0.85
    assert abs(keras_result["accuracy"] - tflite_result["accuracy"]) <= 0.02
    one_hot = litert.evaluate(int8_cnn, x_te, np.eye(10)[y_te])
    assert one_hot["accuracy"] == tflite_result["accuracy"]


def test_float_io_model_and_regression(digits):
    (x_tr, _), (x_te, _) = digits
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    y_te = x_te.reshape(len(x_te), -1)[:, :2] * 3.0
    tflite = convert(model, "int8", x_tr[:100], input_type="float32", output_type="float32")
    result = litert.evaluate(tflite, x_te, y_te)
    ref = evaluate_keras(model, x_te, y_te)
    assert result["task"] == ref["task"] == "regression"
    assert result["mae"] == pytest.approx(ref["mae"], rel=0.05)
    assert result["mse"] == pytest.approx(ref["mse"], rel=0.1)


def test_benchmark_returns_sane_figures(int8_cnn):
    lat = litert.benchmark(int8_cnn, runs=20, warmup=2)
    assert lat.runs == 20 and lat.num_threads == 1
    assert 0 < lat.min_ms <= lat.median_ms <= lat.p90_ms
    assert lat.min_ms <= lat.mean_ms


@pytest.mark.parametrize("bad", [b"", b"\x00" * 64, "missing.tflite"])
def test_bad_model_is_an_edgeflow_error(bad):
    with pytest.raises(EdgeflowError):
        litert.predict(bad, np.zeros((1, 8, 8, 1), np.float32))


def test_truncated_model_and_wrong_shape(int8_cnn):
    with pytest.raises(EdgeflowError, match="truncated or corrupt"):
        litert.predict(int8_cnn[: len(int8_cnn) // 2], np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(EdgeflowError, match=r"is \(N, 8, 8, 1\)"):
        litert.predict(int8_cnn, np.zeros((3, 9, 9, 1), np.float32))
