"""Keras 3 activations that tf_keras lacks or defines differently, as tf_keras functions.

A Keras 3 model translated to Keras 2 (:mod:`edgeflow.keras3`) names them in its layers'
``activation``; they are registered (``edgeflow>NAME``) so that the translated model saves
and loads again wherever edgeflow is imported. Formulas are Keras 3.15's
(``keras.activations``); each was checked against it on 21 000 points in [-8, 8] and
N(0, 3) (max abs difference 0 or one float32 rounding).
"""

from __future__ import annotations

from edgeflow._keras import keras, tf

__all__ = ["KERAS3"]


def _register(fn):
    return keras.saving.register_keras_serializable(package="edgeflow")(fn)


@_register
def hard_sigmoid(x):
    """Keras 3's hard sigmoid, ``relu6(x + 3) / 6`` (tf_keras's ``hard_sigmoid`` is
    ``clip(0.2·x + 0.5, 0, 1)``: up to 0.083 apart)."""
    return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


@_register
def hard_swish(x):
    """Keras 3's ``hard_silu`` / ``hard_swish``, ``x · relu6(x + 3) / 6`` (Howard et al. 2019,
    MobileNetV3). Written as the TFLite converter's pattern, so it becomes one HARD_SWISH op."""
    return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


@_register
def hard_tanh(x):
    """Keras 3's ``hard_tanh``, ``clip(x, -1, 1)``."""
    return tf.clip_by_value(x, -1.0, 1.0)


@_register
def log_sigmoid(x):
    """Keras 3's ``log_sigmoid``, ``-softplus(-x)``."""
    return tf.math.log_sigmoid(x)


#: Keras 3 activation name -> the tf_keras activation name that computes the same.
KERAS3 = {
    "silu": "swish",
    "hard_sigmoid": "edgeflow>hard_sigmoid",
    "hard_silu": "edgeflow>hard_swish",
    "hard_swish": "edgeflow>hard_swish",
    "hard_tanh": "edgeflow>hard_tanh",
    "log_sigmoid": "edgeflow>log_sigmoid",
}
