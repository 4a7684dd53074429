"""Firmware-true figures for the MLPerf Tiny models and the digits CNN on Cortex-M4F, M7 and M55.

For each model (random weights, int8 with random calibration data: sizes and instruction
counts do not depend on the weight values) and core: flash and static RAM of the linked
image, the arena on the target (emulated run) vs the host tflite-micro figure vs the old
static 32-bit estimate, the instructions of one Invoke(), the latency estimate at the
clock of a board with that core; then the flash split (model / TFLM / application /
libraries / padding) and the arena split (activations / scratch / persistent) of each image,
as ``edgeflow check`` reports them (``FirmwareResult.figures()``); and a calibration against
published measurements:

    MLPerf Tiny v0.5, closed division, reference submission: NUCLEO-L4R5ZI (Cortex-M4F at
    120 MHz, TFLM v2.3.1, gcc-arm-none-eabi 6-2017-q2), median of 5 windows of 100
    inferences: KWS (DS-CNN) 18.192 s, IC (ResNet-8) 70.426 s, VWW (MobileNetV1 0.25)
    60.054 s per 100 inferences.
    https://github.com/mlcommons/tiny_results_v0.5/tree/main/closed/reference/results/Nucleo-L4R5ZI
    (kws|ic|vww/performance/results.txt; systems/Nucleo_L4R5ZI_System_Description.json)

The implied cycles per instruction = published ms x 120 MHz / our instruction count; the
residual of each model against their mean shows how far one CPI figure carries. The
reference ran a 2020 TFLM whose kernels differ from today's CMSIS-NN ones, so the CPI
absorbs that difference too: read it as an order of magnitude, not a calibration.

    python bench/bench_firmware.py [--cores cortex-m4f,cortex-m7,cortex-m55] [--models ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

PUBLISHED_MS = {"ds_cnn": 181.92, "resnet8": 704.26, "mobilenet_v1_025": 600.54}
PUBLISHED_MHZ = 120.0
CLOCK_MHZ = {"cortex-m4f": 64.0, "cortex-m7": 216.0, "cortex-m55": 400.0}  # nano 33 BLE, F746 disco, typical M55


def ds_cnn(keras):
    """MLPerf Tiny KWS DS-CNN: 49x10 MFCC, conv 64 (10x4 /2) + 4 depthwise-separable blocks, 12 classes."""
    L = keras.layers
    x = inp = keras.Input((49, 10, 1), batch_size=1)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(64, (10, 4), strides=2, padding="same")(x)))
    for _ in range(4):
        x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(x)))
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(64, 1)(x)))
    x = L.Flatten()(L.AveragePooling2D(pool_size=x.shape[1:3])(x))
    return keras.Model(inp, L.Softmax()(L.Dense(12)(x)))


def resnet8(keras):
    """MLPerf Tiny IC ResNet-8: 32x32x3, 16-32-64 filters, 10 classes."""
    L = keras.layers
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(inp)))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = L.ReLU()(L.BatchNormalization()(L.Conv2D(filters, 3, strides=stride, padding="same")(x)))
        y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(y))
        if stride != 1:
            x = L.Conv2D(filters, 1, strides=stride)(x)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.Flatten()(L.AveragePooling2D(pool_size=x.shape[1:3])(x))
    return keras.Model(inp, L.Softmax()(L.Dense(10)(x)))


def mobilenet_v1_025(keras):
    """MLPerf Tiny VWW: MobileNetV1 alpha 0.25 at 96x96x3, 2 classes."""
    model = keras.applications.MobileNet(input_shape=(96, 96, 3), alpha=0.25, weights=None, classes=2)
    inp = keras.Input((96, 96, 3), batch_size=1)
    return keras.Model(inp, model(inp))


def digits(keras):
    from edgeflow.models import digits_cnn

    inp = keras.Input((8, 8, 1), batch_size=1)
    return keras.Model(inp, digits_cnn()(inp))


MODELS = {"ds_cnn": ds_cnn, "resnet8": resnet8, "mobilenet_v1_025": mobilenet_v1_025, "digits_cnn": digits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="cortex-m4f,cortex-m7,cortex-m55")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--cold", action="store_true", help="time a first build in an empty cache first")
    args = parser.parse_args()

    from edgeflow import firmware
    from edgeflow._keras import keras
    from edgeflow.convert import convert
    from edgeflow.firmware import targets
    from edgeflow.runtime import tflm
    from edgeflow.tflite import estimate_arena, reader

    if not firmware.available():
        sys.exit("needs arm-none-eabi-gcc and qemu-system-arm")
    cores = args.cores.split(",")
    if args.cold:
        cache = tempfile.mkdtemp(prefix="edgeflow-cold-cache-")
        os.environ["XDG_CACHE_HOME"] = cache
    rows, implied, splits = [], {}, []
    timings = []
    for name in args.models.split(","):
        keras.utils.set_random_seed(0)
        model = MODELS[name](keras)
        shape = model.input_shape[1:]
        x = np.random.default_rng(0).normal(size=(32, *shape)).astype("float32")
        data = convert(model, "int8", x)
        info = reader.parse(data)
        host = tflm.measure_arena(data)
        old = estimate_arena(info, pointer_bytes=4).total_bytes
        for core in cores:
            t0 = time.monotonic()
            fw = firmware.build_for(data, info, targets.target(core))
            seconds = time.monotonic() - t0
            timings.append((name, core, seconds, fw.firmware.compiled))
            splits.append((name, core, fw.figures()))
            n = fw.instructions
            ms = n * fw.target.cpi / (CLOCK_MHZ[core] * 1e3) if n else None
            if core == "cortex-m4f" and name in PUBLISHED_MS and n:
                implied[name] = PUBLISHED_MS[name] * PUBLISHED_MHZ * 1e3 / n
            rows.append([name, core, f"{len(data):,}", f"{fw.firmware.flash:,}", f"{fw.firmware.static_ram:,}",
                         f"{fw.arena_used:,}" if fw.arena_used else "failed",
                         f"{host.arena_bytes:,}" if host.arena_bytes else host.status, f"{old:,}",
                         f"{n:,}" if n else "-", f"{ms:.1f} @{CLOCK_MHZ[core]:g}" if ms else "-",
                         f"{seconds:.0f}"])
    from edgeflow.report import table

    print(table(["model", "core", "tflite B", "flash B", "static RAM B", "arena target", "arena host",
                 "old estimate", "instructions", "est. ms @MHz", "build s"], rows, "llrrrrrrrrr"))
    print_splits(splits, table)
    if implied:
        mean = sum(implied.values()) / len(implied)
        print("\ncalibration against MLPerf Tiny v0.5 reference (NUCLEO-L4R5ZI, Cortex-M4F @120 MHz):")
        cal = []
        for name, cpi in implied.items():
            n = PUBLISHED_MS[name] * PUBLISHED_MHZ * 1e3 / cpi
            predicted = n * mean / (PUBLISHED_MHZ * 1e3)
            cal.append([name, f"{PUBLISHED_MS[name]:.2f}", f"{int(n):,}", f"{cpi:.2f}", f"{predicted:.1f}",
                        f"{100 * (predicted - PUBLISHED_MS[name]) / PUBLISHED_MS[name]:+.0f}%"])
        print(table(["model", "published ms", "our instructions", "implied CPI", f"ms with CPI {mean:.2f}",
                     "residual"], cal, "lrrrrr"))
        print(f"profile CPI for cortex-m4f today: {targets.target('cortex-m4f').cpi} ({targets.CPI_BASIS})")
    if args.cold:
        shutil.rmtree(os.environ["XDG_CACHE_HOME"], ignore_errors=True)
    print("\nbuild times (s, objects compiled):", ", ".join(f"{m}/{c} {s:.0f} ({k})" for m, c, s, k in timings))


def print_splits(splits: list, table) -> None:
    """The flash and arena splits of each (model, core) image, in bytes, from the build's own
    ``figures()`` (``flash_split``, ``arena_split``; absent when the emulated run failed)."""
    from edgeflow.firmware import ARENA_PARTS
    from edgeflow.firmware.image import FLASH_PARTS

    for key, parts, what in (("flash_split", FLASH_PARTS, "flash split (B)"),
                             ("arena_split", ARENA_PARTS, "arena split on the target (B)")):
        rows = []
        for name, core, figures in splits:
            split = figures.get(key)
            cells = [f"{split['value'][p]:,}" for p in parts] + [f"{sum(split['value'].values()):,}"] if split \
                else ["-"] * (len(parts) + 1)
            rows.append([name, core, *cells])
        source = next((f[key]["source"] for _, _, f in splits if key in f), "")
        print(f"\n{what}: {source}")
        print(table(["model", "core", *parts, "total"], rows, "ll" + "r" * (len(parts) + 1)))


if __name__ == "__main__":
    main()
