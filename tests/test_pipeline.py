"""The quickstart recipe end to end, through the CLI, and resuming a run."""

from __future__ import annotations

import json
import re
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
    # what `edgeflow run -q` prints starts with every stage's warnings (no progress lines)
    from edgeflow.report import render_run_quiet

    quiet = render_run_quiet(result).splitlines()
    assert quiet[:len(result.warnings())] == [f"warning: {w}" for w in convert.extra["warnings"]]


def test_a_convert_stage_records_reconverted_when_a_float_op_has_an_int8_counterpart():
    """A CONCATENATION fed by a float COS stays float in every conversion while another
    CONCATENATION is int8: the stage converts 3 times, keeps the first file and records it."""
    import numpy as np

    from edgeflow._keras import keras, tf
    from edgeflow.convert import INT8_RETRIES, quantizer_misses
    from edgeflow.pipeline import run_stages
    from edgeflow.recipe import parse_recipe

    L = keras.layers
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(0, 1, (64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    inputs = keras.Input((8,))
    a, b = L.Dense(8, name="a")(inputs), L.Dense(8, name="b")(inputs)
    floats = L.Concatenate(name="float_concat")([tf.math.cos(tf.math.sin(inputs) + 1.0), a])
    h = L.Add()([L.Dense(8)(L.Concatenate(name="int8_concat")([a, b])), L.Dense(8)(floats)])
    model = keras.Model(inputs, L.Dense(2, activation="softmax", name="out")(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    recipe = parse_recipe({"name": "miss", "model": {"builder": "digits_cnn"}, "max_drop": 100,
                           "stages": [{"stage": "convert"}]})
    result = run_stages(recipe, model, (x, y), (x, y))
    assert quantizer_misses(result.tflite) == ["#9 CONCATENATION"]
    record = result.stage("convert")
    assert record.extra["reconverted"] == (f"int8: converted {INT8_RETRIES + 1} times: #9 CONCATENATION "
                                           "stayed in float; the first file is kept")
    assert record.summary().endswith("\n  note: " + record.extra["reconverted"])  # the run prints it


@pytest.fixture(scope="module")
def ink_regression(tmp_path_factory):
    """A one-output regression model (the digit image's mean pixel, ``ink``), trained briefly,
    its file, and an .npz whose training labels are moved by +1 (the test labels are not)."""
    import numpy as np

    from edgeflow._keras import keras
    from edgeflow.data import digits

    (x_tr, _), (x_te, _) = digits(test_fraction=0.25, seed=0)
    ink_tr, ink_te = x_tr.mean(axis=(1, 2, 3)), x_te.mean(axis=(1, 2, 3))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, name="ink")])
    model.compile("adam", "mae")
    model.fit(x_tr, ink_tr, epochs=3, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("ink")
    model.save(folder / "ink.keras")
    np.savez(folder / "shifted.npz", x_train=x_tr, y_train=ink_tr + 1.0, x_test=x_te, y_test=ink_te)
    return model, folder, x_te, ink_te


def test_a_regression_students_distill_epochs_show_mae(ink_regression, tmp_path):
    """The distill stage compiles the student with the metric of its hard loss (mse: mae),
    as the train stage does; before, its epoch lines read 'accuracy'."""
    import yaml

    _, folder, _, _ = ink_regression
    recipe = {"name": "ink", "model": {"path": str(folder / "ink.keras")},
              "data": {"source": "npz", "path": str(folder / "shifted.npz"), "validation_fraction": 0},
              "stages": [{"stage": "distill", "teacher": str(folder / "ink.keras"), "losses": [],
                          "loss": "mse", "epochs": 2}]}
    (tmp_path / "ink.yaml").write_text(yaml.safe_dump(recipe))
    run = CliRunner().invoke(main, ["run", str(tmp_path / "ink.yaml"), "-o", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    epochs = [line for line in run.output.splitlines() if line.startswith("      epoch ")]
    assert [re.fullmatch(r"      epoch (\d)/2: loss \d\.\d{4}, hard_loss \d\.\d{4}, mae \d\.\d{4}", line)[1]
            for line in epochs] == ["1", "2"], epochs
    assert "accuracy" not in run.output


def _mae(model, x, y) -> float:
    import numpy as np

    return float(np.mean(np.abs(model.predict(x, verbose=0).reshape(-1).astype(np.float64) - y)))


def test_a_regression_recipe_checks_max_drop_on_its_mae(ink_regression, tmp_path):
    """A one-output regression model records its MAE per stage (keras_mae, tflite_mae) and
    the run compares the first with the last in percent added: training on labels moved by
    +1 raises it far over max_drop 50, exit 1 with the exact lines."""
    import numpy as np
    import yaml

    from edgeflow.models import load_model
    from edgeflow.runtime import litert

    model, folder, x_te, ink_te = ink_regression
    recipe = {"name": "ink", "max_drop": 50, "model": {"path": str(folder / "ink.keras")},
              "data": {"source": "npz", "path": str(folder / "shifted.npz"), "validation_fraction": 0},
              "stages": [{"stage": "train", "epochs": 0}, {"stage": "train", "epochs": 3, "learning_rate": 0.01},
                         {"stage": "convert", "mode": "int8"}]}
    (tmp_path / "ink.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    run = CliRunner().invoke(main, ["run", str(tmp_path / "ink.yaml"), "-o", str(out)])
    assert run.exit_code == 1, run.output
    # the train stage compiles with the metric its loss calls for: mae, not accuracy
    epochs = [line for line in run.output.splitlines() if line.startswith("      epoch ")]
    assert [re.fullmatch(r"      epoch (\d)/3: loss \d\.\d{4}, mae \d\.\d{4}", line)[1] for line in epochs] == [
        "1", "2", "3"], epochs
    assert "accuracy" not in run.output
    report = json.loads((out / "report.json").read_text())
    before = _mae(model, x_te, ink_te)
    trained = _mae(load_model(out / report["stages"][1]["artifact"]), x_te, ink_te)
    pred = litert.predict((out / report["stages"][2]["artifact"]).read_bytes(), x_te)
    after = float(np.mean(np.abs(pred.reshape(-1).astype(np.float64) - ink_te)))
    assert [(s["keras_accuracy"], s["keras_mae"], s["tflite_mae"]) for s in report["stages"]] == [
        (None, before, None), (None, trained, None), (None, trained, after)]
    rose = 100 * (after - before) / before
    assert rose > 50
    lines, w = run.output.splitlines(), len("baseline: Keras model after stage 1 (train)")
    start = lines.index(f"scored on the recipe's test data, {len(x_te)} samples")
    assert lines[start:start + 5] == [
        f"scored on the recipe's test data, {len(x_te)} samples",
        "          baseline: Keras model after stage 1 (train)  result: .tflite after stage 3 (convert)",
        f"mae       {before:<{w}.4f}  {after:.4f}",
        f"drop      {rose:.2f} % MAE (limit 50)",
        f"warning: mae rose {rose:.2f}% ({before:.4f} → {after:.4f}), over max_drop 50",
    ]
    assert report["comparison"] == {
        "metric": "mae", "baseline": before, "result": after, "drop": rose, "max_drop": 50.0, "over_limit": True,
        "baseline_model": "Keras model after stage 1 (train)", "result_model": ".tflite after stage 3 (convert)",
        "data": f"the recipe's test data, {len(x_te)} samples"}
    assert report["comparisons"] is None
    # the run table and report.html show the MAE where a classifier's show its accuracy
    cells = [(f"{i + 1}. {s['label']}", "" if s["keras_mae"] is None else f"{s['keras_mae']:.4f}",
              "" if s["tflite_mae"] is None else f"{s['tflite_mae']:.4f}", f"{s['size_bytes']:,}",
              f"{s['gzip_bytes']:,}", f"{s['sparsity']:.1%}") for i, s in enumerate(report["stages"])]
    assert [c[0] for c in cells] == ["1. train (0 epochs)", "2. train (3 epochs)", "3. convert (int8)"]
    start = next(i for i, line in enumerate(lines) if line.startswith("stage "))
    assert [line.rsplit(None, 1)[0] for line in lines[start:start + 5]] == [  # without the seconds
        "stage                keras mae  tflite mae  size B  gzip B  sparsity",
        "-------------------  ---------  ----------  ------  ------  --------",
        *(f"{a:<19}  {k:>9}  {t:>10}  {z:>6}  {g:>6}  {p:>8}" for a, k, t, z, g, p in cells)]
    page = (out / "report.html").read_text()
    assert "<th>keras mae</th><th>tflite mae</th>" in page and "keras acc" not in page
    assert "MAE vs size over the stages" in page and "Accuracy vs size" not in page


def test_a_quiet_run_still_prints_the_comparison_and_its_warning(ink_regression, tmp_path):
    """edgeflow run -q drops the progress lines, not the comparison or its warning: a drop
    over max_drop is said, not only the exit status."""
    import yaml

    from edgeflow.models import load_model

    model, folder, x_te, ink_te = ink_regression
    recipe = {"name": "ink", "max_drop": 50, "model": {"path": str(folder / "ink.keras")},
              "data": {"source": "npz", "path": str(folder / "shifted.npz"), "validation_fraction": 0},
              "stages": [{"stage": "train", "epochs": 0}, {"stage": "train", "epochs": 3, "learning_rate": 0.01}]}
    (tmp_path / "ink.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    run = CliRunner().invoke(main, ["run", str(tmp_path / "ink.yaml"), "-o", str(out), "-q"])
    assert run.exit_code == 1, run.output
    stages = json.loads((out / "report.json").read_text())["stages"]
    before = _mae(model, x_te, ink_te)
    after = _mae(load_model(out / stages[1]["artifact"]), x_te, ink_te)
    rose, w = 100 * (after - before) / before, len("baseline: Keras model after stage 1 (train)")
    lines = run.output.splitlines()
    assert lines[:6] == [
        f"scored on the recipe's test data, {len(x_te)} samples",
        "          baseline: Keras model after stage 1 (train)  result: Keras model after stage 2 (train)",
        f"mae       {before:<{w}.4f}  {after:.4f}",
        f"drop      {rose:.2f} % MAE (limit 50)",
        f"warning: mae rose {rose:.2f}% ({before:.4f} → {after:.4f}), over max_drop 50",
        "stage                keras mae  tflite mae  size B  gzip B  sparsity    s",
    ]  # then the table, nothing else (tests/test_outputs.py checks its rows)
    assert [line.split("  ")[0] for line in lines[7:]] == ["1. train (0 epochs)", "2. train (3 epochs)"]
