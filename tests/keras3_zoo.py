"""Keras 3 models for the tests, built in a child process with plain ``import keras``.

Run as ``python tests/keras3_zoo.py OUT_DIR [NAME ...]`` in an environment without
``TF_USE_LEGACY_KERAS``: each model is saved as ``OUT_DIR/NAME.keras`` and
``OUT_DIR/NAME.h5``, with ``OUT_DIR/NAME.npy`` holding Keras 3's outputs on
``OUT_DIR/NAME.x.npy`` (random input, seed 0), so the parent can compare without Keras 3.
This file never imports edgeflow (which would select Keras 2).
"""

from __future__ import annotations

import os
import sys

os.environ.pop("TF_USE_LEGACY_KERAS", None)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _zoo(keras):
    L = keras.layers

    def layers_2d():
        inp = keras.Input((12, 12, 3), name="img")
        x = L.Rescaling(1 / 127.5, offset=-1, name="rescale")(inp)
        x = L.ZeroPadding2D(1, name="pad")(x)
        x = L.Conv2D(8, 3, strides=2, use_bias=False, name="conv")(x)
        x = L.BatchNormalization(name="bn")(x)
        x = L.ReLU(max_value=6.0, name="relu6")(x)
        a = L.DepthwiseConv2D(3, padding="same", depth_multiplier=1, name="dw")(x)
        a = L.Activation("swish", name="swish")(a)
        b = L.SeparableConv2D(8, 3, padding="same", activation="relu", name="sep")(x)
        x = L.Add(name="add")([a, b])
        m = L.Multiply(name="mul")([x, L.Activation("sigmoid", name="gate")(x)])
        x = L.Concatenate(name="cat")([x, m])
        x = L.LeakyReLU(negative_slope=0.1, name="leaky")(x)
        x = L.MaxPooling2D(name="maxpool")(x)
        x = L.UpSampling2D(2, name="up")(x)
        x = L.Conv2DTranspose(4, 3, strides=2, padding="same", name="deconv")(x)
        x = L.AveragePooling2D(2, name="avgpool")(x)
        x = L.Permute((2, 1, 3), name="permute")(x)
        x = L.Reshape((-1, 4), name="reshape")(x)
        x = L.LayerNormalization(name="ln")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dropout(0.3, name="drop")(x)
        x = L.Dense(16, activation="gelu", name="fc")(x)
        out = L.Softmax(name="softmax")(L.Dense(5, name="logits")(x))
        return keras.Model(inp, out, name="layers_2d")

    def sequence():
        inp = keras.Input((20, 6), name="seq")
        x = L.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu", name="tcn")(inp)
        x = L.LSTM(8, return_sequences=True, name="lstm")(x)
        x = L.GRU(6, name="gru")(x)
        x = L.PReLU(name="prelu")(x)
        out = L.Dense(1, activation="sigmoid", name="out")(x)
        return keras.Model(inp, out, name="sequence")

    def nested():
        block_in = keras.Input((8, 8, 4))
        y = L.Conv2D(4, 3, padding="same", activation="relu", name="inner_conv")(block_in)
        block = keras.Model(block_in, L.Add(name="inner_add")([y, block_in]), name="block")
        head = keras.Sequential([L.GlobalAveragePooling2D(), L.Dense(3)], name="head")
        inp = keras.Input((8, 8, 1))
        x = L.Conv2D(4, 3, padding="same", name="stem")(inp)
        x = block(x)
        x = block(x)  # shared: two nodes of one nested model
        return keras.Model(inp, head(x), name="nested")

    def sequential():
        return keras.Sequential([
            keras.Input((8, 8, 1)), L.Conv2D(8, 3), L.BatchNormalization(), L.ReLU(),
            L.GlobalAveragePooling2D(), L.Dense(2, activation="softmax"),
        ], name="sequential")

    def ds_cnn():
        """DS-CNN keyword spotting (Zhang et al. 2017, "Hello Edge"): 49×10 MFCC frames."""
        inp = keras.Input((49, 10, 1), name="mfcc")
        x = L.Conv2D(64, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inp)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        for _ in range(4):
            x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
            x = L.BatchNormalization()(x)
            x = L.ReLU()(x)
            x = L.Conv2D(64, 1, use_bias=False)(x)
            x = L.BatchNormalization()(x)
            x = L.ReLU()(x)
        x = L.Dropout(0.4)(x)
        x = L.AveragePooling2D(pool_size=(25, 5))(x)
        x = L.Flatten()(x)
        return keras.Model(inp, L.Dense(12, activation="softmax")(x), name="ds_cnn")

    def mobilenet_v2():
        return keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=2)

    def mobilenet_v3():
        return keras.applications.MobileNetV3Small(input_shape=(64, 64, 3), alpha=0.75, weights=None,
                                                   classes=3, include_preprocessing=False)

    def lambda_model():
        inp = keras.Input((4,))
        return keras.Model(inp, L.Dense(2)(L.Lambda(lambda t: t * 2.0, name="times_two")(inp)))

    return {f.__name__: f for f in (layers_2d, sequence, nested, sequential, ds_cnn, mobilenet_v2,
                                    mobilenet_v3, lambda_model)}


def _randomize(model, rng):
    """Random weights everywhere (BatchNorm statistics too), so a swapped weight shows."""
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) if "variance" in v.path
                               else rng.normal(0, 0.3, w.shape).astype(w.dtype)
                               for w, v in zip(weights, layer.weights)])


def main(out_dir: str, names: list[str]) -> None:
    import keras
    import numpy as np

    zoo = _zoo(keras)
    for name in names or list(zoo):
        keras.utils.set_random_seed(0)
        model = zoo[name]()
        rng = np.random.default_rng(0)
        _randomize(model, rng)
        shape = (2, *model.input_shape[1:])
        x = rng.uniform(-1, 1, shape).astype("float32") if name != "layers_2d" else \
            rng.uniform(0, 255, shape).astype("float32")
        np.save(os.path.join(out_dir, f"{name}.x.npy"), x)
        np.save(os.path.join(out_dir, f"{name}.npy"), np.asarray(model(x, training=False)))
        model.save(os.path.join(out_dir, f"{name}.keras"))
        model.save(os.path.join(out_dir, f"{name}.h5"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
