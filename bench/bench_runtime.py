"""Print what the runtimes measure for a few real models: TFLM arena, LiteRT latency, aborts.

Run: ``PYTHONPATH=. EDGEFLOW_PROGRESS=0 python bench/bench_runtime.py [--quick]``

For each model: the int8 ``.tflite`` size, the smallest TFLM arena (with TFLM's own
persistent / non-persistent split, on this 64-bit host), the LiteRT median latency for one
sample on one thread, and for models TFLM aborts on, the cause ``known_aborts`` reads from
the flatbuffer. For the MobileNetV2 softmax head it also shows the workaround: the same
flatbuffer with the softmax input scale raised to just above TFLM's limit runs.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from edgeflow._keras import keras
from edgeflow.convert import convert
from edgeflow.data import digits
from edgeflow.runtime import litert, tflm


def digits_cnn() -> tuple[keras.Model, np.ndarray]:
    (x_tr, y_tr), _ = digits()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_tr, y_tr, epochs=3, verbose=0)
    return model, x_tr[:200]


def applications(quick: bool):
    rng = np.random.default_rng(0)
    signed = rng.uniform(-1, 1, (16, 96, 96, 3)).astype(np.float32)
    pixels = rng.uniform(0, 255, (16, 96, 96, 3)).astype(np.float32)
    apps = keras.applications
    yield "MobileNetV2 a=0.35 96x96 2 classes", lambda: apps.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=2), signed
    if quick:
        return
    yield "MobileNetV2 a=0.35 96x96 no top (avg pool)", lambda: apps.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, weights=None, include_top=False, pooling="avg"), signed
    yield "MobileNet a=0.25 96x96 2 classes", lambda: apps.MobileNet(
        input_shape=(96, 96, 3), alpha=0.25, weights=None, classes=2), signed
    yield "MobileNetV3Small 96x96 2 classes", lambda: apps.MobileNetV3Small(
        input_shape=(96, 96, 3), weights=None, classes=2), pixels


def row(name: str, tflite: bytes) -> None:
    m = tflm.measure_arena(tflite)
    lat = litert.benchmark(tflite, runs=20, warmup=3)
    if m.ok:
        b = m.breakdown
        arena = (f"arena {m.arena_bytes:>8,} B (persistent {b.get('persistent', 0):,}, "
                 f"non-persistent {b.get('non_persistent', 0):,})")
    else:
        arena = f"TFLM {m.status}: {m.message}"
    print(f"{name:45s} {len(tflite):>9,} B  LiteRT {lat.median_ms:7.3f} ms  {arena}  [{m.seconds:.1f} s]")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits CNN and MobileNetV2 only")
    args = parser.parse_args()
    print(f"pointer width of this host: {tflm.POINTER_BYTES * 8} bit (MCUs: 32 bit)")
    model, calib = digits_cnn()
    row("digits CNN (int8)", convert(model, "int8", calib))
    for name, build, calib in applications(args.quick):
        keras.utils.set_random_seed(0)
        tflite = convert(build(), "int8", calib, num_samples=16)
        row(name, tflite)
        if tflm.known_aborts(tflite):
            row("  same, softmax input scale raised", tflm.raise_softmax_scale(tflite))


if __name__ == "__main__":
    main()
