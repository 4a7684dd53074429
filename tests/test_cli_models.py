"""The model options of the commands: files edgeflow writes load again, --custom-objects
(with --unsafe), and --loss / the one default-loss rule on every training command."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from edgeflow._keras import keras
from edgeflow.cli import main
from edgeflow.errors import EdgeflowError
from edgeflow.models import save_model

L = keras.layers


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """3 classes on 8×8×1 inputs, labels as class ids (n,); binary labels (n,) as float."""
    folder = tmp_path_factory.mktemp("cli_models")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (96, 8, 8, 1)).astype(np.float32)
    y = np.argmax(np.stack([x[:, :4, :4, 0].mean((1, 2)), x[:, 4:, 4:, 0].mean((1, 2)),
                            x[:, :4, 4:, 0].mean((1, 2))], 1), 1).astype(np.int64)
    np.savez(folder / "train.npz", x=x, y=y)
    np.savez(folder / "binary.npz", x=x, y=(y == 0).astype(np.float32))
    return folder


def _cnn(units: int, activation=None, name="cnn"):
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(units, activation=activation, name="out")(x), name=name)


def test_qat_h5_edgeflow_wrote_exports_and_a_qat_keras_is_refused(data, tmp_path):
    from edgeflow import quantize

    d = np.load(data / "train.npz")
    qat = quantize.qat(_cnn(3, "softmax"), data=(d["x"], d["y"]), epochs=1).model
    save_model(qat, tmp_path / "qat.h5")
    with pytest.raises(EdgeflowError) as info:
        save_model(qat, tmp_path / "qat.keras")
    assert str(info.value).startswith(f"not saving 'cnn' to {tmp_path / 'qat.keras'}: the file would not load again (")
    assert str(info.value).endswith("); QAT models load again from .h5: write to a .h5 file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qat.h5"]
    result = _invoke("export", tmp_path / "qat.h5", "-o", tmp_path / "qat.tflite", "--data", data / "train.npz")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "qat.tflite").read_bytes()[4:8] == b"TFL3"


CUSTOM = '''
from edgeflow import keras


class Scale(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x
'''


def test_custom_objects_need_unsafe_and_load_custom_layers(data, tmp_path):
    namespace: dict = {}
    exec(CUSTOM, namespace)  # noqa: S102 (the test's own code)
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, L.Dense(3)(L.Flatten()(namespace["Scale"]()(inputs))))
    model.save(tmp_path / "custom.keras")
    (tmp_path / "layers.py").write_text(CUSTOM)
    out = tmp_path / "c.tflite"
    common = ["export", tmp_path / "custom.keras", "-o", out, "--mode", "float32"]
    assert _error_line(_invoke(*common, "--custom-objects", tmp_path / "layers.py")) == (
        f"error: custom objects from {tmp_path / 'layers.py'} run that Python file: pass --unsafe "
        "(recipe: model.unsafe: true) too, only if you trust it")
    assert _error_line(_invoke(*common)) == (
        f"error: {tmp_path / 'custom.keras'} uses layer classes Keras does not know: scale (Scale); pass "
        "--custom-objects FILE.py defining them (with --unsafe; API: custom_objects=)")
    assert not out.exists()
    result = _invoke(*common, "--custom-objects", tmp_path / "layers.py", "--unsafe")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[4:8] == b"TFL3"


def test_recipe_custom_objects_need_unsafe(tmp_path):
    from edgeflow.recipe import parse_recipe

    raw = {"name": "r", "model": {"path": "m.keras", "custom_objects": "layers.py"},
           "data": {"source": "digits"}, "stages": [{"stage": "convert"}]}
    with pytest.raises(EdgeflowError, match="custom_objects runs that Python file: set 'unsafe: true'"):
        parse_recipe(raw, source="r.yaml")
    raw["model"]["unsafe"] = True
    assert parse_recipe(raw, source="r.yaml").model.custom_objects == "layers.py"


def test_training_commands_pick_the_loss_for_logits_and_sigmoid_heads(data, tmp_path):
    save_model(_cnn(3), tmp_path / "logits.keras")
    save_model(_cnn(1, "sigmoid"), tmp_path / "sigmoid.keras")
    save_model(_cnn(3, "softmax", name="teacher"), tmp_path / "teacher.keras")
    train, binary = data / "train.npz", data / "binary.npz"
    runs = [
        ("quantize", tmp_path / "logits.keras", "-o", tmp_path / "q.tflite", "--mode", "qat", "--data", train,
         "--epochs", "1"),
        ("prune", tmp_path / "logits.keras", "-o", tmp_path / "p.keras", "--data", train, "--epochs", "1"),
        ("prune", tmp_path / "sigmoid.keras", "-o", tmp_path / "s.keras", "--data", binary, "--epochs", "1"),
        ("prune", tmp_path / "sigmoid.keras", "-o", tmp_path / "t.keras", "--data", binary, "--method",
         "structured", "--criterion", "taylor"),
        ("prune", tmp_path / "logits.keras", "-o", tmp_path / "m.keras", "--data", train, "--epochs", "1",
         "--loss", "mse"),
        ("distill", "--teacher", tmp_path / "teacher.keras", "--student", tmp_path / "logits.keras", "--data",
         train, "-o", tmp_path / "d.keras", "--epochs", "1", "--hard-loss", "sparse_categorical_crossentropy"),
    ]
    for args in runs:  # one epoch on random labels: the accuracy drop is not what is tested here
        result = _invoke(*args, "--max-drop", "100")
        assert result.exit_code == 0, (args, result.output)
    assert _error_line(_invoke("prune", tmp_path / "logits.keras", "-o", tmp_path / "x.keras", "--data", train,
                               "--loss", "msee")) == (
        "error: unknown loss 'msee': use a Keras loss name such as mse, binary_crossentropy or "
        "sparse_categorical_crossentropy")


@pytest.mark.parametrize("criterion", ["taylor", "hessian"])
def test_gradient_criteria_take_binary_labels_shaped_n(data, criterion):
    from edgeflow import prune

    d = np.load(data / "binary.npz")
    model = _cnn(1, "sigmoid")
    flat = prune.structured(model, 0.5, criterion=criterion, data=(d["x"], d["y"]))
    column = prune.structured(model, 0.5, criterion=criterion, data=(d["x"], d["y"][:, None]))
    assert flat.channels == column.channels and flat.channels["conv"] == (2, 4)


def test_binary_sigmoid_pair_distills_with_two_class_soft_labels(data, tmp_path):
    from edgeflow.distill import Distiller

    d = np.load(data / "binary.npz")
    x, y = d["x"][:32], d["y"][:32]
    teacher, student = _cnn(1, "sigmoid", name="teacher"), _cnn(1, "sigmoid", name="student")
    tau = 2.0
    terms = Distiller(student, teacher, ["soft"], temperature=tau, alpha=0.1).compute_terms(x, y)

    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    p_t, p_s = (m.predict(x, verbose=0).astype(np.float64) for m in (teacher, student))
    lt = log_softmax(np.log(np.concatenate([1 - p_t, p_t], 1)) / tau)
    ls = log_softmax(np.log(np.concatenate([1 - p_s, p_s], 1)) / tau)
    soft = tau ** 2 * np.mean(np.sum(np.exp(lt) * (lt - ls), 1))
    hard = -np.mean(y * np.log(p_s[:, 0]) + (1 - y) * np.log(1 - p_s[:, 0]))
    np.testing.assert_allclose(float(terms["soft_loss"]), soft, rtol=1e-4)
    np.testing.assert_allclose(float(terms["hard_loss"]), hard, rtol=1e-4)
    save_model(teacher, tmp_path / "t.keras")
    save_model(student, tmp_path / "s.keras")
    result = _invoke("distill", "--teacher", tmp_path / "t.keras", "--student", tmp_path / "s.keras",
                     "--data", data / "binary.npz", "-o", tmp_path / "d.keras", "--epochs", "1",
                     "--max-drop", "100")
    assert result.exit_code == 0, result.output
