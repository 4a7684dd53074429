"""The Distiller trainer and distill(): frozen teacher, plain student, Keras workflow."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from edgeflow._keras import keras, tf
from edgeflow.distill import Distiller, distill
from edgeflow.distill.distiller import logits_source
from edgeflow.errors import EdgeflowError

PAIRS = {"t_relu": "s_conv"}


def _teacher(fused_softmax: bool = False) -> keras.Model:
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(6, 3, padding="same", name="t_conv")(inputs)
    x = keras.layers.BatchNormalization(name="t_bn")(x)
    x = keras.layers.ReLU(name="t_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="t_gap")(x)
    if fused_softmax:
        out = keras.layers.Dense(3, activation="softmax", name="t_out")(x)
    else:
        out = keras.layers.Softmax(name="t_prob")(keras.layers.Dense(3, name="t_out")(x))
    return keras.Model(inputs, out, name="teacher")


def _student() -> keras.Model:
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="s_conv")(inputs)
    x = keras.layers.Flatten(name="s_flat")(x)
    out = keras.layers.Dense(3, activation="softmax", name="s_out")(x)
    return keras.Model(inputs, out, name="student")


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6, 6, 1)).astype(np.float32)
    y = (x[:, :3].sum(axis=(1, 2, 3)) > x[:, 3:].sum(axis=(1, 2, 3))).astype(np.int64)
    y[x[:, :, :3].sum(axis=(1, 2, 3)) > 2] = 2
    return x, y


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def test_gradients_reach_only_the_student_and_adapters():
    keras.utils.set_random_seed(0)
    teacher, student = _teacher(), _student()
    d = Distiller(student, teacher, ["soft", "feature", "attention"],
                  feature_pairs=PAIRS, attention_pairs=PAIRS)
    x, y = _data(8)
    variables = d.trainable_variables
    with tf.GradientTape() as tape:
        loss = d.compute_terms(x, y, training=True)["loss"]
    grads = dict(zip([id(v) for v in variables], tape.gradient(loss, variables), strict=True))
    teacher_ids = {id(v) for v in teacher.trainable_variables}
    adapter_vars = d.distill_losses[1].trainable_variables
    assert len(adapter_vars) == 2  # 1×1 conv 2 → 6 channels: kernel, bias
    assert teacher_ids and all(grads[i] is None for i in teacher_ids)
    for v in [*student.trainable_variables, *adapter_vars]:
        assert grads[id(v)] is not None and float(tf.reduce_sum(tf.abs(grads[id(v)]))) > 0, v.name
    assert {id(v) for v in d.trained_variables} == {
        id(v) for v in [*student.trainable_variables, *adapter_vars]
    }


def test_fit_trains_student_and_adapters_and_leaves_the_teacher_alone():
    keras.utils.set_random_seed(1)
    teacher, student = _teacher(), _student()
    d = Distiller(student, teacher, ["soft", "feature:0.5"], feature_pairs=PAIRS)
    t_before, s_before = _weights(teacher), _weights(student)
    a_before = _weights(d.distill_losses[1])
    d.compile(keras.optimizers.Adam(0.01), metrics=["accuracy"])
    x, y = _data(32)
    history = d.fit(x, y, epochs=2, batch_size=8, verbose=0)
    # teacher weights *and* BatchNormalization moving statistics unchanged
    for a, b in zip(t_before, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(not np.allclose(a, b) for a, b in zip(s_before, student.get_weights(), strict=True))
    assert all(not np.allclose(a, b) for a, b in zip(a_before, d.distill_losses[1].get_weights(), strict=True))
    assert set(history.history) == {"loss", "hard_loss", "soft_loss", "feature_loss", "accuracy"}


def test_total_loss_mixes_hard_and_soft_by_alpha_and_adds_map_terms():
    keras.utils.set_random_seed(2)
    d = Distiller(_student(), _teacher(), ["soft:2", "attention:3"], alpha=0.25,
                  attention_pairs=PAIRS)
    x, y = _data(8)
    t = {k: float(v) for k, v in d.compute_terms(x, y).items() if k != "y_pred"}
    expected = 0.25 * t["hard_loss"] + 0.75 * 2 * t["soft_loss"] + 3 * t["attention_loss"]
    assert t["loss"] == pytest.approx(expected, rel=1e-5)
    p = d.student(x).numpy()
    assert t["hard_loss"] == pytest.approx(-np.mean(np.log(p[np.arange(8), y])), rel=1e-4)
    # without an output term the hard loss has weight 1
    d2 = Distiller(_student(), _teacher(), ["attention"], alpha=0.25, attention_pairs=PAIRS)
    t2 = d2.compute_terms(x, y)
    assert float(t2["loss"]) == pytest.approx(
        float(t2["hard_loss"]) + float(t2["attention_loss"]), rel=1e-5
    )


def test_fused_softmax_teacher_gives_the_same_soft_loss_as_a_softmax_layer():
    keras.utils.set_random_seed(3)
    separate, fused = _teacher(fused_softmax=False), _teacher(fused_softmax=True)
    fused.set_weights(separate.get_weights())
    assert logits_source(separate)[1] == "logits"
    assert logits_source(fused)[1] == "probabilities"
    student = _student()
    x, y = _data(8)
    a = Distiller(student, separate, ["soft"], temperature=3.0).compute_terms(x, y)
    b = Distiller(student, fused, ["soft"], temperature=3.0).compute_terms(x, y)
    assert float(a["soft_loss"]) > 0
    assert float(a["soft_loss"]) == pytest.approx(float(b["soft_loss"]), rel=1e-4)


def test_distill_returns_plain_student_and_leaves_inputs_unchanged():
    keras.utils.set_random_seed(4)
    teacher, student = _teacher(), _student()
    s_before, t_before = _weights(student), _weights(teacher)
    x, y = _data(32)
    result = distill(student, teacher, (x, y), losses=["soft", "feature", "attention"],
                     feature_pairs=PAIRS, attention_pairs=PAIRS, epochs=2, batch_size=8,
                     validation_data=(x[:8], y[:8]))
    model = result.model
    assert model is not student
    assert [(type(la).__name__, la.name) for la in model.layers] == [
        (type(la).__name__, la.name) for la in student.layers
    ]
    assert model.count_params() == student.count_params()
    assert model.get_config() == student.get_config()
    for a, b in zip(s_before, student.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(t_before, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(a, b) for a, b in zip(s_before, model.get_weights(), strict=True))
    assert result.losses == ["soft", "feature", "attention"]
    assert len(result.history["val_accuracy"]) == 2
    assert result.to_dict()["losses"] == result.losses


def test_distiller_works_with_tf_data_callbacks_and_evaluate():
    keras.utils.set_random_seed(5)
    d = Distiller(_student(), _teacher(), ["soft"])
    d.compile("adam", metrics=["accuracy"])
    x, y = _data(32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    epochs_seen = []
    cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs_seen.append(logs))
    d.fit(ds, epochs=3, validation_data=ds, callbacks=[cb], verbose=0)
    assert len(epochs_seen) == 3 and "val_soft_loss" in epochs_seen[-1]
    result = d.evaluate(ds, return_dict=True, verbose=0)
    assert set(result) == {"loss", "hard_loss", "soft_loss", "accuracy"}
    np.testing.assert_allclose(d.predict(x[:4], verbose=0), d.student(x[:4]).numpy(), rtol=1e-5)


def test_distill_accepts_npz_and_unbatched_dataset(tmp_path):
    x, y = _data(16)
    path = tmp_path / "train.npz"
    np.savez(path, x=x, y=y)
    r1 = distill(_student(), _teacher(), str(path), epochs=1, batch_size=8)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    r2 = distill(_student(), _teacher(), ds, epochs=1, batch_size=8, losses=())
    assert len(r1.history["loss"]) == len(r2.history["loss"]) == 1
    assert r2.losses == [] and "soft_loss" not in r2.history
    np.savez(tmp_path / "x_only.npz", x=x)
    with pytest.raises(EdgeflowError, match="holds no labels"):
        distill(_student(), _teacher(), str(tmp_path / "x_only.npz"))


def test_distiller_config_and_keras_file_round_trip(tmp_path):
    keras.utils.set_random_seed(6)
    d = Distiller(_student(), _teacher(), ["soft", "feature:2"], alpha=0.3, temperature=2.5,
                  feature_pairs=PAIRS)
    config = d.get_config()
    again = Distiller.from_config(config)
    assert again.alpha == 0.3 and again.temperature == 2.5
    assert [loss.get_config() for loss in again.distill_losses] == [
        loss.get_config() for loss in d.distill_losses
    ]
    d.compile("adam", metrics=["accuracy"])
    x, y = _data(16)
    d.fit(x, y, epochs=1, verbose=0)
    d.save(tmp_path / "distiller.keras")
    loaded = keras.models.load_model(tmp_path / "distiller.keras")
    assert isinstance(loaded, Distiller)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), d.predict(x, verbose=0), rtol=1e-5)
    for a, b in zip(loaded.distill_losses[1].get_weights(), d.distill_losses[1].get_weights(),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    loaded.fit(x, y, epochs=1, verbose=0)  # compiled again from the saved config


def test_logit_student_and_one_hot_labels():
    keras.utils.set_random_seed(7)
    inputs = keras.Input((6, 6, 1))
    logits = keras.layers.Dense(3, name="s_out")(keras.layers.Flatten()(inputs))
    student = keras.Model(inputs, logits)
    d = Distiller(student, _teacher(), ["soft"])
    x, y = _data(8)
    sparse = float(d.compute_terms(x, y)["hard_loss"])
    one_hot = float(d.compute_terms(x, tf.one_hot(y, 3))["hard_loss"])
    z = student(x).numpy()
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    expected = -np.mean(log_p[np.arange(8), y])
    assert sparse == pytest.approx(expected, rel=1e-4)
    assert one_hot == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"losses": ["feature"], "feature_pairs": {"t_relu": "s_cnv"}}, "did you mean 's_conv'"),
        ({"losses": ["attention"], "attention_pairs": {"t_gap": "s_conv"}}, "needs 4-D"),
        ({"losses": ["soft"], "alpha": 1.5}, "alpha must be in"),
    ],
)
def test_distiller_errors(kwargs, message):
    with pytest.raises(EdgeflowError, match=message):
        Distiller(_student(), _teacher(), **kwargs)


def test_distiller_rejects_different_inputs_and_non_classifiers():
    inputs = keras.Input((5, 5, 1))
    other = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    with pytest.raises(EdgeflowError, match="same samples"):
        Distiller(other, _teacher())
    inputs = keras.Input((6, 6, 1))
    sigmoid = keras.Model(
        inputs, keras.layers.Dense(3, activation="sigmoid")(keras.layers.Flatten()(inputs))
    )
    with pytest.raises(EdgeflowError, match="activation 'sigmoid'"):
        Distiller(sigmoid, _teacher())


def test_pruned_student_keeps_its_zeros():
    keras.utils.set_random_seed(8)
    student = _student()
    dense = student.get_layer("s_out")
    kernel = dense.kernel.numpy()
    mask = np.abs(kernel) > np.quantile(np.abs(kernel), 0.7)  # 70 % zeros, like magnitude pruning
    dense.kernel.assign(kernel * mask)
    x, y = _data(32)
    result = distill(student, _teacher(), (x, y), epochs=2, batch_size=8)
    assert result.kept_sparse == [dense.kernel.name]
    after = result.model.get_layer("s_out").kernel.numpy()
    np.testing.assert_array_equal(after[~mask], 0.0)
    assert np.all(after[mask] != kernel[mask])  # the kept weights trained
    conv_after = result.model.get_layer("s_conv").kernel.numpy()
    assert np.all(conv_after != 0)  # dense layers are not masked
    free = distill(student, _teacher(), (x, y), epochs=2, batch_size=8, preserve_sparsity=False)
    assert free.kept_sparse == [] and result.warnings == []
    free_kernel = free.model.get_layer("s_out").kernel.numpy()
    assert np.count_nonzero(free_kernel[~mask]) > 0
    assert free.warnings == [f"distill lost pruned zeros: sparsity {(kernel * mask == 0).mean():.1%}"
                             f" → {(free_kernel == 0).mean():.1%} (s_out)"]
    with pytest.raises(EdgeflowError, match="preserve_sparsity"):
        Distiller(student, _teacher(), preserve_sparsity="yes")


def test_sequential_student_and_teacher():
    keras.utils.set_random_seed(9)
    student = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 3, name="c"),
                                keras.layers.Flatten(), keras.layers.Dense(3),
                                keras.layers.Softmax()])
    teacher = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, name="tc"),
                                keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    x, y = _data(16)
    result = distill(student, teacher, (x, y), losses=["soft", "attention"],
                     attention_pairs={"tc": "c"}, epochs=1)
    assert isinstance(result.model, keras.Sequential)
    assert [la.name for la in result.model.layers] == [la.name for la in student.layers]


def test_save_model_of_a_distiller_writes_the_student_only(tmp_path):
    from edgeflow.models import load_model, save_model

    keras.utils.set_random_seed(8)
    student, teacher = _student(), _teacher()
    d = Distiller(student, teacher, ["soft"])
    saved = save_model(d, tmp_path / "d.keras")
    save_model(student, tmp_path / "student.keras")
    loaded = load_model(saved)
    assert not isinstance(loaded, Distiller) and loaded.name == "student"
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in student.layers]
    for a, b in zip(loaded.get_weights(), student.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x, _ = _data(4)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), d.predict(x, verbose=0))
    with zipfile.ZipFile(saved) as z, zipfile.ZipFile(tmp_path / "student.keras") as s:
        assert z.read("config.json") == s.read("config.json")
        assert z.read("model.weights.h5") == s.read("model.weights.h5")


def test_several_inputs_reach_student_and_teacher_as_list_or_dict():
    """A two-input student and teacher (image + features): the soft term equals τ²·KL computed
    from their own logits, fed as a list in input order or as a dict by input name."""
    keras.utils.set_random_seed(0)

    def two_input(width, name):
        img, feat = keras.Input((6, 6, 1), name="img"), keras.Input((4,), name="feat")
        h = keras.layers.Concatenate()([keras.layers.Flatten()(keras.layers.Conv2D(width, 3)(img)),
                                        keras.layers.Dense(width)(feat)])
        return keras.Model([img, feat], keras.layers.Dense(3, name=f"{name}_logits")(h), name=name)

    teacher, student = two_input(6, "teacher"), two_input(2, "student")
    x, y = _data(8)
    feat = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    d = Distiller(student, teacher, ["soft"], temperature=2.0)
    d.compile(keras.optimizers.Adam(1e-3))
    as_list = d.compute_terms([x, feat], y)["soft_loss"].numpy()
    as_dict = d.compute_terms({"feat": feat, "img": x}, y)["soft_loss"].numpy()

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p = softmax(teacher.predict([x, feat], verbose=0).astype(np.float64) / 2.0)
    q = softmax(student.predict([x, feat], verbose=0).astype(np.float64) / 2.0)
    expected = 4.0 * np.mean(np.sum(p * np.log(p / q), axis=1))
    assert as_list == as_dict
    assert as_list == pytest.approx(expected, rel=1e-4)
    result = distill(student, teacher, ({"img": x, "feat": feat}, y), losses=["soft"], epochs=1, verbose=0)
    assert [t.name.split(":")[0] for t in result.model.inputs] == ["img", "feat"]


def test_student_and_teacher_must_read_the_same_inputs():
    img, feat = keras.Input((6, 6, 1), name="img"), keras.Input((4,), name="feat")
    two = keras.Model([img, feat], keras.layers.Dense(3)(keras.layers.Concatenate()(
        [keras.layers.Flatten()(img), feat])))
    with pytest.raises(EdgeflowError, match=r"^the student has 1 input\(s\) but the teacher has 2: "
                                            r"both must read the same samples$"):
        Distiller(_student(), two, ["soft"])


def test_a_regression_student_without_a_hard_loss_is_trained_on_mse():
    """With no hard_loss, array labels that the one rule (models.default_loss) reads as
    regression give the student mean squared error and the mae metric, not the Distiller's
    cross-entropy. At learning rate 0 with one batch, the recorded hard loss is the MSE of
    the student's predictions and the metric their MAE."""
    x, _ = _data(32)
    y = x.mean(axis=(1, 2, 3)).reshape(-1, 1).astype(np.float32)
    inputs = keras.Input((6, 6, 1))
    student = keras.Model(inputs, keras.layers.Dense(1, name="ink")(keras.layers.Flatten()(inputs)))
    result = distill(student, _teacher(), (x, y), losses=(), epochs=1, batch_size=32,
                     optimizer="sgd", learning_rate=0.0)
    predicted = student.predict(x, verbose=0)
    assert set(result.history) == {"loss", "hard_loss", "mae"}
    assert result.history["hard_loss"][0] == pytest.approx(float(np.mean((predicted - y) ** 2)), rel=1e-5)
    assert result.history["mae"][0] == pytest.approx(float(np.mean(np.abs(predicted - y))), rel=1e-5)
