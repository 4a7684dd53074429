"""Print what edgeflow saves in flash and RAM on the reference networks (issue 11).

Run: ``PYTHONPATH=. EDGEFLOW_PROGRESS=0 python bench/bench_size.py [--quick] [--only TABLE]``

Table 1, per zoo network (bench/_zoo.py, weights=None, calibrated on random data): the
plain converter's int8 ``.tflite`` bytes, edgeflow's (``slim(for_tflm=True)``), the flash
overhead ``(file − weight/bias bytes) / file`` of each, and the share of the slim file that
is per-channel quantization scales (what TFLM needs and no rewrite can remove).

Table 2, the arena: TFLM's measured arena (64-bit host) of the converter's file and of
edgeflow's (``reorder_for_arena``: operator order and offline tensor plan), the planned
activations, the largest live set one operator needs (the bound no order or plan goes
below) and TFLM's persistent part; the FC autoencoder also with per-tensor Dense
quantization (TFLM keeps 8 bytes per output channel of each per-channel layer).

Table 3, clustering (TF-MOT) + TFLM table compression on the digits CNN and on a DS-CNN
trained on keyword-spotting-like data the bench makes: flash of the plain int8 file, of
edgeflow's slim file, and of the table-compressed file, accuracy measured on TFLM.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _zoo import ds_cnn, zoo  # noqa: E402

from edgeflow._keras import keras  # noqa: E402
from edgeflow.cluster import cluster  # noqa: E402
from edgeflow.convert import convert  # noqa: E402
from edgeflow.data import digits  # noqa: E402
from edgeflow.models import copy_model, digits_cnn  # noqa: E402
from edgeflow.runtime import tflm  # noqa: E402
from edgeflow.tflite import flash_overhead, parse, slim  # noqa: E402
from edgeflow.tflite.lut import compress_tables  # noqa: E402
from edgeflow.tflite.schedule import reorder_for_arena  # noqa: E402


def scale_bytes(data: bytes) -> int:
    """Bytes of per-channel scale vectors (4 per channel) in the file, each vector once."""
    info = parse(data)
    return sum(4 * len(s) for s in {tuple(t.scale) for t in info.tensors if len(t.scale) > 1})


def flash_table(models: list) -> None:
    print("\n1. Flash: plain converter int8 vs edgeflow (slim, for TFLM)")
    print(f"{'model':<18}{'converter':>11}{'overhead':>10}{'edgeflow':>10}{'overhead':>10}"
          f"{'of it scales':>14}{'saved':>8}")
    for name, data in models:
        size, _, plain = flash_overhead(data)
        thin, result = slim(data, for_tflm=True)
        scales = 100.0 * scale_bytes(thin) / len(thin)
        print(f"{name:<18}{size:>11,}{plain:>9.1f}%{len(thin):>10,}{result.overhead_percent:>9.1f}%"
              f"{scales:>13.1f}%{100 * (1 - len(thin) / size):>7.1f}%", flush=True)


def arena_table(models: list) -> None:
    print("\n2. Arena (TFLM, 64-bit host): converter order vs reordered, bound = largest "
          "single-operator live set")
    print(f"{'model':<34}{'arena':>9}{'edgeflow':>10}{'planned':>9}{'bound':>9}{'arena/bound':>13}"
          f"{'persistent':>12}  rewrite")
    for name, data in models:
        thin = slim(data, for_tflm=True)[0]
        _, r = reorder_for_arena(thin)
        if r.arena_before is None:
            print(f"{name:<34}  TFLM did not run: {'; '.join(r.notes)}")
            continue
        measured = tflm.measure_arena(tflm.raise_softmax_scale(thin) if tflm.known_aborts(thin) else thin)
        persistent = measured.breakdown.get("persistent", 0)
        how = "+".join([r.method] * (r.method != "original") + ["offline plan"] * r.offline_plan) or "none"
        print(f"{name:<34}{r.arena_before:>9,}{r.arena_after:>10,}{r.plan_after:>9,}{r.live_set_bound:>9,}"
              f"{r.arena_after / r.live_set_bound:>12.2f}x{persistent:>12,}  {how}"
              f"{' (softmax scale raised to measure)' if r.measured_on != 'the model' else ''}", flush=True)


def kws_data(n: int = 3000, classes: int = 12, seed: int = 0):
    """Keyword-spotting-like data: 49×10 "MFCC" maps, one smooth random template per class,
    shifted in time by up to 12 frames, with Gaussian noise (σ = 4) that keeps a trained
    DS-CNN around 90 %; 75/25 split."""
    rng = np.random.default_rng(seed)
    templates = rng.normal(0, 1, (classes, 49 + 12, 10)).astype(np.float32)
    templates = np.cumsum(templates, axis=1) / 4  # smooth along time
    y = rng.integers(0, classes, n)
    shift = rng.integers(0, 13, n)
    x = np.stack([templates[c, s : s + 49] for c, s in zip(y, shift, strict=True)])
    x = (x + rng.normal(0, 4.0, x.shape)).astype(np.float32)[..., None]
    cut = n * 3 // 4
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def clustering_rows(name: str, model, train, test, epochs: int) -> None:
    (x, y), (xt, yt) = train, test

    def accuracy(data: bytes) -> float:
        return float((tflm.predict(data, xt).argmax(1) == yt).mean())

    # the same training budget as the clustered models: `epochs` more at the same rate
    baseline = copy_model(model)
    baseline.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    baseline.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    base = convert(baseline, "int8", x[:200])
    base_slim = slim(base, for_tflm=True)[0]
    print(f"{name:<10}{'int8':<14}{len(base):>10,}{len(base_slim):>10,}{len(base_slim):>10,}"
          f"{'':>8}{100 * accuracy(base_slim):>9.1f}%", flush=True)
    for k in (16, 4):
        started = time.monotonic()
        result = cluster(model, k, data=(x, y), epochs=epochs)
        plain = convert(result.model, "int8", x[:200])
        thin = slim(plain, for_tflm=True)[0]
        packed, tables = compress_tables(thin, xt[:16])
        packed = slim(packed, for_tflm=True)[0]
        bits = "/".join(sorted({f"{c.bits}" for c in tables.compressed})) or "-"
        print(f"{'':<10}{f'{k} clusters':<14}{len(plain):>10,}{len(thin):>10,}{len(packed):>10,}"
              f"{bits + '-bit':>8}{100 * accuracy(packed):>9.1f}%"
              f"   {100 * (1 - len(packed) / len(base)):.0f}% less than int8,"
              f" {len(tables.compressed)} tables ({time.monotonic() - started:.0f} s)", flush=True)


def trained(model, train, epochs: int, batch_size: int):
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(*train, epochs=epochs, batch_size=batch_size, verbose=0)
    return model


def clustering_table(quick: bool) -> None:
    print("\n3. Clustering + TFLM tables: flash in bytes (.tflite) and accuracy on TFLM")
    print(f"{'model':<10}{'':<14}{'converter':>10}{'slim':>10}{'tables':>10}{'index':>8}{'accuracy':>10}")
    cases = [("digits", digits_cnn, digits, 15, 32)]
    if not quick:
        cases.append(("DS-CNN", ds_cnn, kws_data, 12, 64))
    for name, build, data, epochs, batch_size in cases:
        keras.utils.set_random_seed(0)
        train, test = data()
        clustering_rows(name, trained(build(), train, epochs, batch_size), train, test, epochs=2)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="DS-CNN and ResNet-8 only; digits only")
    parser.add_argument("--only", choices=["flash", "arena", "clustering"], help="print one table")
    args = parser.parse_args()
    if args.only == "clustering":
        clustering_table(args.quick)
        return 0
    models = []
    for name, build, calib in zoo():
        if args.quick and name not in ("DS-CNN", "ResNet-8"):
            continue
        keras.utils.set_random_seed(0)
        models.append((name, convert(build(), "int8", calib, num_samples=len(calib))))
        if name == "FC autoencoder":
            keras.utils.set_random_seed(0)
            models.append(("FC autoencoder, per-tensor Dense", convert(
                build(), "int8", calib, num_samples=len(calib),
                converter_options={"_experimental_disable_per_channel_quantization_for_dense_layers": True},
            )))
    if args.only in (None, "flash"):
        flash_table([m for m in models if "per-tensor" not in m[0]])
    if args.only in (None, "arena"):
        arena_table(models)
    if args.only is None:
        clustering_table(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
