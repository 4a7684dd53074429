"""Small real Keras models the tests build (no downloads)."""

from __future__ import annotations

from edgeflow._keras import keras
from edgeflow.models import digits_cnn


def small_cnn(num_classes: int = 10, input_shape=(8, 8, 1)) -> keras.Model:
    """The quickstart's digits CNN (Conv-BN-ReLU ×2, pooling, Dense ×2)."""
    return digits_cnn(num_classes, input_shape)


def small_resnet(num_classes: int = 10, input_shape=(8, 8, 1), width: int = 16) -> keras.Model:
    """A ResNet-style CNN: a stem, two residual blocks (identity, then projection with
    stride 2) whose outputs are joined by Add, global pooling and a softmax Dense."""
    L = keras.layers
    inputs = keras.Input(input_shape)
    x = L.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    for i, (filters, stride) in enumerate(((width, 1), (2 * width, 2)), start=1):
        shortcut = x
        y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"b{i}_conv1")(x)
        y = L.BatchNormalization(name=f"b{i}_bn1")(y)
        y = L.ReLU(name=f"b{i}_relu1")(y)
        y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"b{i}_conv2")(y)
        y = L.BatchNormalization(name=f"b{i}_bn2")(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = L.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"b{i}_proj")(shortcut)
            shortcut = L.BatchNormalization(name=f"b{i}_proj_bn")(shortcut)
        x = L.Add(name=f"b{i}_add")([y, shortcut])
        x = L.ReLU(name=f"b{i}_out")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name="small_resnet")


def endless_while() -> bytes:
    """A float ``.tflite`` (input ``[1, 4]``) that never ends: one WHILE whose condition stays
    true (its body passes the values on). It states no MACs; TFLM, LiteRT and the firmware
    loop forever on it."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def endless(x):
        return tf.while_loop(lambda v, go: go, lambda v, go: (v, go), [x, tf.constant(True)])[0]

    return tf.lite.TFLiteConverter.from_concrete_functions([endless.get_concrete_function()], endless).convert()
