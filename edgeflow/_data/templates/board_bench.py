"""edgeflow board benchmark: runs ON the board, needs only Python, numpy and a LiteRT runtime.

Copied next to the model by ``edgeflow deploy rpi|coral``; edgeflow itself is not installed
on the board. Loads the model with the first interpreter found (``ai_edge_litert``, then
``tflite_runtime``, then ``tensorflow.lite``), feeds the input saved in an ``.npy`` file,
runs ``--warmup`` untimed and ``--runs`` timed invocations and prints ONE JSON object on
stdout: the latencies (milliseconds), their median and 90th percentile, the runtime used
and the raw output tensors (base64), which the host compares with its own LiteRT result.

    python3 board_bench.py --model m.tflite --input x.npy --runs 50 --warmup 5 --threads 4
    python3 board_bench.py --check      # only report which runtime is importable
"""

import argparse
import base64
import json
import platform
import sys
import time


def _runtime():
    """(module name, version, Interpreter, load_delegate) of the first runtime found."""
    candidates = (
        ("ai_edge_litert", "ai_edge_litert.interpreter"),
        ("tflite_runtime", "tflite_runtime.interpreter"),
        ("tensorflow", "tensorflow.lite.python.interpreter"),
    )
    for name, module in candidates:
        try:
            mod = __import__(module, fromlist=["Interpreter"])
        except ImportError:
            continue
        try:
            top = __import__(name)
            version = getattr(top, "__version__", "unknown")
        except ImportError:
            version = "unknown"
        return name, version, mod.Interpreter, getattr(mod, "load_delegate", None)
    return None


def _percentile(sorted_values, q):
    """Linear-interpolated percentile q in [0, 100] of an ascending list (numpy's default rule)."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model")
    p.add_argument("--input")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--delegate", default=None, help="e.g. libedgetpu.so.1 for the Edge TPU")
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)

    info = {"python": platform.python_version(), "machine": platform.machine(), "system": platform.system()}
    found = _runtime()
    if found is None:
        info["runtime"] = None
        print(json.dumps(info))
        return 3 if not args.check else 0
    name, version, interpreter_cls, load_delegate = found
    info["runtime"] = {"module": name, "version": version}
    if args.check:
        print(json.dumps(info))
        return 0

    import numpy as np

    kwargs = {"model_path": args.model}
    if args.threads:
        kwargs["num_threads"] = args.threads
    if args.delegate:
        if load_delegate is None:
            raise SystemExit(f"{name} cannot load delegates")
        kwargs["experimental_delegates"] = [load_delegate(args.delegate)]
    interp = interpreter_cls(**kwargs)
    interp.allocate_tensors()
    inp = interp.get_input_details()
    if len(inp) != 1:
        raise SystemExit(f"the model has {len(inp)} inputs; the benchmark feeds exactly one")
    x = np.load(args.input)
    if x.dtype != inp[0]["dtype"] or tuple(x.shape) != tuple(inp[0]["shape"]):
        raise SystemExit(f"input {x.dtype}{list(x.shape)} does not match the model's {inp[0]['dtype']}{list(inp[0]['shape'])}")

    times = []
    for i in range(args.warmup + args.runs):
        interp.set_tensor(inp[0]["index"], x)
        t0 = time.perf_counter()
        interp.invoke()
        dt = (time.perf_counter() - t0) * 1000.0
        if i >= args.warmup:
            times.append(dt)
    outputs = []
    for d in interp.get_output_details():
        y = np.ascontiguousarray(interp.get_tensor(d["index"]))
        outputs.append({
            "name": d["name"], "dtype": str(y.dtype), "shape": list(y.shape),
            "quantization": [float(d["quantization"][0]), int(d["quantization"][1])],
            "data": base64.b64encode(y.tobytes()).decode("ascii"),
        })
    s = sorted(times)
    info.update({
        "runs": args.runs, "warmup": args.warmup, "threads": args.threads, "delegate": args.delegate,
        "times_ms": times,
        "median_ms": _percentile(s, 50), "p90_ms": _percentile(s, 90),
        "mean_ms": sum(s) / len(s) if s else float("nan"),
        "min_ms": s[0] if s else float("nan"), "max_ms": s[-1] if s else float("nan"),
        "outputs": outputs,
    })
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
