"""`validate` and the start of `run` check every name and path of a recipe before any work."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from edgeflow.cli import main
from edgeflow.pipeline import check_recipe
from edgeflow.recipe import PACKAGED, load_recipe

QUICKSTART = yaml.safe_load((PACKAGED / "quickstart.yaml").read_text())
KNOWN = ("arduino-nano-33-ble, arduino-portenta-h7, coral-dev-board, coral-usb-accelerator, "
         "esp32-s3-devkitc-1, nucleo-h743zi, raspberry-pi-4, raspberry-pi-5, raspberry-pi-pico, "
         "sparkfun-edge, stm32f746g-disco")


def _distill(**kwargs):
    return lambda r: r["stages"].insert(2, {"stage": "distill", **kwargs})


# (name, change to the quickstart recipe, the error after "<recipe>: ", with {d} the recipe's folder)
CASES = [
    ("board", lambda r: r["stages"][4].update(devices=["nucleo-h74"]),
     "stages.4.devices: unknown device 'nucleo-h74' (did you mean 'nucleo-h743zi'?); known "
     f"devices: {KNOWN} (or give a profile .yaml, or a folder of profiles: --devices-dir, or devices_dir in a recipe)"),
    ("devices_dir", lambda r: r["stages"][4].update(devices_dir="boards"),
     "stages.4.devices_dir: device profile path {d}/boards does not exist"),
    ("model_file", lambda r: r.update(model={"path": "missing.keras"}),
     "model.path: model file '{d}/missing.keras' does not exist"),
    ("builder", lambda r: r.update(model={"builder": "digits_cn"}),
     "model.builder: unknown model builder 'digits_cn' (did you mean 'digits_cnn'?); use one of "
     "digits_cnn or a keras.applications class such as MobileNetV2"),
    ("data_file", lambda r: r.update(data={"source": "npz", "path": "nope.npz"}),
     "data.path: data file '{d}/nope.npz' does not exist"),
    ("array_names", lambda r: r.update(data={"source": "npz", "path": "names.npz"}),
     "data.path: {d}/names.npz needs arrays x and y (or x_train, y_train, x_test, y_test; several "
     "inputs: one x:<input name> per input; several outputs: one y:<output name> per output); it "
     "has a, b"),
    ("shape", lambda r: r.update(data={"source": "npz", "path": "flat.npz"}),
     "data.path: data samples have shape (64,) but the model input is (N, 8, 8, 1): reshape the "
     "data to the model's input"),
    ("labels", lambda r: r.update(data={"source": "npz", "path": "labels.npz"}),
     "data.path: the training split labels range from 0 to 39 but the output has 10 units: class "
     "labels must be whole numbers in [0, 9]"),
    ("teacher", _distill(teacher="big.keras"),
     "stages.2.teacher: teacher '{d}/big.keras' is neither a stage before it (train, prune) nor "
     "an existing model file"),
    ("pairs", _distill(teacher="train", losses=["soft", "feature"], feature_pairs={"conv1": "conv9"}),
     "stages.2.feature_pairs: the student has no layer 'conv9' (did you mean 'conv2'?)"),
]


@pytest.fixture
def folder(tmp_path):
    """A recipe folder with data files, and another current folder to run from."""
    d = tmp_path / "recipes"
    d.mkdir()
    rng = np.random.default_rng(0)
    np.savez(d / "ok.npz", x=rng.random((40, 8, 8, 1), np.float32), y=np.arange(40) % 10)
    np.savez(d / "names.npz", a=np.zeros(3), b=np.zeros(3))
    np.savez(d / "flat.npz", x=np.zeros((40, 64), np.float32), y=np.arange(40) % 10)
    np.savez(d / "labels.npz", x=np.zeros((40, 8, 8, 1), np.float32), y=np.arange(40))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return d, elsewhere


def _write(d, name, mutate) -> str:
    raw = copy.deepcopy(QUICKSTART)
    raw["output_dir"] = str(d.parent / f"out-{name}")
    mutate(raw)
    path = d / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize(("name", "mutate", "error"), CASES, ids=[c[0] for c in CASES])
def test_each_missing_name_fails_before_any_work(folder, monkeypatch, name, mutate, error):
    d, elsewhere = folder
    monkeypatch.chdir(elsewhere)  # paths resolve against the recipe's folder, not this one
    recipe = _write(d, name, mutate)
    expected = f"error: {recipe}: {error.format(d=d)}"
    runner = CliRunner()
    for command in (["validate", recipe], ["run", recipe], ["run", recipe, "-o", "given"]):
        result = runner.invoke(main, command)
        assert result.exit_code == 2, result.output
        assert result.output.strip() == expected  # one line, before any progress line
    assert not (d.parent / f"out-{name}").exists() and list(elsewhere.iterdir()) == []


def test_relative_paths_resolve_against_the_recipe_folder(folder, monkeypatch):
    d, elsewhere = folder
    monkeypatch.chdir(elsewhere)
    recipe = _write(d, "ok", lambda r: r.update(data={"source": "npz", "path": "ok.npz"}))
    assert load_recipe(recipe).data.path == str(d / "ok.npz")
    assert check_recipe(recipe).name == "quickstart"
    result = CliRunner().invoke(main, ["validate", recipe])
    assert result.exit_code == 0, result.output
    # A path given on the command line is the current folder's, like any typed path.
    (elsewhere / "mine.npz").write_bytes((d / "ok.npz").read_bytes())
    assert load_recipe(recipe, ["data.path=mine.npz"]).data.path == str(elsewhere / "mine.npz")
    assert load_recipe(recipe, ["data={source: npz, path: mine.npz}"]).data.path == str(
        elsewhere / "mine.npz")


SEARCH_CASES = [
    ("key", {"space": {"stages.9.ratio": [0.1]}},
     "search: search key 'stages.9.ratio' names no recipe key ('9')"),
    ("range", {"space": {"stages.0.learning_rate": {"low": 0, "high": 0.1}}},
     "search: search key 'stages.0.learning_rate' = 0: stages.0.learning_rate: 0.0 is not a finite "
     "number > 0 (the optimizer's step size)"),
    ("order", {"space": {"stages.1.epochs": {"low": 2, "high": 1}}},
     "search.space.stages.1.epochs: high (1) is below low (2)"),
    ("kind", {"space": {"stages.1.epochs": 3}},
     "search.space.stages.1.epochs: give a list of values or a range {low: ..., high: ...} (got 3)"),
    ("board", {"device": "nucleo-h74", "space": {"stages.0.epochs": [1, 2]}},
     "unknown device 'nucleo-h74' (did you mean 'nucleo-h743zi'?); known "
     f"devices: {KNOWN} (or give a profile .yaml, or a folder of profiles: --devices-dir, or devices_dir in a recipe)"),
]


@pytest.mark.parametrize(("name", "section", "error"), SEARCH_CASES, ids=[c[0] for c in SEARCH_CASES])
def test_validate_checks_the_search_section(folder, name, section, error):
    """`validate` runs the search's own pre-checks: keys, both ends of each range, the board."""
    d, _ = folder
    recipe = _write(d, name, lambda r: r.update(search=section))
    result = CliRunner().invoke(main, ["validate", recipe])
    assert result.exit_code == 2, result.output
    prefix = "" if name == "board" else f"{recipe}: "
    assert result.output.strip() == f"error: {prefix}{error}"
