"""Post-training modes on LiteRT, the full-int8 check, and the per-layer error report."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow._keras import keras
from edgeflow.convert import MODES
from edgeflow.errors import EdgeflowError
from edgeflow.quantize import compare_keep_float, layer_errors, ptq, verify_int8
from edgeflow.runtime.litert import evaluate
from edgeflow.runtime.metrics import evaluate_keras


@pytest.mark.parametrize("mode", ["int8", "int16x8", "float16", "dynamic"])
def test_each_ptq_mode_converts_and_runs_on_litert(mode, trained_cnn, digits):
    (x_tr, _), (x_te, y_te) = digits
    tflite = ptq(trained_cnn, mode, x_tr[:100] if MODES[mode].needs_data else None)
    float_acc = evaluate_keras(trained_cnn, x_te, y_te)["accuracy"]
    acc = evaluate(tflite, x_te, y_te)["accuracy"]
    assert acc >= float_acc - 0.03, (mode, float_acc, acc)
    check = verify_int8(tflite)
    if mode == "int8":
        assert check.ok, check.summary()
    elif mode == "int16x8":
        assert check.int16_ops and not check.float_ops
    else:  # weights stored smaller, compute in float: named op by op
        assert check.float_ops and "CONV_2D" in " ".join(check.float_ops)


def test_ptq_int8_needs_data(trained_cnn):
    with pytest.raises(EdgeflowError, match="calibration data"):
        ptq(trained_cnn, "int8")
    with pytest.raises(EdgeflowError, match="unknown conversion mode"):
        ptq(trained_cnn, "int4")


@pytest.fixture(scope="module")
def damaged_cnn(trained_cnn):
    """The trained CNN with conv2 damaged for int8 only.

    conv1's channel 0 is made dead (BN output relu(-1) = 0 for every input), and conv2 gets
    weights of 30 on that channel. The float model ignores them (they multiply zeros), but
    conv2's per-channel weight scale becomes 30/127, so its real weights (about 0.1) round
    to 0 or ±0.24 in int8: a layer whose quantization error dwarfs every other one.
    """
    model = keras.models.clone_model(trained_cnn)
    model.set_weights(trained_cnn.get_weights())
    w, b = model.get_layer("conv1").get_weights()
    w[..., 0], b[0] = 0.0, 0.0
    model.get_layer("conv1").set_weights([w, b])
    gamma, beta, mean, var = model.get_layer("bn1").get_weights()
    gamma[0], beta[0], mean[0], var[0] = 1.0, -1.0, 0.0, 1.0
    model.get_layer("bn1").set_weights([gamma, beta, mean, var])
    w, b = model.get_layer("conv2").get_weights()
    w[:, :, 0, :] = 30.0
    model.get_layer("conv2").set_weights([w, b])
    return model


def test_layer_errors_rank_the_damaged_layer_first(damaged_cnn, trained_cnn, digits):
    (x_tr, _), _ = digits
    errors = layer_errors(damaged_cnn, x_tr[:64])
    worst = errors.worst(1)[0]
    assert worst.op == "CONV_2D" and "conv2" in worst.tensor, errors.table()
    assert worst.rmse_over_scale > 5 * errors.rows[1].rmse_over_scale
    assert "rmse/scale" in errors.table(3) and len(errors.table(3).splitlines()) == 4

    healthy = layer_errors(trained_cnn, x_tr[:64])
    conv2 = next(r for r in healthy.rows if r.op == "CONV_2D" and "conv2" in r.tensor)
    assert conv2.rmse_over_scale < worst.rmse_over_scale / 5


def test_keeping_the_worst_op_in_float_recovers_accuracy(damaged_cnn, digits):
    (x_tr, _), (x_te, y_te) = digits
    errors, variants = compare_keep_float(damaged_cnn, x_tr[:64], (x_te, y_te), n=1)
    by_name = {v.name: v for v in variants}
    assert set(by_name) == {"float32", "int8", "int8+float1", "int16x8"}
    int8, kept, flt = by_name["int8"], by_name["int8+float1"], by_name["float32"]
    assert kept.float_ops == 1 and int8.float_ops == 0
    assert kept.metrics["accuracy"] > int8.metrics["accuracy"] + 0.05
    assert kept.metrics["accuracy"] >= flt.metrics["accuracy"] - 0.03
    assert kept.size_bytes > int8.size_bytes  # the float op carries float weights
    assert kept.arena_bytes >= int8.arena_bytes


def test_layer_errors_refuses_a_qat_model(trained_cnn, digits):
    from edgeflow.quantize import qat

    (x_tr, _), _ = digits
    with pytest.raises(EdgeflowError, match="float model"):
        layer_errors(qat(trained_cnn).model, x_tr[:8])
    with pytest.raises(EdgeflowError, match="needs data"):
        layer_errors(trained_cnn, None)
    assert np.isfinite(layer_errors(trained_cnn, x_tr[:16], num_samples=16).rows[0].rmse)
