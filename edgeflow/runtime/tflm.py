"""TensorFlow Lite Micro (``tflite-micro``) on the host: the measured arena, and predictions.

TFLM is the runtime of the microcontroller targets. Its Python interpreter runs the same
C++ kernels (the reference ones) and the same arena allocator as the firmware, so the
smallest ``arena_size`` with which it allocates *and* invokes a model is a measured RAM
figure, not an estimate. Every TFLM call runs in a child process
(``python -m edgeflow.runtime._tflm_child``) because TFLM can abort the whole process.

Why TFLM aborts on some int8 models (the MobileNet softmax heads)
------------------------------------------------------------------
Found by reproducing it in a child process under gdb and bisecting the graph:

* The abort is ``abort()`` from ``tflite::QuantizeMultiplierGreaterThanOne`` (its first
  line is ``TFLITE_CHECK_GT(double_multiplier, 1.)``), called from
  ``tflite::PreprocessSoftmaxScaling`` inside ``CalculateSoftmaxParams`` of the SOFTMAX
  kernel's Prepare (``tensorflow/lite/micro/kernels/softmax_common.cc``), that is while the
  interpreter is being built (``AllocateTensors``), before any inference. For an int8
  input TFLM computes the fixed-point input multiplier as

      multiplier = beta · input_scale · 2^(31 − 5)        (kScaledDiffIntegerBits = 5)

  and requires ``multiplier > 1``, i.e. ``input_scale > 2^-26 / beta ≈ 1.49e-8`` for
  beta = 1. ``TFLITE_CHECK`` has no message in TFLM builds, hence a silent SIGABRT.
* The int8 conversion of ``MobileNetV2(alpha=0.35, weights=None, classes=2)`` gives the
  softmax input (the Dense logits) the scale 7.84e-9, so the multiplier is 0.526. With
  random (``weights=None``) weights the activations shrink about tenfold per block: on the
  calibration data the features after the body are ~1e-10 and the logits span ~4e-11; the
  converter then uses a range of about 2e-6 (scale 2e-6 / 255 = 7.84e-9, the same in all
  three models: a floor of the converter, not the logits' real range). Every network whose logits span
  less than ``255 · 2^-26 ≈ 3.8e-6`` on the calibration data hits it; the number of
  classes, int8 vs float model I/O, and the layers before the logits do not matter (tiny
  GAP → Dense → Softmax models abort the same way with 2 or 10 classes once the logits
  are that small, and run when they are not). A Dense without softmax runs because the
  FULLY_CONNECTED multiplier has no such lower bound; LiteRT runs the softmax too because
  its int8 softmax is a lookup table built from the scale, with no such check.
* So it is a property of the *quantized model*, not of the architecture: trained networks
  calibrated with real data have logits spanning units, far above the limit.

What edgeflow does: ``known_aborts(model)`` finds the condition from the flatbuffer alone
(no TFLM run), and ``measure_arena`` names it in its message when TFLM aborts. Workarounds
for a user: calibrate a trained model with real data; or export the logits without the
softmax (argmax is unchanged); or raise the softmax input tensor's scale to just above
``2^-26 / beta`` in the flatbuffer (the logits are below the int8 resolution either way:
the softmax output stays uniform). Done on the three models (``bench/bench_runtime.py``),
TFLM then runs them: MobileNetV2 α=0.35 with a 210,208-byte arena, MobileNet α=0.25 with
104,160 and MobileNetV3Small with 175,520 (64-bit host). ``MobileNet(alpha=0.25)`` and
``MobileNetV3Small`` abort for the same reason (softmax input scale 7.84e-9 as well).
"""

from __future__ import annotations

import re
import struct
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeflow.errors import EdgeflowError, RuntimeCrash
from edgeflow.runtime import _child
from edgeflow.runtime._quant import by_input_name, input_arrays
from edgeflow.runtime.litert import PROBE_CPU_SECONDS
from edgeflow.tflite import load, parse, read_bytes

__all__ = [
    "ArenaMeasurement", "measure_arena", "probe", "predict", "known_aborts", "raise_softmax_scale",
]

POINTER_BYTES = struct.calcsize("P")
ALIGNMENT = 16
MAX_ARENA = 1 << 30  # give up above 1 GiB: no MCU has that much RAM

# TFLM's int8 softmax needs beta * input_scale * 2**(31 - kScaledDiffIntegerBits) > 1.
_SOFTMAX_SHIFT = 31 - 5


@dataclass
class ArenaMeasurement:
    """What TFLM needed to run a model, measured in a child process on this host.

    Attributes:
        status: ``ok``, ``aborted`` (TFLM killed the process: a signal), ``failed`` (TFLM
            refused the model with an error, e.g. an unsupported op) or ``timeout``.
        arena_bytes: the smallest 16-aligned ``arena_size`` that allocates and invokes.
        pointer_bytes: pointer width of the host that measured (8 here; MCUs have 4, so
            TFLM's bookkeeping structs are smaller on the device than measured).
        breakdown: what TFLM's RecordingMicroAllocator printed at that size: ``total``,
            ``non_persistent`` (arena head: tensors and scratch, planned),
            ``persistent`` (arena tail) and ``kinds`` ({name: {used, requested, count}}).
        message: one line: for ``aborted`` the signal and the cause when known; for ``ok``
            after crashes, that TFLM crashes instead of failing cleanly below the arena.
        crashes: arena sizes at which TFLM crashed during the search (each below a size that
            ran, so counted as too small).
        seconds: wall-clock time of the measurement.
    """

    status: str
    arena_bytes: int | None = None
    pointer_bytes: int = POINTER_BYTES
    breakdown: dict = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0
    crashes: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return asdict(self)


def known_aborts(model) -> list[str]:
    """Causes for which TFLM is known to abort on this model, read from the flatbuffer.

    Today: an int8/uint8 SOFTMAX whose input scale makes ``beta · scale · 2^26 ≤ 1``
    (see the module docstring). Each entry is one line naming the operator.

    Example:
        >>> known_aborts(tflite_bytes)
        ['SOFTMAX (operator 65): int8 input scale 7.84e-09 gives beta·scale·2^26 = 0.526 ≤ 1 ...']
    """
    info = parse(model)
    causes = []
    for op in info.ops:
        if op.name != "SOFTMAX" or not op.inputs:
            continue
        logits = info.tensors[op.inputs[0]]
        scale = logits.scale[0] if logits.scale else 0.0
        if logits.dtype not in ("int8", "uint8") or not scale:
            continue
        beta = float(op.options.get("beta", 1.0))
        multiplier = beta * scale * 2.0**_SOFTMAX_SHIFT
        if multiplier <= 1.0:
            causes.append(
                f"SOFTMAX (operator {op.index}): {logits.dtype} input scale "
                f"{scale:.3g} gives beta·scale·2^26 = {multiplier:.3g} ≤ 1, which "
                "TFLM's softmax Prepare rejects with abort() (QuantizeMultiplierGreaterThanOne); "
                + (f"the logits span less than {255 * 2.0**-_SOFTMAX_SHIFT / beta:.2g} on the "
                   "calibration data (typical of untrained weights=None networks)" if beta > 0
                   else "beta is not positive")
                + ": calibrate a "
                "trained model with real data or export the logits without softmax"
            )
    return causes


def raise_softmax_scale(model) -> bytes:
    """A copy of the model whose int8 SOFTMAX input scales sit just above TFLM's floor.

    Where ``beta · scale · 2^26 ≤ 1`` (see :func:`known_aborts`) the scale becomes
    ``1.0001 · 2^-26 / beta``; nothing else changes. The copy computes a different (still
    near-uniform) softmax, but its memory needs are the model's own: the arena does not
    depend on a scale, so TFLM can measure it. Not a fix to ship: calibrate a trained model.

    Example:
        >>> measure_arena(raise_softmax_scale(tflite_bytes)).arena_bytes
    """
    import flatbuffers

    from edgeflow.tflite._schema import schema

    data = read_bytes(model)
    obj = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    graph = obj.subgraphs[0]
    for op in graph.operators:
        code = obj.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.SOFTMAX:
            continue
        beta = getattr(op.builtinOptions, "beta", 1.0) or 1.0
        q = graph.tensors[op.inputs[0]].quantization
        floor = 2.0**-_SOFTMAX_SHIFT / beta * 1.0001
        if beta > 0 and q is not None and q.scale is not None and q.scale[0] <= floor:
            q.scale = np.array([floor], np.float32)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


#: The CPU budget of a :func:`predict` child, and of each try of :func:`measure_arena` and
#: :func:`probe`: per sample ``PREDICT_CPU_SECONDS`` plus one second per
#: ``PREDICT_MACS_PER_CPU_SECOND`` of the MACs the file's operators state
#: (:func:`edgeflow.runtime._child.cpu_budget`). TFLM's host kernels ran the int8 DS-CNN
#: and ResNet-8 at 0.9 and 1.2 GMAC per CPU second here (64 samples, 2 shared cores); the
#: rate is ten times lower for slower hosts and float kernels; the seconds per sample are
#: LiteRT's for one inference (:data:`edgeflow.runtime.litert.PROBE_CPU_SECONDS`).
PREDICT_CPU_SECONDS = PROBE_CPU_SECONDS
PREDICT_MACS_PER_CPU_SECOND = 1e8


def measure_arena(model, *, timeout: float = 300,
                  cpu_seconds: float | None = PREDICT_CPU_SECONDS) -> ArenaMeasurement:
    """The smallest tensor arena with which TFLM allocates and invokes the model.

    Runs ``tflite_micro``'s interpreter in a child process: doubling from a start size
    until it runs, then bisection on 16-byte steps, each try a fresh interpreter that
    allocates and invokes once on zero input. An abort never reaches the caller: it
    becomes ``status="aborted"`` with the signal and, when edgeflow recognises it, the
    cause. Side effects: child processes and a temporary directory, both removed.

    Args:
        model: ``.tflite`` bytes or a path.
        timeout: seconds for the whole search; the child is killed after it.
        cpu_seconds: CPU time each try (allocate + one inference) may use, plus one second
            per :data:`PREDICT_MACS_PER_CPU_SECOND` of the MACs the file's operators state
            (:func:`edgeflow.runtime._child.cpu_budget`); past it the search ends with
            ``status="timeout"`` and a line that says so (a ``WHILE`` that never ends, an
            enlarged shape). None: no limit.

    Raises:
        EdgeflowError: the bytes are not a TFLite model.

    Example:
        >>> m = measure_arena(tflite_bytes)
        >>> m.status, m.arena_bytes
        ('ok', 5968)
    """
    data, info = load(model)
    budget = _budget(info, 1, cpu_seconds)
    started = time.monotonic()
    lo, hi = 0, None
    notes = []
    crashes: list[int] = []
    signal = ""
    with _Workdir(data, len(info.inputs)) as work:
        while True:  # a restart after each crash; each one narrows the bisection, so it ends
            remaining = timeout - (time.monotonic() - started)
            req = {
                "command": "search",
                "lo": lo,
                "hi": hi,
                "start": max(64 * 1024, _align(len(data))),
                "cap": MAX_ARENA,
                "cpu_seconds": budget.seconds,
            }
            result, proc = work.run(req, remaining)
            seconds = time.monotonic() - started
            if over := budget.exceeded(proc):
                return ArenaMeasurement("timeout", message=over, seconds=seconds)
            if proc is None:
                return ArenaMeasurement(
                    "timeout", message=f"TFLM did not finish within {timeout:g} s (child killed)"
                    + (f" after {len(crashes)} crashes below a working arena" if crashes else ""),
                    seconds=seconds,
                )
            if result is not None:
                if crashes:
                    notes.append(f"TFLM crashes ({signal}) instead of failing cleanly with a smaller arena: "
                                 f"{len(crashes)} crash(es) while bisecting, at {min(crashes):,} to "
                                 f"{max(crashes):,} bytes")
                found = _from_result(result, seconds, notes)
                found.crashes = sorted(crashes)
                return found
            # The child died: find the arena size it was trying.
            tried, lo_log, hi_log = work.read_log()
            crashed_at = tried[-1] if tried else None
            if hi_log is not None and crashed_at is not None and crashed_at < hi_log:
                # It ran with a larger arena: this size counts as too small; go on.
                crashes.append(crashed_at)
                signal = _child.signal_name(proc.returncode)
                lo, hi = max(lo_log, crashed_at), hi_log
                continue
            return ArenaMeasurement(
                "aborted",
                message=_crash_message(data, proc.returncode, work.captured()),
                seconds=seconds,
            )


def probe(model, arena_size: int, *, timeout: float = 60,
          cpu_seconds: float | None = PREDICT_CPU_SECONDS) -> ArenaMeasurement:
    """Try one arena size in a child process: ``status`` ``ok`` if TFLM allocates and invokes
    (within ``cpu_seconds`` of CPU time as in :func:`measure_arena`, else ``timeout``).

    Example:
        >>> probe(tflite_bytes, m.arena_bytes - 16).status
        'failed'
    """
    data, info = load(model)
    if int(arena_size) <= 0:
        raise EdgeflowError(f"arena_size must be a positive number of bytes, got {arena_size}")
    budget = _budget(info, 1, cpu_seconds)
    started = time.monotonic()
    with _Workdir(data, len(info.inputs)) as work:
        result, proc = work.run({"command": "probe", "arena_size": int(arena_size), "cpu_seconds": budget.seconds},
                                timeout)
        seconds = time.monotonic() - started
        if over := budget.exceeded(proc):
            return ArenaMeasurement("timeout", message=over, seconds=seconds)
        if proc is None:
            return ArenaMeasurement("timeout", message=f"TFLM did not finish within {timeout:g} s",
                                    seconds=seconds)
        if result is None:
            return ArenaMeasurement(
                "aborted", message=_crash_message(data, proc.returncode, work.captured()),
                seconds=seconds,
            )
        return _from_result(result, seconds, [])


def predict(model, x, *, arena_size: int | None = None, timeout: float = 300,
            cpu_seconds: float | None = PREDICT_CPU_SECONDS) -> np.ndarray:
    """Run every sample of ``x`` through TFLM (batch 1 each) in a child process.

    Float inputs are quantized with the model's input scale/zero point and outputs
    dequantized, as in ``litert.predict``.

    Args:
        model: ``.tflite`` bytes or a path.
        x: float samples ``(N, *input_shape)``; for several inputs a list of arrays in
            input order, or a dict by input name (the file's signature def).
        arena_size: the tensor arena in bytes (default: 10× the model size, at least 1 MiB).
        timeout: seconds (wall clock) before the child is killed.
        cpu_seconds: CPU time per sample: the child may use N × (``cpu_seconds`` + stated
            MACs / :data:`PREDICT_MACS_PER_CPU_SECOND`) (None: no limit), so a large ``x``
            gets a budget as large, and only a model that never ends (a WHILE whose
            condition stays true) or does far more work than it states meets it.

    Returns:
        ``(N, ...)`` float outputs; a list of arrays for a model with several outputs.

    Raises:
        RuntimeCrash: TFLM aborted or crashed, or the child ran past ``timeout`` or past
            its CPU budget (one line saying which).
        EdgeflowError: bad model bytes or input shapes, or TFLM refused the model.

    Example:
        >>> probs = predict(tflite_bytes, x_test[:20])
    """
    data, info = load(model)
    xs = input_arrays(by_input_name(x, data), [t.shape for t in info.inputs])
    size = int(arena_size) if arena_size is not None else max(10 * len(data), 1 << 20)
    samples = len(xs[0])
    budget = _budget(info, samples, cpu_seconds)
    with _Workdir(data, len(info.inputs)) as work:
        np.savez(work.path / "x.npz", **{f"x{i}": a for i, a in enumerate(xs)})
        req = {
            "command": "predict",
            "arena_size": size,
            "x": str(work.path / "x.npz"),
            "y": str(work.path / "y.npz"),
            "num_outputs": len(info.outputs),
            "cpu_seconds": budget.seconds,
        }
        result, proc = work.run(req, timeout)
        if proc is None:
            raise RuntimeCrash(f"TFLM did not finish within {timeout:g} s (child killed)")
        if over := budget.exceeded(proc):
            raise RuntimeCrash(over)
        if result is None:
            raise RuntimeCrash(_crash_message(data, proc.returncode, work.captured()))
        if result["status"] != "ok":
            raise EdgeflowError(_failure(result["text"], size))
        with np.load(work.path / "y.npz") as f:
            ys = [f[f"y{i}"] for i in range(len(info.outputs))]
    return ys[0] if len(ys) == 1 else ys


# --- parsing -----------------------------------------------------------------------------

_LINE_TOTAL = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_LINE_KIND = re.compile(
    r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+)"
)


def parse_allocations(text: str) -> dict:
    """Parse ``print_allocations()`` output of TFLM's RecordingMicroAllocator.

    Returns:
        ``{"total", "non_persistent" (head), "persistent" (tail), "kinds": {name: {"used",
        "requested", "count"}}}`` in bytes; keys missing from the text are left out.
    """
    out: dict = {}
    names = {"total": "total", "head": "non_persistent", "tail": "persistent"}
    for what, value in _LINE_TOTAL.findall(text):
        out[names[what]] = int(value)
    kinds = {
        name: {"used": int(used), "requested": int(req), "count": int(count)}
        for name, used, req, count in _LINE_KIND.findall(text)
    }
    if kinds:
        out["kinds"] = kinds
    return out


def _from_result(result: dict, seconds: float, notes: list[str]) -> ArenaMeasurement:
    if result["status"] == "ok":
        return ArenaMeasurement(
            "ok",
            arena_bytes=int(result["arena_bytes"]),
            breakdown=parse_allocations(result.get("text", "")),
            message="; ".join(notes),
            seconds=seconds,
        )
    size = result.get("arena_bytes") or result.get("cap")
    return ArenaMeasurement("failed", message=_failure(result.get("text", ""), size), seconds=seconds)


def _failure(text: str, size: int | None = None) -> str:
    """One line from TFLM's output: the arena shortfall if that was it, else its last errors."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln.removeprefix("edgeflow: ") for ln in lines if "RecordingMicroAllocator" not in ln]
    short = [ln for ln in lines if ln.startswith(("Failed to allocate", "Failed to resize"))]
    if short:
        where = f"an arena of {size} bytes" if size else "the arena"
        return f"TFLM cannot allocate the model in {where}: {short[0]}"
    return "TFLM refused the model: " + ("; ".join(lines[-3:]) or "no message")


def _crash_message(data: bytes, returncode: int, captured: str) -> str:
    sig = _child.signal_name(returncode)
    causes = known_aborts(data)
    if causes:
        return f"TFLM aborted ({sig}) in {causes[0]}"
    tail = [ln.strip() for ln in captured.splitlines() if ln.strip()][-1:]
    last = f"; last TFLM output: {tail[0]}" if tail else " without a message"
    return f"TFLM aborted ({sig}) while loading or running the model, cause unknown{last}"




def _budget(info, samples: int, cpu_seconds: float | None) -> _child.CpuBudget:
    """The CPU budget of ``samples`` inferences in a TFLM child (:data:`PREDICT_CPU_SECONDS`)."""
    return _child.CpuBudget("TFLM", samples, cpu_seconds, info.total_macs, PREDICT_MACS_PER_CPU_SECOND)


def _align(n: int) -> int:
    return (int(n) + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


# --- the child process -------------------------------------------------------------------


class _Workdir(_child.Workdir):
    """The child's folder holding the model, with the arena log of ``_tflm_child``.

    Every request tells the child how many inputs the model has, so the child never
    reads the flatbuffer itself.
    """

    def __init__(self, data: bytes, num_inputs: int):
        super().__init__("edgeflow-tflm-", "TFLM")
        self.data = data
        self.num_inputs = num_inputs

    def __enter__(self) -> _Workdir:
        super().__enter__()
        (self.path / "model.tflite").write_bytes(self.data)
        return self

    def run(self, request: dict, timeout: float):
        """Run the TFLM child; ``(result or None, completed process or None on timeout)``."""
        (self.path / "log.txt").unlink(missing_ok=True)
        request = {
            **request,
            "model": str(self.path / "model.tflite"),
            "num_inputs": self.num_inputs,
            "log": str(self.path / "log.txt"),
        }
        return super().run("edgeflow.runtime._tflm_child", request, timeout)

    def read_log(self) -> tuple[list[int], int, int | None]:
        """Sizes tried, the largest that failed (0 if none) and the smallest that ran."""
        tried, lo, hi = [], 0, None
        log = self.path / "log.txt"
        for line in log.read_text().splitlines() if log.exists() else []:
            what, size = line.split()
            size = int(size)
            if what == "try":
                tried.append(size)
            elif what == "ok":
                tried.pop()
                hi = size if hi is None else min(hi, size)
            else:
                tried.pop()
                lo = max(lo, size)
        return tried, lo, hi
