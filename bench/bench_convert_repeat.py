"""Is the int8 conversion of one model repeatable? Convert it N times and count the outcomes.

Run: ``PYTHONPATH=. EDGEFLOW_PROGRESS=0 python bench/bench_convert_repeat.py [--model gru] [-n 10]``

The model is one of bench/bench_models.py's Keras 2 architectures (seed 0, the same 32
calibration samples every time). Three paths, each ``n`` times:

- ``edgeflow``: ``edgeflow.convert.convert(model, "int8", x)``; a first file with float ops
  the quantizer could have quantized is converted again (``edgeflow.convert.until_int8``),
  so the row counts first conversions and retries separately;
- ``tf.lite``: ``tf.lite.TFLiteConverter.from_saved_model`` on the SavedModel edgeflow
  traced once, with edgeflow's options written out here, one fresh process per conversion;
- ``mlir_quantize``: only the quantizer (``tensorflow.lite.python.convert.mlir_quantize``),
  run ``n`` times in one process on one calibrated file (``_experimental_calibrate_only``).

Each row counts distinct files (operators, full int8 or not, sha1). Found with it: the
calibrated file is the same bytes every time; the quantizer alone gives different files
from it (TF 2.21, GRU: 9 of 40 with the first SPLIT in float); with ASLR off
(``setarch -R``) and a fixed PYTHONHASHSEED the outcome is fixed per seed (seeds 1, 3, 4
float, 2, 5-8 full int8): it follows the process's memory layout.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_DIRECT = r"""
import sys
import numpy as np
import tensorflow as tf
saved, calibration, out = sys.argv[1:4]
with np.load(calibration) as f:
    data = {name: f[name] for name in f.files}
count = len(next(iter(data.values())))
def representative():
    for i in range(count):
        yield {name: arr[i : i + 1] for name, arr in data.items()}
converter = tf.lite.TFLiteConverter.from_saved_model(saved)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = representative
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = tf.int8
converter.inference_output_type = tf.int8
if len(sys.argv) > 4:
    converter._experimental_calibrate_only = True
open(out, "wb").write(bytes(converter.convert()))
"""


def _outcome(tflite: bytes) -> tuple[int, str, str]:
    from edgeflow.quantize import verify_int8
    from edgeflow.tflite import parse

    check = verify_int8(tflite)
    floats = sorted({f.split()[1] for f in check.float_ops})
    return (len(parse(tflite).ops), "full int8" if check.ok else "float " + ",".join(floats),
            hashlib.sha1(tflite).hexdigest()[:10])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gru", help="a bench_models.py architecture")
    parser.add_argument("-n", type=int, default=10, help="conversions per path")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_models

    from edgeflow._keras import keras
    from edgeflow.convert import _export_signature, _prepare, convert, get_mode

    keras.utils.set_random_seed(0)
    model = bench_models.ARCHITECTURES[args.model](keras)
    calib = bench_models._data(model, 32)
    x = calib if len(calib) > 1 else calib[0]
    rows = []

    counts, retried = collections.Counter(), 0
    for _ in range(args.n):
        notes: list[str] = []
        counts[_outcome(convert(model, "int8", x, notes=notes))] += 1
        retried += bool(notes)
    rows.append((f"edgeflow ({retried} of {args.n} converted again)", counts))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prep = _prepare(model, get_mode("int8"), x, input_type=None, output_type=None,
                        num_samples=200, safe_mode=True, custom_objects=None, batch_size=1,
                        input_shape=None, unroll=True)
        saved = _export_signature(prep, folder / "saved_model")
        np.savez(folder / "calibration.npz", **prep.calibration)
        base = [sys.executable, "-c", _DIRECT, str(saved), str(folder / "calibration.npz")]
        counts = collections.Counter()
        for _ in range(args.n):
            subprocess.run(base + [str(folder / "direct.tflite")], check=True, capture_output=True)
            counts[_outcome((folder / "direct.tflite").read_bytes())] += 1
        rows.append(("tf.lite.TFLiteConverter (fresh process each)", counts))

        subprocess.run(base + [str(folder / "calibrated.tflite"), "calibrate-only"], check=True,
                       capture_output=True)
        calibrated = (folder / "calibrated.tflite").read_bytes()
    from tensorflow.lite.python.convert import mlir_quantize

    from edgeflow._keras import tf

    counts = collections.Counter()
    for _ in range(args.n):
        counts[_outcome(bytes(mlir_quantize(calibrated, False, input_data_type=tf.int8,
                                            output_data_type=tf.int8)))] += 1
    rows.append((f"mlir_quantize, one process (calibrated file {hashlib.sha1(calibrated).hexdigest()[:10]})",
                 counts))

    print(f"{args.model}: {args.n} int8 conversions per path")
    print(f"{'path':<62} {'count':>5} {'ops':>4}  {'file':<24} sha1")
    for label, counted in rows:
        for (ops, kind, sha), k in sorted(counted.items(), key=lambda kv: -kv[1]):
            print(f"{label:<62} {k:>5} {ops:>4}  {kind:<24} {sha}")
            label = ""
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
