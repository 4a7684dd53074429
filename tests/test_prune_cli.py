"""``edgeflow prune`` on files: both methods, per-layer values, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from _schema import document
from click.testing import CliRunner

from edgeflow.cli import main
from edgeflow.models import load_model


@pytest.fixture(scope="module")
def files(trained_cnn, digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prune_cli")
    (x_tr, y_tr), _ = digits
    trained_cnn.save(folder / "cnn.keras")
    np.savez(folder / "train.npz", x=x_tr[:256], y=y_tr[:256])
    np.save(folder / "x_only.npy", x_tr[:16])
    return folder


def test_structured_writes_a_smaller_keras_model(files):
    out = files / "small.keras"
    result = CliRunner().invoke(main, [
        "prune", str(files / "cnn.keras"), "-o", str(out), "--method", "structured",
        "--ratio", "0.5", "--criterion", "fpgm", "--layer", "fc1=0.75",
    ])
    assert result.exit_code == 0, result.output
    assert "conv1 16→8" not in result.output  # only fc1 was asked for
    assert "fc1 32→8" in result.output
    model = load_model(out)
    assert model.get_layer("fc1").units == 8 and model.get_layer("conv1").filters == 16


def test_magnitude_with_data_prints_json(files):
    out = files / "sparse.keras"
    result = CliRunner().invoke(main, [
        "prune", str(files / "cnn.keras"), "-o", str(out), "--sparsity", "0.6",
        "--data", str(files / "train.npz"), "--epochs", "1", "--json", "--max-drop", "50",
    ])
    assert result.exit_code == 0, result.output
    doc = document(result.stdout)  # stdout is the one JSON document, valid against the schema
    record = doc["result"]
    assert doc["command"] == "prune" and doc["outputs"] == [str(out)] and record["method"] == "magnitude"
    assert record["overall_sparsity"] == pytest.approx(0.6, abs=0.01)
    from edgeflow import prune

    assert prune.sparsity(load_model(out))["overall"] == pytest.approx(record["overall_sparsity"])


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "magnitude"], "pass --data FILE.npz"),
    (["--method", "structured", "--criterion", "taylor"], "scores units on data"),
    (["--method", "structured", "--data", "{files}/x_only.npy", "--epochs", "1"], "holds no labels"),
    (["--method", "structured", "--layer", "conv1"], "write NAME=FRACTION"),
    (["--method", "structured", "--ratio", "1.5"], "1.5 is not a finite number in [0, 1)"),
    (["--method", "structured", "-o", "{files}/out.h5"], "not 'out.h5'"),
    (["--method", "structured", "--data", "{files}/missing.npz"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(files, args, message, monkeypatch):
    monkeypatch.setenv("EDGEFLOW_PROGRESS", "1")  # bars forced on: none may start before the checks
    args = [a.format(files=files) for a in args]
    if "-o" not in args:
        args += ["-o", str(files / "never.keras")]
    result = CliRunner().invoke(main, ["prune", str(files / "cnn.keras"), *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (files / "never.keras").exists()


def test_prints_baseline_and_result_and_exits_1_over_max_drop(files):
    """90 % of the units of fc1 gone, no fine-tuning: the accuracy drop is over 1 point."""
    out = files / "cut.keras"
    args = ["prune", str(files / "cnn.keras"), "-o", str(out), "--method", "structured",
            "--layer", "fc1=0.9", "--data", str(files / "train.npz"), "--force"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 1, result.output
    doc = document(result.stdout)
    c = doc["result"]["comparison"]
    assert doc["verdict"] == "fail" and c["over_limit"] and c["max_drop"] == 1.0
    assert c["baseline_model"] == "input Keras model" and c["result_model"] == "pruned Keras model"
    assert c["data"] == "train.npz (the training data: pass --eval-data for held-out data), 256 samples"
    assert c["drop"] == pytest.approx(100 * (c["baseline"] - c["result"])) and c["drop"] > 1
    text = CliRunner().invoke(main, args).output.splitlines()
    assert text[1:] == [
        f"scored on {c['data']}",
        "          baseline: input Keras model  result: pruned Keras model",
        f"accuracy  {c['baseline']:<27.4f}  {c['result']:.4f}",  # under its column head
        f"drop      {c['drop']:.2f} points (limit 1)",
        f"warning: accuracy dropped {c['drop']:.2f} points ({c['baseline']:.4f} → {c['result']:.4f}),"
        " over --max-drop 1",
    ]
    assert CliRunner().invoke(main, [*args, "--max-drop", "100"]).exit_code == 0
