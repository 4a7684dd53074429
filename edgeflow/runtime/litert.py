"""Running a ``.tflite`` on LiteRT (``ai_edge_litert``): probe, predict, evaluate, benchmark.

Where LiteRT runs: a file that edgeflow converted in this process (its SHA-256 recorded by
:func:`made_here` when the converter returned it) runs in the calling process once a
:func:`probe` in a child ran it cleanly (LiteRT aborts on some files edgeflow makes, e.g.
int16x8 LayerNormalization). Any other file runs in a child process (``edgeflow.runtime._litert_child``, through
``edgeflow.runtime._child``): such a file can pass LiteRT's verifier and still crash it in
``invoke()``, and a crash must become an error, never take edgeflow down. TFLM always runs
in a child (``edgeflow.runtime.tflm``). Float inputs are quantized to the model's integer
input type with its scale and zero point, and integer outputs are dequantized, so callers
always pass and get floats.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeflow.errors import EdgeflowError, RuntimeCrash, first_line
from edgeflow.runtime._quant import by_input_name, dequantize, input_arrays, quantize
from edgeflow.runtime.metrics import score
from edgeflow.tflite import read_bytes

__all__ = ["Latency", "Probe", "probe", "predict", "evaluate", "benchmark", "interpreter", "made_here"]

# SHA-256 of the .tflite bytes edgeflow's converter produced in this process, and of the
# files a child-process probe ran cleanly: LiteRT runs these in-process.
_MADE: set[str] = set()
_PROBED: dict[tuple, Probe] = {}  # (SHA-256, delegates, cpu_seconds) -> the outcome


@dataclass(frozen=True)
class Latency:
    """Wall-clock time of one ``invoke()`` (batch 1) on this host, in milliseconds."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    num_threads: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Probe:
    """Whether LiteRT loads, allocates and runs a model once (inputs all zeros).

    Attributes:
        status: ``ok``; ``refused`` (LiteRT reported an error: the file is malformed or
            asks for what LiteRT lacks); ``crashed`` (LiteRT killed its process: a
            signal); ``timeout`` (past the wall-clock timeout or the CPU budget); ``not run``
            (a caller decided against running it).
        message: one line for any status but ``ok``.
        where: ``child process`` (where every probe runs).
    """

    status: str
    message: str = ""
    where: str = "child process"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return asdict(self)


def made_here(data: bytes) -> bytes:
    """Record ``.tflite`` bytes that edgeflow's converter just produced, so LiteRT runs them
    in-process (no child). Returns ``data`` unchanged.

    Example:
        >>> tflite = made_here(bytes(converter.convert()))
    """
    _MADE.add(hashlib.sha256(data).hexdigest())
    return data


def _trusted(data: bytes) -> bool:
    """Made by edgeflow's converter in this process and run cleanly once in a child
    (:func:`probe`, cached per file): only then does LiteRT run it in this process."""
    return hashlib.sha256(data).hexdigest() in _MADE and probe(data).status == "ok"


#: CPU seconds a probe may use to load, allocate and run a model once. A damaged file can
#: keep LiteRT busy for minutes with a model that looks small: a flipped bit in an input
#: shape (1x8x8x1 -> 1x8x8388616x1) makes every later layer that much larger, and the
#: reader's figures (MACs, memory plan) come from the stored shapes, not LiteRT's. Edge
#: models run once in milliseconds on a host; 5 s is some 50 GMAC on one core. A model
#: whose own operators state more work gets more: PROBE_MACS_PER_CPU_SECOND is a slow
#: host's float32 rate (XNNPACK reaches 10-50 GMAC/s per core), so a real model never
#: meets the limit.
PROBE_CPU_SECONDS = 5.0
PROBE_MACS_PER_CPU_SECOND = 1e9


def probe(model, *, delegates: bool = True, timeout: float = 60,
          cpu_seconds: float | None = PROBE_CPU_SECONDS) -> Probe:
    """Load, allocate and invoke the model once on LiteRT, in a child process (also a file
    edgeflow made: LiteRT aborts on some of those, e.g. int16x8 LayerNormalization). Never
    raises for what the file holds: a refusal or a crash is the returned status.

    Args:
        model: ``.tflite`` bytes or a path.
        delegates: False to run the builtin kernels only (see :func:`interpreter`).
        timeout: seconds (wall clock) before the child is killed (status ``timeout``).
        cpu_seconds: CPU time (every thread) the child may use (:data:`PROBE_CPU_SECONDS`;
            None: no limit), plus one second per :data:`PROBE_MACS_PER_CPU_SECOND` of the
            MACs the file's operators state; past it the kernel stops the child
            (``RLIMIT_CPU``) and the status is ``timeout``, saying so.

    Example:
        >>> probe("downloaded.tflite").status
        'ok'
    """
    data = read_bytes(model)
    from edgeflow.runtime._child import over_cpu

    key = (hashlib.sha256(data).hexdigest(), delegates, cpu_seconds)
    if key in _PROBED:
        return _PROBED[key]
    cpu_seconds = _budget(data, 1, cpu_seconds).seconds
    # always a child, also for a file edgeflow made: the probe asks whether LiteRT survives
    # the model, and some that edgeflow converts do abort it (int16x8 LayerNormalization)
    result, proc = _in_child("probe", data, {"delegates": delegates, "cpu_seconds": cpu_seconds},
                             timeout=timeout)
    if result is None and proc is not None and over_cpu(proc.returncode):
        outcome = Probe("timeout", f"LiteRT used more than {cpu_seconds:.3g} s of CPU to run the model "
                                   "once (child process stopped): no board runs it; a damaged file "
                                   "(an enlarged shape) can ask for this")
    elif result is None:
        found = _child_death(proc, timeout)
        outcome = Probe("timeout" if proc is None else "crashed", found)
    else:
        outcome = Probe(result["status"], result["message"])
    _PROBED[key] = outcome
    return outcome


def _stated_macs(data: bytes) -> int:
    """The MACs the file's operators state (0 when the reader refuses the file)."""
    from edgeflow.tflite import parse

    try:
        return parse(data).total_macs
    except EdgeflowError:
        return 0


def interpreter(model, *, num_threads: int | None = None, delegates: bool = True):
    """A LiteRT ``Interpreter`` for ``.tflite`` bytes (or a path), tensors not yet allocated.

    The interpreter lives in this process: a file edgeflow did not make is first run once
    in a child (:func:`probe`), and only a clean run lets it in. ``delegates=False`` runs
    LiteRT's builtin kernels only, without the default XNNPACK delegate (which refuses, for
    example, sparse-encoded int8 models).

    Raises:
        EdgeflowError: the bytes are not a valid TFLite model, or LiteRT cannot load it.
        RuntimeCrash: LiteRT crashed on the model (in the child) or did not finish.
    """
    data = read_bytes(model)
    if not _trusted(data):
        _require(probe(data, delegates=delegates))
    return _interpreter_here(data, num_threads=num_threads, delegates=delegates)


def _require(found: Probe) -> None:
    if found.status == "refused":
        raise EdgeflowError(found.message)
    if not found.ok:
        raise RuntimeCrash(found.message)


def _interpreter_here(data: bytes, *, num_threads: int | None = None, delegates: bool = True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {} if delegates else {
        "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    }
    try:
        return Interpreter(model_content=data, num_threads=num_threads, **kwargs)
    except (ValueError, RuntimeError) as err:
        raise EdgeflowError(f"LiteRT cannot load the model: {first_line(err)}") from err


def _probe_here(data: bytes, *, delegates: bool = True) -> None:
    """Load, allocate and invoke once on zeros, in this process; EdgeflowError on a refusal."""
    it = _interpreter_here(data, delegates=delegates)
    details = it.get_input_details()
    _set_batch(it, details, 1)
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.zeros(tuple(d["shape"]), d["dtype"]))
    try:
        it.invoke()
    except (ValueError, RuntimeError) as err:
        raise EdgeflowError(f"LiteRT failed to run the model: {first_line(err)}") from err


def predict(
    model, x, *, num_threads: int | None = None, batch_size: int = 256, delegates: bool = True,
    timeout: float = 600, cpu_seconds: float | None = PROBE_CPU_SECONDS,
) -> np.ndarray | list[np.ndarray]:
    """Run every sample of ``x`` through the model on LiteRT.

    A file edgeflow did not make runs in a child process (see the module docstring).

    Args:
        model: ``.tflite`` bytes or a path.
        x: float samples ``(N, *input_shape)``; for several inputs a list of arrays in input
            order, or a dict by input name (the file's signature def).
        num_threads: LiteRT's thread count (its default when None).
        batch_size: samples per ``invoke()`` when the model's batch axis can be resized;
            otherwise one sample at a time.
        delegates: False to run the builtin kernels only (see :func:`interpreter`).
        timeout: seconds (wall clock) before a child process is killed.
        cpu_seconds: in a child, the CPU time per sample (:func:`edgeflow.runtime._child.cpu_budget`:
            N × (``cpu_seconds`` + stated MACs / :data:`PROBE_MACS_PER_CPU_SECOND`), every
            thread; None: no limit), as :func:`probe` gives one inference; so a large ``x``
            gets a budget as large, and only a file that asks for far more work than its
            operators state (an enlarged shape) or never ends meets it.

    Returns:
        The float outputs ``(N, ...)``: one array, or a list for several outputs (in the
        model's output order). Integer outputs are dequantized with their scale/zero point.

    Raises:
        EdgeflowError: LiteRT refuses the model or the input.
        RuntimeCrash: LiteRT crashed on the model (in the child), ran past ``timeout`` or
            past its CPU budget (one line saying which).

    Example:
        >>> probs = predict(tflite_bytes, x_test)   # (N, 10) floats for an int8 model
    """
    data = read_bytes(model)
    x = by_input_name(x, data)
    if _trusted(data):
        return _predict_here(data, x, num_threads=num_threads, batch_size=batch_size, delegates=delegates)
    xs = x if isinstance(x, (list, tuple)) else [x]
    samples = len(xs[0]) if len(xs) and np.ndim(xs[0]) else 1
    budget = _budget(data, samples, cpu_seconds)
    extra = {"num_threads": num_threads, "batch_size": int(batch_size), "delegates": delegates,
             "cpu_seconds": budget.seconds}
    with _Child() as work:
        np.savez(work.path / "x.npz", **{f"x{i}": np.asarray(a) for i, a in enumerate(xs)})
        extra.update(x=str(work.path / "x.npz"), y=str(work.path / "y.npz"))
        result, proc = work.run("predict", data, extra, timeout)
        if result is None:
            raise RuntimeCrash(budget.exceeded(proc) or _child_death(proc, timeout))
        if result["status"] != "ok":
            raise EdgeflowError(result["message"])
        with np.load(work.path / "y.npz") as f:
            ys = [f[f"y{i}"] for i in range(result["outputs"])]
    return ys[0] if len(ys) == 1 else ys


def _predict_here(data: bytes, x, *, num_threads, batch_size, delegates):
    it = _interpreter_here(data, num_threads=num_threads, delegates=delegates)
    in_details = it.get_input_details()
    xs = input_arrays(x, [tuple(d["shape_signature"]) for d in in_details])
    n = len(xs[0])
    chunk = _set_batch(it, in_details, min(n, max(1, batch_size)))
    in_details = it.get_input_details()
    out_details = it.get_output_details()
    outs: list[list[np.ndarray]] = [[] for _ in out_details]
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        for d, xi in zip(in_details, xs, strict=True):
            batch = xi[start:stop]
            if len(batch) < chunk:  # pad the last chunk to the allocated batch
                pad = np.zeros((chunk - len(batch), *batch.shape[1:]), batch.dtype)
                batch = np.concatenate([batch, pad])
            it.set_tensor(d["index"], quantize(batch, d))
        try:
            it.invoke()
        except RuntimeError as err:
            raise EdgeflowError(f"LiteRT failed to run the model: {first_line(err)}") from err
        for store, d in zip(outs, out_details, strict=True):
            store.append(dequantize(it.get_tensor(d["index"]), d)[: stop - start])
    results = [np.concatenate(parts) for parts in outs]
    return results[0] if len(results) == 1 else results


def evaluate(model, x, y, *, task: str = "auto", num_threads: int | None = None) -> dict:
    """Accuracy (classification) or MAE/MSE (regression) of a ``.tflite`` model on LiteRT.

    ``task`` is ``auto`` (decided from ``y`` and the output shape), ``classification`` or
    ``regression``; the scoring is ``edgeflow.runtime.metrics.score`` (formulas there),
    the same as ``edgeflow.runtime.metrics.evaluate_keras`` uses for the Keras model.
    The model runs as in :func:`predict` (a child process for a file edgeflow did not make).

    Returns:
        ``{"task", "accuracy", "n"}`` or ``{"task", "mae", "mse", "n"}``.

    Example:
        >>> evaluate(tflite_bytes, x_test, y_test)["accuracy"]
        0.95
    """
    from edgeflow.runtime.metrics import get_task

    get_task(task)
    return score(predict(model, x, num_threads=num_threads), y, task=task)


def benchmark(model, *, runs: int = 50, warmup: int = 5, num_threads: int = 1, timeout: float = 600,
              cpu_seconds: float | None = PROBE_CPU_SECONDS) -> Latency:
    """Time ``invoke()`` of one sample (random input) on this host's CPU with LiteRT.

    The figures are host figures (XNNPACK on x86/ARM CPU), not an MCU's; they compare
    models with each other. ``p90`` is the 90th percentile of the ``runs`` timings. A file
    edgeflow did not make is timed in a child process (see the module docstring), within a
    CPU budget of ``warmup + runs`` samples (``cpu_seconds`` as in :func:`predict`; past it,
    :class:`~edgeflow.errors.RuntimeCrash` with one line).

    Example:
        >>> benchmark(tflite_bytes, runs=20).median_ms
        0.05
    """
    if runs < 1 or warmup < 0:
        raise EdgeflowError(f"runs must be ≥ 1 and warmup ≥ 0 (got runs={runs}, warmup={warmup})")
    data = read_bytes(model)
    if _trusted(data):
        return _benchmark_here(data, runs=runs, warmup=warmup, num_threads=num_threads)
    budget = _budget(data, warmup + runs, cpu_seconds)
    result, proc = _in_child("benchmark", data, {"runs": runs, "warmup": warmup, "num_threads": num_threads,
                                                 "cpu_seconds": budget.seconds}, timeout=timeout)
    if result is None:
        raise RuntimeCrash(budget.exceeded(proc) or _child_death(proc, timeout))
    if result["status"] != "ok":
        raise EdgeflowError(result["message"])
    return Latency(**result["latency"])


def _benchmark_here(data: bytes, *, runs: int, warmup: int, num_threads: int) -> Latency:
    it = _interpreter_here(data, num_threads=num_threads)
    in_details = it.get_input_details()
    _set_batch(it, in_details, 1)
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        sample = rng.uniform(0.0, 1.0, size=tuple(d["shape"])).astype(np.float32)
        it.set_tensor(d["index"], quantize(sample, d))
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        it.invoke()
        elapsed = (time.perf_counter() - start) * 1e3
        if i >= warmup:
            times.append(elapsed)
    times.sort()
    return Latency(
        median_ms=statistics.median(times),
        p90_ms=times[min(len(times) - 1, int(np.ceil(0.9 * len(times))) - 1)],
        mean_ms=statistics.fmean(times),
        min_ms=times[0],
        runs=runs,
        num_threads=num_threads,
    )


class _Child:
    """A private folder with the model in it; ``run`` starts the LiteRT child on a request."""

    def __enter__(self):
        from edgeflow.runtime._child import Workdir

        self._work = Workdir("edgeflow-litert-", "LiteRT").__enter__()
        self.path = Path(self._work.path)
        return self

    def __exit__(self, *exc) -> None:
        self._work.__exit__(*exc)

    def run(self, command: str, data: bytes, extra: dict, timeout: float):
        model = self.path / "model.tflite"
        model.write_bytes(data)
        request = {"command": command, "model": str(model), **extra}
        return self._work.run("edgeflow.runtime._litert_child", request, timeout)


def _in_child(command: str, data: bytes, extra: dict, *, timeout: float):
    with _Child() as work:
        return work.run(command, data, extra, timeout)


def _budget(data: bytes, samples: int, per_sample: float | None):
    """The CPU budget of a predict/benchmark child: ``samples`` inferences of ``data``
    (:class:`edgeflow.runtime._child.CpuBudget` at :data:`PROBE_MACS_PER_CPU_SECOND`)."""
    from edgeflow.runtime._child import CpuBudget

    macs = _stated_macs(data) if per_sample is not None else 0
    return CpuBudget("LiteRT", samples, per_sample, macs, PROBE_MACS_PER_CPU_SECOND)


def _child_death(proc, timeout: float) -> str:
    """The one line for a LiteRT child that died (``proc``) or was killed after ``timeout``."""
    from edgeflow.runtime._child import signal_name

    if proc is None:
        return f"LiteRT did not finish within {timeout:g} s (child process killed)"
    return (f"LiteRT crashed on the model ({signal_name(proc.returncode)} in a child process; "
            "edgeflow is unharmed): the file is damaged or was not made for LiteRT")


def _set_batch(it, details, batch: int) -> int:
    """Resize every input to ``batch`` samples; fall back to 1 if the model refuses."""
    details = [d for d in details if len(d["shape"])]  # a scalar input has no batch axis
    try:
        for d in details:
            if int(d["shape"][0]) != batch:
                it.resize_tensor_input(d["index"], [batch, *d["shape"][1:]])
        it.allocate_tensors()
        return batch
    except (ValueError, RuntimeError) as err:
        if batch == 1:
            raise EdgeflowError(f"LiteRT cannot allocate the model: {first_line(err)}") from err
    for d in details:
        it.resize_tensor_input(d["index"], [1, *d["shape"][1:]])
    try:
        it.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise EdgeflowError(f"LiteRT cannot allocate the model: {first_line(err)}") from err
    return 1
