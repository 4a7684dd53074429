"""Static shapes for devices: batch 1, free dimensions from data or input_shape, RNNs that
convert to int8 and agree on Keras, LiteRT and TFLM; the converter contained in a child."""

import re

import numpy as np
import pytest

from edgeflow import keras
from edgeflow.convert import convert
from edgeflow.errors import EdgeflowError, RuntimeCrash
from edgeflow.quantize import verify_int8
from edgeflow.runtime import litert, tflm
from edgeflow.tflite import parse

L = keras.layers
RNG = np.random.default_rng(0)
X = RNG.normal(size=(48, 10, 4)).astype("float32")


def _rnn(kind: str):
    keras.utils.set_random_seed(1)
    inp = keras.Input((10, 4))
    if kind == "lstm":
        h = L.LSTM(8)(inp)
    elif kind == "gru":
        h = L.GRU(8)(inp)
    elif kind == "stacked":
        h = L.LSTM(8)(L.LSTM(8, return_sequences=True)(inp))
    else:  # bidirectional GRU returning sequences
        h = L.Flatten()(L.Bidirectional(L.GRU(6, return_sequences=True))(inp))
    return keras.Model(inp, L.Dense(3)(h))


def _output_step(tflite: bytes) -> float:
    return parse(tflite).outputs[0].scale[0]


@pytest.mark.parametrize("kind", ["lstm", "gru", "stacked", "bigru"])
def test_rnn_converts_int8_and_agrees_on_litert_and_tflm(kind):
    model = _rnn(kind)
    notes = []
    tflite = convert(model, "int8", X[:32], notes=notes)
    # Full int8 from one conversion: unrolled cells compute each gate with its own matmul,
    # no SPLIT (whose unused first-step output TF's quantizer left in float in some runs).
    assert verify_int8(tflite).ok, verify_int8(tflite).summary()
    assert notes == []
    info = parse(tflite)
    assert info.inputs[0].shape_signature == (1, 10, 4)
    assert not {"WHILE", "SPLIT"} & {op.name for op in info.ops}
    keras_out = model.predict(X[32:], verbose=0)
    lite = litert.predict(tflite, X[32:])
    micro = tflm.predict(tflite, X[32:])
    step = _output_step(tflite)
    # int8 error from Keras (untrained weights, 32 calibration samples): within 20% of the
    # output span on both runtimes; TFLM and LiteRT run the same int8 graph with different
    # LOGISTIC/TANH kernels, whose rounding adds up over the time steps: within 8 steps.
    assert np.abs(lite - keras_out).max() <= 0.2 * np.ptp(keras_out)
    assert np.abs(micro - keras_out).max() <= 0.2 * np.ptp(keras_out)
    assert np.round(np.abs(micro - lite).max() / step) <= 8


def _two_dense():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    return keras.Model(inp, L.Dense(4, name="out")(L.Dense(8, name="fc")(inp)), name="two_dense")


def test_a_float_op_the_file_also_runs_in_int8_is_converted_again_until_full_int8():
    """Real files: FULLY_CONNECTED kept in float by the quantizer's denylist (the other one
    int8) stands for the quantizer's varying miss; the retry decision and the kept file."""
    from edgeflow._keras import tf
    from edgeflow.convert import INT8_RETRIES, quantizer_misses, until_int8
    from edgeflow.quantize.ptq import _debugger

    model = _two_dense()
    x = RNG.normal(size=(16, 8)).astype("float32")
    debugger = _debugger(model, x, 16)
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=["two_dense/fc/MatMul1"])
    missed = debugger.get_nondebug_quantized_model()
    assert quantizer_misses(missed) == ["#0 FULLY_CONNECTED"]
    int8 = convert(model, "int8", x)
    assert quantizer_misses(int8) == [] and verify_int8(int8).ok

    def attempts(files):
        calls = []

        def attempt():
            calls.append(1)
            return files[len(calls) - 1]
        return attempt, calls

    attempt, calls = attempts([int8])
    assert until_int8(attempt) == (int8, []) and len(calls) == 1  # full int8: one conversion
    attempt, calls = attempts([missed, missed, int8])
    assert until_int8(attempt) == (int8, [
        "int8: converted 3 times: conversion 1 left #0 FULLY_CONNECTED in float (TFLite's "
        "quantizer varies between runs); conversion 3 is full int8"])
    attempt, calls = attempts([missed] * (INT8_RETRIES + 1))
    assert until_int8(attempt) == (missed, [
        f"int8: converted {INT8_RETRIES + 1} times: #0 FULLY_CONNECTED stayed in float; the "
        "first file is kept"])  # a float op that persists is not hidden
    # a later conversion that fails (here a real one killed by its timeout) keeps the first file
    attempts_made = iter([lambda: missed, lambda: convert(model, "int8", x, timeout=0.001)])
    assert until_int8(lambda: next(attempts_made)()) == (missed, [
        "int8: conversion 2 failed (the TFLite converter did not finish within 0.001 s (killed)); "
        "kept the first file, which keeps float op(s) #0 FULLY_CONNECTED"])


def test_a_float_op_without_an_int8_counterpart_is_converted_once():
    """SIN has no int8 kernel: it is float in every conversion, so none is repeated."""
    from edgeflow._keras import tf
    from edgeflow.convert import quantizer_misses

    inp = keras.Input((8,))
    model = keras.Model(inp, L.Dense(2)(tf.math.sin(L.Dense(8)(inp))))
    notes = []
    tflite = convert(model, "int8", RNG.normal(size=(16, 8)).astype("float32"), notes=notes)
    check = verify_int8(tflite)
    assert [f.split()[1] for f in check.float_ops] == ["SIN"]
    assert quantizer_misses(tflite) == [] and notes == []


def test_free_time_dimension_needs_a_size():
    inp = keras.Input((None, 4), name="series")
    model = keras.Model(inp, L.Dense(2)(L.GRU(4)(inp)))
    with pytest.raises(EdgeflowError) as err:
        convert(model, "float32")
    assert str(err.value) == (
        "input 'series' has shape (1, ?, 4) with free dimension(s) 1: give its size with "
        "--input-shape (input_shape=) like (1,8,4), or calibration data (--data); a device "
        "needs fixed shapes"
    )
    from_shape = parse(convert(model, "float32", input_shape=(1, 12, 4)))
    from_data = parse(convert(model, "int8", X[:8, :7]))
    assert from_shape.inputs[0].shape_signature == (1, 12, 4)
    assert from_data.inputs[0].shape_signature == (1, 7, 4)


def test_reshape_cnn_has_no_shape_arithmetic_at_batch_1():
    inp = keras.Input((28, 28))
    h = L.Reshape((28, 28, 1))(inp)
    h = L.Flatten()(L.MaxPooling2D(2)(L.Conv2D(4, 3, activation="relu")(h)))
    model = keras.Model(inp, L.Dense(10)(h))
    x = RNG.random((16, 28, 28)).astype("float32")
    ops = {op.name for op in parse(convert(model, "int8", x)).ops}
    assert not ops & {"SHAPE", "STRIDED_SLICE", "PACK"}
    variable = parse(convert(model, "float32", batch_size=None))
    assert variable.inputs[0].shape_signature == (-1, 28, 28)


def test_check_makes_dynamic_dimensions_a_problem_on_tflm():
    import edgeflow

    inp = keras.Input((None, 4))
    model = keras.Model(inp, L.Dense(2)(inp))
    tflite = convert(model, "float32", batch_size=None)
    result = edgeflow.check(tflite, ["arduino-nano-33-ble"]).results[0]
    assert not result.fits
    assert any("dynamic dimensions" in p and "cannot resize" in p for p in result.problems)


def test_converter_crash_is_contained_and_names_the_fix():
    keras.utils.set_random_seed(2)
    inp = keras.Input((10, 4))
    model = keras.Model(inp, L.Dense(2)(L.GRU(8, name="gru")(inp)))
    with pytest.raises(RuntimeCrash) as err:
        convert(model, "int8", X[:8], unroll=False)
    assert re.fullmatch(
        r"the TFLite converter crashed \(SIG[A-Z]+\) while calibrating \(sample \d+\): WHILE loop "
        r"from an RNN \(layer 'gru'\): rebuild it with unroll=True \(edgeflow unrolls it with a "
        r"fixed batch and unroll=True\)", str(err.value)), str(err.value)


def test_select_tf_ops_advice_is_for_a_microcontroller():
    from edgeflow._keras import tf

    inp = keras.Input((4, 4))
    model = keras.Model(inp, L.Flatten()(tf.linalg.inv(inp)))
    with pytest.raises(EdgeflowError) as err:
        convert(model, "float32")
    message = str(err.value)
    assert message.startswith("the TFLite converter failed (float32): the model uses TensorFlow "
                              "ops with no TFLite builtin kernel (MatrixInverse)")
    assert "SELECT_TF_OPS" not in message and "microcontrollers" in message


def test_a_lookup_table_is_saved_with_the_model_and_reaches_the_converter():
    """The traced signature is saved with the model's variables only; a lookup table is a
    resource but no variable, so that save fails and the model object is saved with it:
    the converter then names the table's op (no "cannot trace the model")."""
    inp = keras.Input((4,), dtype="int64")
    h = L.IntegerLookup(vocabulary=[1, 2, 3, 4], name="lookup")(inp)
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(L.Embedding(8, 3)(h))))
    with pytest.raises(EdgeflowError) as err:
        convert(model, "float32")
    assert str(err.value).startswith("the TFLite converter failed (float32): the model uses TensorFlow "
                                     "ops with no TFLite builtin kernel (HashTableV2)")


def test_the_converter_child_is_kept_and_a_crash_or_timeout_ends_only_it():
    """Conversions share one child (TensorFlow imported once); a crash or a timeout ends that
    child and the next conversion starts a new one, with the same bytes."""
    from edgeflow.runtime import _child

    def kept_pid():
        [child] = _child._Kept._idle
        return child.proc.pid

    keras.utils.set_random_seed(3)
    inp = keras.Input((10, 4))
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(inp)))
    first = convert(model, "int8", X[:8])
    pid = kept_pid()
    assert convert(model, "int8", X[:8]) == first and kept_pid() == pid
    gru = keras.Model(inp, L.Dense(2)(L.GRU(8, name="gru")(inp)))
    with pytest.raises(RuntimeCrash, match=r"^the TFLite converter crashed \(SIG[A-Z]+\) while calibrating"):
        convert(gru, "int8", X[:8], unroll=False)
    assert _child._Kept._idle == []
    assert convert(model, "int8", X[:8]) == first and kept_pid() != pid
    pid = kept_pid()
    with pytest.raises(RuntimeCrash) as err:
        convert(model, "int8", X[:8], timeout=0.01)
    assert str(err.value) == "the TFLite converter did not finish within 0.01 s (killed)"
    assert _child._Kept._idle == []
    assert convert(model, "int8", X[:8]) == first and kept_pid() != pid
