"""Loading models safely, decided by content; Keras 3 objects are translated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeflow._keras import keras
from edgeflow.convert import convert
from edgeflow.errors import EdgeflowError
from edgeflow.models import (
    build,
    copy_model,
    default_loss,
    default_metrics,
    digits_cnn,
    load_model,
    save_model,
)


def _lambda_model():
    inputs = keras.Input((4,))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layers_are_refused_unless_unsafe(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    _lambda_model().save(path)
    with pytest.raises(EdgeflowError, match=r"Lambda layer\(s\) double .* --unsafe"):
        load_model(path)
    model = load_model(path, safe_mode=False)
    assert model.get_layer("double") is not None


def test_saved_model_directory_converts(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.save(tmp_path / "sm", save_format="tf")
    tflite = convert(tmp_path / "sm", "float32")
    assert tflite[4:8] == b"TFL3"


def test_keras3_model_object_is_translated():
    import keras as keras3

    from edgeflow.keras3 import translation_of

    model3 = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    model = load_model(model3)
    assert isinstance(model, keras.Model) and translation_of(model).max_abs_diff <= 1e-5
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(model(x).numpy(), np.asarray(model3(x)), atol=1e-6)


@pytest.mark.parametrize(
    ("path", "message"),
    [("missing.keras", "does not exist"), ("not_a_model.keras", "is not a Keras model")],
)
def test_unreadable_files(tmp_path, path, message):
    (tmp_path / "not_a_model.keras").write_bytes(b"garbage")
    with pytest.raises(EdgeflowError, match=message):
        load_model(tmp_path / path)


def test_build_applications_offline_only():
    model = build("MobileNetV2", input_shape=(32, 32, 3), alpha=0.35, classes=3)
    assert model.output_shape == (None, 3)
    with pytest.raises(EdgeflowError, match="only weights=None"):
        build("MobileNetV2", weights="imagenet")
    with pytest.raises(EdgeflowError, match="did you mean 'MobileNetV2'"):
        build("MobileNetV22")


def test_digits_cnn_builds():
    model = build("digits_cnn")
    assert model.predict(np.zeros((1, 8, 8, 1)), verbose=0).shape == (1, 10)


def _regressor():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(1, name="out")(inputs))


def test_copy_model_has_equal_but_separate_weights():
    model = _regressor()
    copy = copy_model(model)
    assert copy is not model
    np.testing.assert_array_equal(copy.get_weights()[0], model.get_weights()[0])
    copy.layers[-1].kernel.assign(copy.layers[-1].kernel + 1.0)
    assert not np.array_equal(copy.get_weights()[0], model.get_weights()[0])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_save_model_is_atomic_and_loads_back(tmp_path, suffix):
    model = _regressor()
    path = save_model(model, tmp_path / "sub" / f"m{suffix}")
    assert path == tmp_path / "sub" / f"m{suffix}"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(load_model(path)(x).numpy(), model(x).numpy(), rtol=1e-6)


def test_save_model_leaves_nothing_behind_on_failure(tmp_path):
    class Unsavable(keras.layers.Layer):
        def get_config(self):
            raise NotImplementedError("no config")

    inputs = keras.Input((3,))
    model = keras.Model(inputs, Unsavable()(inputs))
    (tmp_path / "m.keras").write_bytes(b"old")
    with pytest.raises(Exception):  # noqa: B017 (Keras's own error type)
        save_model(model, tmp_path / "m.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
    assert (tmp_path / "m.keras").read_bytes() == b"old"
    with pytest.raises(EdgeflowError, match="not 'm.txt'"):
        save_model(_regressor(), tmp_path / "m.txt")


def _head(units: int, activation=None):
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(units, activation=activation, name="out")(inputs))


def _is(loss, cls, from_logits=True):
    return isinstance(loss, cls) and loss.get_config()["from_logits"] is from_logits


def test_default_loss_rules():
    L = keras.losses
    ids, binary = np.array([0, 2, 1]), np.array([0.0, 1.0, 1.0], np.float32)
    assert default_loss(_regressor(), "huber") == "huber"
    compiled = _regressor()
    compiled.compile(loss="mae")
    assert default_loss(compiled, y=ids) == "mae"
    # probabilities: the loss by name; logits: the loss object with from_logits=True
    assert default_loss(_head(3, "softmax"), y=ids) == "sparse_categorical_crossentropy"
    assert _is(default_loss(_head(3), y=ids), L.SparseCategoricalCrossentropy)
    assert _is(default_loss(_head(3), y=ids[:, None]), L.SparseCategoricalCrossentropy)
    assert default_loss(_head(3, "softmax"), y=np.eye(3, dtype=np.float32)) == "categorical_crossentropy"
    assert _is(default_loss(_head(3), y=np.eye(3)), L.CategoricalCrossentropy)
    assert default_loss(_head(1, "sigmoid"), y=binary) == "binary_crossentropy"
    assert _is(default_loss(_head(1), y=binary), L.BinaryCrossentropy)
    assert default_loss(_head(1), y=np.array([[0.5], [1.5]], np.float32)) == "mse"
    assert default_loss(_head(1), y=ids) == "mse"  # one unit, labels 0..2: a regression
    assert _is(default_loss(_head(3), "sparse_categorical_crossentropy"), L.SparseCategoricalCrossentropy)
    assert default_loss(digits_cnn()) == "sparse_categorical_crossentropy"
    assert default_loss(_head(1, "sigmoid")) == "binary_crossentropy"
    with pytest.raises(EdgeflowError, match="needs a loss"):
        default_loss(_regressor())
    with pytest.raises(EdgeflowError, match="unknown loss 'msee'"):
        default_loss(_regressor(), "msee")


def test_default_metrics_follow_the_loss():
    ids = np.array([0, 2, 1])
    assert default_metrics(_head(3), y=ids) == ["accuracy"]  # a loss object on logits
    assert default_metrics(_head(1, "sigmoid")) == ["accuracy"]
    assert default_metrics(_head(1), y=np.array([[0.5], [1.5]], np.float32)) == ["mae"]
    assert default_metrics(_regressor(), "huber") == ["mae"]
    compiled = _head(3)
    compiled.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert default_metrics(compiled) == ["accuracy"]
    with pytest.raises(EdgeflowError, match="needs a loss"):
        default_metrics(_regressor())


# ------------------------------------------- code in model files is found by content (issue 14)

def _sentinel_model(sentinel: Path):
    """A Lambda model whose code, if it ever runs, writes ``sentinel``."""
    fn = eval(f"lambda t: (open({str(sentinel)!r}, 'w').close(), t)[1]")  # noqa: S307 (the test's own code)
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Lambda(fn, name="double")(inputs)))


def _containers(folder: Path, sentinel: Path) -> dict[str, Path]:
    """The Lambda model in every container Keras reads, and each renamed."""
    model = _sentinel_model(sentinel)
    model.save(folder / "m.h5")
    model.save(folder / "m.keras")
    model.save(folder / "sm", save_format="tf")
    compact = folder / "sm_compact"  # the metadata JSON written without spaces
    shutil.copytree(folder / "sm", compact)
    from tf_keras.protobuf import saved_metadata_pb2

    meta = saved_metadata_pb2.SavedMetadata()
    meta.ParseFromString((compact / "keras_metadata.pb").read_bytes())
    for node in meta.nodes:
        if node.metadata:
            node.metadata = json.dumps(json.loads(node.metadata), separators=(",", ":"))
    (compact / "keras_metadata.pb").write_bytes(meta.SerializeToString())
    files = {"h5": folder / "m.h5", "keras": folder / "m.keras", "savedmodel": folder / "sm",
             "savedmodel-compact": compact}
    for name, source in (("h5-as-.keras", "m.h5"), ("h5-as-.H5", "m.h5"), ("h5-no-suffix", "m.h5"),
                         ("keras-as-.h5", "m.keras"), ("keras-no-suffix", "m.keras")):
        target = folder / {"h5-as-.keras": "r.keras", "h5-as-.H5": "r.H5", "h5-no-suffix": "r_h5",
                           "keras-as-.h5": "z.h5", "keras-no-suffix": "r_zip"}[name]
        shutil.copy(folder / source, target)
        files[name] = target
    sentinel.unlink()  # building and saving the model ran it here, in the test's process
    return files


@pytest.fixture(scope="module")
def code_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("code")
    return _containers(folder, folder / "ran"), folder / "ran"


CONTAINERS = ("h5", "keras", "savedmodel", "savedmodel-compact", "h5-as-.keras", "h5-as-.H5",
              "h5-no-suffix", "keras-as-.h5", "keras-no-suffix")


@pytest.mark.parametrize("kind", CONTAINERS)
def test_code_is_refused_by_content_in_every_container(code_files, kind):
    files, sentinel = code_files
    path = files[kind]
    with pytest.raises(EdgeflowError) as info:
        load_model(path)
    assert str(info.value) == (f"{path} holds Lambda layer(s) double whose Python code would run when "
                               "loaded: pass --unsafe (safe_mode=False) only if you trust this file")
    assert not sentinel.exists()


@pytest.mark.parametrize("kind", ["h5-as-.keras", "keras-no-suffix", "savedmodel-compact"])
def test_unsafe_loads_what_safe_mode_refused(code_files, kind):
    files, sentinel = code_files
    model = load_model(files[kind], safe_mode=False)
    model(np.ones((1, 4), np.float32))
    assert sentinel.exists()
    sentinel.unlink()


def test_every_command_refuses_a_renamed_code_file(code_files, tmp_path):
    from click.testing import CliRunner

    from edgeflow.cli import main

    files, sentinel = code_files
    bad = str(files["h5-as-.keras"])
    np.savez(tmp_path / "d.npz", x=np.ones((8, 4), np.float32), y=np.zeros(8, np.int64))
    data = str(tmp_path / "d.npz")
    good = tmp_path / "good.keras"
    save_model(_regressor_4(), good)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\nmodel: {{path: {bad}}}\ndata: {{source: npz, path: {data}}}\n"
                      "stages: [{stage: convert, mode: float32}]\n")
    teacher_recipe = tmp_path / "t.yaml"
    teacher_recipe.write_text(f"name: t\nmodel: {{path: {good}}}\ndata: {{source: npz, path: {data}}}\n"
                              f"stages: [{{stage: distill, teacher: {bad}, epochs: 1}}]\n")
    commands = {
        "export": ["export", bad, "-o", str(tmp_path / "x.tflite"), "--mode", "float32"],
        "prune": ["prune", bad, "-o", str(tmp_path / "x.keras"), "--data", data],
        "quantize": ["quantize", bad, "-o", str(tmp_path / "x.tflite"), "--mode", "float16"],
        "distill --teacher": ["distill", "--teacher", bad, "--student", str(good), "--data", data,
                              "-o", str(tmp_path / "x.keras")],
        "distill --student": ["distill", "--teacher", str(good), "--student", bad, "--data", data,
                              "-o", str(tmp_path / "x.keras")],
        "run (model)": ["run", str(recipe), "-o", str(tmp_path / "run1")],
        "run (teacher)": ["run", str(teacher_recipe), "-o", str(tmp_path / "run2")],
    }
    for command, args in commands.items():
        result = CliRunner().invoke(main, args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2, (command, result.output)
        assert lines[-1].startswith("error: ") and f"{bad} holds Lambda layer(s) double " in lines[-1], \
            (command, result.output)
        assert not sentinel.exists(), command
    assert not (tmp_path / "x.tflite").exists() and not (tmp_path / "x.keras").exists()


def _regressor_4():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
