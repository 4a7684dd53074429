"""Models with several outputs: figures per output (by name) in records and reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from _schema import document
from click.testing import CliRunner

from edgeflow._keras import keras


@pytest.fixture(scope="module")
def two_heads(digits, tmp_path_factory):
    """A digits model with a classifier head ``digit`` (10 classes) and a regression head
    ``ink`` (the image's mean pixel), trained briefly; its file and an .npz of the splits.
    The heads are declared ``ink`` first in the name order but second in the model, so a
    converter that orders outputs by name would swap them."""
    (x_tr, y_tr), (x_te, y_te) = digits
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
    digit = keras.layers.Dense(10, activation="softmax", name="zdigit")(h)
    ink = keras.layers.Dense(1, name="ink")(h)
    model = keras.Model(inputs, [digit, ink])
    model.compile("adam", ["sparse_categorical_crossentropy", "mae"])
    ink_tr, ink_te = x_tr.mean(axis=(1, 2, 3)), x_te.mean(axis=(1, 2, 3))
    model.fit(x_tr, [y_tr, ink_tr], epochs=5, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("two_heads")
    model.save(folder / "two.keras")
    np.savez(folder / "data.npz", x_train=x_tr, x_test=x_te, **{
        "y_train:zdigit": y_tr, "y_train:ink": ink_tr, "y_test:zdigit": y_te, "y_test:ink": ink_te})
    return model, folder, x_te, y_te, ink_te


def _expected(pred, y_digit, y_ink) -> dict:
    """Accuracy of the classifier head and MAE of the regression head, computed here."""
    digit, ink = pred
    acc = float(np.mean(np.argmax(digit, axis=1) == y_digit))
    mae = float(np.mean(np.abs(ink.reshape(-1).astype(np.float64) - y_ink.astype(np.float64))))
    return {"zdigit": acc, "ink": mae}


def test_a_recipe_run_records_and_reports_each_output(two_heads, tmp_path):
    from edgeflow.cli import main
    from edgeflow.models import load_model
    from edgeflow.runtime import litert

    model, folder, x_te, y_te, ink_te = two_heads
    recipe = {
        "name": "two",
        "model": {"path": str(folder / "two.keras")},
        "data": {"source": "npz", "path": str(folder / "data.npz"), "validation_fraction": 0},
        "stages": [{"stage": "train", "epochs": 1}, {"stage": "convert", "mode": "int8"}],
    }
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    run = CliRunner().invoke(main, ["run", str(tmp_path / "two.yaml"), "-o", str(out), "--json"])
    assert run.exit_code == 0, run.output
    stages = document(run.output)["result"]["stages"]
    tflite = (out / stages[1]["artifact"]).read_bytes()
    trained = load_model(out / stages[0]["artifact"])  # one epoch more, a loss per head
    keras_figures = _expected(trained.predict(x_te, verbose=0), y_te, ink_te)
    assert keras_figures != _expected(model.predict(x_te, verbose=0), y_te, ink_te)
    tflite_figures = _expected(litert.predict(tflite, x_te), y_te, ink_te)
    metric = {"zdigit": "accuracy", "ink": "mae"}
    assert stages[0]["outputs"] == {
        name: {"metric": metric[name], "keras": keras_figures[name], "tflite": None} for name in metric}
    assert stages[1]["outputs"] == {
        name: {"metric": metric[name], "keras": keras_figures[name], "tflite": tflite_figures[name]}
        for name in metric}
    assert stages[1]["keras_accuracy"] == keras_figures["zdigit"]
    assert stages[1]["tflite_accuracy"] == tflite_figures["zdigit"]
    assert list(stages[1]["outputs"]) == ["zdigit", "ink"]  # the model's output order
    # each output's first figure against its last, with its own metric (max_drop 1, default)
    result = document(run.output)["result"]
    k0, t1 = keras_figures, tflite_figures
    drops = {"zdigit": 100 * (k0["zdigit"] - t1["zdigit"]), "ink": 100 * (t1["ink"] - k0["ink"]) / k0["ink"]}
    assert result["comparisons"] == {name: {
        "metric": metric[name], "baseline": k0[name], "result": t1[name], "drop": drops[name],
        "max_drop": 1.0, "over_limit": drops[name] > 1, "baseline_model": "Keras model after stage 1 (train)",
        "result_model": ".tflite after stage 2 (convert)", "data": f"the recipe's test data, {len(x_te)} samples",
    } for name in metric}
    assert result["comparison"] == result["comparisons"]["zdigit"]
    assert not any(c["over_limit"] for c in result["comparisons"].values())

    doc = json.loads((out / "report.json").read_text())
    assert doc["stages"] == stages
    k, t = keras_figures, tflite_figures
    rows = [f"1. train (1 epochs)  zdigit  accuracy  {k['zdigit']:.4f}",
            f"1. train (1 epochs)  ink     mae       {k['ink']:.4f}",
            f"2. convert (int8)    zdigit  accuracy  {k['zdigit']:.4f}  {t['zdigit']:.4f}",
            f"2. convert (int8)    ink     mae       {k['ink']:.4f}  {t['ink']:.4f}"]
    html = (out / "report.html").read_text()
    assert "<h3>Per output</h3>" in html
    assert (f"<tr><td>2. convert (int8)</td><td>ink</td><td>mae</td><td class=n>{k['ink']:.4f}</td>"
            f"<td class=n>{t['ink']:.4f}</td></tr>") in html
    quiet = CliRunner().invoke(main, ["run", str(tmp_path / "two.yaml"), "-o", str(tmp_path / "q"), "-q"])
    assert quiet.exit_code == 0, quiet.output
    table = quiet.output[quiet.output.index("stage  ", quiet.output.index("sparsity")):]
    assert [line.rstrip() for line in table.splitlines()[2:6]] == rows


def test_max_drop_is_checked_on_every_output_with_its_own_metric(two_heads, tmp_path):
    """A second train stage on ink labels shifted by +1 leaves the classifier (the first
    output) within max_drop but raises the regression head's MAE (percent added) far over
    it: the run exits 1 with one warning naming ink."""
    from edgeflow.cli import main
    from edgeflow.models import load_model

    model, folder, x_te, y_te, ink_te = two_heads
    data = dict(np.load(folder / "data.npz"))
    data["y_train:ink"] = data["y_train:ink"] + 1.0
    np.savez(tmp_path / "shifted.npz", **data)
    recipe = {
        "name": "shift", "max_drop": 50,
        "model": {"path": str(folder / "two.keras")},
        "data": {"source": "npz", "path": str(tmp_path / "shifted.npz"), "validation_fraction": 0},
        "stages": [{"stage": "train", "epochs": 0},
                   {"stage": "train", "epochs": 3, "learning_rate": 0.01}],
    }
    (tmp_path / "shift.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    run = CliRunner().invoke(main, ["run", str(tmp_path / "shift.yaml"), "-o", str(out)])
    assert run.exit_code == 1, run.output
    before = _expected(model.predict(x_te, verbose=0), y_te, ink_te)
    trained = load_model(out / json.loads((out / "report.json").read_text())["stages"][1]["artifact"])
    after = _expected(trained.predict(x_te, verbose=0), y_te, ink_te)
    rose = 100 * (after["ink"] - before["ink"]) / before["ink"]
    assert 100 * (before["zdigit"] - after["zdigit"]) <= 50 < rose
    warning = f"warning: output ink: mae rose {rose:.2f}% ({before['ink']:.4f} → {after['ink']:.4f}), over max_drop 50"
    assert [line for line in run.output.splitlines() if line.startswith("warning:")] == [warning]
    lines, w = run.output.splitlines(), len("baseline: Keras model after stage 1 (train)")
    start = lines.index(f"output zdigit: scored on the recipe's test data, {len(x_te)} samples")
    assert lines[start:start + 9] == [  # each output's comparison, its warning
        f"output zdigit: scored on the recipe's test data, {len(x_te)} samples",
        "          baseline: Keras model after stage 1 (train)  result: Keras model after stage 2 (train)",
        f"accuracy  {before['zdigit']:<{w}.4f}  {after['zdigit']:.4f}",
        f"drop      {100 * (before['zdigit'] - after['zdigit']):.2f} points (limit 50)",
        f"output ink: scored on the recipe's test data, {len(x_te)} samples",
        "          baseline: Keras model after stage 1 (train)  result: Keras model after stage 2 (train)",
        f"mae       {before['ink']:<{w}.4f}  {after['ink']:.4f}",
        f"drop      {rose:.2f} % MAE (limit 50)",
        warning,
    ]
    doc = json.loads((out / "report.json").read_text())
    assert not doc["comparison"]["over_limit"]  # the first output alone passes
    assert {name: c["over_limit"] for name, c in doc["comparisons"].items()} == {"zdigit": False, "ink": True}


def test_a_recipe_checks_each_outputs_labels_in_every_split_before_work(two_heads, tmp_path):
    """The labels of every split are checked by edgeflow.data.check_labels (the check prune,
    QAT and distill use), naming the split and the output: one error line, exit 2."""
    from edgeflow.cli import main

    _, folder, _, y_te, ink_te = two_heads
    data = dict(np.load(folder / "data.npz"))
    cases = {
        "range": ({"y_test:zdigit": np.where(np.arange(len(y_te)) == 7, 10, y_te)},
                  "the test split labels of output 'zdigit' range from 0 to 10 but the output has 10 "
                  "units: class labels must be whole numbers in [0, 9]"),
        "nan": ({"y_train:ink": np.where(np.arange(len(data["y_train:ink"])) == 4, np.nan, data["y_train:ink"])},
                "y of the training split for output 'ink' holds 1 NaN or infinite value(s) (first in "
                "sample 4): remove or replace them before converting or training"),
    }
    for name, (change, line) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **{**data, **change})
        recipe = {"name": name, "model": {"path": str(folder / "two.keras")},
                  "data": {"source": "npz", "path": str(tmp_path / f"{name}.npz"), "validation_fraction": 0},
                  "stages": [{"stage": "train", "epochs": 1}]}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
        run = CliRunner().invoke(main, ["run", str(tmp_path / f"{name}.yaml"), "-o", str(tmp_path / name)])
        assert run.exit_code == 2, run.output
        assert run.output.strip().splitlines() == [f"error: {tmp_path}/{name}.yaml: data.path: {line}"]
        assert not (tmp_path / name).exists()


def test_quantize_scores_each_output_apart(two_heads, digits, tmp_path):
    """edgeflow quantize --json: labels y:<output name> in the .npz, figures by output name;
    the API keeps one label array per output (lists are not stacked into one array)."""
    from edgeflow.cli import main
    from edgeflow.quantize.stage import quantize_to_tflite
    from edgeflow.runtime import litert

    model, folder, x_te, y_te, ink_te = two_heads
    (x_tr, _), _ = digits
    np.savez(tmp_path / "calib.npz", x=x_tr[:100])
    np.savez(tmp_path / "eval.npz", x=x_te, **{"y:ink": ink_te, "y:zdigit": y_te})
    args = ["quantize", str(folder / "two.keras"), "--mode", "int8", "--data", str(tmp_path / "calib.npz"),
            "--eval-data", str(tmp_path / "eval.npz"), "-o", str(tmp_path / "q.tflite")]
    run = CliRunner().invoke(main, [*args, "--max-drop", "100", "--json"])
    assert run.exit_code == 0, run.output
    payload = document(run.output)["result"]
    k = _expected(model.predict(x_te, verbose=0), y_te, ink_te)
    t = _expected(litert.predict((tmp_path / "q.tflite").read_bytes(), x_te), y_te, ink_te)
    metric = {"zdigit": "accuracy", "ink": "mae"}
    assert payload["outputs"] == {
        name: {"metric": metric[name], "keras": k[name], "tflite": t[name]} for name in metric}
    assert payload["comparison"]["data"] == f"eval.npz (--eval-data), {len(x_te)} samples"

    outcome = quantize_to_tflite(folder / "two.keras", "int8", x_tr[:100],
                                 eval_data=(x_te, [y_te, ink_te]))
    assert outcome.outputs == payload["outputs"]


def test_quantize_checks_max_drop_on_every_output(two_heads, digits, tmp_path):
    """edgeflow quantize on a classifier + regression model: each output against --max-drop
    with its own metric (accuracy: points lost; ink: percent of MAE added), in text and
    --json. Calibration samples at half brightness clip the int8 ink output (its MAE rises
    about 170%) and cost the classifier about 4 points: --max-drop 50 fails the ink head
    alone, named in the warning."""
    from edgeflow.cli import main
    from edgeflow.runtime import litert

    model, folder, x_te, y_te, ink_te = two_heads
    (x_tr, _), _ = digits
    np.savez(tmp_path / "calib.npz", x=x_tr[:100] * 0.5)
    np.savez(tmp_path / "eval.npz", x=x_te, **{"y:ink": ink_te, "y:zdigit": y_te})
    args = ["quantize", str(folder / "two.keras"), "--mode", "int8", "--data", str(tmp_path / "calib.npz"),
            "--eval-data", str(tmp_path / "eval.npz"), "--max-drop", "50", "-o", str(tmp_path / "q.tflite")]
    text = CliRunner().invoke(main, args)
    assert text.exit_code == 1, text.output
    k = _expected(model.predict(x_te, verbose=0), y_te, ink_te)
    t = _expected(litert.predict((tmp_path / "q.tflite").read_bytes(), x_te), y_te, ink_te)
    drops = {"zdigit": 100 * (k["zdigit"] - t["zdigit"]), "ink": 100 * (t["ink"] - k["ink"]) / k["ink"]}
    assert 0 < drops["zdigit"] <= 50 < drops["ink"], drops
    warning = f"warning: output ink: mae rose {drops['ink']:.2f}% ({k['ink']:.4f} → {t['ink']:.4f}), over --max-drop 50"
    lines, w = text.output.splitlines(), len("baseline: float Keras model")
    assert [line for line in lines if "--max-drop" in line] == [warning]  # the clipped output warns too
    start = lines.index(f"output zdigit: scored on eval.npz (--eval-data), {len(x_te)} samples")
    assert lines[start:start + 9] == [
        f"output zdigit: scored on eval.npz (--eval-data), {len(x_te)} samples",
        "          baseline: float Keras model  result: int8 .tflite on LiteRT",
        f"accuracy  {k['zdigit']:<{w}.4f}  {t['zdigit']:.4f}",
        f"drop      {drops['zdigit']:.2f} points (limit 50)",
        f"output ink: scored on eval.npz (--eval-data), {len(x_te)} samples",
        "          baseline: float Keras model  result: int8 .tflite on LiteRT",
        f"mae       {k['ink']:<{w}.4f}  {t['ink']:.4f}",
        lines[start + 7],  # mse, the other regression figure
        f"drop      {drops['ink']:.2f} % MAE (limit 50)",
    ]
    assert lines[start + 7].startswith("mse       ")

    as_json = CliRunner().invoke(main, [*args, "--force", "--json"])
    assert as_json.exit_code == 1, as_json.output
    result = document(as_json.output)["result"]
    assert result["comparisons"] == {name: {
        "metric": metric, "baseline": k[name], "result": t[name], "drop": drops[name], "max_drop": 50.0,
        "over_limit": name == "ink", "baseline_model": "float Keras model",
        "result_model": "int8 .tflite on LiteRT", "data": f"eval.npz (--eval-data), {len(x_te)} samples",
    } for name, metric in (("zdigit", "accuracy"), ("ink", "mae"))}
    assert result["comparison"] == result["comparisons"]["zdigit"]  # the first output's, as before


def test_default_loss_is_chosen_per_output():
    from edgeflow.models import default_loss

    inputs = keras.Input((4,))
    h = keras.layers.Dense(8)(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(3, activation="softmax", name="cls")(h),
                                 keras.layers.Dense(1, name="reg")(h)])
    y = [np.array([0, 2, 1]), np.array([0.5, 1.5, 2.5], np.float32)]
    assert default_loss(model, y=y) == ["sparse_categorical_crossentropy", "mse"]


def test_default_metrics_follow_the_loss_per_output():
    """accuracy for an output trained with a cross-entropy, mae for the others; Keras takes
    the per-output lists and names the epoch figures by output."""
    from edgeflow.models import default_metrics

    inputs = keras.Input((4,))
    h = keras.layers.Dense(8)(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(3, name="cls")(h), keras.layers.Dense(1, name="reg")(h)])
    y = [np.array([0, 2, 1]), np.array([0.5, 1.5, 2.5], np.float32)]
    assert default_metrics(model, y=y) == [["accuracy"], ["mae"]]
    model.compile("adam", {"reg": "mae", "cls": "categorical_crossentropy"}, metrics=default_metrics(model, y=y))
    assert default_metrics(model) == [["accuracy"], ["mae"]]
    history = model.fit(np.zeros((3, 4), np.float32), [np.eye(3, dtype=np.float32), y[1]], epochs=1, verbose=0)
    assert sorted(history.history) == ["cls_accuracy", "cls_loss", "loss", "reg_loss", "reg_mae"]
