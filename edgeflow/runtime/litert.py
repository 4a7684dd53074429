"""Running a ``.tflite`` on LiteRT (``ai_edge_litert``): predict, evaluate, benchmark.

LiteRT runs in the calling process: it verifies the flatbuffer before it runs it, and its
kernels report bad models as errors, not aborts (TFLM, which can abort, runs in a child
process: see ``edgeflow.runtime.tflm``). Float inputs are quantized to the model's integer
input type with its scale and zero point, and integer outputs are dequantized, so callers
always pass and get floats.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np

from edgeflow.errors import EdgeflowError, first_line
from edgeflow.runtime._quant import dequantize, input_arrays, quantize
from edgeflow.runtime.metrics import score
from edgeflow.tflite import read_bytes

__all__ = ["Latency", "predict", "evaluate", "benchmark", "interpreter"]


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


def interpreter(model, *, num_threads: int | None = None, delegates: bool = True):
    """A LiteRT ``Interpreter`` for ``.tflite`` bytes (or a path), tensors not yet allocated.

    ``delegates=False`` runs LiteRT's builtin kernels only, without the default XNNPACK
    delegate (which refuses, for example, sparse-encoded int8 models).

    Raises:
        EdgeflowError: the bytes are not a valid TFLite model, or LiteRT cannot load it.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    data = read_bytes(model)
    kwargs = {} if delegates else {
        "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    }
    try:
        return Interpreter(model_content=data, num_threads=num_threads, **kwargs)
    except (ValueError, RuntimeError) as err:
        raise EdgeflowError(f"LiteRT cannot load the model: {first_line(err)}") from err


def predict(
    model, x, *, num_threads: int | None = None, batch_size: int = 256, delegates: bool = True
) -> np.ndarray | list[np.ndarray]:
    """Run every sample of ``x`` through the model on LiteRT.

    Args:
        model: ``.tflite`` bytes or a path.
        x: float samples ``(N, *input_shape)``; a list of arrays for a model with several inputs.
        num_threads: LiteRT's thread count (its default when None).
        batch_size: samples per ``invoke()`` when the model's batch axis can be resized;
            otherwise one sample at a time.
        delegates: False to run the builtin kernels only (see :func:`interpreter`).

    Returns:
        The float outputs ``(N, ...)``: one array, or a list for several outputs (in the
        model's output order). Integer outputs are dequantized with their scale/zero point.

    Example:
        >>> probs = predict(tflite_bytes, x_test)   # (N, 10) floats for an int8 model
    """
    it = interpreter(model, num_threads=num_threads, delegates=delegates)
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

    Returns:
        ``{"task", "accuracy", "n"}`` or ``{"task", "mae", "mse", "n"}``.

    Example:
        >>> evaluate(tflite_bytes, x_test, y_test)["accuracy"]
        0.95
    """
    from edgeflow.runtime.metrics import get_task

    get_task(task)
    return score(predict(model, x, num_threads=num_threads), y, task=task)


def benchmark(model, *, runs: int = 50, warmup: int = 5, num_threads: int = 1) -> Latency:
    """Time ``invoke()`` of one sample (random input) on this host's CPU with LiteRT.

    The figures are host figures (XNNPACK on x86/ARM CPU), not an MCU's; they compare
    models with each other. ``p90`` is the 90th percentile of the ``runs`` timings.

    Example:
        >>> benchmark(tflite_bytes, runs=20).median_ms
        0.05
    """
    if runs < 1 or warmup < 0:
        raise EdgeflowError(f"runs must be ≥ 1 and warmup ≥ 0 (got runs={runs}, warmup={warmup})")
    it = interpreter(model, num_threads=num_threads)
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


def _set_batch(it, details, batch: int) -> int:
    """Resize every input to ``batch`` samples; fall back to 1 if the model refuses."""
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
