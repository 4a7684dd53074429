"""Distillation losses against values worked out by hand on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeflow._keras import keras, tf
from edgeflow.distill import losses as L
from edgeflow.errors import EdgeflowError


def _out(t_logits=None, s_logits=None, t_maps=None, s_maps=None):
    z = tf.zeros((1, 2))
    return L.Outputs(
        teacher_logits=tf.constant(t_logits, tf.float32) if t_logits is not None else z,
        student_logits=tf.constant(s_logits, tf.float32) if s_logits is not None else z,
        teacher_maps={k: tf.constant(v, tf.float32) for k, v in (t_maps or {}).items()},
        student_maps={k: tf.constant(v, tf.float32) for k, v in (s_maps or {}).items()},
    )


def test_soft_loss_matches_hand_computed_kl():
    # Row 1, τ = 2: teacher logits (0, 0) → p_T = (1/2, 1/2); student logits (2 ln 3, 0)
    # → z/τ = (ln 3, 0) → p_S = (3/4, 1/4).
    # KL = 1/2 ln((1/2)/(3/4)) + 1/2 ln((1/2)/(1/4)) = 1/2 ln(4/3); × τ² = 2 ln(4/3).
    # Row 2: identical distributions → 0. Mean over the batch: ln(4/3).
    loss = L.SoftLoss(temperature=2.0)
    out = _out([[0.0, 0.0], [1.0, -1.0]], [[2 * math.log(3), 0.0], [1.0, -1.0]])
    assert float(loss.compute(out)) == pytest.approx(math.log(4 / 3), rel=1e-5)


def test_soft_loss_temperature_scaling():
    # τ = 1, teacher (ln 3, 0) → (3/4, 1/4), student (0, 0) → (1/2, 1/2):
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2).
    loss = L.SoftLoss(temperature=1.0)
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(loss.compute(_out([[math.log(3), 0.0]], [[0.0, 0.0]]))) == pytest.approx(
        expected, rel=1e-5
    )


def test_feature_loss_mse_and_l1_without_adapter():
    t = {"t": [[1.0, 2.0], [3.0, 4.0]]}
    s = {"s": [[1.0, 1.0], [1.0, 1.0]]}
    mse = L.FeatureLoss({"t": "s"})
    mse.build_adapters({"t": (None, 2)}, {"s": (None, 2)})
    assert mse.adapters == [None]
    # ((1-1)² + (2-1)² + (3-1)² + (4-1)²) / 4 = 14 / 4
    assert float(mse.compute(_out(t_maps=t, s_maps=s))) == pytest.approx(3.5)
    l1 = L.FeatureLoss({"t": "s"}, distance="l1")
    l1.build_adapters({"t": (None, 2)}, {"s": (None, 2)})
    assert float(l1.compute(_out(t_maps=t, s_maps=s))) == pytest.approx(1.5)


def test_feature_loss_dense_adapter_when_widths_differ():
    loss = L.FeatureLoss([("t", "s")])
    loss.build_adapters({"t": (None, 2)}, {"s": (None, 1)})
    (adapter,) = loss.adapters
    assert isinstance(adapter, keras.layers.Dense) and adapter.units == 2
    adapter.set_weights([np.array([[1.0, 1.0]], np.float32), np.array([0.0, 1.0], np.float32)])
    # student 3 → adapter (3, 4); teacher (1, 2): ((1-3)² + (2-4)²) / 2 = 4
    out = _out(t_maps={"t": [[1.0, 2.0]]}, s_maps={"s": [[3.0]]})
    assert float(loss.compute(out)) == pytest.approx(4.0)


def test_feature_loss_conv_adapter_and_spatial_area_resize():
    loss = L.FeatureLoss(["t:s"])
    loss.build_adapters({"t": (None, 4, 4, 1)}, {"s": (None, 2, 2, 2)})
    (adapter,) = loss.adapters
    assert isinstance(adapter, keras.layers.Conv2D) and adapter.kernel_size == (1, 1)
    adapter.set_weights([np.zeros((1, 1, 2, 1), np.float32), np.zeros(1, np.float32)])
    # teacher 4×4 map 0..15, area-resized to 2×2 = 2×2 average pooling:
    # [[mean(0,1,4,5), mean(2,3,6,7)], [mean(8,9,12,13), mean(10,11,14,15)]]
    # = [[2.5, 4.5], [10.5, 12.5]]; adapter output 0 → MSE = (2.5²+4.5²+10.5²+12.5²)/4
    teacher = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    student = np.ones((1, 2, 2, 2), np.float32)
    out = _out(t_maps={"t": teacher}, s_maps={"s": student})
    assert float(loss.compute(out)) == pytest.approx(293 / 4, rel=1e-5)


def test_feature_loss_rejects_rank_mismatch():
    loss = L.FeatureLoss({"t": "s"})
    with pytest.raises(EdgeflowError, match="both 4-D"):
        loss.build_adapters({"t": (None, 4, 4, 8)}, {"s": (None, 8)})


def test_attention_map_sums_squares_over_channels():
    f = np.array([[[[1.0, -2.0], [0.0, 3.0]]]], np.float32)  # (1, 1, 2, 2)
    np.testing.assert_allclose(L.attention_map(f).numpy(), [[[5.0, 9.0]]])


def test_attention_loss_matches_hand_computed_value():
    # Teacher, 2 channels on 2×2: A_T = Σ_c F² = [[3, 4], [0, 0]] → A_T/‖A_T‖ = (.6, .8, 0, 0).
    teacher = np.zeros((2, 2, 2, 2), np.float32)
    teacher[:, 0, 0, 0] = math.sqrt(3)
    teacher[:, 0, 1, 1] = 2.0
    # Student, 1 channel. Sample 1: A_S = (1, 0, 0, 0) → ‖(.6-1, .8, 0, 0)‖ = sqrt(0.8).
    # Sample 2: A_S = 4·A_T (same direction, the channel count differs) → 0.
    student = np.zeros((2, 2, 2, 1), np.float32)
    student[0, 0, 0, 0] = -1.0  # |F|^2: the sign does not matter
    student[1, 0, 0, 0] = 2 * math.sqrt(3)
    student[1, 0, 1, 0] = 4.0
    loss = L.AttentionLoss({"t": "s"})
    loss.build_adapters({"t": teacher.shape}, {"s": student.shape})
    out = _out(t_maps={"t": teacher}, s_maps={"s": student})
    assert float(loss.compute(out)) == pytest.approx(math.sqrt(0.8) / 2, rel=1e-5)


def test_attention_loss_resizes_teacher_map_to_student_size():
    # Teacher 4×4, one channel of ones except a 2×2 block of 2s at the top left:
    # A_T = F² → 4 in that block, 1 elsewhere; area-resized to 2×2: [[4, 1], [1, 1]].
    teacher = np.ones((1, 4, 4, 1), np.float32)
    teacher[0, :2, :2, 0] = 2.0
    # Student A_S = [[4, 1], [1, 1]] exactly → distance 0; then (1, 1, 1, 1)/2 vs
    # (4, 1, 1, 1)/sqrt(19).
    same = np.sqrt(np.array([[4.0, 1.0], [1.0, 1.0]], np.float32)).reshape(1, 2, 2, 1)
    flat = np.ones((1, 2, 2, 1), np.float32)
    loss = L.AttentionLoss({"t": "s"})
    loss.build_adapters({"t": teacher.shape}, {"s": same.shape})
    assert float(loss.compute(_out(t_maps={"t": teacher}, s_maps={"s": same}))) == pytest.approx(
        0.0, abs=1e-5
    )
    a_t = np.array([4.0, 1, 1, 1]) / math.sqrt(19)
    expected = np.linalg.norm(a_t - np.full(4, 0.5))
    value = float(loss.compute(_out(t_maps={"t": teacher}, s_maps={"s": flat})))
    assert value == pytest.approx(expected, rel=1e-5)


def test_attention_loss_of_zero_maps_has_finite_gradient():
    s = tf.Variable(tf.zeros((1, 2, 2, 1)))
    loss = L.AttentionLoss({"t": "s"})
    with tf.GradientTape() as tape:
        value = loss.compute(L.Outputs(tf.zeros((1, 2)), tf.zeros((1, 2)),
                                       {"t": tf.zeros((1, 2, 2, 3))}, {"s": s}))
    grad = tape.gradient(value, s)
    assert np.isfinite(grad.numpy()).all()


def test_get_by_name_weight_dict_callable_and_object():
    soft = L.get("soft", temperature=3.0, feature_pairs={"a": "b"})
    assert isinstance(soft, L.SoftLoss) and soft.temperature == 3.0 and soft.weight == 1.0
    att = L.get("attention:50", attention_pairs={"t": "s"}, feature_pairs={"x": "y"})
    assert isinstance(att, L.AttentionLoss) and att.weight == 50.0 and att.pairs == [("t", "s")]
    feat = L.get({"name": "feature", "pairs": ["a:b"], "distance": "l1", "weight": 2})
    assert feat.pairs == [("a", "b")] and feat.distance == "l1" and feat.weight == 2.0
    assert L.get(feat) is feat

    def logit_mse(t, s):
        return tf.reduce_mean(tf.square(t - s))

    custom = L.get(logit_mse)
    assert isinstance(custom, L.CallableLoss) and custom.name == "logit_mse"
    assert float(custom.compute(_out([[1.0, 3.0]], [[0.0, 0.0]]))) == pytest.approx(5.0)
    assert set(L.LOSSES) == {"soft", "feature", "attention"}


@pytest.mark.parametrize(
    "identifier, message",
    [
        ("sotf", "did you mean 'soft'"),
        ("attention:x", "NAME:WEIGHT"),
        ({"name": "soft", "temprature": 2}, "did you mean 'temperature'"),
        ("feature", "needs layer pairs"),
        (42, "cannot use 42"),
        ({"name": "soft", "weight": -1}, "must be >= 0"),
        ({"name": "soft", "temperature": 0}, "must be > 0"),
        ({"name": "feature", "pairs": ["a:b"], "distance": "l3"}, "valid: mse, l1"),
        ({"name": "feature", "pairs": [("a", "b", "c")]}, "bad feature layer pair"),
    ],
)
def test_get_errors_name_the_valid_values(identifier, message):
    with pytest.raises(EdgeflowError, match=message):
        L.get(identifier)


def test_get_all_rejects_duplicates():
    with pytest.raises(EdgeflowError, match="given twice"):
        L.get_all(["soft", "soft:2"])


@pytest.mark.parametrize("name", sorted(L.LOSSES))
def test_every_registered_loss_round_trips_its_config(name):
    loss = L.get(name, temperature=3.0, feature_pairs={"a": "b"}, attention_pairs={"c": "d"})
    config = keras.saving.serialize_keras_object(loss)
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(loss)
    assert again.get_config() == loss.get_config()
