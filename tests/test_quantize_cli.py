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
    assert "keras" in res.output and "tflite" in res.output
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
