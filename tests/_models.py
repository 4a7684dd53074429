"""Small real Keras models the tests build (no downloads)."""

from __future__ import annotations

from edgeflow._keras import keras
from edgeflow.models import digits_cnn


def small_cnn(num_classes: int = 10, input_shape=(8, 8, 1)) -> keras.Model:
    """The quickstart's digits CNN (Conv-BN-ReLU ×2, pooling, Dense ×2)."""
    return digits_cnn(num_classes, input_shape)
