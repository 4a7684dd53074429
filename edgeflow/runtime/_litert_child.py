"""Child-process entry for LiteRT: ``python -m edgeflow.runtime._litert_child REQUEST.json``.

A ``.tflite`` that edgeflow did not convert itself can pass LiteRT's verifier and still
crash it in ``invoke()``; so LiteRT runs such files here (see ``edgeflow.runtime.litert``),
through the one child-process mechanism (``edgeflow.runtime._child``). The request names
the model file and the command: ``probe`` (load, allocate, one invoke on zeros),
``predict`` (``x.npz`` in, ``y.npz`` out) or ``benchmark``, each within ``cpu_seconds``
of CPU time when the request gives it (``edgeflow.runtime._child.limit_cpu``).
"""

from __future__ import annotations

import sys

import numpy as np

from edgeflow.errors import EdgeflowError
from edgeflow.runtime._child import Capture, limit_cpu, serve


def _model(req: dict) -> bytes:
    with open(req["model"], "rb") as f:
        return f.read()


def _probe(req: dict, capture: Capture) -> dict:
    from edgeflow.runtime import litert

    data = _model(req)
    limit_cpu(req.get("cpu_seconds"))  # loading, allocating and the one inference
    try:
        litert._probe_here(data, delegates=bool(req.get("delegates", True)))
    except EdgeflowError as err:
        return {"status": "refused", "message": str(err)}
    return {"status": "ok", "message": ""}


def _predict(req: dict, capture: Capture) -> dict:
    from edgeflow.runtime import litert

    with np.load(req["x"]) as f:
        xs = [f[f"x{i}"] for i in range(len(f.files))]
    limit_cpu(req.get("cpu_seconds"))  # loading, allocating and every sample
    try:
        ys = litert._predict_here(_model(req), xs if len(xs) > 1 else xs[0], num_threads=req.get("num_threads"),
                                  batch_size=int(req["batch_size"]), delegates=bool(req["delegates"]))
    except EdgeflowError as err:
        return {"status": "refused", "message": str(err)}
    ys = ys if isinstance(ys, list) else [ys]
    np.savez(req["y"], **{f"y{i}": y for i, y in enumerate(ys)})
    return {"status": "ok", "outputs": len(ys)}


def _benchmark(req: dict, capture: Capture) -> dict:
    from edgeflow.runtime import litert

    limit_cpu(req.get("cpu_seconds"))  # loading, allocating and warmup + runs samples
    try:
        latency = litert._benchmark_here(_model(req), runs=int(req["runs"]), warmup=int(req["warmup"]),
                                         num_threads=int(req["num_threads"]))
    except EdgeflowError as err:
        return {"status": "refused", "message": str(err)}
    return {"status": "ok", "latency": latency.to_dict()}


if __name__ == "__main__":
    sys.exit(serve(sys.argv, {"probe": _probe, "predict": _predict, "benchmark": _benchmark}))
