"""Print what edgeflow saves in flash and RAM on the reference networks (issue 11).

Run: ``PYTHONPATH=. EDGEFLOW_PROGRESS=0 python bench/bench_size.py [--quick] [--only TABLE]``

Table 1, per zoo network (bench/_zoo.py, weights=None, calibrated on random data): the
plain converter's int8 ``.tflite`` bytes and edgeflow's at each slim level (portable;
``for_tflm``; ``tflm_only``, what C arrays and ``deploy mcu`` hold), the flash overhead
``(file − weight/bias bytes) / file`` of each, the share of the TFLM-only file that is
per-channel weight scales (what TFLM needs and no rewrite can remove), and whether TFLM's
outputs on the calibration batch are bit-identical to the converter's file at every level.
Table 1b: every byte of the converter's, the portable and the TFLM-only file attributed
to what holds it (``edgeflow.tflite.layout.byte_breakdown``).

Table 2, the arena: TFLM's measured arena (64-bit host) of the converter's file and of
edgeflow's (``reorder_for_arena``: operator order and offline tensor plan), the planned
activations, the largest live set one operator needs (the bound no order or plan goes
below) and TFLM's persistent part; the FC autoencoder also with per-tensor Dense
quantization (TFLM keeps 8 bytes per output channel of each per-channel layer).

Table 3, clustering (TF-MOT) + TFLM table compression on the digits CNN and on a DS-CNN
trained on keyword-spotting-like data the bench makes: flash of the plain int8 file, of
edgeflow's slim file, and of the table-compressed file, accuracy measured on TFLM, and
TFLM's arena (planned + persistent, 64-bit host) without and with the tables: DECODE
writes each decoded tensor into the arena. With ``--firmware``, each int8 and compressed
model is also built into Cortex-M4 firmware and run under QEMU: flash of the linked image
(DECODE's own code included: edgeflow's kernel, and the same image with TFLM's kernel for
comparison), the arena of the emulated run, and whether its outputs equal host TFLM's (and
TFLM's kernel's image the same outputs).

Run ``python bench/bench_size.py --only clustering --firmware`` for table 3 with firmware.
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
from edgeflow.runtime._quant import dequantize  # noqa: E402
from edgeflow.tflite import estimate_arena, flash_overhead, parse, slim  # noqa: E402
from edgeflow.tflite.layout import CATEGORIES, byte_breakdown  # noqa: E402
from edgeflow.tflite.lut import compress_tables  # noqa: E402
from edgeflow.tflite.schedule import reorder_for_arena  # noqa: E402

#: The levels of table 1: (column, slim keyword arguments).
LEVELS = (("slim", {}), ("for TFLM", {"for_tflm": True}), ("TFLM only", {"tflm_only": True}))

#: Short column names of table 1b (edgeflow.tflite.layout.CATEGORIES).
SHORT = {"weights": "weights", "scales per-channel": "scales/ch", "zero points per-channel": "zp/ch",
         "per-tensor scale/zp": "q/tensor", "min/max": "min/max", "quantization tables": "q tables",
         "tensor tables": "tensors", "shapes": "shapes", "operators": "ops", "options": "options",
         "buffer tables": "buffers", "names": "names", "graph": "graph", "metadata data": "metadata",
         "unused data": "unused", "vtables": "vtables", "padding": "padding"}


def flash_table(models: list) -> None:
    print("\n1. Flash: plain converter int8 vs edgeflow's slim levels; overhead = (file - weight/bias "
          "bytes) / file")
    print("   slim: portable (LiteRT and TFLM); for TFLM: + bias scales dropped (LiteRT still loads it);")
    print("   TFLM only: + one zero point per per-channel tensor (C array, deploy mcu; LiteRT refuses it)")
    print(f"{'model':<18}{'converter':>11}{'overhead':>9}" + "".join(f"{c:>12}{'overhead':>9}" for c, _ in LEVELS)
          + f"{'scales':>8}{'saved':>7}  TFLM outputs")
    for name, data, x in models:
        size, _, plain = flash_overhead(data)
        row = f"{name:<18}{size:>11,}{plain:>8.1f}%"
        # untrained MobileNets abort TFLM's softmax (tflm.known_aborts): compare on a copy that runs
        raised = tflm.known_aborts(data)
        runs = tflm.raise_softmax_scale(data) if raised else data
        ref = tflm.predict(runs, x)
        same = []
        for _, kwargs in LEVELS:
            thin, result = slim(data, **kwargs)
            row += f"{len(thin):>12,}{result.overhead_percent:>8.1f}%"
            same.append(np.array_equal(tflm.predict(slim(runs, **kwargs)[0] if raised else thin, x), ref))
        scales = 100.0 * byte_breakdown(thin)["scales per-channel"] / len(thin)
        row += f"{scales:>7.1f}%{100 * (1 - len(thin) / size):>6.1f}%  "
        print(row + ("bit-identical" if all(same) else "DIFFER: " + str(same))
              + (" (softmax scale raised to run)" if raised else ""), flush=True)
    print("   scales: the TFLM-only file's per-channel weight scales (float32), which TFLM's kernels need")


def breakdown_table(models: list) -> None:
    print("\n1b. Where the bytes are (edgeflow.tflite.layout.byte_breakdown), bytes")
    shown = [c for c in CATEGORIES if c not in ("min/max", "unused data")]
    print(f"{'model':<18}{'file':<10}" + "".join(f"{SHORT[c]:>10}" for c in shown))
    for name, data, _ in models:
        for label, thin in (("converter", data), ("slim", slim(data)[0]),
                            ("TFLM only", slim(data, tflm_only=True)[0])):
            parts = byte_breakdown(thin)
            hidden = sum(parts[c] for c in CATEGORIES if c not in shown)
            print(f"{name if label == 'converter' else '':<18}{label:<10}"
                  + "".join(f"{parts[c]:>10,}" for c in shown) + (f"  (+{hidden} min/max, unused)" if hidden else ""),
                  flush=True)


#: TFLM's persistent allocations (RecordingMicroAllocator kinds) shown in table 2.
KINDS = (("Persistent buffer data", "op data"), ("TfLiteEvalTensor data", "tensors"),
         ("NodeAndRegistration struct", "nodes"))


def arena_table(models: list) -> None:
    print("\n2. Arena (TFLM, 64-bit host): converter order vs reordered, bound = largest "
          "single-operator live set; persistent = TFLM's tail: op data (kernels' OpData with the")
    print("   per-channel output multipliers and shifts, 8 bytes per channel), evaluation tensors, "
          "nodes, the rest (input/output TfLiteTensors, allocator); 32-bit = edgeflow's estimate of the "
          "persistent part on a 32-bit MCU")
    print(f"{'model':<34}{'arena':>9}{'edgeflow':>10}{'planned':>9}{'bound':>9}{'arena/bound':>13}"
          f"{'persistent':>12}" + "".join(f"{short:>9}" for _, short in KINDS) + f"{'32-bit':>8}  rewrite")
    for name, data, _ in models:
        thin = slim(data, tflm_only=True)[0]
        _, r = reorder_for_arena(thin)
        if r.arena_before is None:
            print(f"{name:<34}  TFLM did not run: {'; '.join(r.notes)}")
            continue
        measured = tflm.measure_arena(tflm.raise_softmax_scale(thin) if tflm.known_aborts(thin) else thin)
        persistent = measured.breakdown.get("persistent", 0)
        kinds = measured.breakdown.get("kinds", {})
        est32 = estimate_arena(parse(thin), pointer_bytes=4).persistent_bytes
        how = "+".join([r.method] * (r.method != "original") + ["offline plan"] * r.offline_plan) or "none"
        print(f"{name:<34}{r.arena_before:>9,}{r.arena_after:>10,}{r.plan_after:>9,}{r.live_set_bound:>9,}"
              f"{r.arena_after / r.live_set_bound:>12.2f}x{persistent:>12,}"
              + "".join(f"{kinds.get(kind, {}).get('used', 0):>9,}" for kind, _ in KINDS)
              + f"{est32:>8,}  {how}"
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


def clustering_rows(name: str, model, train, test, epochs: int, firmware: bool = False) -> None:
    (x, y), (xt, yt) = train, test

    def accuracy(data: bytes) -> float:
        return float((tflm.predict(data, xt).argmax(1) == yt).mean())

    # the same training budget as the clustered models: `epochs` more at the same rate
    baseline = copy_model(model)
    baseline.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    baseline.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    base = convert(baseline, "int8", x[:200])
    base_slim = slim(base, tflm_only=True)[0]
    base_arena = arena_parts(base_slim)
    print(f"{name:<10}{'int8':<14}{len(base):>10,}{len(base_slim):>10,}{len(base_slim):>10,}"
          f"{'':>8}{100 * accuracy(base_slim):>9.1f}%{base_arena}", flush=True)
    base_fw = on_firmware(base_slim, xt) if firmware else None
    for k in (16, 4):
        started = time.monotonic()
        result = cluster(model, k, data=(x, y), epochs=epochs)
        plain = convert(result.model, "int8", x[:200])
        thin = slim(plain, tflm_only=True)[0]
        packed, tables = compress_tables(thin, xt[:16])
        packed = slim(packed, tflm_only=True)[0]
        bits = "/".join(sorted({f"{c.bits}" for c in tables.compressed})) or "-"
        print(f"{'':<10}{f'{k} clusters':<14}{len(plain):>10,}{len(thin):>10,}{len(packed):>10,}"
              f"{bits + '-bit':>8}{100 * accuracy(packed):>9.1f}%{arena_parts(thin)}{arena_parts(packed)}"
              f"   {100 * (1 - len(packed) / len(base)):.0f}% less than the converter's int8 file,"
              f" {len(tables.compressed)} tables ({time.monotonic() - started:.0f} s)", flush=True)
        if firmware:
            fw = on_firmware(packed, xt)
            flash, theirs = with_tflm_decode(packed, fw[3], xt)
            same = theirs.ok and theirs.outputs == fw[3].run.outputs
            print(f"{'':<24}firmware (arduino-nano-33-ble, Cortex-M4, QEMU), int8 -> tables: flash {base_fw[0]:,} -> "
                  f"{fw[0]:,} bytes ({100 * (fw[0] / base_fw[0] - 1):+.1f} %), arena {base_fw[1]:,} -> {fw[1]:,} "
                  f"bytes, Invoke() {base_fw[3].instructions:,} -> {fw[3].instructions:,} instructions; outputs "
                  f"equal host TFLM: {'yes' if base_fw[2] and fw[2] else 'NO'}", flush=True)
            print(f"{'':<24}with TFLM's DECODE kernel instead: flash {flash:,} bytes, arena {theirs.arena_used:,} "
                  f"bytes, Invoke() {theirs.instructions[0] if theirs.instructions else 0:,} instructions; "
                  f"outputs equal edgeflow's kernel's: {'yes' if same else 'NO (' + theirs.reason + ')'}", flush=True)


def on_firmware(data: bytes, x) -> tuple[int, int, bool, object]:
    """(flash of the linked image, arena of the emulated run, outputs equal host TFLM's, the
    FirmwareResult) on the Nano 33 BLE's Cortex-M4 under QEMU, for 4 samples of ``x``."""
    from edgeflow.firmware import build, encode_inputs

    info = parse(data)
    samples = encode_inputs(info, x[:4], limit=4)
    fw = build(data, "arduino-nano-33-ble", inputs=samples)
    host = tflm.predict(data, x[:4])  # quantizes the inputs as encode_inputs does (runtime._quant)
    out = info.outputs[0]
    raw = np.frombuffer(fw.run.outputs, np.dtype(out.dtype)).reshape(host.shape)
    got = dequantize(raw, {"dtype": out.dtype, "quantization": (out.scale[0], out.zero_point[0])})
    return fw.firmware.flash, fw.arena_used, bool(np.array_equal(got, host) and fw.emulated and not fw.problems), fw


def with_tflm_decode(data: bytes, ours, x):
    """The firmware ``ours`` (a FirmwareResult, edgeflow's DECODE kernel) rebuilt with TFLM's
    own kernel (``AddDecode()``) and run once on the same 4 samples of ``x`` (its arena: all
    the RAM the image leaves; arena size changes no flash): (flash, the emulated run)."""
    from edgeflow.deploy.mcu import DECODE_CALL, resolver_calls
    from edgeflow.devices import get_device
    from edgeflow.firmware import emulator, encode_inputs, image, sources, targets, toolchain

    info = parse(data)
    target = targets.for_profile(get_device("arduino-nano-33-ble").firmware)
    calls = ["AddDecode" if c == DECODE_CALL else c for c in resolver_calls(info.ops_used())]
    fw = image.link_image(image.prepare(data, calls, target, sources.locate(), toolchain.find()))
    return fw.flash, emulator.run(fw.elf, target.machine, encode_inputs(info, x[:4], limit=4))


def arena_parts(data: bytes) -> str:
    """TFLM's arena (64-bit host) as ``total = planned + persistent`` columns."""
    m = tflm.measure_arena(data)
    if not m.ok:
        return f"  TFLM: {m.status}"
    b = m.breakdown
    return f"{m.arena_bytes:>9,}{b.get('non_persistent', 0):>9,}{b.get('persistent', 0):>9,}"


def trained(model, train, epochs: int, batch_size: int):
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(*train, epochs=epochs, batch_size=batch_size, verbose=0)
    return model


def clustering_table(quick: bool, firmware: bool = False) -> None:
    print("\n3. Clustering + TFLM tables: flash in bytes (.tflite), accuracy on TFLM, and TFLM's arena "
          "(64-bit host) of the slim file and of the table-compressed one (DECODE writes each decoded")
    print("   tensor into the arena): arena = planned + persistent")
    print(f"{'model':<10}{'':<14}{'converter':>10}{'slim':>10}{'tables':>10}{'index':>8}{'accuracy':>10}"
          f"{'arena':>9}{'planned':>9}{'persist':>9}{'LUT arena':>10}{'planned':>8}{'persist':>9}")
    cases = [("digits", digits_cnn, digits, 15, 32)]
    if not quick:
        cases.append(("DS-CNN", ds_cnn, kws_data, 12, 64))
    for name, build, data, epochs, batch_size in cases:
        keras.utils.set_random_seed(0)
        train, test = data()
        clustering_rows(name, trained(build(), train, epochs, batch_size), train, test, epochs=2,
                        firmware=firmware)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="DS-CNN and ResNet-8 only; digits only")
    parser.add_argument("--only", choices=["flash", "arena", "clustering"], help="print one table")
    parser.add_argument("--firmware", action="store_true",
                        help="table 3: also build the int8 and table-compressed models into Cortex-M4 firmware "
                             "and run them under QEMU (arm-none-eabi-gcc, qemu-system-arm, TFLM sources)")
    args = parser.parse_args()
    if args.only == "clustering":
        clustering_table(args.quick, args.firmware)
        return 0
    models = []
    for name, build, calib in zoo():
        if args.quick and name not in ("DS-CNN", "ResNet-8"):
            continue
        keras.utils.set_random_seed(0)
        models.append((name, convert(build(), "int8", calib, num_samples=len(calib)), calib))
        if name == "FC autoencoder":
            keras.utils.set_random_seed(0)
            models.append(("FC autoencoder, per-tensor Dense", convert(
                build(), "int8", calib, num_samples=len(calib),
                converter_options={"_experimental_disable_per_channel_quantization_for_dense_layers": True},
            ), calib))
    if args.only in (None, "flash"):
        flash_table([m for m in models if "per-tensor" not in m[0]])
        breakdown_table([m for m in models if "per-tensor" not in m[0]])
    if args.only in (None, "arena"):
        arena_table(models)
    if args.only is None:
        clustering_table(args.quick, args.firmware)
    return 0


if __name__ == "__main__":
    sys.exit(main())
