"""What pruning buys on the board: params, MACs, int8 bytes, gzip, TFLM arena, LiteRT latency, accuracy.

Run: ``PYTHONPATH=. EDGEFLOW_PROGRESS=0 python bench/bench_prune.py [--quick]``

Two models, both trained here on scikit-learn's digits (no download):

- the quickstart CNN (``edgeflow.models.digits_cnn``, 8×8×1);
- ``keras.applications.MobileNet`` α=0.25 (weights=None, BN momentum 0.9) on the digits
  upsampled to 32×32×3, 10 classes.

For each: the unpruned model; 50% structured pruning (filters/units removed) with each
criterion, fine-tuned; magnitude pruning at 50/80/90% (TF-MOT, fine-tuned; the first
convolution and the output layer kept dense), where the gain only shows after gzip. Every row is converted to
int8 and measured: MACs from ``edgeflow.tflite.parse``, the smallest TFLM arena
(``edgeflow.runtime.tflm``, a child process, 64-bit host), LiteRT median latency of one
sample on one thread, and int8 test accuracy on LiteRT (``edgeflow.runtime.litert``).
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
import warnings

import numpy as np

from edgeflow import prune
from edgeflow._keras import keras, tf
from edgeflow.convert import convert
from edgeflow.data import digits
from edgeflow.models import digits_cnn
from edgeflow.runtime import litert, tflm
from edgeflow.tflite import parse

CRITERIA = ("l1", "l2", "fpgm", "activation", "taylor", "hessian")


def _upsampled(x: np.ndarray) -> np.ndarray:
    return np.repeat(tf.image.resize(x, (32, 32)).numpy(), 3, axis=-1).astype(np.float32)


def models(quick: bool):
    """(name, trained model, (x_train, y_train), (x_test, y_test), structured/magnitude epochs)."""
    (x_tr, y_tr), (x_te, y_te) = digits()
    keras.utils.set_random_seed(0)
    cnn = digits_cnn()
    cnn.compile(keras.optimizers.Adam(0.002), "sparse_categorical_crossentropy", metrics=["accuracy"])
    cnn.fit(x_tr, y_tr, epochs=15, batch_size=32, verbose=0)
    yield "digits CNN (quickstart)", cnn, (x_tr, y_tr), (x_te, y_te), 3, 5

    x_tr3, x_te3 = _upsampled(x_tr), _upsampled(x_te)
    keras.utils.set_random_seed(0)
    mobilenet = keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=10)
    # With the applications' BN momentum 0.99, ~500 steps from scratch leave the moving
    # statistics far from the weights (test accuracy at chance, training accuracy 90%).
    for layer in mobilenet.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    mobilenet.compile(keras.optimizers.Adam(0.002), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    mobilenet.fit(x_tr3, y_tr, epochs=6 if quick else 10, batch_size=32, verbose=0)
    yield "MobileNet a=0.25 32x32x3", mobilenet, (x_tr3, y_tr), (x_te3, y_te), 2, 3


def measure(model, train, test) -> dict:
    """Convert to int8 and measure it with the real runtimes."""
    x_te, y_te = test
    tflite = convert(model, "int8", train[0][:200])
    info = parse(tflite)
    arena = tflm.measure_arena(tflite, timeout=300)
    latency = litert.benchmark(tflite, runs=50, warmup=5, num_threads=1)
    return {
        "params": model.count_params(),
        "macs": info.total_macs,
        "int8": len(tflite),
        "gzip": len(gzip.compress(tflite, compresslevel=9, mtime=0)),
        "arena": arena.arena_bytes if arena.ok else f"TFLM {arena.status}",
        "latency_ms": latency.median_ms,
        "acc_int8": litert.evaluate(tflite, x_te, y_te)["accuracy"],
        "sparsity": prune.tflite_sparsity(tflite).sparsity,
    }


COLUMNS = ("variant", "params", "macs", "int8", "gzip", "sparsity", "arena", "latency_ms",
           "acc_keras", "acc_int8", "seconds")


def row(values: dict) -> str:
    cells = []
    for col in COLUMNS:
        v = values.get(col, "")
        if isinstance(v, float) and col.startswith("acc"):
            v = f"{v:.4f}"
        elif isinstance(v, float) and col == "sparsity":
            v = f"{v:.1%}"
        elif isinstance(v, float):
            v = f"{v:.3f}" if col == "latency_ms" else f"{v:.0f}"
        elif isinstance(v, int):
            v = f"{v:,}"
        cells.append(str(v))
    return " | ".join(cells)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer training epochs for the MobileNet and only the l1/taylor criteria")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    criteria = ("l1", "taylor") if args.quick else CRITERIA
    for name, model, train, test, s_epochs, m_epochs in models(args.quick):
        print(f"\n## {name}\n")
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        accuracy = model.evaluate(*test, verbose=0)[1]
        print("| " + row({"variant": "unpruned", "acc_keras": accuracy, **measure(model, train, test)}) + " |",
              flush=True)
        for criterion in criteria:
            t = time.time()
            keras.utils.set_random_seed(1)
            result = prune.structured(model, 0.5, criterion=criterion, data=train, epochs=s_epochs)
            acc = result.model.evaluate(*test, verbose=0)[1]
            print("| " + row({"variant": f"structured 50% {criterion} +{s_epochs} ep",
                              "acc_keras": acc, **measure(result.model, train, test),
                              "seconds": time.time() - t}) + " |", flush=True)
        # The first convolution and the output layer stay dense: on the digits CNN, 80%
        # everywhere else loses nothing; pruning the 10×32 output layer too loses ~1.7 points.
        with_kernel = [layer.name for layer in model.layers if hasattr(layer, "kernel")]
        dense = {with_kernel[0]: 0, with_kernel[-1]: 0}
        for sparsity in (0.5, 0.8, 0.9):
            t = time.time()
            keras.utils.set_random_seed(1)
            result = prune.magnitude(model, sparsity, data=train, epochs=m_epochs, per_layer=dense)
            acc = result.model.evaluate(*test, verbose=0)[1]
            print("| " + row({"variant": f"magnitude {sparsity:.0%} +{m_epochs} ep",
                              "acc_keras": acc, **measure(result.model, train, test),
                              "seconds": time.time() - t}) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
