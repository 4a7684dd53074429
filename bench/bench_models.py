"""Which architectures enter edgeflow, convert to int8 and run on LiteRT, TFLM and the Edge TPU.

Run: ``PYTHONPATH=. EDGEFLOW_PROGRESS=0 python bench/bench_models.py [--only NAME ...]``

For each architecture (built here with random weights, ``weights=None``: nothing downloads)
the table gives: enters (saved to ``.keras`` and loaded back by ``edgeflow.models.load_model``),
converts (``edgeflow.convert(model, "int8", calibration)``), full int8
(``edgeflow.quantize.verify_int8``), runs on LiteRT and on TFLM (``predict`` on 8 samples),
the largest TFLM vs LiteRT output difference in output quantization steps, and the operators
mapped to the Edge TPU (``edgetpu_compiler`` when installed, else edgeflow's Coral pre-check).
A row that does not reach "yes" names why in the last column. Classifier heads end in logits
(no softmax): untrained softmax heads hit TFLM's softmax-scale abort
(``edgeflow.runtime.tflm.known_aborts``), which is about the weights, not the architecture.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def cnn(keras):
    """The digits CNN of the quickstart (edgeflow.models.digits_cnn's layers)."""
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    h = L.MaxPooling2D()(L.Conv2D(16, 3, padding="same", activation="relu")(inp))
    h = L.Dense(32, activation="relu")(L.Flatten()(L.Conv2D(32, 3, padding="same", activation="relu")(h)))
    return keras.Model(inp, L.Dense(10)(h))


def ds_cnn(keras):
    """Keyword spotting DS-CNN (Zhang et al. 2017, 'Hello Edge'), 49x10 MFCC input, small."""
    L = keras.layers
    inp = keras.Input((49, 10, 1))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, (10, 4), strides=2, padding="same")(inp)))
    for _ in range(3):
        h = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(h)))
        h = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 1)(h)))
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inp, L.Dense(12)(h))


def resnet8(keras):
    """ResNet-8 of MLPerf Tiny image classification (32x32x3, three residual stages)."""
    L = keras.layers
    inp = keras.Input((32, 32, 3))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(inp)))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = L.ReLU()(L.BatchNormalization()(L.Conv2D(filters, 3, stride, padding="same")(h)))
        y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(y))
        skip = h if stride == 1 else L.Conv2D(filters, 1, stride)(h)
        h = L.ReLU()(L.Add()([y, skip]))
    return keras.Model(inp, L.Dense(10)(L.Flatten()(L.AveragePooling2D(8)(h))))


def mobilenet_v1(keras):
    return keras.applications.MobileNet(input_shape=(96, 96, 3), alpha=0.25, weights=None,
                                        classes=2, classifier_activation=None)


def mobilenet_v2(keras):
    return keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None,
                                          classes=2, classifier_activation=None)


def mobilenet_v3(keras):
    return keras.applications.MobileNetV3Small(input_shape=(96, 96, 3), alpha=0.75, weights=None,
                                               classes=2, classifier_activation=None,
                                               include_preprocessing=False)


def tcn(keras):
    """Temporal convolutional network: causal dilated Conv1D (dilations 1, 2, 4) with skips."""
    L = keras.layers
    inp = keras.Input((64, 6))
    h = L.Conv1D(16, 1)(inp)
    for rate in (1, 2, 4):
        y = L.Conv1D(16, 3, padding="causal", dilation_rate=rate, activation="relu")(h)
        h = L.Add()([h, y])
    return keras.Model(inp, L.Dense(4)(L.GlobalAveragePooling1D()(h)))


def lstm(keras):
    L = keras.layers
    inp = keras.Input((20, 8))
    return keras.Model(inp, L.Dense(4)(L.LSTM(16)(inp)))


def gru(keras):
    L = keras.layers
    inp = keras.Input((20, 8))
    return keras.Model(inp, L.Dense(4)(L.GRU(16)(inp)))


def stacked_bilstm(keras):
    L = keras.layers
    inp = keras.Input((20, 8))
    h = L.Bidirectional(L.LSTM(8, return_sequences=True))(inp)
    return keras.Model(inp, L.Dense(4)(L.LSTM(8)(h)))


def two_input(keras):
    """Sensor fusion: an image patch and IMU features joined by Concatenate."""
    L = keras.layers
    a = keras.Input((16, 16, 1), name="patch")
    b = keras.Input((6,), name="imu")
    h = L.GlobalAveragePooling2D()(L.Conv2D(8, 3, activation="relu")(a))
    h = L.Concatenate()([h, L.Dense(8, activation="relu")(b)])
    return keras.Model([a, b], L.Dense(3)(h))


def unet_decoder(keras):
    """A small U-Net: two down stages, Conv2DTranspose up stages with skip concatenations."""
    L = keras.layers
    inp = keras.Input((32, 32, 1))
    d1 = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    d2 = L.Conv2D(16, 3, padding="same", activation="relu")(L.MaxPooling2D()(d1))
    b = L.Conv2D(32, 3, padding="same", activation="relu")(L.MaxPooling2D()(d2))
    u2 = L.Concatenate()([L.Conv2DTranspose(16, 2, strides=2)(b), d2])
    u2 = L.Conv2D(16, 3, padding="same", activation="relu")(u2)
    u1 = L.Concatenate()([L.UpSampling2D()(u2), d1])
    return keras.Model(inp, L.Conv2D(1, 1)(L.Conv2D(8, 3, padding="same", activation="relu")(u1)))


def autoencoder(keras):
    """Anomaly-detection autoencoder (MLPerf Tiny style, narrower): Dense 128-64-8-64-128."""
    L = keras.layers
    inp = keras.Input((128,))
    h = inp
    for units in (64, 8, 64):
        h = L.ReLU()(L.BatchNormalization()(L.Dense(units)(h)))
    return keras.Model(inp, L.Dense(128)(h))


ARCHITECTURES = {
    "cnn (digits)": cnn,
    "ds-cnn (kws)": ds_cnn,
    "resnet-8": resnet8,
    "mobilenet v1 a0.25": mobilenet_v1,
    "mobilenet v2 a0.35": mobilenet_v2,
    "mobilenet v3 small": mobilenet_v3,
    "tcn": tcn,
    "lstm": lstm,
    "gru": gru,
    "bilstm + lstm": stacked_bilstm,
    "two-input": two_input,
    "u-net decoder": unet_decoder,
    "autoencoder": autoencoder,
}


# Built with Keras 3 (the default ``keras`` of TF 2.21) in a child process, saved as .keras
KERAS3 = ("cnn (digits)", "ds-cnn (kws)", "mobilenet v2 a0.35", "mobilenet v3 small", "lstm", "gru",
          "two-input")

_BUILD3 = """
import sys
sys.path.insert(0, sys.argv[3])
import keras
import bench_models
keras.utils.set_random_seed(0)
bench_models.ARCHITECTURES[sys.argv[1]](keras).save(sys.argv[2])
"""


def _build(name: str, keras3: bool, path: Path) -> None:
    """Save the architecture to ``path`` (.keras) with Keras 2 here or Keras 3 in a child."""
    if keras3:
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        proc = subprocess.run([sys.executable, "-c", _BUILD3, name, str(path),
                               str(Path(__file__).parent)], env=env, capture_output=True,
                              text=True, check=False, timeout=600)
        if proc.returncode:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            raise RuntimeError(f"Keras 3 build failed: {lines[-1] if lines else proc.returncode}")
        return
    from edgeflow._keras import keras

    keras.utils.set_random_seed(0)
    ARCHITECTURES[name](keras).save(path)


def _data(model, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((n, *t.shape[1:])).astype("float32") for t in model.inputs]


def row(name: str, keras3: bool, folder: Path) -> dict:
    """Measure one architecture; every cell is a value or 'no', and 'why' says why not."""
    from edgeflow.convert import convert
    from edgeflow.deploy import coral
    from edgeflow.errors import first_line
    from edgeflow.models import load_model
    from edgeflow.quantize import verify_int8
    from edgeflow.runtime import litert, tflm
    from edgeflow.tflite import parse

    label = f"{name} ({'Keras 3' if keras3 else 'Keras 2'})"
    out = {"name": label, "enters": "no", "converts": "-", "full_int8": "-", "litert": "-",
           "tflm": "-", "steps": "-", "edgetpu": "-", "why": []}
    stem = f"{name.split()[0]}{'_k3' if keras3 else ''}"
    try:
        path = folder / f"{stem}.keras"
        _build(name, keras3, path)
        model = load_model(path)
        out["enters"] = "yes"
    except Exception as err:  # a bench row records every failure as its reason
        out["why"].append(f"enters: {first_line(err)}")
        return out
    calib, test = _data(model, 32), _data(model, 8, seed=1)
    try:
        notes: list[str] = []  # a line when the int8 file took more than one conversion
        tflite = convert(model, "int8", calib if len(calib) > 1 else calib[0], notes=notes)
        out["converts"] = "yes"
        out["why"] += notes
    except Exception as err:
        out["converts"] = "no"
        out["why"].append(f"convert: {first_line(err)}")
        return out
    check = verify_int8(tflite)
    out["full_int8"] = "yes" if check.ok else "no"
    if not check.ok:
        ops = sorted({f.split()[1] for f in check.float_ops})
        out["why"].append(f"float ops: {', '.join(ops)}")
    x = test if len(test) > 1 else test[0]
    lite = micro = None
    try:
        lite = litert.predict(tflite, x)
        out["litert"] = "yes"
    except Exception as err:
        out["litert"] = "no"
        out["why"].append(f"LiteRT: {first_line(err)}")
    try:
        micro = tflm.predict(tflite, x, timeout=600)
        out["tflm"] = "yes"
    except Exception as err:
        out["tflm"] = "no"
        out["why"].append(f"TFLM: {first_line(err)}")
    if lite is not None and micro is not None:
        step = parse(tflite).outputs[0].scale
        lite0 = lite[0] if isinstance(lite, list) else lite
        micro0 = micro[0] if isinstance(micro, list) else micro
        diff = float(np.abs(lite0 - micro0).max())
        out["steps"] = f"{diff / step[0]:.0f}" if step and step[0] else f"{diff:.2g} (float)"
    if coral.compiler_path():
        model_path = folder / f"{stem}.tflite"
        model_path.write_bytes(tflite)
        _, log, _ = coral.compile_model(model_path, folder / f"{stem}_tpu")
        out["edgetpu"] = f"{log.ops_on_tpu}/{log.total_ops} (compiler)"
    else:
        pc = coral.precheck(tflite)
        out["edgetpu"] = f"{pc.ops_on_tpu}/{len(pc.ops)} (pre-check)"
        if pc.first_unsupported is not None:
            first = pc.first_unsupported
            out["why"].append(f"Edge TPU: op #{first.index} {first.op}: {first.reason}")
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="architecture names to run (default: all)")
    parser.add_argument("--no-keras3", action="store_true", help="skip the Keras 3 variants")
    args = parser.parse_args(argv)
    runs = [(n, False) for n in ARCHITECTURES]
    if not args.no_keras3:
        runs += [(n, True) for n in KERAS3]
    runs = [(n, k3) for n, k3 in runs if not args.only or any(o in n for o in args.only)]
    header = ("architecture", "enters", "int8", "full int8", "LiteRT", "TFLM", "TFLM-LiteRT steps",
              "Edge TPU ops", "why not")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, keras3 in runs:
            r = row(name, keras3, Path(tmp))
            rows.append((r["name"], r["enters"], r["converts"], r["full_int8"], r["litert"],
                         r["tflm"], r["steps"], r["edgetpu"], "; ".join(r["why"]) or "-"))
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
