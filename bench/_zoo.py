"""The reference networks of the size benchmarks, built offline (weights=None or random).

MLPerf Tiny-style: DS-CNN (keyword spotting, 49×10 MFCC), ResNet-8 (CIFAR-10 32×32×3),
the FC autoencoder (anomaly detection, 640 inputs), MobileNetV1 α=0.25 and MobileNetV2
α=0.35 at 96×96×3 with 2 classes (visual wake words). Each entry gives the model builder
and a calibration batch.
"""

from __future__ import annotations

import numpy as np

from edgeflow._keras import keras

L = keras.layers


def ds_cnn(input_shape=(49, 10, 1), classes: int = 12, filters: int = 64) -> keras.Model:
    """DS-CNN: Conv 10×4/2, four depthwise-separable blocks, average pooling, Dense."""
    inputs = keras.Input(input_shape)
    x = L.Conv2D(filters, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inputs)
    x = L.ReLU()(L.BatchNormalization()(x))
    for _ in range(4):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
        x = L.Conv2D(filters, 1, use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
    x = L.AveragePooling2D(pool_size=(x.shape[1], x.shape[2]))(x)
    x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(classes, activation="softmax")(x), name="ds_cnn")


def resnet8(input_shape=(32, 32, 3), classes: int = 10) -> keras.Model:
    """ResNet-8: a 16-filter stem and three residual stacks (16, 32/2, 64/2)."""
    inputs = keras.Input(input_shape)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(inputs)))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = L.Conv2D(filters, 3, strides=stride, padding="same")(x)
        y = L.ReLU()(L.BatchNormalization()(y))
        y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(y))
        if stride != 1:
            x = L.Conv2D(filters, 1, strides=stride)(x)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.Flatten()(L.AveragePooling2D(pool_size=x.shape[1])(x))
    return keras.Model(inputs, L.Dense(classes, activation="softmax")(x), name="resnet8")


def fc_autoencoder(inputs_dim: int = 640) -> keras.Model:
    """The anomaly-detection autoencoder: 4×Dense 128, Dense 8, 4×Dense 128, Dense 640."""
    inputs = keras.Input((inputs_dim,))
    x = inputs
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = L.ReLU()(L.BatchNormalization()(L.Dense(units)(x)))
    return keras.Model(inputs, L.Dense(inputs_dim)(x), name="fc_autoencoder")


def mobilenet_v1() -> keras.Model:
    return keras.applications.MobileNet(input_shape=(96, 96, 3), alpha=0.25, weights=None, classes=2)


def mobilenet_v2() -> keras.Model:
    return keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=2)


def zoo():
    """``[(name, builder, calibration batch)]`` in the order of issue 11."""
    rng = np.random.default_rng(0)

    def batch(*shape):
        return rng.uniform(-1, 1, (16, *shape)).astype(np.float32)

    return [
        ("DS-CNN", ds_cnn, batch(49, 10, 1)),
        ("ResNet-8", resnet8, batch(32, 32, 3)),
        ("FC autoencoder", fc_autoencoder, batch(640)),
        ("MobileNetV1 0.25", mobilenet_v1, batch(96, 96, 3)),
        ("MobileNetV2 0.35", mobilenet_v2, batch(96, 96, 3)),
    ]
