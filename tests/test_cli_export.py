"""``edgeflow export`` and the CLI's handling of bad input."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from edgeflow.cli import main


@pytest.fixture(scope="module")
def saved_cnn(trained_cnn, digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    (x_tr, y_tr), _ = digits
    trained_cnn.save(folder / "cnn.keras")
    np.savez(folder / "calib.npz", x=x_tr[:64], y=y_tr[:64])
    return folder


def test_export_int8_and_c_array(saved_cnn):
    runner = CliRunner()
    out = saved_cnn / "cnn.tflite"
    result = runner.invoke(
        main, ["export", str(saved_cnn / "cnn.keras"), "-o", str(out), "--data",
               str(saved_cnn / "calib.npz")],
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[4:8] == b"TFL3"
    result = runner.invoke(
        main, ["export", str(out), "--format", "c", "-o", str(saved_cnn / "fw" / "model"),
               "--name", "g_cnn"],
    )
    assert result.exit_code == 0, result.output
    source = (saved_cnn / "fw" / "model.cc").read_text()
    assert '#include "model.h"' in source and "g_cnn_len" in source


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.keras", "-o", "x.tflite", "--data", "calib.npz"], "does not exist"),
        (["cnn.keras", "-o", "x.tflite"], "needs calibration data"),
        (["cnn.keras", "-o", "x.tflite", "--data", "wrong.npy"], "but the model input is"),
        (["cnn.keras", "-o", "x.tflite", "--data", "calib.npz", "--input-type", "int4"],
         "not possible in int8 mode"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_output(saved_cnn, args, message, monkeypatch):
    monkeypatch.chdir(saved_cnn)
    np.save(saved_cnn / "wrong.npy", np.zeros((3, 5, 5), np.float32))
    result = CliRunner().invoke(main, ["export", *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.output
    assert not (saved_cnn / "x.tflite").exists()
    assert not list(saved_cnn.glob(".x.tflite*"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["export", "m.keras", "-o", "x", "--mode", "int9"],
         "error: Invalid value for '--mode': 'int9' is not one of"),
        (["chek"], "error: no such command 'chek' (did you mean 'check'?)"),
        (["check"], "error: Missing argument 'MODEL'. (see 'edgeflow check --help')"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args, expected):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.output
