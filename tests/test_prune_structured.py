"""Structured pruning: new smaller models rebuilt from the graph, on real architectures."""

from __future__ import annotations

import numpy as np
import pytest
from _models import small_cnn, small_resnet

from edgeflow import prune
from edgeflow._keras import keras
from edgeflow.errors import EdgeflowError
from edgeflow.prune.structured import RULES, channel_groups

L = keras.layers


def _zoo() -> keras.Model:
    """Concatenate, SeparableConv2D, Multiply, DepthwiseConv2D, pooling, Flatten → Dense."""
    inputs = keras.Input((8, 8, 1))
    a = L.Conv2D(8, 3, padding="same", name="a")(inputs)
    a = L.BatchNormalization(name="a_bn")(a)
    a = L.ReLU(name="a_relu")(a)
    b = L.Conv2D(6, 3, padding="same", activation="relu", name="b")(inputs)
    x = L.Concatenate(name="cat")([a, b])
    s = L.SeparableConv2D(12, 3, padding="same", depth_multiplier=2, name="sep")(x)
    g = L.Conv2D(12, 1, name="gate")(x)
    x = L.Multiply(name="mul")([s, g])
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(16, activation="relu", name="fc")(x)
    outputs = L.Dense(10, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name="zoo")


def _kill(model, layer_name, channels, bn=None):
    """Make channels of a layer contribute exactly nothing downstream (and score 0 by L1)."""
    layer = model.get_layer(layer_name)
    weights = layer.get_weights()
    kernel = weights[-2] if layer.use_bias else weights[-1]
    kernel[..., channels] = 0.0
    if layer.use_bias:
        weights[-1][channels] = 0.0
    layer.set_weights(weights)
    if bn:
        bn_layer = model.get_layer(bn)
        gamma, beta, mean, var = bn_layer.get_weights()
        gamma[channels] = beta[channels] = mean[channels] = 0.0
        bn_layer.set_weights([gamma, beta, mean, var])


@pytest.fixture(scope="module")
def x8():
    return np.random.default_rng(0).random((16, 8, 8, 1), np.float32)


@pytest.mark.parametrize("build", [small_cnn, small_resnet, _zoo])
def test_ratio_zero_gives_identical_outputs(build, x8):
    keras.utils.set_random_seed(0)
    model = build()
    result = prune.structured(model, 0.0)
    assert result.model is not model
    assert result.params_after == result.params_before
    np.testing.assert_array_equal(result.model.predict(x8, verbose=0), model.predict(x8, verbose=0))


def test_removing_dead_channels_keeps_outputs_through_concat_multiply_flatten(x8):
    """Channels that contribute nothing are exactly those removed: the outputs must not change.
    Proves the rewiring of Concatenate offsets, SeparableConv2D, Multiply groups, depthwise
    multipliers and the Flatten → Dense channel-to-feature mapping."""
    keras.utils.set_random_seed(0)
    model = _zoo()
    _kill(model, "a", [0, 2, 5, 7], bn="a_bn")
    _kill(model, "b", [1, 4, 5])
    for name in ("sep", "gate"):
        _kill(model, name, list(range(6)))
    _kill(model, "fc", list(range(8)))
    ratio = {"a": 0.5, "b": 0.5, "sep": 0.5, "fc": 0.5}
    result = prune.structured(model, ratio, criterion="l1")
    new = result.model
    assert result.channels == {
        "a": (4, 8), "b": (3, 6), "sep": (6, 12), "gate": (6, 12), "fc": (8, 16), "logits": (10, 10)
    }
    assert new.get_layer("dw").output.shape[-1] == 12  # 6 channels × depth multiplier 2
    assert new.get_layer("fc").kernel.shape == (4 * 4 * 12, 8)
    np.testing.assert_allclose(new.predict(x8, verbose=0), model.predict(x8, verbose=0), atol=1e-6)


def test_residual_adds_prune_one_group_and_keep_outputs(x8):
    keras.utils.set_random_seed(0)
    model = small_resnet()
    groups = channel_groups(model)
    by_producers = {tuple(groups.producers(r)): groups.why_fixed(r) for r in groups.groups()}
    assert by_producers[("stem", "b1_conv2")] == []
    assert by_producers[("b2_conv2", "b2_proj")] == []
    assert by_producers[("logits",)] == ["its channels reach the model output"]
    # Channels dead in every member of a residual group vanish without changing outputs.
    _kill(model, "stem", [1, 3, 8, 9, 10, 11, 12, 15], bn="stem_bn")
    _kill(model, "b1_conv2", [1, 3, 8, 9, 10, 11, 12, 15], bn="b1_bn2")
    _kill(model, "b2_conv2", list(range(16)), bn="b2_bn2")
    _kill(model, "b2_proj", list(range(16)), bn="b2_proj_bn")
    result = prune.structured(model, {"stem": 0.5, "b2_proj": 0.5})
    assert result.channels["b1_conv2"] == (8, 16) and result.channels["b2_conv2"] == (16, 32)
    assert result.channels["b1_conv1"] == (16, 16)
    np.testing.assert_allclose(result.model.predict(x8, verbose=0), model.predict(x8, verbose=0),
                               atol=1e-5)


def test_fifty_percent_with_fine_tuning_within_1_5_points_on_digits(trained_cnn, digits):
    (x_tr, y_tr), (x_te, y_te) = digits
    keras.utils.set_random_seed(1)
    result = prune.structured(
        trained_cnn, 0.5, criterion="l1", data=(x_tr, y_tr), epochs=3, validation_data=(x_te, y_te)
    )
    assert result.channels == {"conv1": (8, 16), "conv2": (16, 32), "fc1": (16, 32), "logits": (10, 10)}
    assert result.params_after < 0.3 * result.params_before
    before, after = result.steps[0]["accuracy"], result.steps[-1]["accuracy"]
    assert after >= before - 0.015, (before, after)
    assert result.metrics_on == "validation"
    assert trained_cnn.get_layer("conv1").filters == 16  # the input model is untouched


def test_iterative_schedule_stops_at_max_accuracy_drop(trained_cnn, digits):
    (x_tr, y_tr), (x_te, y_te) = digits
    result = prune.structured(
        trained_cnn, 0.9, criterion="taylor", data=(x_tr[:300], y_tr[:300]), steps=3,
        validation_data=(x_te, y_te), max_accuracy_drop=0.0,
    )
    ratios = [s["ratio"] for s in result.steps]
    assert ratios == pytest.approx([0.0, 0.3, 0.6, 0.9][: len(ratios)])
    base = result.steps[0]["accuracy"]
    broke = [s["step"] for s in result.steps if base - s["accuracy"] > 0.0]
    assert broke, "90% of the filters without fine-tuning must lose accuracy"
    assert result.stopped and "max_accuracy_drop" in result.stopped
    assert result.steps[-1]["step"] == broke[0]
    # The returned model is the last one within the limit, not the one that broke it.
    assert result.params_after == result.steps[broke[0] - 1]["params"]


def test_max_accuracy_drop_on_a_regression_model_is_refused_before_pruning(digits):
    """A regression model's first metric is its MAE (edgeflow.models.default_metrics), where a
    rise is the loss: max_accuracy_drop would never stop the schedule, so it is refused with one
    line once the baseline names the metric, before any step is pruned."""
    (x_tr, _), _ = digits
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    outputs = keras.layers.Dense(1, name="ink")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    y = x_tr[:64].mean(axis=(1, 2, 3)).reshape(-1, 1)
    with pytest.raises(EdgeflowError) as err:
        prune.structured(model, 0.5, data=(x_tr[:64], y), max_accuracy_drop=0.01)
    assert str(err.value) == (
        "max_accuracy_drop compares an accuracy, but the model's first metric is 'mae' (lower is better, e.g. a "
        "regression model): pass metrics=('accuracy',) for a classifier, or leave max_accuracy_drop out")


def test_data_criteria_need_data_and_unknown_names_fail(trained_cnn):
    with pytest.raises(EdgeflowError, match="criterion 'activation' scores units on data"):
        prune.structured(trained_cnn, 0.5, criterion="activation")
    with pytest.raises(EdgeflowError, match="did you mean 'taylor'"):
        prune.structured(trained_cnn, 0.5, criterion="tailor")
    with pytest.raises(EdgeflowError, match="'logits' cannot be pruned: its channels reach the model output"):
        prune.structured(trained_cnn, {"logits": 0.5})
    with pytest.raises(EdgeflowError, match="matches no Conv2D/Dense"):
        prune.structured(trained_cnn, {"conv9": 0.5})


def test_unsupported_layer_on_a_pruned_channel_is_named():
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, name="c")(inputs)
    x = L.Lambda(lambda t: t * 2.0, name="double")(x)
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(2, activation="softmax", name="out")(x)
    model = keras.Model(inputs, outputs)
    with pytest.raises(EdgeflowError, match=r"layer double \(Lambda\) consumes those channels"):
        prune.structured(model, 0.5)
    # Where its channels stay whole, the same layer is fine.
    assert prune.structured(model, 0.0).params_after == model.count_params()


def test_rule_table_covers_every_layer_kind():
    kinds = {rule.kind for rule in RULES.values()}
    assert kinds == {"producer", "channelwise", "depthwise", "merge", "concat", "flatten",
                     "reshape", "mixing"}
    for layer_type, rule in RULES.items():
        if rule.kind == "producer":
            assert rule.size_key and rule.weights and rule.units, layer_type.__name__


# --- real architectures ------------------------------------------------------------------

# Logits without softmax: an untrained (weights=None) network's logits span ~1e-6, and
# TFLM's int8 softmax aborts on such a scale (edgeflow.runtime.tflm explains it); the
# pruning is the same either way.
ARCHS = {
    "mobilenet": lambda: keras.applications.MobileNet(
        input_shape=(64, 64, 3), alpha=0.25, weights=None, classes=2, classifier_activation=None),
    "mobilenet_v2": lambda: keras.applications.MobileNetV2(
        input_shape=(64, 64, 3), alpha=0.35, weights=None, classes=2, classifier_activation=None),
}


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(ARCHS))
def test_keras_applications_prune_convert_run_and_check(arch):
    from edgeflow.convert import convert
    from edgeflow.devices import check
    from edgeflow.runtime import litert

    keras.utils.set_random_seed(0)
    model = ARCHS[arch]()
    x = np.random.default_rng(0).uniform(-1, 1, (8, 64, 64, 3)).astype(np.float32)
    same = prune.structured(model, 0.0).model
    np.testing.assert_array_equal(same.predict(x, verbose=0), model.predict(x, verbose=0))

    result = prune.structured(model, 0.5, criterion="l2")
    new = result.model
    for layer in model.layers:
        if isinstance(layer, L.Conv2D) and not isinstance(layer, L.DepthwiseConv2D):
            expected = layer.filters if layer.name == "conv_preds" else round(layer.filters / 2)
            assert new.get_layer(layer.name).filters == expected, layer.name
        if isinstance(layer, L.DepthwiseConv2D):  # follows the channels of its input
            assert new.get_layer(layer.name).output.shape[-1] == round(layer.input.shape[-1] / 2)
    assert new.output.shape == model.output.shape
    assert result.params_after < 0.35 * result.params_before
    assert new.predict(x, verbose=0).shape == (8, 2)

    tflite = convert(new, "int8", x, num_samples=8)
    assert litert.predict(tflite, x[:2]).shape == (2, 2)
    # int8 weights: about one byte per parameter plus the graph (the unpruned one is ~4× larger).
    assert len(tflite) < 1.5 * result.params_after + 60_000
    report = check(tflite, ["arduino-nano-33-ble", "raspberry-pi-4"])
    assert report.fits, [r.verdict for r in report.results]
    assert report["arduino-nano-33-ble"].ram_source == "measured"


def test_steps_with_an_optimizer_object_and_a_sequential_model(digits):
    (x_tr, y_tr), _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(8, 3, activation="relu", name="c1"),
        L.Flatten(name="flat"),
        L.Dense(16, activation="relu", name="d1"),
        L.Dense(10, activation="softmax", name="out"),
    ])
    # One optimizer object for every step: each step's new model gets its own copy.
    result = prune.structured(model, 0.5, data=(x_tr[:128], y_tr[:128]), steps=2, epochs=1,
                              optimizer=keras.optimizers.Adam(1e-3))
    assert [s["step"] for s in result.steps] == [0, 1, 2]
    assert result.channels == {"c1": (4, 8), "d1": (8, 16), "out": (10, 10)}
    assert result.model.get_layer("d1").kernel.shape == (6 * 6 * 4, 8)
    assert len(result.history["loss"]) == 2


def test_weight_criteria_score_the_batchnorm_folded_filter():
    """Filter 0: |w| = 0.1, γ = 10 → folded L1 = 9 · 0.1 · 10/√(1+ε) ≈ 9; filter 1: |w| = 1,
    γ = 0.01 → ≈ 0.09. Unfolded L1 would keep filter 1; the folded one keeps filter 0."""
    inputs = keras.Input((4, 4, 1))
    x = L.Conv2D(2, 3, use_bias=False, name="c")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    outputs = L.Dense(1, name="out")(L.Flatten()(x))
    model = keras.Model(inputs, outputs)
    kernel = np.stack([np.full((3, 3, 1), 0.1), np.full((3, 3, 1), 1.0)], axis=-1).astype(np.float32)
    model.get_layer("c").set_weights([kernel])
    model.get_layer("bn").set_weights([np.array([10.0, 0.01], np.float32), np.zeros(2, np.float32),
                                       np.zeros(2, np.float32), np.ones(2, np.float32)])
    for criterion in ("l1", "l2"):  # (FPGM scores two filters alike: equal mutual distance)
        new = prune.structured(model, 0.5, criterion=criterion).model
        np.testing.assert_array_equal(new.get_layer("c").get_weights()[0], kernel[..., :1])
        assert new.get_layer("bn").get_weights()[0].tolist() == [10.0]
