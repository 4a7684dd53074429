"""``edgeflow quantize`` through click's CliRunner on the real command group."""

from __future__ import annotations

import numpy as np
import pytest
from _schema import document
from click.testing import CliRunner

from edgeflow.cli import main
from edgeflow.quantize import verify_int8


@pytest.fixture(scope="module")
def files(trained_cnn, digits, tmp_path_factory):
    (x_tr, y_tr), (x_te, y_te) = digits
    root = tmp_path_factory.mktemp("qcli")
    trained_cnn.save(root / "cnn.keras")
    np.savez(root / "train.npz", x=x_tr[:300], y=y_tr[:300])
    np.savez(root / "test.npz", x=x_te, y=y_te)
    return root


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_int8_report_and_keep_float(files):
    out = files / "k.tflite"
    res = _run("quantize", files / "cnn.keras", "-o", out, "--mode", "int8", "--data",
               files / "train.npz", "--eval-data", files / "test.npz", "--report",
               "--keep-float", "1")
    assert res.exit_code == 0, res.output
    assert "rmse/scale" in res.output and "mode int8+float1:" in res.output
    assert "scored on test.npz (--eval-data), 450 samples\n" in res.output
    assert "baseline: float Keras model  result: int8+float1 .tflite on LiteRT\n" in res.output
    assert not verify_int8(out.read_bytes()).ok  # one op kept in float, as asked


def test_cli_qat_writes_full_int8(files):
    out = files / "q.tflite"
    res = _run("quantize", files / "cnn.keras", "-o", out, "--mode", "qat", "--data",
               files / "train.npz", "--epochs", "1", "--json")
    assert res.exit_code == 0, res.output
    doc = document(res.stdout)
    assert doc["result"]["int8"]["summary"].startswith("full int8") and doc["result"]["int8"]["ok"]
    assert doc["outputs"] == [str(out)] and doc["result"]["size_bytes"] == out.stat().st_size
    assert verify_int8(out.read_bytes()).ok


@pytest.mark.parametrize("args, message", [
    (["--mode", "int8"], "calibration data"),
    (["--mode", "qat", "--data", "{x}"], "x and y"),
    (["--mode", "float16", "--keep-float", "2", "--data", "{train}"], "--keep-float works"),
    (["--mode", "int8", "--data", "missing.npz"], "does not exist"),
])
def test_cli_bad_input_is_one_line_and_exit_2(files, args, message):
    np.save(files / "x_only.npy", np.zeros((4, 8, 8, 1), np.float32))
    args = [a.format(x=files / "x_only.npy", train=files / "train.npz") for a in args]
    res = _run("quantize", files / "cnn.keras", "-o", files / "bad.tflite", *args)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and message in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (files / "bad.tflite").exists()


def _sequence_model(middle):
    """Conv1D → ``middle`` (a layer or a function of the tensor) → pooling → softmax."""
    from edgeflow._keras import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 6), name="seq")
    h = keras.layers.Conv1D(8, 3, padding="same", name="conv")(inputs)
    h = middle(h)
    h = keras.layers.GlobalAveragePooling1D(name="gap")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = rng.normal(0, 1, (200, 8, 6)).astype(np.float32)
    x[y == 1, :, :2] += 1.5
    root = tmp_path_factory.mktemp("seq")
    np.savez(root / "seq.npz", x=x, y=y)
    return root


def test_cli_qat_quantizes_layernorm_from_the_calibration_data(sequences):
    from edgeflow._keras import keras

    model = _sequence_model(keras.layers.LayerNormalization(name="ln"))
    model.save(sequences / "ln.keras")
    out = sequences / "ln.tflite"
    res = _run("quantize", sequences / "ln.keras", "-o", out, "--mode", "qat", "--data",
               sequences / "seq.npz", "--epochs", "1", "--json")
    assert res.exit_code == 0, res.output
    doc = document(res.stdout)
    assert doc["result"]["float_layers"] == []
    assert "layers without a QAT config quantized from the calibration data" in \
        doc["result"]["notes"]
    check = verify_int8(out.read_bytes())
    assert check.ok, check.summary()


def test_cli_promised_int8_but_float_ops_left_is_exit_1_naming_them(sequences):
    from edgeflow._keras import tf

    model = _sequence_model(tf.math.sin)  # SIN has no int8 kernel in TFLite
    model.save(sequences / "sp.keras")
    out = sequences / "sp.tflite"
    res = _run("quantize", sequences / "sp.keras", "-o", out, "--mode", "qat", "--data",
               sequences / "seq.npz", "--epochs", "1")
    assert res.exit_code == 1, res.output
    check = verify_int8(out.read_bytes())
    assert not check.ok and check.float_ops
    warning = [ln for ln in res.output.splitlines() if ln.startswith("warning: --mode qat")]
    assert warning == ["warning: --mode qat promised a full-int8 model; float ops: "
                       + "; ".join(check.float_ops + check.stray_conversions)]


def test_cli_int8_output_clipping_is_a_warning_with_the_figure(tmp_path):
    """Calibrated on samples whose outputs stay small, the int8 output range clips the
    float model's larger outputs on the evaluation data: the warning gives the share."""
    from edgeflow._keras import keras
    from edgeflow.quantize.verify import output_clipping

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (400, 8)).astype(np.float32)
    y = (3 * x[:, :4].sum(1)).astype(np.float32)[:, None]
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.set_weights([np.array([[3.0]] * 4 + [[0.0]] * 4, np.float32), np.zeros(1, np.float32)])
    model.compile("adam", "mse")
    model.save(tmp_path / "reg.keras")
    small = np.abs(y[:, 0]) < 2
    np.savez(tmp_path / "calib.npz", x=x[small], y=y[small])
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    out = tmp_path / "reg.tflite"
    res = _run("quantize", tmp_path / "reg.keras", "-o", out, "--mode", "int8", "--data",
               tmp_path / "calib.npz", "--eval-data", tmp_path / "eval.npz", "--json")
    assert res.exit_code == 1, res.output  # the MAE rose far over --max-drop
    doc = document(res.stdout)
    (clip,) = output_clipping(out.read_bytes(), model.predict(x[:200], verbose=0))
    assert clip.fraction > 0.3
    assert doc["result"]["warnings"] == [clip.warning()]
    c = doc["result"]["comparison"]
    assert c["metric"] == "mae" and c["over_limit"] and doc["verdict"] == "fail"
    assert (c["baseline_model"], c["result_model"], c["data"]) == (
        "float Keras model", "int8 .tflite on LiteRT", "eval.npz (--eval-data), 400 samples")
    assert clip.warning().startswith(f"int8 output 0 clips {clip.fraction:.1%} of the float model outputs")
