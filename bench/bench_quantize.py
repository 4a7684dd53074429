"""Quantization benchmark: digits float vs PTQ int8 vs QAT int8; MobileNetV2 per-layer error.

Run:
    PYTHONPATH=. EDGEFLOW_PROGRESS=0 python bench/bench_quantize.py [--epochs 20] [--qat-epochs 3]

Prints, for the small digits CNN (scikit-learn's 8×8 digits, 25% held out): Keras float
accuracy, PTQ int8 and QAT int8 accuracy measured with LiteRT, the .tflite sizes and the
full-int8 check; then the per-op int8 error table of MobileNetV2 (α=0.35, 96×96, random
weights and calibration data: no downloads) from the TFLite quantization debugger.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _models import small_cnn  # noqa: E402

from edgeflow._keras import keras  # noqa: E402
from edgeflow.convert import convert  # noqa: E402
from edgeflow.data import digits  # noqa: E402
from edgeflow.quantize import layer_errors, ptq, qat, verify_int8  # noqa: E402
from edgeflow.runtime.litert import evaluate  # noqa: E402
from edgeflow.runtime.metrics import evaluate_keras  # noqa: E402


def bench_digits(epochs: int, qat_epochs: int, qat_lr: float) -> None:
    (x_tr, y_tr), (x_te, y_te) = digits(test_fraction=0.25, seed=0)
    keras.utils.set_random_seed(0)
    model = small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    t = time.perf_counter()
    model.fit(x_tr, y_tr, epochs=epochs, batch_size=32, verbose=0)
    t_train = time.perf_counter() - t
    f32 = convert(model, "float32")
    float_acc = evaluate_keras(model, x_te, y_te)["accuracy"]

    t = time.perf_counter()
    ptq_int8 = ptq(model, "int8", x_tr, num_samples=200)
    t_ptq = time.perf_counter() - t
    t = time.perf_counter()
    result = qat(model, data=(x_tr, y_tr), epochs=qat_epochs, learning_rate=qat_lr)
    qat_int8 = convert(result.model, "int8")
    t_qat = time.perf_counter() - t

    rows = [
        ("keras float", float_acc, len(f32), "float32 .tflite size", t_train),
        ("PTQ int8", evaluate(ptq_int8, x_te, y_te)["accuracy"], len(ptq_int8),
         verify_int8(ptq_int8).summary(), t_ptq),
        ("QAT int8", evaluate(qat_int8, x_te, y_te)["accuracy"], len(qat_int8),
         verify_int8(qat_int8).summary(), t_qat),
    ]
    print(f"digits CNN: {len(x_tr)} train / {len(x_te)} test samples, float trained "
          f"{epochs} epochs, QAT {qat_epochs} epochs at lr {qat_lr}")
    print(f"{'model':<12} {'accuracy':>9} {'size (B)':>9} {'seconds':>8}  check")
    for name, acc, size, check, secs in rows:
        print(f"{name:<12} {acc:>9.4f} {size:>9,} {secs:>8.1f}  {check}")
    gap = (float_acc - rows[2][1]) * 100
    print(f"QAT int8 vs float: {-gap:+.2f} points (target: within 0.5) -> "
          f"{'OK' if gap <= 0.5 else 'MISSED'}")


def bench_mobilenet(top: int) -> None:
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None,
                                           classes=2)
    calib = np.random.default_rng(0).uniform(-1, 1, (32, 96, 96, 3)).astype(np.float32)
    t = time.perf_counter()
    errors = layer_errors(model, calib, num_samples=32)
    secs = time.perf_counter() - t
    print(f"\nMobileNetV2 α=0.35 96×96 (random weights, 32 random calibration samples): "
          f"{len(errors.rows)} quantized op outputs, debugger {secs:.1f} s; worst {top}:")
    print(errors.table(top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--qat-lr", type=float, default=1e-4)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    bench_digits(args.epochs, args.qat_epochs, args.qat_lr)
    bench_mobilenet(args.top)


if __name__ == "__main__":
    main()
