"""Child-process entry for TFLM: ``python -m edgeflow.runtime._tflm_child REQUEST.json``.

TFLM can abort the process (see ``edgeflow.runtime.tflm``), so it only ever runs here.
The request names the model file, its number of inputs (the parent read the model with
``edgeflow.tflite``) and what to do (``search`` for the smallest arena,
``probe`` one arena size, ``predict``); the result is written as JSON (and ``.npz`` for
outputs) into files the parent chose (the mechanism: ``edgeflow.runtime._child``). Each
arena size tried is appended to a log before and after it runs, so the parent knows where
an abort happened.
"""

from __future__ import annotations

import gc
import os
import sys

import numpy as np

from edgeflow.runtime._child import Capture, cpu_timer, limit_cpu, serve

_SHORTFALL = ("Failed to allocate", "Failed to resize buffer", "missing:")


class _Log:
    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())


def _probe(data: bytes, size: int, num_inputs: int, capture: Capture, log: _Log,
           cpu_seconds: float | None = None) -> tuple[bool, str]:
    """Allocate and invoke once with ``size`` bytes of arena, within ``cpu_seconds`` of CPU
    time (past it the process ends on SIGPROF); ``(ok, TFLM's text)``."""
    from tflite_micro.python.tflite_micro import runtime

    log.write(f"try {size}")
    start = capture.offset()
    ok = False
    interp = None
    try:
        with cpu_timer(cpu_seconds):
            interp = runtime.Interpreter.from_bytes(data, arena_size=size)
            for i in range(num_inputs):
                d = interp.get_input_details(i)
                interp.set_input(np.zeros(tuple(d["shape"]), d["dtype"]), i)
            interp.invoke()
        interp.print_allocations()
        ok = True
    except (RuntimeError, ValueError) as err:
        print(f"edgeflow: {type(err).__name__}: {err}", file=sys.stderr)
    finally:
        del interp
        gc.collect()
    log.write(f"{'ok' if ok else 'fail'} {size}")
    return ok, capture.since(start)


def _search(data: bytes, req: dict, capture: Capture, log: _Log) -> dict:
    """Smallest 16-aligned arena that allocates and invokes, by doubling then bisection."""
    lo, hi, cap = int(req["lo"]), req.get("hi"), int(req["cap"])
    n_in = int(req["num_inputs"])
    cpu = req.get("cpu_seconds")
    best_text = ""
    if hi is None:
        size = _align(max(int(req["start"]), lo + 16))
        while True:
            ok, text = _probe(data, size, n_in, capture, log, cpu)
            if ok:
                hi, best_text = size, text
                break
            if not any(key in text for key in _SHORTFALL):
                return {"status": "failed", "text": text, "arena_bytes": size}
            lo = size
            size = _align(size * 2)
            if size > cap:
                return {"status": "failed", "text": text, "cap": cap}
    else:
        hi = int(hi)
        ok, best_text = _probe(data, hi, n_in, capture, log, cpu)
        if not ok:
            return {"status": "failed", "text": best_text, "arena_bytes": hi}
    while hi - lo > 16:
        mid = _align((lo + hi) // 2)
        if mid <= lo:
            mid = lo + 16
        ok, text = _probe(data, mid, n_in, capture, log, cpu)
        if ok:
            hi, best_text = mid, text
        else:
            lo = mid
    return {"status": "ok", "arena_bytes": hi, "text": best_text}


def _predict(data: bytes, req: dict, capture: Capture) -> dict:
    from tflite_micro.python.tflite_micro import runtime

    from edgeflow.runtime._quant import dequantize, quantize

    start = capture.offset()
    with np.load(req["x"]) as f:
        xs = [f[f"x{i}"] for i in range(len(f.files))]
    limit_cpu(req.get("cpu_seconds"))  # loading, allocating and every sample
    try:
        interp = runtime.Interpreter.from_bytes(data, arena_size=int(req["arena_size"]))
        in_details = [interp.get_input_details(i) for i in range(len(xs))]
        num_outputs = int(req["num_outputs"])
        out_details = [interp.get_output_details(i) for i in range(num_outputs)]
        outs: list[list[np.ndarray]] = [[] for _ in range(num_outputs)]
        for n in range(len(xs[0])):
            for i, (x, d) in enumerate(zip(xs, in_details, strict=True)):
                interp.set_input(quantize(x[n : n + 1], d).reshape(tuple(d["shape"])), i)
            interp.invoke()
            for store, (i, d) in zip(outs, enumerate(out_details), strict=True):
                store.append(dequantize(np.array(interp.get_output(i)), d))
    except (RuntimeError, ValueError) as err:
        print(f"edgeflow: {type(err).__name__}: {err}", file=sys.stderr)
        return {"status": "failed", "text": capture.since(start)}
    np.savez(req["y"], **{f"y{i}": np.concatenate(o) for i, o in enumerate(outs)})
    return {"status": "ok", "text": capture.since(start)}


def _align(n: int) -> int:
    return (int(n) + 15) // 16 * 16


def _search_handler(req: dict, capture: Capture) -> dict:
    with open(req["model"], "rb") as f:
        data = f.read()
    return _search(data, req, capture, _Log(req["log"]))


def _probe_handler(req: dict, capture: Capture) -> dict:
    with open(req["model"], "rb") as f:
        data = f.read()
    ok, text = _probe(data, int(req["arena_size"]), int(req["num_inputs"]), capture, _Log(req["log"]),
                      req.get("cpu_seconds"))
    return {"status": "ok" if ok else "failed", "arena_bytes": int(req["arena_size"]), "text": text}


def _predict_handler(req: dict, capture: Capture) -> dict:
    with open(req["model"], "rb") as f:
        data = f.read()
    return _predict(data, req, capture)


if __name__ == "__main__":
    sys.exit(serve(sys.argv, {"search": _search_handler, "probe": _probe_handler,
                              "predict": _predict_handler}))
