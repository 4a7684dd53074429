"""QAT on the digits CNN: fine-tunes, converts to int8 without calibration data, keeps pruned zeros."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow import prune
from edgeflow._keras import keras, tfmot
from edgeflow.convert import convert, is_quantization_aware
from edgeflow.errors import EdgeflowError
from edgeflow.quantize import qat
from edgeflow.runtime.litert import evaluate, interpreter
from edgeflow.runtime.metrics import evaluate_keras


@pytest.fixture(scope="module")
def pruned_cnn(trained_cnn, digits):
    """The trained CNN pruned to 60% and stripped (what the prune stage hands over)."""
    (x_tr, y_tr), _ = digits
    sp = tfmot.sparsity.keras
    keras.utils.set_random_seed(0)
    wrapped = sp.prune_low_magnitude(
        keras.models.clone_model(trained_cnn),
        pruning_schedule=sp.ConstantSparsity(0.6, begin_step=0, frequency=10),
    )
    wrapped.set_weights(_pruning_weights(wrapped, trained_cnn))
    wrapped.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    wrapped.fit(x_tr, y_tr, epochs=1, batch_size=32, verbose=0,
                callbacks=[sp.UpdatePruningStep()])
    return sp.strip_pruning(wrapped)


def _pruning_weights(wrapped, source):
    """The wrapped model's weights with the source's kernels/biases in place."""
    values = {w.name: v for w, v in zip(source.weights, source.get_weights(), strict=True)}
    return [values.get(w.name.replace("prune_low_magnitude_", ""), v)
            for w, v in zip(wrapped.weights, wrapped.get_weights(), strict=True)]


def _tflite_weight_zeros(tflite: bytes) -> int:
    """Zero entries in the int8 weight tensors (rank >= 2 constants) of a .tflite."""
    it = interpreter(tflite)
    zeros = 0
    for d in it.get_tensor_details():
        if d["dtype"] == np.int8 and len(d["shape"]) >= 2:
            try:
                values = it.get_tensor(d["index"])
            except ValueError:  # activations hold no data before invoke
                continue
            zeros += int((values == 0).sum())
    return zeros


@pytest.mark.slow
def test_qat_digits_converts_to_int8_and_keeps_accuracy(trained_cnn, digits):
    (x_tr, y_tr), (x_te, y_te) = digits
    before = [w.copy() for w in trained_cnn.get_weights()]
    keras.utils.set_random_seed(1)
    result = qat(trained_cnn, data=(x_tr, y_tr), epochs=2, validation_data=(x_te, y_te))
    assert all(np.array_equal(a, b) for a, b in zip(before, trained_cnn.get_weights(), strict=True))
    assert is_quantization_aware(result.model) and not is_quantization_aware(trained_cnn)
    assert result.float_layers == []
    assert len(result.history["loss"]) == 2 and "val_accuracy" in result.history

    tflite = convert(result.model, "int8")  # no calibration data: QAT carries the ranges
    it = interpreter(tflite)
    assert it.get_input_details()[0]["dtype"] == np.int8
    float_acc = evaluate_keras(trained_cnn, x_te, y_te)["accuracy"]
    int8_acc = evaluate(tflite, x_te, y_te)["accuracy"]
    assert int8_acc >= float_acc - 0.02, (float_acc, int8_acc)


def test_qat_without_data_returns_a_model_that_trains_like_any_keras_model(trained_cnn, digits):
    (x_tr, y_tr), (x_te, y_te) = digits
    result = qat(trained_cnn)
    assert result.history == {}
    assert is_quantization_aware(result.model)
    model = result.model
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    # Untrained, the input quantizer's range is [0, 0]: one epoch of the caller's own fit
    # learns the ranges.
    untrained = model.evaluate(x_te, y_te, verbose=0)[1]
    model.fit(x_tr, y_tr, epochs=1, batch_size=32, verbose=0)
    trained = model.evaluate(x_te, y_te, verbose=0)[1]
    assert trained > max(0.9, untrained)


@pytest.mark.slow
def test_qat_keeps_pruned_zeros_by_default_through_training_and_conversion(pruned_cnn, digits):
    (x_tr, y_tr), (x_te, y_te) = digits
    sparsity = {k: v for k, v in prune.sparsity(pruned_cnn).items() if k != "overall"}
    assert min(sparsity.values()) > 0.55
    kernels = [w.numpy() for w in pruned_cnn.trainable_weights if w.name.endswith("kernel:0")]
    zeros_before = sum(int((k == 0).sum()) for k in kernels)

    keep = qat(pruned_cnn, data=(x_tr, y_tr), epochs=2)  # preserve_sparsity="auto"
    assert keep.zeros_kept == 1.0 and keep.warnings == []
    assert keep.sparsity_before == sparsity and keep.sparsity_after == sparsity
    tflite = convert(keep.model, "int8")
    # Every pruned zero is an int8 zero (the BN fold scales channels; zeros stay zeros).
    assert _tflite_weight_zeros(tflite) >= zeros_before
    assert evaluate(tflite, x_te, y_te)["accuracy"] > 0.9

    # Asked not to keep them, QAT lets the zeros drift and says so.
    plain = qat(pruned_cnn, data=(x_tr, y_tr), epochs=2, preserve_sparsity=False)
    after = prune.sparsity(plain.model)
    assert min(after[name] for name in ("conv1", "conv2")) < 0.5 * min(sparsity.values())
    overall = zeros_before / sum(k.size for k in kernels)
    assert len(plain.warnings) == 1
    assert plain.warnings[0].startswith(f"qat lost pruned zeros: sparsity {overall:.1%} → ")
    assert plain.warnings[0].endswith("(conv1, conv2, fc1, logits) (preserve_sparsity is off)")


def test_qat_strips_pruning_wrappers(trained_cnn):
    sp = tfmot.sparsity.keras
    wrapped = sp.prune_low_magnitude(keras.models.clone_model(trained_cnn))
    result = qat(wrapped)
    assert any("stripped pruning wrappers" in n for n in result.notes)
    assert not any("prune" in type(layer).__name__.lower() for layer in result.model.layers)


def test_qat_picks_the_loss_by_the_one_rule_for_a_non_softmax_output(digits):
    """One linear unit and labels 0..9: edgeflow.models.default_loss says regression (mse)."""
    (x_tr, y_tr), _ = digits
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    result = qat(model, data=(x_tr, y_tr.astype("float32")), epochs=1, metrics=())
    assert result.model.loss == "mse" and len(result.history["loss"]) == 1
    with pytest.raises(EdgeflowError, match="unknown loss 'mse2'"):
        qat(model, data=(x_tr, y_tr.astype("float32")), epochs=1, loss="mse2")


def test_qat_rejects_bad_data_and_subclassed_models(trained_cnn):
    with pytest.raises(EdgeflowError, match="QAT data must be"):
        qat(trained_cnn, data=np.zeros((4, 8, 8, 1)))

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(EdgeflowError, match="subclassed or unbuilt"):
        qat(Sub())


def _regression():
    """A small regression model whose outputs reach about 20 (beyond TF-MOT's initial ±6)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (400, 8)).astype(np.float32)
    y = (3 * x[:, :4].sum(1) + 6).astype(np.float32)[:, None]
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x, y, epochs=40, verbose=0)
    return model, x, y


def test_short_qat_starts_from_calibrated_ranges_not_plus_minus_6():
    from edgeflow.quantize.verify import output_clipping
    from edgeflow.runtime.litert import predict

    model, x, y = _regression()
    reference = model.predict(x, verbose=0)
    assert (reference > 6).mean() > 0.2  # a fifth of the outputs beyond TF-MOT's initial range
    result = qat(model, data=(x, y), epochs=1, loss="mse", metrics=())
    assert "activation ranges initialised from 256 calibration samples (not TF-MOT's [-6, 6])" \
        in result.notes
    tflite = convert(result.model, "int8")
    (clip,) = output_clipping(tflite, reference)
    assert clip.int8_range[1] > 15 and clip.fraction < 0.01, clip
    float_mae = np.abs(reference - y).mean()
    assert np.abs(predict(tflite, x) - y).mean() < 1.1 * float_mae
