"""Several inputs: calibration data in every form, fed by input name; data checked (shapes,
numbers, finite values, label range) before any work."""

import numpy as np
import pytest

from edgeflow import keras
from edgeflow.convert import convert
from edgeflow.errors import EdgeflowError
from edgeflow.runtime import litert, tflm
from edgeflow.tflite import parse

L = keras.layers
RNG = np.random.default_rng(0)
IMG = RNG.random((40, 8, 8, 1)).astype("float32")
FEAT = RNG.normal(size=(40, 3)).astype("float32")


@pytest.fixture(scope="module")
def fusion():
    keras.utils.set_random_seed(3)
    a = keras.Input((8, 8, 1), name="patch")
    b = keras.Input((3,), name="features")
    h = L.Flatten()(L.Conv2D(4, 3, activation="relu")(a))
    h = L.Concatenate()([h, L.Dense(8, activation="relu")(b)])
    return keras.Model([a, b], L.Dense(3)(h))


@pytest.fixture(scope="module")
def int8_list(fusion):
    return convert(fusion, "int8", [IMG[:32], FEAT[:32]])


def test_two_inputs_int8_agree_with_keras_on_litert_and_tflm(fusion, int8_list):
    info = parse(int8_list)
    assert [t.shape for t in info.inputs] == [(1, 8, 8, 1), (1, 3)]
    keras_out = fusion.predict([IMG[32:], FEAT[32:]], verbose=0)
    lite = litert.predict(int8_list, [IMG[32:], FEAT[32:]])
    micro = tflm.predict(int8_list, [IMG[32:], FEAT[32:]])
    # fed in the right order: int8 error within 5% of the output span (the wrong order gives
    # a different graph input shape and fails the shape check)
    assert np.abs(lite - keras_out).max() <= 0.05 * np.ptp(keras_out)
    step = info.outputs[0].scale[0]
    assert np.round(np.abs(micro - lite).max() / step) <= 1  # rounding in the kernels


def test_runtimes_take_inputs_by_name(int8_list):
    """A dict by input name is fed through the file's signature: the same outputs as the
    list in input order, on LiteRT and on TFLM; a slim file (no names) asks for a list."""
    from edgeflow.tflite import slim

    by_name = {"features": FEAT[32:], "patch": IMG[32:]}  # not the input order
    assert np.array_equal(litert.predict(int8_list, by_name), litert.predict(int8_list, [IMG[32:], FEAT[32:]]))
    assert np.array_equal(tflm.predict(int8_list, by_name), tflm.predict(int8_list, [IMG[32:], FEAT[32:]]))
    with pytest.raises(EdgeflowError) as err:
        litert.predict(int8_list, {"patch": IMG[32:], "imu": FEAT[32:]})
    assert str(err.value) == ("the arrays are for inputs imu, patch but the .tflite's inputs are "
                              "patch, features: key them by input name")
    with pytest.raises(EdgeflowError) as err:
        tflm.predict(slim(int8_list, for_tflm=True)[0], by_name)
    assert str(err.value) == ("the .tflite has no input names (no signature def; slim files drop "
                              "them): give the arrays as a list in the model's input order")


@pytest.mark.parametrize("form", ["dict", "dataset", "npz"])
def test_every_data_form_calibrates_the_same(fusion, int8_list, form, tmp_path):
    from edgeflow._keras import tf

    if form == "dict":
        data = {"features": FEAT[:32], "patch": IMG[:32]}
    elif form == "dataset":
        data = tf.data.Dataset.from_tensor_slices((IMG[:32], FEAT[:32])).batch(4)
    else:
        data = tmp_path / "calib.npz"
        np.savez(data, **{"x:patch": IMG[:32], "x:features": FEAT[:32]})
    assert convert(fusion, "int8", data) == int8_list


def test_float_modes_ask_for_no_calibration_data(fusion):
    tflite = convert(fusion, "float32")
    out = litert.predict(tflite, [IMG[:5], FEAT[:5]])
    assert np.abs(out - fusion.predict([IMG[:5], FEAT[:5]], verbose=0)).max() < 1e-5


def test_inputs_are_named_and_checked(fusion):
    with pytest.raises(EdgeflowError) as err:
        convert(fusion, "int8", {"image": IMG, "features": FEAT})
    assert str(err.value) == ("the calibration data dict has keys image, features but the "
                              "model's inputs are patch, features: key the arrays by input name")
    with pytest.raises(EdgeflowError) as err:
        convert(fusion, "int8", [FEAT, IMG])
    assert str(err.value) == (
        "the calibration data for input 'patch' has samples of shape (3,) but the input is "
        "(N, 8, 8, 1): reshape the data to the model's input")


def test_nan_calibration_data_is_refused_before_work(tmp_path):
    from click.testing import CliRunner

    from edgeflow.cli import main
    from edgeflow.models import digits_cnn

    path = tmp_path / "m.keras"
    digits_cnn().save(path)
    x = RNG.random((20, 8, 8, 1)).astype("float32")
    x[3, 2, 2, 0] = np.nan
    np.save(tmp_path / "calib.npy", x)
    out = tmp_path / "m.tflite"
    result = CliRunner().invoke(main, ["export", str(path), "-o", str(out), "--data",
                                       str(tmp_path / "calib.npy")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "error: the calibration data holds 1 NaN or infinite value(s) (first in sample 3): "
        "remove or replace them before converting or training")
    assert not out.exists()


def test_training_data_checked_before_work(fusion):
    from edgeflow.quantize import qat

    y = np.array([0, 1, 2, 3] * 10)
    with pytest.raises(EdgeflowError) as err:
        qat(fusion, data=([IMG, FEAT], y), epochs=1, verbose=0)
    assert str(err.value) == ("the QAT data labels range from 0 to 3 but the output has 3 units: "
                              "class labels must be whole numbers in [0, 2]")
    bad = FEAT.copy()
    bad[0, 0] = np.inf
    with pytest.raises(EdgeflowError, match=r"^the QAT data for input 'features' holds 1 NaN"):
        qat(fusion, data=([IMG, bad], y % 3), epochs=1, verbose=0)


def test_qat_with_two_inputs_converts_to_full_int8(fusion):
    from edgeflow.quantize import qat, verify_int8

    y = (IMG.mean((1, 2, 3)) > 0.5).astype("int64")
    result = qat(fusion, data=({"patch": IMG, "features": FEAT}, y), epochs=1, verbose=0,
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    tflite = convert(result.model, "int8")
    assert verify_int8(tflite).ok
    # in the Keras model's order (the converter puts the QAT model's second input first)
    assert [t.shape for t in parse(tflite).inputs] == [(1, 8, 8, 1), (1, 3)]
    keras_out = result.model.predict([IMG[:8], FEAT[:8]], verbose=0)
    lite = litert.predict(tflite, [IMG[:8], FEAT[:8]])
    assert np.abs(lite - keras_out).max() <= 0.1 * np.ptp(keras_out)


def test_outputs_keep_the_keras_order():
    """The converter lists this model's outputs aa_reg first; convert writes them in the
    Keras order (zz_cls, aa_reg, mm) from the signature, so runtimes read them by position."""
    keras.utils.set_random_seed(4)
    i = keras.Input((8,))
    h = L.Dense(16, activation="relu")(i)
    model = keras.Model(i, [L.Dense(10, activation="softmax", name="zz_cls")(h),
                            L.Dense(1, name="aa_reg")(h), L.Dense(3, name="mm")(h)])
    x = FEAT.repeat(3, axis=1)[:, :8]
    tflite = convert(model, "float32")
    assert [tuple(t.shape) for t in parse(tflite).outputs] == [(1, 10), (1, 1), (1, 3)]
    for got, want in zip(litert.predict(tflite, x), model.predict(x, verbose=0), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
