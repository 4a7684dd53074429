"""The quickstart recipe end to end, through the CLI, and resuming a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _schema import document
from click.testing import CliRunner

from edgeflow.cli import main
from edgeflow.convert import to_c_array
from edgeflow.devices import load_devices
from edgeflow.tflite import slim


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    result = CliRunner().invoke(main, ["run", "recipes/quickstart.yaml", "-o", str(out)])
    return out, result


@pytest.mark.slow
def test_quickstart_end_to_end(quickstart_run):
    out, result = quickstart_run
    assert result.exit_code in (0, 1), result.output
    report = json.loads((out / "report.json").read_text())
    stages = {s["stage"]: s for s in report["stages"]}
    assert list(stages) == ["train", "prune", "qat", "convert", "check"]
    assert stages["train"]["keras_accuracy"] > 0.93
    assert stages["prune"]["sparsity"] == pytest.approx(0.8, abs=0.03)
    assert stages["qat"]["sparsity"] > 0.75  # sparsity-preserving QAT
    convert = stages["convert"]
    assert convert["tflite_accuracy"] > 0.9
    assert abs(convert["tflite_accuracy"] - stages["train"]["keras_accuracy"]) < 0.03
    assert convert["size_bytes"] < stages["train"]["size_bytes"] / 2  # int8 vs float32
    assert convert["gzip_bytes"] < convert["size_bytes"]
    assert convert["extra"]["int8"].startswith("full int8")
    shipped = set(load_devices())
    assert {d["device"] for d in report["devices"]} == shipped
    # The run compares its first accuracy with its last, and the exit status follows the
    # verdicts and that drop.
    c = report["comparison"]
    assert (c["baseline"], c["result"]) == (stages["train"]["keras_accuracy"], convert["tflite_accuracy"])
    assert (c["baseline_model"], c["result_model"], c["max_drop"]) == (
        "Keras model after stage 1 (train)", ".tflite after stage 4 (convert)", 1.0)
    assert f"drop      {c['drop']:.2f} points (limit 1)" in result.output
    assert result.exit_code == (0 if report["fits_all"] and not c["over_limit"] else 1)
    for name in ("model_data.h", "model_data.cc", "report.html"):
        assert (out / name).exists()
    # the C array is the TFLM-only slim file of the converted model, as export --format c writes it
    tflite = (out / Path(convert["artifact"]).name).read_bytes()
    source = to_c_array(slim(tflite, tflm_only=True)[0], "g_quickstart_model", header_name="model_data.h")[1]
    assert (out / "model_data.cc").read_text() == source
    page = (out / "report.html").read_text()
    # accuracy vs size, size, gzip size, the arena split, RAM and flash per board
    assert page.count("<svg") == 6
    assert "<h2>Operators</h2>" in page and "arena (measured, host TFLM 64-bit)" in page
    assert all(name in page for name in shipped)
    table = result.output
    assert "stage" in table and "verdict" in table
    assert "arduino-nano-33-ble" in table


@pytest.mark.slow
def test_quickstart_resumes_from_artifacts(quickstart_run):
    out, first = quickstart_run
    result = CliRunner().invoke(main, ["run", "recipes/quickstart.yaml", "-o", str(out), "--resume", "--json"])
    assert result.exit_code == first.exit_code, result.output
    report = json.loads((out / "report.json").read_text())
    resumed = [s["stage"] for s in report["stages"] if s["resumed"]]
    assert resumed == ["train", "prune", "qat", "convert"]
    doc = document(result.stdout)  # the same run as one JSON document on stdout
    assert doc["result"]["stages"] == report["stages"] and doc["devices"] == report["devices"]
    assert doc["verdict"] == ("pass" if report["fits_all"] and not doc["result"]["comparison"]["over_limit"]
                              else "fail")


@pytest.mark.slow
def test_structured_prune_distill_qat_recipe(tmp_path):
    """The shipped chain recipe: filters removed, accuracy recovered by distillation, int8."""
    from edgeflow.pipeline import run_recipe

    result = run_recipe(
        "prune_distill_qat", output_dir=tmp_path, verbose=0,
        overrides=["stages.0.epochs=8", "stages.2.epochs=4", "stages.5.devices=[nucleo-h743zi]"],
    )
    rec = {r.stage: r for r in result.records}
    assert rec["prune"].params < rec["train"].params / 3  # half the filters of every layer
    assert rec["distill"].keras_accuracy > rec["prune"].keras_accuracy
    assert rec["convert"].tflite_accuracy > 0.9
    assert [r.device for r in result.check.results] == ["nucleo-h743zi"]


def test_a_run_whose_int8_file_keeps_float_ops_exits_1_naming_them():
    """QAT then an int8 convert of a model with tf.math.sin (no int8 kernel in TFLite)."""
    import numpy as np

    from edgeflow._keras import keras, tf
    from edgeflow.pipeline import run_stages
    from edgeflow.quantize import verify_int8
    from edgeflow.recipe import parse_recipe

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (128, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    inputs = keras.Input((8,))
    h = tf.math.sin(keras.layers.Dense(8, name="fc")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    recipe = parse_recipe({"name": "sin", "model": {"builder": "digits_cnn"}, "max_drop": 100,
                           "stages": [{"stage": "qat", "epochs": 1}, {"stage": "convert"}]})
    result = run_stages(recipe, model, (x, y), (x, y))
    check = verify_int8(result.tflite)
    assert not check.ok and result.exit_code == 1
    convert = result.stage("convert")
    assert convert.extra["int8_ok"] is False
    assert convert.extra["warnings"][0] == ("mode int8 promised a full-int8 model; float ops: "
                                            + "; ".join(check.float_ops + check.stray_conversions))
