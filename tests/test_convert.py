"""Conversion in every mode, calibration sources, and C arrays."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgeflow._keras import tf
from edgeflow.convert import MODES, convert, get_mode, to_c_array
from edgeflow.errors import EdgeflowError
from edgeflow.runtime import litert, metrics


def _io_dtypes(tflite: bytes):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    return interp.get_input_details()[0]["dtype"], interp.get_output_details()[0]["dtype"]


@pytest.fixture(scope="module")
def converted(trained_cnn, digits):
    """The trained CNN in every mode, converted once for the module."""
    (x_tr, _), _ = digits
    return {mode: convert(trained_cnn, mode, x_tr[:100]) for mode in MODES}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_converts_and_runs_close_to_keras(mode, converted, trained_cnn, digits):
    _, (x_te, y_te) = digits
    tflite = converted[mode]
    keras_acc = metrics.evaluate_keras(trained_cnn, x_te, y_te)["accuracy"]
    tflite_acc = litert.evaluate(tflite, x_te, y_te)["accuracy"]
    assert tflite[4:8] == b"TFL3"
    assert abs(keras_acc - tflite_acc) < 0.03, (mode, keras_acc, tflite_acc)


def test_sizes_follow_the_mode(converted):
    sizes = {mode: len(b) for mode, b in converted.items()}
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]
    assert sizes["dynamic"] < sizes["float16"]
    assert _io_dtypes(converted["int16x8"]) == (np.float32, np.float32)


@pytest.mark.parametrize(
    ("input_type", "output_type", "expected"),
    [("int8", "int8", (np.int8, np.int8)), ("uint8", "float32", (np.uint8, np.float32))],
)
def test_int8_interface_types(trained_cnn, digits, input_type, output_type, expected):
    (x_tr, _), _ = digits
    tflite = convert(trained_cnn, "int8", x_tr[:50], input_type=input_type, output_type=output_type)
    assert _io_dtypes(tflite) == expected


def test_bad_io_type_and_mode_are_one_line_errors(trained_cnn, digits):
    (x_tr, _), _ = digits
    with pytest.raises(EdgeflowError, match="input_type 'int16' is not possible in int8 mode"):
        convert(trained_cnn, "int8", x_tr[:10], input_type="int16")
    with pytest.raises(EdgeflowError, match="did you mean 'int8'"):
        get_mode("int9")


def test_int8_without_data_says_what_to_pass(trained_cnn):
    with pytest.raises(EdgeflowError, match="needs calibration data"):
        convert(trained_cnn, "int8")


def test_wrong_calibration_shape_names_both_shapes(trained_cnn):
    with pytest.raises(EdgeflowError, match=r"shape \(28, 28\) but the model input is \(N, 8, 8, 1\)"):
        convert(trained_cnn, "int8", np.zeros((4, 28, 28), np.float32))


def test_calibration_sources_give_the_same_samples(digits, tmp_path):
    from edgeflow.data import take

    (x_tr, y_tr), _ = digits
    calib = x_tr[:32]
    np.save(tmp_path / "calib.npy", calib)
    np.savez(tmp_path / "calib.npz", x=calib, y=y_tr[:32])
    sources = {
        "npy": tmp_path / "calib.npy",
        "npz": str(tmp_path / "calib.npz"),
        "dataset": tf.data.Dataset.from_tensor_slices((calib, y_tr[:32])).batch(8),
        "unbatched": tf.data.Dataset.from_tensor_slices(calib),
        "iterable": (row for row in calib),
    }
    for name, source in sources.items():
        np.testing.assert_array_equal(take(source, (8, 8, 1)), calib, err_msg=name)


def test_dataset_calibration_converts_like_an_array(converted, trained_cnn, digits):
    (x_tr, y_tr), _ = digits
    dataset = tf.data.Dataset.from_tensor_slices((x_tr[:100], y_tr[:100])).batch(16)
    # Same samples → same calibration ranges → the same flatbuffer.
    assert convert(trained_cnn, "int8", dataset) == converted["int8"]


def test_image_folder_calibration(tmp_path):
    from edgeflow._keras import keras

    rng = np.random.default_rng(0)
    for i in range(6):
        img = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
        tf.io.write_file(str(tmp_path / f"img{i}.png"), tf.io.encode_png(img))
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    tflite = convert(model, "int8", tmp_path)
    assert _io_dtypes(tflite) == (np.int8, np.int8)


def test_input_model_is_not_modified(trained_cnn, digits):
    (x_tr, _), _ = digits
    before = [w.copy() for w in trained_cnn.get_weights()]
    convert(trained_cnn, "int8", x_tr[:20])
    assert all(np.array_equal(a, b) for a, b in zip(before, trained_cnn.get_weights()))


def test_c_array_round_trips_and_compiles(int8_cnn, tmp_path):
    header, source = to_c_array(int8_cnn, "g_digits")
    assert "alignas(16) const unsigned char g_digits[]" in source
    assert f"#define G_DIGITS_LEN {len(int8_cnn)}u" in header
    body = source.split("{", 1)[1].split("}", 1)[0]
    values = bytes(int(v, 16) for v in body.replace(",", " ").split())
    assert values == int8_cnn
    if shutil.which("g++") is None:
        pytest.skip("no g++ on this machine")
    (tmp_path / "g_digits.h").write_text(header)
    (tmp_path / "g_digits.cc").write_text(source)
    (tmp_path / "main.cc").write_text(
        '#include "g_digits.h"\n#include <cstdint>\n#include <cstdio>\n'
        "int main() {\n"
        "  static_assert(G_DIGITS_LEN > 0, \"length is a constant\");\n"
        "  if (reinterpret_cast<std::uintptr_t>(g_digits) % 16 != 0) return 2;\n"
        "  std::printf(\"%u %c%c%c%c\\n\", g_digits_len, g_digits[4], g_digits[5], g_digits[6], g_digits[7]);\n"
        "  return g_digits_len == G_DIGITS_LEN ? 0 : 1;\n}\n"
    )
    exe = tmp_path / "main"
    subprocess.run(
        ["g++", "-std=c++11", "-Wall", "-Werror", "-o", str(exe), "main.cc", "g_digits.cc"],
        cwd=tmp_path, check=True,
    )
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    assert out.split() == [str(len(int8_cnn)), "TFL3"]


def test_c_array_name_must_be_an_identifier():
    with pytest.raises(EdgeflowError, match="not a valid C identifier"):
        to_c_array(b"\0" * 8, "3model")


@pytest.mark.slow
def test_mobilenet_v2_converts_to_full_int8(mobilenet_v2_int8):
    assert _io_dtypes(mobilenet_v2_int8) == (np.int8, np.int8)
    out = litert.predict(mobilenet_v2_int8, np.zeros((1, 96, 96, 3), np.float32))
    assert out.shape == (1, 2)


def test_edgeflow_convert_is_the_function_after_the_module_is_imported():
    """``import edgeflow.convert`` / ``from edgeflow.convert import X`` first, in a fresh
    interpreter (the import system binds a submodule on its package only the first time)."""
    code = (
        "import sys, edgeflow.convert, edgeflow.search\n"
        "from edgeflow.convert import convert as fn\n"
        "import edgeflow\n"
        "from edgeflow._keras import keras\n"
        "m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])\n"
        "assert edgeflow.convert is fn and edgeflow.search is sys.modules['edgeflow.search'].search\n"
        "assert edgeflow.convert(m, 'float32') == fn(m, 'float32')\n"
        "print(type(sys.modules['edgeflow.convert']).__name__, edgeflow.convert.__module__)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == "module edgeflow.convert\n"
