"""Shared fixtures: small real models and real data, built once per session."""

from __future__ import annotations

import numpy as np
import pytest
from _models import small_cnn

from edgeflow._keras import keras


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's handwritten digits: ((x_train, y_train), (x_test, y_test)), 8×8×1 in [0, 1]."""
    from edgeflow.data import digits as load

    return load(test_fraction=0.25, seed=0)


@pytest.fixture(scope="session")
def trained_cnn(digits):
    """The small CNN trained for a few epochs on the digits (about 95% test accuracy)."""
    (x_tr, y_tr), _ = digits
    keras.utils.set_random_seed(0)
    model = small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_tr, y_tr, epochs=8, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def int8_cnn(trained_cnn, digits):
    """The trained small CNN converted to full int8 ``.tflite`` bytes."""
    from edgeflow.convert import convert

    (x_tr, _), _ = digits
    return convert(trained_cnn, "int8", x_tr[:200])


@pytest.fixture(scope="session")
def mobilenet_v2_int8():
    """MobileNetV2 α=0.35 at 96×96, 2 classes (weights=None), as full int8 bytes."""
    from edgeflow.convert import convert

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=2
    )
    rng = np.random.default_rng(0)
    calib = rng.uniform(-1, 1, (16, 96, 96, 3)).astype(np.float32)
    return convert(model, "int8", calib, num_samples=16)

