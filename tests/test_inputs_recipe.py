"""A recipe for a model with several inputs: its .npz holds one array per input
(``x:<input name>``), split, trained, converted and scored with the inputs fed by name."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from _schema import document
from click.testing import CliRunner

from edgeflow._keras import keras

SEED, TEST_FRACTION = 0, 0.25


def _features(images: np.ndarray) -> np.ndarray:
    """Six numbers per image standing in for an IMU: ink in each half (top, bottom, left,
    right), the mean and the spread of the pixels."""
    im = images[..., 0]
    return np.stack([im[:, :4].mean((1, 2)), im[:, 4:].mean((1, 2)), im[:, :, :4].mean((1, 2)),
                     im[:, :, 4:].mean((1, 2)), im.mean((1, 2)), im.std((1, 2))], 1).astype(np.float32)


@pytest.fixture(scope="module")
def fusion(digits, tmp_path_factory):
    """A two-input model (8x8x1 image ``img`` + 6 features ``imu``), its file, and an .npz
    of all digits with ``x:img``, ``x:imu`` and ``y``."""
    (x_tr, y_tr), (x_te, y_te) = digits
    x, y = np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te])
    keras.utils.set_random_seed(0)
    img, imu = keras.Input((8, 8, 1), name="img"), keras.Input((6,), name="imu")
    h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(img))
    h = keras.layers.Concatenate()([h, keras.layers.Dense(8, activation="relu")(imu)])
    model = keras.Model([img, imu], keras.layers.Dense(10, activation="softmax")(h))
    folder = tmp_path_factory.mktemp("fusion")
    model.save(folder / "fusion.keras")
    np.savez(folder / "data.npz", y=y, **{"x:img": x, "x:imu": _features(x)})
    imu = _features(x)
    for name, arrays in BAD.items():
        np.savez(folder / f"{name}.npz", y=y, **arrays(x, imu))
    return folder, x, y


# bad data files (made from the images and features) and the error after "<recipe>: data.path: "
BAD = {
    "no_imu": lambda x, imu: {"x:img": x},
    "short_imu": lambda x, imu: {"x:img": x, "x:imu": imu[1:]},
    "imu_shape": lambda x, imu: {"x:img": x, "x:imu": imu[:, :5]},
    "extra": lambda x, imu: {"x:img": x, "x:imu": imu, "x:gps": imu},
    "nan_imu": lambda x, imu: {"x:img": x, "x:imu": np.where(np.arange(6) == 2, np.nan, imu)},
}
ERRORS = {
    "no_imu": "the data has no array x:imu for input 'imu': the model's inputs are img, imu; save "
              "one array per input as x:<input name>",
    "short_imu": "{d}/short_imu.npz: x:img has 1797 samples but x:imu has 1796: every array needs "
                 "one row per sample",
    "imu_shape": "the data for input 'imu' has samples of shape (5,) but the input is (N, 6): "
                 "reshape the data to the model's input",
    "extra": "the data has array x:gps but the model has no input 'gps'; its inputs are img, imu",
    "nan_imu": "x:imu of the training split holds 1214 NaN or infinite value(s) (first in sample "
               "0): remove or replace them before converting or training",
}


def _recipe(folder, tmp_path, data: str, stages=None) -> str:
    recipe = {
        "name": "fusion", "seed": SEED,
        "model": {"path": str(folder / "fusion.keras")},
        "data": {"source": "npz", "path": str(folder / data), "test_fraction": TEST_FRACTION,
                 "validation_fraction": 0.1, "calibration_samples": 64},
        "stages": stages or [{"stage": "train", "epochs": 1}, {"stage": "convert", "mode": "int8"},
                             {"stage": "check", "devices": ["arduino-nano-33-ble"], "measure": False}],
    }
    path = tmp_path / "fusion.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _split(y):
    """The test and training rows, computed here: the seed's permutation, the first quarter."""
    order = np.random.default_rng(SEED).permutation(len(y))
    n_test = int(len(y) * TEST_FRACTION)
    return order[:n_test], order[n_test:]


def _accuracy_by_name(tflite: bytes, x, y) -> float:
    """The .tflite's accuracy on LiteRT, each sample fed by input name (its signature)."""
    from edgeflow.runtime import litert

    runner = litert.interpreter(tflite).get_signature_runner("serving_default")
    details = runner.get_input_details()

    def q(name, v):  # int8 inputs: v / scale + zero point, rounded and clipped
        scale, zero = details[name]["quantization"]
        return np.clip(np.round(v / scale + zero), -128, 127).astype(np.int8)

    scores = np.concatenate([runner(img=q("img", x[i: i + 1]), imu=q("imu", _features(x[i: i + 1])))
                             ["output_0"] for i in range(len(x))])  # int8: argmax as in float
    return float(np.mean(np.argmax(scores, 1) == y))


def test_a_two_input_recipe_runs_from_npz_inputs_by_name(fusion, tmp_path):
    from edgeflow.cli import main

    folder, x, y = fusion
    out = tmp_path / "run"
    run = CliRunner().invoke(main, ["run", _recipe(folder, tmp_path, "data.npz"), "-o", str(out), "--json"])
    assert run.exit_code in (0, 1), run.output  # 1: the board does not fit; the run is done
    stages = document(run.output)["result"]["stages"]
    assert [s["stage"] for s in stages] == ["train", "convert", "check"]
    tflite = (out / stages[1]["artifact"]).read_bytes()
    test, _ = _split(y)
    assert stages[1]["tflite_accuracy"] == _accuracy_by_name(tflite, x[test], y[test])
    assert stages[2]["extra"]["fits"].endswith("/1 devices")


def test_the_split_form_takes_inputs_by_name(fusion, tmp_path):
    """x_train:<name>/x_test:<name> with y_train/y_test: the test rows are the file's."""
    from edgeflow.cli import main

    folder, x, y = fusion
    test, train = _split(y)
    imu = _features(x)
    np.savez(tmp_path / "split.npz", y_train=y[train], y_test=y[test], **{
        "x_train:img": x[train], "x_train:imu": imu[train], "x_test:imu": imu[test], "x_test:img": x[test]})
    out = tmp_path / "run"
    path = _recipe(folder, tmp_path, str(tmp_path / "split.npz"), [{"stage": "convert", "mode": "int8"}])
    run = CliRunner().invoke(main, ["run", path, "-o", str(out), "--json"])
    assert run.exit_code == 0, run.output
    stage = document(run.output)["result"]["stages"][0]
    tflite = (out / stage["artifact"]).read_bytes()
    assert stage["tflite_accuracy"] == _accuracy_by_name(tflite, x[test], y[test])


@pytest.mark.parametrize("bad", list(BAD))
def test_bad_input_arrays_are_refused_before_work(fusion, bad, tmp_path):
    from edgeflow.cli import main

    folder, _, _ = fusion
    path = _recipe(folder, tmp_path, f"{bad}.npz")
    out = tmp_path / "run"
    expected = [f"error: {path}: data.path: " + ERRORS[bad].format(d=folder)]
    run = CliRunner().invoke(main, ["run", path, "-o", str(out)])
    assert (run.exit_code, run.output.strip().splitlines()) == (2, expected)
    assert not out.exists()
    check = CliRunner().invoke(main, ["validate", path])
    assert (check.exit_code, check.output.strip().splitlines()) == (2, expected)


def test_quantize_takes_npz_inputs_by_name(fusion, tmp_path):
    """edgeflow quantize --data/--eval-data: x:<input name> arrays; the scores equal LiteRT's
    on the written file fed the inputs in the model's order; a missing input exits 2."""
    from edgeflow.cli import main
    from edgeflow.models import load_model
    from edgeflow.runtime import litert

    folder, x, y = fusion
    imu = _features(x)
    np.savez(tmp_path / "calib.npz", **{"x:imu": imu[:64], "x:img": x[:64]})
    np.savez(tmp_path / "eval.npz", y=y[1500:], **{"x:img": x[1500:], "x:imu": imu[1500:]})
    args = ["quantize", str(folder / "fusion.keras"), "--mode", "int8", "--data", str(tmp_path / "calib.npz"),
            "--eval-data", str(tmp_path / "eval.npz"), "--max-drop", "100", "--json"]
    run = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "q.tflite")])
    assert run.exit_code == 0, run.output
    result = document(run.output)["result"]
    keras_pred = load_model(folder / "fusion.keras").predict([x[1500:], imu[1500:]], verbose=0)
    lite_pred = litert.predict((tmp_path / "q.tflite").read_bytes(), [x[1500:], imu[1500:]])
    assert result["keras_metrics"]["accuracy"] == float(np.mean(np.argmax(keras_pred, 1) == y[1500:]))
    assert result["tflite_metrics"]["accuracy"] == float(np.mean(np.argmax(lite_pred, 1) == y[1500:]))

    np.savez(tmp_path / "no_imu.npz", **{"x:img": x[:64]})
    bad = CliRunner().invoke(main, ["quantize", str(folder / "fusion.keras"), "--mode", "int8", "--data",
                                    str(tmp_path / "no_imu.npz"), "-o", str(tmp_path / "bad.tflite")])
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        "error: the data (--data) has no array x:imu for input 'imu': the model's inputs are img, "
        "imu; save one array per input as x:<input name>"]
    assert not (tmp_path / "bad.tflite").exists()


def test_a_recipe_distills_a_two_input_model(fusion, tmp_path):
    """train -> distill (the trained model teaches the current one, soft labels) -> convert:
    the distiller feeds both inputs to student and teacher; the student keeps its two inputs."""
    from edgeflow.pipeline import run_recipe

    folder, _, _ = fusion
    path = _recipe(folder, tmp_path, "data.npz", stages=[
        {"stage": "train", "epochs": 1},
        {"stage": "distill", "teacher": "train", "losses": ["soft"], "epochs": 1},
        {"stage": "convert", "mode": "int8"}])
    result = run_recipe(path, output_dir=tmp_path / "run", verbose=0)
    assert [r.stage for r in result.records] == ["train", "distill", "convert"]
    student = keras.models.load_model(result.artifact_path(result.records[1]), compile=False)
    assert [t.name.split(":")[0] for t in student.inputs] == ["img", "imu"]
    assert result.records[2].tflite_accuracy is not None
