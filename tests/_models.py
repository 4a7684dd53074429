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


def table_compressed(trained_cnn, digits, per_channel: bool = True) -> tuple[bytes, bytes, list]:
    """The digits CNN with its kernels on few levels (4 and 16, layer by layer: 2- and 4-bit
    indices), int8 per channel (the converter's default) or per tensor, slim for TFLM, and
    table-compressed: ``(plain, packed, tables)``."""
    import numpy as np

    from edgeflow.convert import convert
    from edgeflow.models import copy_model
    from edgeflow.tflite import slim
    from edgeflow.tflite.lut import compress_tables

    (x_tr, _), (x_te, _) = digits
    model = copy_model(trained_cnn)
    for i, layer in enumerate(model.layers):  # what 4 and 16 clusters give
        weights = layer.get_weights()
        if weights and weights[0].ndim > 1:
            levels = np.linspace(weights[0].min(), weights[0].max(), 4 if i % 2 else 16)
            weights[0] = levels[np.abs(weights[0][..., None] - levels).argmin(-1)].astype(np.float32)
            layer.set_weights(weights)
    options = None if per_channel else {"_experimental_disable_per_channel": True}
    plain = slim(convert(model, "int8", x_tr[:100], converter_options=options), tflm_only=True)[0]
    packed, tables = compress_tables(plain, x_te[:8])
    return plain, packed, tables.compressed
