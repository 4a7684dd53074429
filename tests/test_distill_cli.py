"""``edgeflow distill`` on real files, with click's CliRunner, and a real digits run."""

from __future__ import annotations

import numpy as np
from _schema import document
from click.testing import CliRunner

from edgeflow._keras import keras
from edgeflow.cli import main
from edgeflow.distill import distill


def _tiny_student() -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="s_conv")(inputs)
    x = keras.layers.MaxPooling2D(name="s_pool")(x)
    x = keras.layers.Flatten(name="s_flat")(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="s_out")(x))


def test_cli_distill_writes_a_plain_student(tmp_path, digits, trained_cnn):
    (x, y), (xt, yt) = digits
    trained_cnn.save(tmp_path / "teacher.keras")
    student = _tiny_student()
    student.save(tmp_path / "student.keras")
    np.savez(tmp_path / "train.npz", x=x[:256], y=y[:256])
    np.savez(tmp_path / "val.npz", x=xt[:64], y=yt[:64])
    out = tmp_path / "out" / "small.keras"
    result = CliRunner().invoke(main, [
        "distill", "--teacher", str(tmp_path / "teacher.keras"),
        "--student", str(tmp_path / "student.keras"), "--data", str(tmp_path / "train.npz"),
        "-o", str(out), "--loss", "soft", "--loss", "attention:5",
        "--attention-pair", "relu2:s_conv", "--epochs", "2", "--temperature", "3",
        "--validation-data", str(tmp_path / "val.npz"), "--json",
    ])
    # Two epochs leave the tiny student far below its teacher: over --max-drop, exit 1.
    assert result.exit_code == 1, result.output
    doc = document(result.stdout)
    c = doc["result"]["comparison"]
    assert (c["baseline_model"], c["result_model"], c["data"]) == (
        "teacher", "trained student", "val.npz (--validation-data), 64 samples")
    assert c["drop"] > 1 and c["over_limit"] and doc["verdict"] == "fail"
    assert c["result"] == doc["result"]["history"]["val_accuracy"][-1]
    assert doc["summary"].startswith(f"wrote {out} (student ") and "soft, attention" in doc["summary"]
    assert "val_accuracy=" in doc["summary"] and len(doc["result"]["history"]["val_accuracy"]) == 2
    assert doc["result"]["losses"] == ["soft", "attention"]
    model = keras.models.load_model(out)
    assert [la.name for la in model.layers] == [la.name for la in student.layers]
    assert sorted(p.name for p in out.parent.iterdir()) == ["small.keras"]  # nothing left over


def test_cli_distill_bad_input_is_one_error_line(tmp_path, trained_cnn):
    trained_cnn.save(tmp_path / "teacher.keras")
    _tiny_student().save(tmp_path / "student.keras")
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8, 8, 1), np.float32), y=np.zeros(4, np.int64))
    base = ["distill", "--teacher", str(tmp_path / "teacher.keras"),
            "--student", str(tmp_path / "student.keras"), "-o", str(tmp_path / "o.keras")]
    cases = [
        (["--data", str(tmp_path / "missing.npz")], "does not exist"),
        (["--data", str(tmp_path / "d.npz"), "--loss", "atention"], "did you mean 'attention'"),
        (["--data", str(tmp_path / "d.npz"), "--loss", "feature"], "--feature-pair"),
        (["--data", str(tmp_path / "d.npz"), "--loss", "feature", "--feature-pair", "nope:s_conv"],
         "teacher has no layer 'nope'"),
    ]
    for extra, message in cases:
        result = CliRunner().invoke(main, base + extra)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and message in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "o.keras").exists()


def test_soft_distillation_on_digits_learns(digits, trained_cnn):
    (x, y), (xt, yt) = digits
    keras.utils.set_random_seed(0)
    result = distill(_tiny_student(), trained_cnn, (x, y), losses=["soft"], epochs=20)
    result.model.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
    _, accuracy = result.model.evaluate(xt, yt, verbose=0)
    assert accuracy > 0.85
