"""Child-process entry of the TFLite converter: ``python -m edgeflow._convert_child REQUEST.json``.

The converter and its calibrator are native code that can crash the process (SIGSEGV on a
GRU's WHILE loop, seen in TF 2.21), so ``edgeflow.convert.convert`` runs them here, through
``edgeflow.runtime._child``. The parent has already checked everything and traced the model
to a SavedModel on fixed shapes; the request names it, the calibration samples (``.npz``,
one array per input name), the options (a pickle the parent wrote) and where to write the
``.tflite``. Each stage is appended to a log before it starts, so the parent can say where
a crash happened.
"""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np

from edgeflow.runtime._child import Capture, serve


def _convert(req: dict, capture: Capture) -> dict:
    log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return _convert_logged(req, log)
    finally:
        os.close(log)  # a kept child serves several requests


def _convert_logged(req: dict, log: int) -> dict:
    from edgeflow._keras import tf
    from edgeflow.convert import _configure, _first_error

    with open(req["options"], "rb") as f:
        options = pickle.load(f)  # written by the parent into its private folder
    converter = tf.lite.TFLiteConverter.from_saved_model(req["saved_model"])
    representative = None
    if req.get("calibration"):
        with np.load(req["calibration"]) as f:
            calibration = {name: f[name] for name in f.files}
        count = len(next(iter(calibration.values())))

        def representative():
            for i in range(count):
                os.write(log, f"calibrate {i}\n".encode())
                yield {name: arr[i : i + 1] for name, arr in calibration.items()}

    _configure(converter, options["mode"], options["input_type"], options["output_type"],
               qat=options["qat"], representative=representative,
               options=options["converter_options"])
    os.write(log, b"convert\n")
    try:
        data = converter.convert()
    except Exception as err:  # the converter raises many types; its message goes to the user
        return {"status": "failed", "message": _first_error(err)}
    with open(req["model_out"], "wb") as f:
        f.write(bytes(data))
    return {"status": "ok"}


if __name__ == "__main__":
    sys.exit(serve(sys.argv, {"convert": _convert}))
