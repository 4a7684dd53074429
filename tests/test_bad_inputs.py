"""Every command, every kind of bad input: exit 2, one ``error:`` line, nothing written.

The sweep gives each command missing, corrupt and wrong-type model files, bad data (missing,
corrupt, wrong shape, NaN, labels out of range, wrong array names), unknown boards, bad
recipes, outputs that cannot be written (an existing folder, under a file, a folder no one
may write in), numbers out of range and options that contradict each other. Each case
must be refused by the checks before any work (so each takes about a second), and leave
the current folder (with the user's ``runs/``), the folder of the inputs, the temporary
folder and edgeflow's cache folder exactly as they were: no output, no empty folder, no
hidden temporary file.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from edgeflow.cli import main

# ``/sys`` takes no new file from anyone, root included: an output folder no one may write in.
LOCKED = "/sys/edgeflow-sweep"

TINY = {"name": "tiny", "model": {"builder": "digits_cnn"},
        "data": {"source": "digits", "test_fraction": 0.5, "validation_fraction": 0},
        "stages": [{"stage": "convert", "mode": "float32"}]}


def _recipe(**changes) -> str:
    recipe = {**TINY, **changes}
    return yaml.safe_dump({k: v for k, v in recipe.items() if v is not None})


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """The user's input files, good and bad, in a folder of their own."""
    from edgeflow._keras import keras
    from edgeflow.convert import convert

    lib = tmp_path_factory.mktemp("inputs")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax", name="fc")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.save(lib / "m.keras")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, (16, 8, 8, 1)).astype(np.float32), rng.integers(0, 10, 16)
    (lib / "m.tflite").write_bytes(convert(model, "int8", x))
    np.savez(lib / "d.npz", x=x, y=y)
    nan = x.copy()
    nan[3, 2, 2, 0] = np.nan
    np.savez(lib / "nan.npz", x=nan, y=y)
    np.savez(lib / "shape.npz", x=x.reshape(16, 64), y=y)
    np.savez(lib / "labels.npz", x=x, y=y + 12)
    np.savez(lib / "keys.npz", a=x, b=y)
    np.save(lib / "x.npy", x)
    np.save(lib / "shape.npy", x.reshape(16, 64))
    (lib / "corrupt.npz").write_bytes(b"PK\x03\x04 not a zip archive")
    (lib / "corrupt.keras").write_bytes(b"not a Keras file\n" * 8)
    (lib / "corrupt.h5").write_bytes((lib / "m.keras").read_bytes()[:200])
    (lib / "empty.tflite").write_bytes(b"")
    (lib / "corrupt.tflite").write_bytes((lib / "m.tflite").read_bytes()[:300])
    (lib / "folder").mkdir()
    (lib / "layers.py").write_text("CUSTOM_OBJECTS = {}\n")
    (lib / "boards").mkdir()
    (lib / "boards" / "bad.yaml").write_text("name: bad-board\nram_bytes: lots\n")
    (lib / "syntax.yaml").write_text("name: [unclosed\n")
    (lib / "unknown-key.yaml").write_text(_recipe(colour="blue"))
    (lib / "unknown-stage.yaml").write_text(_recipe(stages=[{"stage": "polish"}]))
    (lib / "missing-model.yaml").write_text(_recipe(model={"path": "nowhere.keras"}))
    (lib / "missing-data.yaml").write_text(_recipe(data={"source": "npz", "path": "nowhere.npz"}))
    (lib / "nan-data.yaml").write_text(_recipe(model={"path": "m.keras"},
                                               data={"source": "npz", "path": "nan.npz"}))
    (lib / "bad-board.yaml").write_text(_recipe(stages=[{"stage": "convert"},
                                                        {"stage": "check", "devices": ["nosuch-board"]}]))
    (lib / "lut-arena.yaml").write_text(_recipe(stages=[{"stage": "convert", "lut": True, "lut_max_arena": 0}]))
    (lib / "tiny.yaml").write_text(_recipe())
    (lib / "firmware-check.yaml").write_text(_recipe(stages=[
        {"stage": "convert"}, {"stage": "check", "devices": ["arduino-nano-33-ble"], "firmware": True, "timeout": 0}]))
    return lib


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The current folder (with the user's files and runs/), a private temporary folder and
    cache folder: everything a failed command could leave something in."""
    work = tmp_path / "work"
    (work / "runs" / "tiny" / "20260101-000000").mkdir(parents=True)
    (work / "runs" / "tiny" / "20260101-000000" / "notes.txt").write_text("the user's\n")
    (work / "taken").mkdir()
    (work / "taken" / "app.c").write_text("int main(void) { return 0; }\n")
    (work / "empty").mkdir()
    (work / "dir.keras").mkdir()
    (work / "note.txt").write_text("a file\n")
    (work / "existing.tflite").write_bytes(b"the user's model")
    (tmp_path / "tmp").mkdir()
    (tmp_path / "cache" / "edgeflow").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return work


def _snapshot(*folders: Path) -> dict[str, str]:
    """Every file and folder (hidden ones too) under ``folders``: content hash or 'folder'."""
    seen = {}
    for folder in folders:
        for path in [folder, *sorted(folder.rglob("*"))]:
            if path.is_symlink():
                seen[str(path)] = f"link {path.readlink()}"
            elif path.is_dir():
                seen[str(path)] = "folder"
            else:
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


M, T, D = "{L}/m.keras", "{L}/m.tflite", "{L}/d.npz"
#: the shipped board profiles, as "unknown device" lists them
BOARDS = ", ".join(sorted(p.stem for p in (Path(__file__).parents[1] / "edgeflow" / "_data" / "devices").glob("*.yaml") if not p.stem.startswith("_")))

# case: (command line with {L} for the inputs folder, the error line without "error: ")
CASES = {
    # ------------------------------------------------------------------ export
    "export missing model": (["export", "{L}/missing.keras", "-o", "o.tflite"], "model file '{L}/missing.keras' does not exist"),
    "export corrupt model": (["export", "{L}/corrupt.keras", "-o", "o.tflite"], "{L}/corrupt.keras is not a Keras model: expected a .keras zip, an HDF5 (.h5) file or a SavedModel folder"),
    "export truncated h5": (["export", "{L}/corrupt.h5", "-o", "o.tflite"], "{L}/corrupt.h5 is not a Keras model: expected a .keras zip, an HDF5 (.h5) file or a SavedModel folder"),
    "export folder as model": (["export", "{L}/folder", "-o", "o.tflite"], "{L}/folder is a directory but not a SavedModel (no saved_model.pb)"),
    "export data file as model": (["export", D, "-o", "o.tflite"], "cannot load {L}/d.npz as a Keras model (\"There is no item named 'config.json' in the archive\"); pass a .keras/.h5 file or a SavedModel directory saved by Keras, with --custom-objects for custom layers"),
    "export missing data": (["export", M, "-o", "o.tflite", "--data", "{L}/missing.npz"], "data file '{L}/missing.npz' does not exist"),
    "export corrupt data": (["export", M, "-o", "o.tflite", "--data", "{L}/corrupt.npz"], "cannot read {L}/corrupt.npz as .npy/.npz data: File is not a zip file"),
    "export NaN data": (["export", M, "-o", "o.tflite", "--data", "{L}/nan.npz"], "the calibration data holds 1 NaN or infinite value(s) (first in sample 3): remove or replace them before converting or training"),
    "export wrong shape data": (["export", M, "-o", "o.tflite", "--data", "{L}/shape.npz"], "data samples have shape (64,) but the model input is (N, 8, 8, 1): reshape the data to the model's input"),
    "export output is a folder": (["export", M, "-o", "empty", "--data", D], "empty is a folder: name the output file, e.g. empty/model.tflite"),
    "export output exists": (["export", M, "-o", "existing.tflite", "--data", D], "existing.tflite exists: pass --force to overwrite it, or choose another output"),
    "export output under a file": (["export", M, "-o", "note.txt/o.tflite", "--data", D], "cannot write note.txt/o.tflite: note.txt is a file, not a folder"),
    "export output not writable": (["export", M, "-o", LOCKED + ".tflite", "--data", D], "cannot write /sys/edgeflow-sweep.tflite: /sys takes no new file (Permission denied): choose another output"),
    "export output in a new folder not writable": (["export", M, "-o", LOCKED + "/new/o.tflite", "--data", D], "cannot write /sys/edgeflow-sweep/new/o.tflite: /sys takes no new file (Permission denied): choose another output"),
    "export c output under a file": (["export", T, "--format", "c", "-o", "note.txt/model"], "cannot write note.txt/model.h: note.txt is a file, not a folder"),
    "export num-samples 0": (["export", M, "-o", "o.tflite", "--num-samples", "0"], "Invalid value for '--num-samples': 0 is not an integer >= 1 (calibration samples) (see 'edgeflow export --help')"),
    "export lut-bits 99": (["export", M, "-o", "o.tflite", "--lut", "--lut-bits", "99"], "Invalid value for '--lut-bits': 99 is not an integer in [1, 7] (bits per table index) (see 'edgeflow export --help')"),
    "export lut-max-arena 0": (["export", M, "-o", "o.tflite", "--lut", "--lut-max-arena", "0"], "Invalid value for '--lut-max-arena': 0 is not an integer in [1, 4294967295] (tensor arena bytes), or 'same' (see 'edgeflow export --help')"),
    "export lut-max-arena word": (["export", M, "-o", "o.tflite", "--lut", "--lut-max-arena", "small"], "Invalid value for '--lut-max-arena': small is not an integer in [1, 4294967295] (tensor arena bytes), or 'same' (see 'edgeflow export --help')"),
    "export bad input type": (["export", M, "-o", "o.tflite", "--input-type", "int4"], "input_type 'int4' is not possible in int8 mode; choose one of int8, uint8, float32"),
    "export named and unnamed shapes": (["export", M, "-o", "o.tflite", "--input-shape", "a=1,8,8,1",
                                         "--input-shape", "1,8,8,1"], "--input-shape: name every input (NAME=1,50,8) or none (see 'edgeflow export --help')"),
    "export custom objects without unsafe": (["export", M, "-o", "o.tflite", "--custom-objects",
                                              "{L}/layers.py"], "custom objects from {L}/layers.py run that Python file: pass --unsafe (recipe: model.unsafe: true) too, only if you trust it"),
    # ------------------------------------------------------------------ inspect
    "inspect missing model": (["inspect", "{L}/missing.tflite"], "model file '{L}/missing.tflite' does not exist"),
    "inspect empty file": (["inspect", "{L}/empty.tflite"], "{L}/empty.tflite is empty: pass a .tflite file written by the TFLite converter"),
    "inspect truncated": (["inspect", "{L}/corrupt.tflite"], "{L}/corrupt.tflite is truncated or corrupt (a flatbuffer offset runs past the end of its 300 bytes): convert the model again"),
    "inspect keras file": (["inspect", M], "{L}/m.keras is not a TFLite flatbuffer (no 'TFL3' identifier): pass a .tflite model"),
    "inspect folder": (["inspect", "{L}/folder"], "'{L}/folder' is a directory, not a .tflite file"),
    # ------------------------------------------------------------------ check
    "check missing model": (["check", "{L}/missing.tflite", "-d", "all"], "model file {L}/missing.tflite does not exist"),
    "check keras file": (["check", M, "-d", "all"], "{L}/m.keras is a Keras/TensorFlow model; check needs a .tflite file: convert it first (edgeflow export {L}/m.keras -o model.tflite)"),
    "check truncated": (["check", "{L}/corrupt.tflite", "-d", "all"], "{L}/corrupt.tflite is truncated or corrupt (a flatbuffer offset runs past the end of its 300 bytes): convert the model again"),
    "check unknown board": (["check", T, "-d", "nosuch-board"], "unknown device 'nosuch-board' (did you mean 'coral-dev-board'?); known devices: {BOARDS} (or give a profile .yaml, or a folder of profiles: --devices-dir, or devices_dir in a recipe)"),
    "check missing devices dir": (["check", T, "-d", "all", "--devices-dir", "{L}/nowhere"], "device profile path {L}/nowhere does not exist"),
    "check bad board profile": (["check", T, "-d", "all", "--devices-dir", "{L}/boards"], "{L}/boards/bad.yaml: key 'display_name': required key is missing (and 13 more problems)"),
    "check timeout 0": (["check", T, "-d", "all", "--timeout", "0"], "Invalid value for '--timeout': 0 is not a finite number > 0 (seconds each emulated firmware run may take) (see 'edgeflow check --help')"),
    "check timeout not a number": (["check", T, "-d", "all", "--timeout", "soon"], "Invalid value for '--timeout': soon is not a finite number > 0 (seconds each emulated firmware run may take) (see 'edgeflow check --help')"),
    "check timeout without firmware": (["check", T, "-d", "all", "--no-firmware", "--timeout", "60"], "--timeout applies to the emulated firmware run, which --no-firmware turns off: drop one of them (see 'edgeflow check --help')"),
    "check timeout without measuring": (["check", T, "-d", "all", "--no-measure", "--timeout", "60"], "--timeout applies to the emulated firmware run, which --no-measure turns off: drop one of them (see 'edgeflow check --help')"),
    "check html output is a folder": (["check", T, "-d", "all", "--html", "empty"],
                                      "empty is a folder: name the output file, e.g. empty/check.html"),
    "check html output under a file": (["check", T, "-d", "all", "--html", "note.txt/c.html"],
                                       "cannot write note.txt/c.html: note.txt is a file, not a folder"),
    "check html output exists": (["check", T, "-d", "all", "--html", "note.txt"],
                                 "note.txt exists: pass --force to overwrite it, or choose another output"),
    # ------------------------------------------------------------------ prune
    "prune missing model": (["prune", "{L}/missing.keras", "-o", "o.keras", "--data", D], "model file '{L}/missing.keras' does not exist"),
    "prune corrupt model": (["prune", "{L}/corrupt.keras", "-o", "o.keras", "--data", D], "{L}/corrupt.keras is not a Keras model: expected a .keras zip, an HDF5 (.h5) file or a SavedModel folder"),
    "prune tflite model": (["prune", T, "-o", "o.keras", "--data", D], "{L}/m.tflite is not a Keras model: expected a .keras zip, an HDF5 (.h5) file or a SavedModel folder"),
    "prune NaN data": (["prune", M, "-o", "o.keras", "--data", "{L}/nan.npz"], "the data (--data) holds 1 NaN or infinite value(s) (first in sample 3): remove or replace them before converting or training"),
    "prune labels out of range": (["prune", M, "-o", "o.keras", "--data", "{L}/labels.npz"], "the data (--data) labels range from 12 to 21 but the output has 10 units: class labels must be whole numbers in [0, 9]"),
    "prune wrong array names": (["prune", M, "-o", "o.keras", "--data", "{L}/keys.npz"], "the data (--data) '{L}/keys.npz' holds no labels: save it with np.savez(path, x=x, y=y)"),
    "prune unlabelled data": (["prune", M, "-o", "o.keras", "--data", "{L}/x.npy"], "the data (--data) '{L}/x.npy' holds no labels: save it with np.savez(path, x=x, y=y)"),
    "prune wrong shape data": (["prune", M, "-o", "o.keras", "--data", "{L}/shape.npz"], "data samples have shape (64,) but the model input is (N, 8, 8, 1): reshape the data to the model's input"),
    "prune missing eval data": (["prune", M, "-o", "o.keras", "--data", D, "--eval-data",
                                 "{L}/missing.npz"], "data file '{L}/missing.npz' does not exist"),
    "prune output not keras": (["prune", M, "-o", "o.h5", "--data", D], "write the pruned model to a .keras file, not 'o.h5'"),
    "prune output is a folder": (["prune", M, "-o", "dir.keras", "--data", D], "dir.keras is a folder: name the output file, e.g. dir.keras/pruned.keras"),
    "prune output not writable": (["prune", M, "-o", LOCKED + ".keras", "--data", D], "cannot write /sys/edgeflow-sweep.keras: /sys takes no new file (Permission denied): choose another output"),
    "prune sparsity 1": (["prune", M, "-o", "o.keras", "--data", D, "--sparsity", "1"], "Invalid value for '--sparsity': 1 is not a finite number in [0, 1) (fraction of weights set to zero) (see 'edgeflow prune --help')"),
    "prune bad m-by-n": (["prune", M, "-o", "o.keras", "--data", D, "--m-by-n", "5:4"], "m_by_n=(5, 4): need 0 < m < n (m zeros in every n weights)"),
    "prune magnitude without data": (["prune", M, "-o", "o.keras"], "magnitude pruning fine-tunes while it prunes: pass --data FILE.npz with x and y"),
    "prune unknown layer": (["prune", M, "-o", "o.keras", "--data", D, "--layer", "nosuch=0.5"], "per_layer key 'nosuch' matches no layer with weights; layers: conv, fc"),
    # ------------------------------------------------------------------ quantize
    "quantize missing model": (["quantize", "{L}/missing.keras", "-o", "o.tflite", "--data", D], "model file '{L}/missing.keras' does not exist"),
    "quantize tflite model": (["quantize", T, "-o", "o.tflite", "--data", D], "{L}/m.tflite is not a Keras model: expected a .keras zip, an HDF5 (.h5) file or a SavedModel folder"),
    "quantize qat without data": (["quantize", M, "-o", "o.tflite", "--mode", "qat"], "--mode qat trains: --data must be a .npz with x and y (labels)"),
    "quantize qat unlabelled data": (["quantize", M, "-o", "o.tflite", "--mode", "qat", "--data",
                                      "{L}/x.npy"], "--mode qat trains: --data must be a .npz with x and y (labels)"),
    "quantize NaN data": (["quantize", M, "-o", "o.tflite", "--data", "{L}/nan.npz"], "the calibration data holds 1 NaN or infinite value(s) (first in sample 3): remove or replace them before converting or training"),
    "quantize qat labels out of range": (["quantize", M, "-o", "o.tflite", "--mode", "qat", "--data",
                                          "{L}/labels.npz"], "the QAT data labels range from 12 to 21 but the output has 10 units: class labels must be whole numbers in [0, 9]"),
    "quantize wrong shape data": (["quantize", M, "-o", "o.tflite", "--data", "{L}/shape.npz"], "data samples have shape (64,) but the model input is (N, 8, 8, 1): reshape the data to the model's input"),
    "quantize output is a folder": (["quantize", M, "-o", "empty", "--data", D], "empty is a folder: name the output file, e.g. empty/model.tflite"),
    "quantize output not writable": (["quantize", M, "-o", LOCKED + ".tflite", "--data", D], "cannot write /sys/edgeflow-sweep.tflite: /sys takes no new file (Permission denied): choose another output"),
    "quantize learning rate negative": (["quantize", M, "-o", "o.tflite", "--mode", "qat", "--data", D,
                                         "--learning-rate", "-1"], "Invalid value for '--learning-rate': -1 is not a finite number > 0 (the optimizer's step size) (see 'edgeflow quantize --help')"),
    "quantize keep-float with float16": (["quantize", M, "-o", "o.tflite", "--mode", "float16",
                                          "--keep-float", "2", "--data", D], "--keep-float works with --mode int8 (post-training int8)"),
    # ------------------------------------------------------------------ distill
    "distill missing teacher": (["distill", "--teacher", "{L}/missing.keras", "--student", M,
                                 "--data", D, "-o", "o.keras"], "model file '{L}/missing.keras' does not exist"),
    "distill corrupt student": (["distill", "--teacher", M, "--student", "{L}/corrupt.keras",
                                 "--data", D, "-o", "o.keras"], "{L}/corrupt.keras is not a Keras model: expected a .keras zip, an HDF5 (.h5) file or a SavedModel folder"),
    "distill wrong array names": (["distill", "--teacher", M, "--student", M, "--data", "{L}/keys.npz",
                                   "-o", "o.keras"], "the data (--data) '{L}/keys.npz' holds no labels: save it with np.savez(path, x=x, y=y)"),
    "distill labels out of range": (["distill", "--teacher", M, "--student", M, "--data",
                                     "{L}/labels.npz", "-o", "o.keras"], "the data (--data) labels range from 12 to 21 but the output has 10 units: class labels must be whole numbers in [0, 9]"),
    "distill NaN data": (["distill", "--teacher", M, "--student", M, "--data", "{L}/nan.npz",
                          "-o", "o.keras"], "the data (--data) holds 1 NaN or infinite value(s) (first in sample 3): remove or replace them before converting or training"),
    "distill wrong shape data": (["distill", "--teacher", M, "--student", M, "--data", "{L}/shape.npz",
                                  "-o", "o.keras"], "data samples have shape (64,) but the model input is (N, 8, 8, 1): reshape the data to the model's input"),
    "distill output suffix": (["distill", "--teacher", M, "--student", M, "--data", D, "-o", "o.txt"], "output 'o.txt' must end in .keras or .h5"),
    "distill output under a file": (["distill", "--teacher", M, "--student", M, "--data", D,
                                     "-o", "note.txt/o.keras"], "cannot write note.txt/o.keras: note.txt is a file, not a folder"),
    "distill temperature 0": (["distill", "--teacher", M, "--student", M, "--data", D, "-o", "o.keras",
                               "--temperature", "0"], "Invalid value for '--temperature': 0 is not a finite number > 0 (softmax temperature) (see 'edgeflow distill --help')"),
    "distill unknown loss": (["distill", "--teacher", M, "--student", M, "--data", D, "-o", "o.keras",
                              "--loss", "shiny"], "unknown distillation loss 'shiny'; valid losses are soft, feature, attention"),
    "distill feature loss without pairs": (["distill", "--teacher", M, "--student", M, "--data", D,
                                            "-o", "o.keras", "--loss", "feature"], "the feature loss needs layer pairs: feature_pairs={'teacher_layer': 'student_layer'} (CLI: --feature-pair teacher_layer:student_layer)"),
    "distill unknown layer pair": (["distill", "--teacher", M, "--student", M, "--data", D, "-o",
                                    "o.keras", "--loss", "feature", "--feature-pair", "nosuch:conv"], "the teacher has no layer 'nosuch' (layers are found by name among the teacher's top-level layers)"),
    # ------------------------------------------------------------------ cluster
    "cluster missing model": (["cluster", "{L}/missing.keras", "-o", "o.keras"], "model file '{L}/missing.keras' does not exist"),
    "cluster tflite model": (["cluster", T, "-o", "o.keras"], "{L}/m.tflite is not a Keras model: expected a .keras zip, an HDF5 (.h5) file or a SavedModel folder"),
    "cluster clusters 1": (["cluster", M, "-o", "o.keras", "--clusters", "1"], "Invalid value for '--clusters': 1 is not an integer in [2, 256] (weight clusters per kernel) (see 'edgeflow cluster --help')"),
    "cluster qat without data": (["cluster", M, "-o", "o.keras", "--qat"], "--qat trains: pass --data FILE.npz with x and y"),
    "cluster NaN data": (["cluster", M, "-o", "o.keras", "--data", "{L}/nan.npz"], "the data (--data) holds 1 NaN or infinite value(s) (first in sample 3): remove or replace them before converting or training"),
    "cluster output is a folder": (["cluster", M, "-o", "dir.keras"], "dir.keras is a folder: name the output file, e.g. dir.keras/clustered.keras"),
    "cluster output not writable": (["cluster", M, "-o", LOCKED + ".keras"], "cannot write /sys/edgeflow-sweep.keras: /sys takes no new file (Permission denied): choose another output"),
    "cluster bad layer": (["cluster", M, "-o", "o.keras", "--layer", "conv=many"], "--layer 'conv=many': write NAME=CLUSTERS, e.g. --layer 'conv*=8' (0 leaves the layer alone)"),
    # ------------------------------------------------------------------ run
    "run missing recipe": (["run", "{L}/nowhere.yaml"], "recipe '{L}/nowhere.yaml' does not exist; shipped recipes: cluster, fit_digits, prune_distill_qat, quickstart"),
    "run yaml syntax": (["run", "{L}/syntax.yaml"], "{L}/syntax.yaml: line 2 is not valid YAML (expected ',' or ']', but got '<stream end>')"),
    "run unknown key": (["run", "{L}/unknown-key.yaml"], "{L}/unknown-key.yaml: unknown key 'colour'"),
    "run unknown stage": (["run", "{L}/unknown-stage.yaml"], "{L}/unknown-stage.yaml: stages.0: unknown stage 'polish'; stages are train, prune, cluster, qat, distill, convert, check"),
    "run missing model": (["run", "{L}/missing-model.yaml"], "{L}/missing-model.yaml: model.path: model file '{L}/nowhere.keras' does not exist"),
    "run missing data": (["run", "{L}/missing-data.yaml"], "{L}/missing-data.yaml: data.path: data file '{L}/nowhere.npz' does not exist"),
    "run NaN data": (["run", "{L}/nan-data.yaml"], "{L}/nan-data.yaml: data.path: x of the test split holds 1 NaN or infinite value(s) (first in sample 2): remove or replace them before converting or training"),
    "run unknown board": (["run", "{L}/bad-board.yaml"], "{L}/bad-board.yaml: stages.1.devices: unknown device 'nosuch-board' (did you mean 'coral-dev-board'?); known devices: {BOARDS} (or give a profile .yaml, or a folder of profiles: --devices-dir, or devices_dir in a recipe)"),
    "run bad set": (["run", "{L}/tiny.yaml", "--set", "stages.0.mode=int3"], "{L}/tiny.yaml: stages.0.mode: Input should be 'int8', 'int16x8', 'float16', 'dynamic' or 'float32' (got 'int3')"),
    "run set out of range": (["run", "{L}/tiny.yaml", "--set", "data.test_fraction=2"], "{L}/tiny.yaml: data.test_fraction: 2.0 is not a finite number in (0, 1) (fraction of the data held out for testing)"),
    "run check timeout 0": (["run", "{L}/firmware-check.yaml"], "{L}/firmware-check.yaml: stages.1.timeout: 0.0 is not a finite number > 0 (seconds each emulated firmware run may take)"),
    "run check timeout not a number": (["run", "{L}/firmware-check.yaml", "--set", "stages.1.timeout=soon"], "{L}/firmware-check.yaml: stages.1.timeout: Input should be a valid number, unable to parse string as a number (got 'soon')"),
    "run check timeout without measuring": (["run", "{L}/firmware-check.yaml", "--set", "stages.1.timeout=60", "--set", "stages.1.measure=false"], "{L}/firmware-check.yaml: stages.1: timeout applies to the emulated firmware run, which measure: false turns off: drop one of them"),
    "run check firmware without measuring": (["run", "{L}/firmware-check.yaml", "--set", "stages.1.timeout=null", "--set", "stages.1.measure=false"], "{L}/firmware-check.yaml: stages.1: firmware: true builds and runs the firmware to measure the model, which measure: false turns off: drop one of them"),
    "run check timeout without firmware": (["run", "{L}/firmware-check.yaml", "--set", "stages.1.timeout=60", "--set", "stages.1.firmware=false"], "{L}/firmware-check.yaml: stages.1: timeout applies to firmware: true (the seconds each emulated firmware run may take)"),
    "run output taken": (["run", "{L}/tiny.yaml", "-o", "taken"], "taken is not empty and edgeflow did not create it: choose a new or empty folder (edgeflow never deletes or replaces files it did not write)"),
    "run output is a file": (["run", "{L}/tiny.yaml", "-o", "note.txt"], "note.txt is a file, not a folder: choose a folder for the output"),
    "run output under a file": (["run", "{L}/tiny.yaml", "-o", "note.txt/run"], "cannot write note.txt/run: note.txt is a file, not a folder"),
    "run output not writable": (["run", "{L}/tiny.yaml", "-o", LOCKED], "cannot write /sys/edgeflow-sweep: /sys takes no new file (Permission denied): choose another output"),
    "run resume missing run": (["run", "{L}/tiny.yaml", "--resume", "20990101-000000"], "no run '20990101-000000' to resume in runs/tiny; run it without --resume first"),
    "run resume and force": (["run", "{L}/tiny.yaml", "-o", "new", "--resume", "x", "--force"], "give the run to resume with --resume RUN or with --output-dir, not both"),
    # ------------------------------------------------------------------ validate
    "validate missing recipe": (["validate", "{L}/nowhere.yaml"], "recipe '{L}/nowhere.yaml' does not exist; shipped recipes: cluster, fit_digits, prune_distill_qat, quickstart"),
    "validate lut_max_arena 0": (["validate", "{L}/lut-arena.yaml"], "{L}/lut-arena.yaml: stages.0.lut_max_arena: 0 is not an integer in [1, 4294967295] (tensor arena bytes)"),
    "validate unknown stage": (["validate", "{L}/unknown-stage.yaml"], "{L}/unknown-stage.yaml: stages.0: unknown stage 'polish'; stages are train, prune, cluster, qat, distill, convert, check"),
    "validate unknown board": (["validate", "{L}/bad-board.yaml"], "{L}/bad-board.yaml: stages.1.devices: unknown device 'nosuch-board' (did you mean 'coral-dev-board'?); known devices: {BOARDS} (or give a profile .yaml, or a folder of profiles: --devices-dir, or devices_dir in a recipe)"),
    "validate NaN data": (["validate", "{L}/nan-data.yaml"], "{L}/nan-data.yaml: data.path: x of the test split holds 1 NaN or infinite value(s) (first in sample 2): remove or replace them before converting or training"),
    # ------------------------------------------------------------------ search
    "search missing recipe": (["search", "{L}/nowhere.yaml"], "recipe '{L}/nowhere.yaml' does not exist; shipped recipes: cluster, fit_digits, prune_distill_qat, quickstart"),
    "search unknown stage": (["search", "{L}/unknown-stage.yaml"], "{L}/unknown-stage.yaml: stages.0: unknown stage 'polish'; stages are train, prune, cluster, qat, distill, convert, check"),
    "search unknown board": (["search", "{L}/tiny.yaml", "--device", "nosuch-board"], "unknown device 'nosuch-board' (did you mean 'coral-dev-board'?); known devices: {BOARDS} (or give a profile .yaml, or a folder of profiles: --devices-dir, or devices_dir in a recipe)"),
    "search trials 0": (["search", "{L}/tiny.yaml", "--trials", "0"], "Invalid value for '--trials': 0 is not an integer >= 1 (finished search trials) (see 'edgeflow search --help')"),
    "search workers 0": (["search", "{L}/tiny.yaml", "--workers", "0"], "Invalid value for '--workers': 0 is not an integer in [1, 1024] (worker processes) (see 'edgeflow search --help')"),
    "search bad storage": (["search", "{L}/tiny.yaml", "--device", "arduino-nano-33-ble", "--storage",
                            "mysql://nobody@nowhere/db"], "cannot open the study storage mysql://nobody@nowhere/db: Failed to import DB access module for the specified storage URL. Please install appropriate one."),
    "search output under a file": (["search", "{L}/tiny.yaml", "--device", "arduino-nano-33-ble",
                                    "-o", "note.txt/search"], "cannot write note.txt/search: note.txt is a file, not a folder"),
    "search output not writable": (["search", "{L}/tiny.yaml", "--device", "arduino-nano-33-ble",
                                    "-o", LOCKED], "cannot write /sys/edgeflow-sweep: /sys takes no new file (Permission denied): choose another output"),
    "search output taken": (["search", "{L}/tiny.yaml", "--device", "arduino-nano-33-ble",
                             "-o", "taken"], "taken is not empty and edgeflow did not create it: choose a new or empty folder (edgeflow never deletes or replaces files it did not write)"),
    "search missing devices dir": (["search", "{L}/tiny.yaml", "--device", "arduino-nano-33-ble",
                                    "--devices-dir", "{L}/nowhere"], "device profile path {L}/nowhere does not exist"),
    # ------------------------------------------------------------------ firmware
    "firmware missing model": (["firmware", "{L}/missing.tflite", "-b", "nucleo-h743zi"], "model file '{L}/missing.tflite' does not exist"),
    "firmware keras model": (["firmware", M, "-b", "nucleo-h743zi"], "{L}/m.keras is not a TFLite flatbuffer (no 'TFL3' identifier): pass a .tflite model"),
    "firmware truncated": (["firmware", "{L}/corrupt.tflite", "-b", "nucleo-h743zi"], "{L}/corrupt.tflite is truncated or corrupt (a flatbuffer offset runs past the end of its 300 bytes): convert the model again"),
    "firmware no board": (["firmware", T], "name a board (--board) or a core (--cpu) to build firmware for"),
    "firmware unknown board": (["firmware", T, "-b", "nosuch-board"], "unknown device 'nosuch-board' (did you mean 'coral-dev-board'?); known devices: {BOARDS} (or give a profile .yaml, or a folder of profiles: --devices-dir, or devices_dir in a recipe)"),
    "firmware not a microcontroller": (["firmware", T, "-b", "raspberry-pi-4"], "raspberry-pi-4 runs litert, not TensorFlow Lite Micro firmware; pick a microcontroller board (edgeflow devices)"),
    "firmware unknown cpu": (["firmware", T, "--cpu", "cortex-z80"], "no firmware target for core 'cortex-z80' (did you mean 'cortex-m7'?); known cores: cortex-m0plus, cortex-m3, cortex-m4, cortex-m4f, cortex-m7, cortex-m7-dp, cortex-m55"),
    "firmware NaN data": (["firmware", T, "-b", "nucleo-h743zi", "--data", "{L}/nan.npz"], "the firmware input data holds 1 NaN or infinite value(s) (first in sample 3): remove or replace them before converting or training"),
    "firmware wrong shape data": (["firmware", T, "-b", "nucleo-h743zi", "--data", "{L}/shape.npy"], "data samples have shape (64,) but the model input is (N, 8, 8, 1): reshape the data to the model's input"),
    "firmware samples 0": (["firmware", T, "-b", "nucleo-h743zi", "--samples", "0"], "Invalid value for '--samples': 0 is not an integer >= 1 (input samples run) (see 'edgeflow firmware --help')"),
    "firmware timeout negative": (["firmware", T, "-b", "nucleo-h743zi", "--timeout", "-5"], "Invalid value for '--timeout': -5 is not a finite number > 0 (seconds each emulated firmware run may take) (see 'edgeflow firmware --help')"),
    "firmware timeout infinite": (["firmware", T, "-b", "nucleo-h743zi", "--timeout", "inf"], "Invalid value for '--timeout': inf is not a finite number > 0 (seconds each emulated firmware run may take) (see 'edgeflow firmware --help')"),
    "firmware timeout without emulation": (["firmware", T, "-b", "nucleo-h743zi", "--no-emulate", "--timeout", "60"], "--timeout applies to the emulated firmware run, which --no-emulate turns off: drop one of them (see 'edgeflow firmware --help')"),
    "firmware missing tflm root": (["firmware", T, "-b", "nucleo-h743zi", "--tflm-root", "{L}/nowhere"], "--tflm-root: {L}/nowhere is neither a tflite-micro folder nor a .tar.xz archive of one"),
    "firmware output is a folder": (["firmware", T, "-b", "nucleo-h743zi", "-o", "empty"], "empty is a folder: name the output file, e.g. empty/firmware.elf"),
    "firmware output not writable": (["firmware", T, "-b", "nucleo-h743zi", "-o", LOCKED + ".elf"], "cannot write /sys/edgeflow-sweep.elf: /sys takes no new file (Permission denied): choose another output"),
    # ------------------------------------------------------------------ deploy mcu
    "deploy mcu missing model": (["deploy", "mcu", "{L}/missing.tflite", "--board", "nucleo-h743zi",
                                  "-o", "fw"], "model file '{L}/missing.tflite' does not exist"),
    "deploy mcu keras model": (["deploy", "mcu", M, "--board", "nucleo-h743zi", "-o", "fw"], "{L}/m.keras is not a TFLite flatbuffer (no 'TFL3' identifier): pass a .tflite model"),
    "deploy mcu truncated": (["deploy", "mcu", "{L}/corrupt.tflite", "--board", "nucleo-h743zi",
                              "-o", "fw"], "{L}/corrupt.tflite is truncated or corrupt (a flatbuffer offset runs past the end of its 300 bytes): convert the model again"),
    "deploy mcu unknown board": (["deploy", "mcu", T, "--board", "nosuch-board", "-o", "fw"], "unknown device 'nosuch-board' (did you mean 'coral-dev-board'?); known devices: {BOARDS} (or give a profile .yaml, or a folder of profiles: --devices-dir, or devices_dir in a recipe)"),
    "deploy mcu not a microcontroller": (["deploy", "mcu", T, "--board", "raspberry-pi-4", "-o", "fw"], "raspberry-pi-4 runs litert, not TensorFlow Lite Micro: use 'edgeflow deploy rpi' for it"),
    "deploy mcu output taken": (["deploy", "mcu", T, "--board", "nucleo-h743zi", "-o", "taken"], "taken is not empty and edgeflow did not create it: choose a new or empty folder (edgeflow never deletes or replaces files it did not write)"),
    "deploy mcu output is a file": (["deploy", "mcu", T, "--board", "nucleo-h743zi", "-o", "note.txt"], "note.txt is a file, not a folder: choose a folder for the output"),
    "deploy mcu output not writable": (["deploy", "mcu", T, "--board", "nucleo-h743zi", "-o", LOCKED], "cannot write /sys/edgeflow-sweep: /sys takes no new file (Permission denied): choose another output"),
    "deploy mcu arena margin negative": (["deploy", "mcu", T, "--board", "nucleo-h743zi", "-o", "fw",
                                          "--arena-margin", "-1"], "Invalid value for '--arena-margin': -1 is not a finite number in [0, 10] (a fraction of the measured arena) (see 'edgeflow deploy mcu --help')"),
    # ------------------------------------------------------------------ deploy rpi
    "deploy rpi missing model": (["deploy", "rpi", "{L}/missing.tflite", "pi@board.invalid"], "model file '{L}/missing.tflite' does not exist"),
    "deploy rpi keras model": (["deploy", "rpi", M, "pi@board.invalid"], "{L}/m.keras is not a TFLite flatbuffer (no 'TFL3' identifier): pass a .tflite model"),
    "deploy rpi missing input": (["deploy", "rpi", T, "pi@board.invalid", "--input", "{L}/missing.npy"], "input sample {L}/missing.npy not found"),
    "deploy rpi wrong shape input": (["deploy", "rpi", T, "pi@board.invalid", "--input",
                                      "{L}/shape.npy"], "input sample has shape [16, 64]; the model expects [1, 8, 8, 1]"),
    "deploy rpi missing identity": (["deploy", "rpi", T, "pi@board.invalid", "-i", "{L}/nowhere_key"], "identity file {L}/nowhere_key not found"),
    "deploy rpi missing ssh config": (["deploy", "rpi", T, "pi@board.invalid", "--ssh-config",
                                       "{L}/nowhere_config"], "ssh config file {L}/nowhere_config not found"),
    "deploy rpi option as host": (["deploy", "rpi", T, "-oProxyCommand=touch pwned"], "No such option '-o'. (see 'edgeflow deploy rpi --help')"),
    "deploy rpi warmup negative": (["deploy", "rpi", T, "pi@board.invalid", "--warmup", "-1"], "Invalid value for '--warmup': -1 is not an integer >= 0 (untimed warm-up runs) (see 'edgeflow deploy rpi --help')"),
    # ------------------------------------------------------------------ deploy coral
    "deploy coral missing model": (["deploy", "coral", "{L}/missing.tflite", "-o", "coral"], "model file '{L}/missing.tflite' does not exist"),
    "deploy coral keras model": (["deploy", "coral", M, "-o", "coral"], "{L}/m.keras is not a TFLite flatbuffer (no 'TFL3' identifier): pass a .tflite model"),
    "deploy coral output is a file": (["deploy", "coral", T, "-o", "note.txt"], "cannot write note.txt/m_edgetpu.tflite: note.txt is a file, not a folder"),
    "deploy coral output not writable": (["deploy", "coral", T, "-o", LOCKED], "cannot write /sys/edgeflow-sweep/m_edgetpu.tflite: /sys takes no new file (Permission denied): choose another output"),
    "deploy coral missing input": (["deploy", "coral", T, "-o", "coral", "--host", "pi@board.invalid",
                                    "--input", "{L}/missing.npy"], "input sample {L}/missing.npy not found"),
    "deploy coral port 70000": (["deploy", "coral", T, "-o", "coral", "--port", "70000"], "Invalid value for '--port': 70000 is not an integer in [1, 65535] (TCP port) (see 'edgeflow deploy coral --help')"),
    # ------------------------------------------------------------------ devices
    "devices missing devices dir": (["devices", "--devices-dir", "{L}/nowhere"], "device profile path {L}/nowhere does not exist"),
    "devices bad profile": (["devices", "--devices-dir", "{L}/boards"], "{L}/boards/bad.yaml: key 'display_name': required key is missing (and 13 more problems)"),
    "devices syntax": (["devices", "--devices-dir", "{L}/syntax.yaml"], "device file {L}/syntax.yaml: line 2 is not valid YAML (expected ',' or ']', but got '<stream end>')"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_error_line_exit_2_and_leaves_nothing(case, lib, work, tmp_path):
    args, line = CASES[case]
    watched = (work, lib, tmp_path / "tmp", tmp_path / "cache")
    before = _snapshot(*watched)
    result = CliRunner().invoke(main, [a.replace("{L}", str(lib)) for a in args])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {line}\n".replace("{L}", str(lib)).replace("{BOARDS}", BOARDS)
    assert _snapshot(*watched) == before


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.lstat().st_mode)
            for p in [folder, *folder.rglob("*")] if not p.is_symlink()}


def test_outputs_keep_the_users_umask(lib, work, umask_027):
    """Under umask 027 what export and run write is 0640 (files) and 0750 (folders), as a
    plain open()/mkdir() gives: not mkstemp's 0600, not 0644."""
    result = CliRunner().invoke(main, ["export", str(lib / "m.tflite"), "-o", "out/m.tflite"])
    assert result.exit_code == 0, result.output
    assert _modes(work / "out") == {".": 0o750, "m.tflite": 0o640}
    result = CliRunner().invoke(main, ["run", str(lib / "tiny.yaml"), "-o", "run", "-q"])
    assert result.exit_code == 0, result.output
    modes = _modes(work / "run")
    assert sorted(modes) == [".", ".edgeflow-output.json", "01-tiny-float32.tflite", "report.html",
                             "report.json", "stages.json"]
    assert modes == {name: 0o750 if name == "." else 0o640 for name in modes}
