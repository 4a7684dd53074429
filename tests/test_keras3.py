"""Keras 3 models in: files and objects translated to Keras 2 with equal outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _schema import document
from click.testing import CliRunner

from edgeflow import keras3
from edgeflow.cli import main
from edgeflow.errors import EdgeflowError
from edgeflow.models import load_model

ZOO = ("layers_2d", "sequence", "nested", "sequential", "ds_cnn", "mobilenet_v2", "mobilenet_v3")


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> Path:
    """Keras 3 models built and saved by a child process without TF_USE_LEGACY_KERAS."""
    folder = tmp_path_factory.mktemp("keras3_zoo")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = ""
    script = Path(__file__).with_name("keras3_zoo.py")
    done = subprocess.run([sys.executable, str(script), str(folder)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


@pytest.mark.parametrize(("name", "suffix"), [(name, ".keras") for name in ZOO]
                         + [(name, ".h5") for name in ("layers_2d", "sequence", "nested")])
def test_keras3_files_translate_with_equal_outputs(zoo, name, suffix):
    model = load_model(zoo / f"{name}{suffix}")
    record = keras3.translation_of(model)
    assert record is not None and record.keras_version.startswith("3.")
    assert record.max_abs_diff <= 1e-5 and record.tolerance == 1e-5
    assert type(model).__module__.startswith("tf_keras.")
    x, expected = np.load(zoo / f"{name}.x.npy"), np.load(zoo / f"{name}.npy")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=0, atol=1e-5)


def test_keras3_object_is_accepted_by_every_stage(zoo):
    from edgeflow import prune, quantize
    from edgeflow.convert import convert

    model3 = keras3.load(str(zoo / "sequential.keras"))
    assert type(model3).__module__.startswith("keras.")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (32, 8, 8, 1)).astype(np.float32)
    y = (x.mean((1, 2, 3)) > 0).astype(np.int64)
    pruned = prune.magnitude(model3, 0.5, data=(x, y), epochs=1)
    assert pruned.overall_sparsity > 0.3
    assert quantize.qat(model3, data=(x, y), epochs=1).model is not None
    assert convert(model3, "int8", data=x)[4:8] == b"TFL3"


def test_untranslatable_layer_is_one_line(zoo):
    import keras as k3

    inputs = k3.Input((4,))
    model3 = k3.Model(inputs, k3.layers.Dense(2)(k3.layers.UnitNormalization(name="unit")(inputs)))
    with pytest.raises(EdgeflowError) as info:
        keras3.translate(model3)
    assert str(info.value) == (
        "Keras 3 layer(s) unit (UnitNormalization) have no Keras 2 translation in edgeflow: replace "
        "them with built-in layers, or rebuild the model with tf_keras (`from edgeflow import keras`) "
        "and load its weights"
    )


ACTIVATIONS = ("hard_sigmoid", "hard_silu", "hard_swish", "hard_tanh", "log_sigmoid", "silu", "swish",
               "gelu", "relu6", "leaky_relu", "mish", "elu", "selu", "softplus", "softsign",
               "exponential", "tanh", "sigmoid", "relu", "linear", "log_softmax", "softmax")


def test_keras3_activations_translate_to_equal_functions():
    """Every Keras 3 activation that tf_keras has under another name or formula (hard_sigmoid:
    relu6(x+3)/6 in Keras 3, clip(0.2x+0.5) in tf_keras), inputs spread over [-6, 6]."""
    import keras as k3

    inputs = k3.Input((16,))
    scaled = k3.layers.Dense(16, kernel_initializer=k3.initializers.Identity(6.0), name="spread")(inputs)
    outs = [k3.layers.Activation(name, name=f"act_{name}")(scaled) for name in ACTIVATIONS]
    outs.append(k3.layers.Dense(4, activation="hard_silu", name="dense_hard_silu")(scaled))
    model3 = k3.Model(inputs, outs)
    model2, record = keras3.translate(model3)
    assert record.max_abs_diff <= 1e-5
    x = np.random.default_rng(1).uniform(-1, 1, (64, 16)).astype(np.float32)
    for got, want in zip(model2.predict(x, verbose=0), model3.predict(x, verbose=0), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert model2.get_layer("act_hard_sigmoid").get_config()["activation"]["config"] == "edgeflow>hard_sigmoid"


def test_keras3_hard_silu_converts_to_one_hard_swish_op():
    import keras as k3
    from ai_edge_litert.interpreter import Interpreter

    from edgeflow.convert import convert

    inputs = k3.Input((6, 6, 2))
    x = k3.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    model3 = k3.Model(inputs, k3.layers.Activation("hard_silu", name="hs")(x))
    x = np.random.default_rng(0).uniform(-1, 1, (16, 6, 6, 2)).astype(np.float32)
    ops = [op["op_name"] for op in Interpreter(model_content=convert(model3, "int8", x))._get_ops_details()]
    assert ops == ["CONV_2D", "HARD_SWISH"]


def test_keras3_activation_without_translation_is_one_line():
    import keras as k3

    inputs = k3.Input((4,))
    model3 = k3.Model(inputs, k3.layers.Dense(2, activation="celu", name="fc")(inputs))
    with pytest.raises(EdgeflowError) as info:
        keras3.translate(model3)
    assert str(info.value) == (
        "Keras 3 activation 'celu' (fc.activation) has no Keras 2 counterpart: use another "
        "activation or rebuild the model with tf_keras")


def test_cli_export_prune_quantize_distill_take_keras3_files(zoo, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 8, 8, 1)).astype(np.float32)
    np.savez(tmp_path / "train.npz", x=x, y=(x.mean((1, 2, 3)) > 0).astype(np.int64))
    data = str(tmp_path / "train.npz")
    model = str(zoo / "sequential.keras")
    runs = {
        "export": ["export", model, "-o", str(tmp_path / "e.tflite"), "--data", data, "--json"],
        "prune": ["prune", str(zoo / "sequential.h5"), "-o", str(tmp_path / "p.keras"), "--data", data,
                  "--epochs", "1", "--max-drop", "100"],
        "quantize": ["quantize", model, "-o", str(tmp_path / "q.tflite"), "--mode", "qat", "--data", data,
                     "--epochs", "1", "--max-drop", "100"],
        "distill": ["distill", "--teacher", model, "--student", model, "--data", data, "-o",
                    str(tmp_path / "d.keras"), "--epochs", "1", "--max-drop", "100"],
    }
    for command, args in runs.items():  # one epoch on random labels: the drop is not tested here
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (command, result.output)
        if command == "export":
            (record,) = document(result.stdout)["result"]["translations"]
            assert record["keras_version"].startswith("3.") and record["max_abs_diff"] <= 1e-5
            assert record["layers"] == 5 and record["tolerance"] == 1e-5
        else:
            assert "outputs equal on random input, max abs diff" in result.output
    assert (tmp_path / "e.tflite").read_bytes()[4:8] == b"TFL3"


@pytest.mark.parametrize(("source", "renamed"), [("lambda_model.keras", "model.h5"),
                                                 ("lambda_model.h5", "model")])
def test_keras3_code_is_refused_whatever_the_name(zoo, tmp_path, source, renamed):
    path = tmp_path / renamed
    path.write_bytes((zoo / source).read_bytes())
    with pytest.raises(EdgeflowError) as info:
        load_model(path)
    assert str(info.value) == (f"{path} holds Lambda layer(s) times_two whose Python code would run "
                               "when loaded: pass --unsafe (safe_mode=False) only if you trust this file")
