"""Firmware-true figures: build a model into a bare-metal image for a board's core and run it.

:func:`build` compiles the model with TensorFlow Lite Micro and CMSIS-NN for the core a
board profile names (``firmware:`` section), links it, runs it under ``qemu-system-arm``
and reports what it really takes:

* **flash** = text + rodata + data of the linked image (:mod:`edgeflow.firmware.elf`);
* **static RAM** = data + bss of the image linked with the arena the emulated run used
  (stack and heap reserved by the linker script are not counted);
* **arena** = ``MicroInterpreter::arena_used_bytes()`` on the target (32-bit);
* **instructions** of one ``Invoke()`` and of each operator, counted exactly by a QEMU
  plugin, and the **latency** estimate ``instructions × CPI ÷ clock`` (CPI per core,
  :mod:`edgeflow.firmware.targets`; an estimate, its basis is reported with it);
* the **output bytes** for the given inputs (or fixed pseudo-random ones);
* the **breakdown** of those figures: instructions per operator beside its output shape,
  MACs and bytes (:meth:`FirmwareResult.operators`), the flash by origin (model, TFLM,
  application, libraries; :func:`edgeflow.firmware.image.flash_split`) and the arena by use
  (activations, scratch, persistent; :meth:`FirmwareResult.arena_split`).

Sources: :mod:`edgeflow.firmware.sources`; compiled TFLM objects are cached per (TFLM
revision, compiler, core, flags) in the user cache folder (:mod:`edgeflow.firmware.library`).

Example:
    >>> fw = build("model.tflite", "arduino-nano-33-ble")
    >>> fw.figures()["flash_bytes"]
    {'value': 145536, 'source': 'linked image: text + rodata + data'}
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edgeflow.errors import EdgeflowError

__all__ = ["ARENA_PARTS", "FirmwareResult", "available", "build", "build_for", "default_inputs", "encode_inputs", "for_device"]


#: The parts of a firmware's arena split (:meth:`FirmwareResult.arena_split`), with what each holds.
ARENA_PARTS = {
    "activations": "the model's tensors, as TFLM's greedy planner places them (the head without scratch)",
    "scratch": "what kernels' scratch buffers (e.g. CMSIS-NN's im2col) add to the head",
    "persistent": "the tail: tensor structs, node data and kernels' persistent buffers",
}


@dataclass
class FirmwareResult:
    """A firmware build for one board (or core) and, when emulated, its run."""

    board: str | None
    target: object
    firmware: object
    run: object | None
    arena_used: int | None
    arena_source: str
    clock_mhz: float | None
    flash_limit: int | None = None
    ram_limit: int | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: the model's operators (``ModelInfo.op_table()``) and its activation plan without
    #: kernel scratch buffers (``plan_memory(info, scratch=False).peak_bytes``)
    model_ops: list[dict] = field(default_factory=list)
    activation_plan: int | None = None

    @property
    def emulated(self) -> bool:
        return self.run is not None and self.run.ok

    @property
    def instructions(self) -> int | None:
        return self.run.instructions[0] if self.emulated and self.run.instructions else None

    @property
    def latency_ms(self) -> float | None:
        """``instructions × CPI ÷ clock`` in milliseconds (an estimate)."""
        if self.instructions is None or not self.clock_mhz:
            return None
        return self.instructions * self.target.cpi / (self.clock_mhz * 1e3)

    @property
    def fits(self) -> bool:
        ok_flash = self.flash_limit is None or self.firmware.flash <= self.flash_limit
        ok_ram = self.ram_limit is None or self.firmware.static_ram <= self.ram_limit
        return not self.problems and ok_flash and ok_ram

    def operators(self) -> dict | None:
        """Instructions per operator of the first ``Invoke()`` (None when not counted).

        Returns:
            ``{"rows": [...], "outside_operators": n, "invoke": total}``; a row is a row of
            ``ModelInfo.op_table()`` (index, op, version, dtype, output_shape, macs,
            weight_bytes, activation_bytes) with ``instructions`` (between the operator's
            profiler BeginEvent and EndEvent) and ``share`` (of the Invoke() total, 0..1).
            ``outside_operators`` is the rest of the Invoke() total: TFLM's graph loop and
            the profiler hooks between operators, so rows + outside = total exactly. Where
            the run's operators are not the model's (names or count differ) a row holds only
            ``index``, ``op``, ``instructions`` and ``share``.
        """
        if self.instructions is None or not self.run.operators:
            return None
        total = self.instructions
        same = [op for op, _ in self.run.operators] == [row["op"] for row in self.model_ops]
        rows = []
        for i, (op, n) in enumerate(self.run.operators):
            row = dict(self.model_ops[i]) if same else {"index": i, "op": op}
            rows.append(row | {"instructions": n, "share": round(n / total, 6)})
        return {"rows": rows, "outside_operators": total - sum(n for _, n in self.run.operators), "invoke": total}

    def arena_split(self) -> dict | None:
        """The arena of the emulated run by use, in bytes (None when not emulated):
        ``persistent`` (the allocator's tail: tensor structs, node data, kernels' persistent
        buffers), ``activations`` (of the head, the planned non-persistent part: what the
        model's tensors alone take, ``plan_memory(info, scratch=False)``, TFLM's greedy
        planner) and ``scratch`` (the rest of the head: what kernels' scratch buffers, e.g.
        CMSIS-NN's im2col, add to it). The three sum to ``arena_used``."""
        run = self.run
        if not self.emulated or run.arena_head is None or run.arena_tail is None:
            return None
        acts = min(run.arena_head, self.activation_plan if self.activation_plan is not None else run.arena_head)
        return {"activations": acts, "scratch": run.arena_head - acts, "persistent": run.arena_tail}

    def figures(self) -> dict:
        """Every figure with its source: ``{name: {"value": v, "source": "...", ...}}``.

        Besides flash, static RAM, arena, instructions and latency: ``flash_split`` (bytes by
        origin, :data:`edgeflow.firmware.image.FLASH_PARTS`; they sum to the flash),
        ``arena_split`` (:meth:`arena_split`) and ``operators`` (:meth:`operators`; its
        ``value`` is the rows, ``outside_operators`` the rest of the Invoke() total)."""
        fw = self.firmware
        arena = (f"the arena ({fw.arena_size:,} B) sized from the emulated run" if self.arena_source == "emulated run"
                 else f"the arena ({fw.arena_size:,} B) from the {self.arena_source}")
        out = {
            "flash_bytes": {"value": fw.flash, "source": "linked image: text + rodata + data"},
            "static_ram_bytes": {"value": fw.static_ram,
                                 "source": f"linked image: data + bss with {arena}; stack and heap not counted"},
            "arena_bytes": {"value": self.arena_used, "source": self.arena_source},
        }
        if self.instructions is not None:
            out["instructions"] = {"value": self.instructions,
                                   "source": "emulated run: guest instructions of one Invoke() (QEMU plugin)"}
        if self.latency_ms is not None:
            out["latency_ms"] = {"value": round(self.latency_ms, 3), "estimate": True,
                                 "source": f"estimate: instructions x CPI {self.target.cpi} / {self.clock_mhz:g} MHz "
                                           f"({self.target.cpi_basis})"}
        if fw.flash_split:
            out["flash_split"] = {"value": dict(fw.flash_split),
                                  "source": "linked image: input sections of text + rodata + data by object file "
                                            "(linker map); padding is the rest"}
        split = self.arena_split()
        if split is not None:
            out["arena_split"] = {"value": split,
                                  "source": "emulated run: the arena allocator's tail (persistent) and head; the "
                                            "head split into the model's tensor plan (activations) and what kernel "
                                            "scratch buffers add (scratch)"}
        ops = self.operators()
        if ops is not None:
            out["operators"] = {"value": ops["rows"], "outside_operators": ops["outside_operators"],
                                "source": "emulated run: guest instructions between each operator's profiler "
                                          "events in the first Invoke() (QEMU plugin); share of the Invoke() total; "
                                          "outside_operators: TFLM's loop and hooks between them"}
        return out

    def to_dict(self) -> dict:
        fw = self.firmware
        return {
            "board": self.board, "target": self.target.to_dict(), "fits": self.fits,
            "figures": self.figures(), "sizes": fw.sizes(), "emulated": self.emulated,
            "run": None if self.run is None else self.run.to_dict(),
            "limits": {"flash_bytes": self.flash_limit, "ram_bytes": self.ram_limit, "clock_mhz": self.clock_mhz},
            "tflm": fw.tflm, "tflm_sources": len(fw.tflm_sources), "compiled_now": fw.compiled,
            "seconds": round(self.seconds, 2), "problems": list(self.problems), "notes": list(self.notes),
        }


def available() -> bool:
    """True when the cross compiler and QEMU are installed (firmware figures can be measured)."""
    from edgeflow.firmware import toolchain

    return toolchain.find(required=False) is not None and toolchain.qemu(required=False) is not None


def default_inputs(info, samples: int = 2, seed: int = 0) -> bytes:
    """Fixed pseudo-random input samples for a model (bytes of all inputs, sample by sample):
    integers uniform over the dtype's range, floats standard normal (``numpy`` PCG64, ``seed``)."""
    rng = np.random.default_rng(seed)
    out = bytearray()
    for _ in range(samples):
        for t in info.inputs:
            dtype = np.dtype(t.dtype)
            shape = tuple(max(1, d) for d in t.shape)
            if dtype.kind in "iu":
                lim = np.iinfo(dtype)
                arr = rng.integers(lim.min, lim.max, size=shape, endpoint=True, dtype=dtype)
            elif dtype.kind == "b":
                arr = rng.integers(0, 2, size=shape).astype(dtype)
            else:
                arr = rng.standard_normal(size=shape).astype(dtype)
            out += arr.tobytes()
    return bytes(out)


def encode_inputs(info, data, limit: int = 4) -> bytes:
    """Float samples (an array, a .npy/.npz path or an image folder; :func:`edgeflow.data.samples`)
    as input bytes for the firmware, quantized with the input tensor's scale and zero point.

    Raises:
        EdgeflowError: a model with several inputs, samples of the wrong shape, NaN or
            infinite values, or no samples (:func:`edgeflow.data.calibration`'s checks).
    """
    from edgeflow.data import calibration
    from edgeflow.runtime._quant import quantize

    if len(info.inputs) != 1:
        raise EdgeflowError(f"--data feeds one input; the model has {len(info.inputs)}")
    t = info.inputs[0]
    details = {"dtype": t.dtype, "quantization": (t.scale[0] if t.scale else 0.0, t.zero_point[0] if t.zero_point else 0)}
    (x,) = calibration(data, [("input", tuple(t.shape[1:]))], limit, what="firmware input data").values()
    return b"".join(quantize(row[None], details).tobytes() for row in x)


def build(model, board: str | None = None, *, cpu: str | None = None, inputs: bytes | None = None,
          tflm_root=None, devices_dir=None, emulate: bool = True, jobs: int | None = None,
          timeout: float | None = None) -> FirmwareResult:
    """Build ``model`` into firmware for ``board`` (a profile name/path) or a bare ``cpu``.

    Args:
        model: ``.tflite`` bytes or path.
        board: a board profile with a ``firmware`` section; or None with ``cpu``.
        cpu: a core of :data:`edgeflow.firmware.targets.CPUS` (overrides the board's).
        inputs: bytes of whole input samples (all input tensors, in order, per sample);
            default :func:`default_inputs`.
        tflm_root: TFLM sources (folder or archive), see :func:`edgeflow.firmware.sources.locate`.
        emulate: run the image under QEMU (arena, outputs, instruction counts); without
            QEMU or with False the arena comes from the host interpreter.
        jobs: parallel compiler processes.
        timeout: seconds (wall clock) each emulated run may take before QEMU is killed;
            None: :data:`edgeflow.firmware.emulator.TIMEOUT` (300 s).

    Returns:
        A :class:`FirmwareResult`; a TFLM abort, a fault or a hang (``timeout``) under
        emulation is one of its problems (:mod:`edgeflow.firmware.emulator`).

    Raises:
        EdgeflowError: bad model, unknown board/core, a board without a firmware target,
            a ``timeout`` that is not a number > 0, an operator TFLM lacks, no toolchain, no TFLM sources, a compile/link error.
    """
    from edgeflow.devices.profiles import get_device
    from edgeflow.firmware import targets
    from edgeflow.tflite import reader

    timeout = _timeout(timeout)
    t0 = time.monotonic()
    device = None
    if board is not None:
        device = get_device(board, devices_dir)
        if device.runtime != "tflm":
            raise EdgeflowError(f"{device.name} runs {device.runtime}, not TensorFlow Lite Micro firmware; "
                                f"pick a microcontroller board (edgeflow devices)")
        if cpu is None:
            spec = device.firmware
            if spec is None or spec.cpu is None:
                why = spec.note if spec is not None and spec.note else "its profile names no firmware core"
                raise EdgeflowError(f"{device.name}: no firmware build ({why}); its figures stay estimates")
            target = targets.for_profile(spec)
    if cpu is not None:
        target = targets.target(cpu)
    elif board is None:
        raise EdgeflowError("name a board (--board) or a core (--cpu) to build firmware for")
    data, info = reader.load(model)
    result = build_for(data, info, target, inputs=inputs, tflm_root=tflm_root, emulate=emulate, jobs=jobs,
                       timeout=timeout)
    if device is not None:
        result = for_device(result, device)
    result.seconds = time.monotonic() - t0
    return result


def _timeout(value: float | None) -> float:
    """``timeout`` of :func:`build`: None is :data:`edgeflow.firmware.emulator.TIMEOUT`; else a
    number > 0 (``RANGES["emulation_seconds"]``), or :class:`EdgeflowError` naming it."""
    from edgeflow.firmware.emulator import TIMEOUT
    from edgeflow.ranges import check

    return TIMEOUT if value is None else check("emulation_seconds", value, "timeout")


def for_device(result: FirmwareResult, device) -> FirmwareResult:
    """A copy of a core's result with a board's limits, clock and profile notes."""
    from dataclasses import replace

    out = replace(result, board=device.name, clock_mhz=device.clock_mhz, flash_limit=device.flash_bytes,
                  ram_limit=device.ram_bytes, problems=list(result.problems), notes=list(result.notes))
    if device.firmware is not None and device.firmware.note:
        out.notes.append(device.firmware.note)
    if device.firmware is not None and device.firmware.cpi is not None:
        from edgeflow.firmware.targets import for_profile

        out.target = for_profile(device.firmware)
    return out


def build_for(data: bytes, info, target, *, inputs: bytes | None = None, tflm_root=None, emulate: bool = True,
              jobs: int | None = None, timeout: float | None = None) -> FirmwareResult:
    """:func:`build` for a :class:`~edgeflow.firmware.targets.Target` and a loaded model (no board)."""
    from edgeflow.deploy.mcu import resolver_calls
    from edgeflow.firmware import emulator, sources, toolchain
    from edgeflow.firmware import image as _build

    timeout = _timeout(timeout)
    t0 = time.monotonic()
    if info.subgraphs < 1 or not info.inputs:
        raise EdgeflowError("the model has no inputs to run")
    calls = resolver_calls(info.ops_used())
    if inputs is not None:
        per_sample = sum(t.nbytes for t in info.inputs)
        if per_sample == 0 or len(inputs) % per_sample:
            raise EdgeflowError(f"inputs: {len(inputs)} bytes is not a whole number of samples of {per_sample} bytes")
    tc = toolchain.find()
    src = sources.locate(tflm_root)
    can_run = emulate and toolchain.qemu(required=False) is not None
    from edgeflow.tflite import plan_memory

    prepared = _build.prepare(data, calls, target, src, tc, jobs=jobs)
    result = FirmwareResult(None, target, None, None, None, "", None, model_ops=info.op_table(),
                            activation_plan=plan_memory(info, scratch=False).peak_bytes)
    samples = inputs if inputs is not None else default_inputs(info)
    if can_run:
        probe = _build.link_image(prepared, name="measure")
        first = emulator.run(probe.elf, target.machine, samples, timeout=timeout)
        if not first.ok or first.arena_used is None:
            result.firmware, result.run = probe, first
            result.arena_source = "not measured: the emulated run failed"
            result.problems.append(f"TFLM on {target.cpu} under QEMU: {first.reason}{_known_cause(data, first)}")
        else:
            final = _build.link_image(prepared, first.arena_used, name="firmware")
            again = emulator.run(final.elf, target.machine, samples, timeout=timeout)
            result.arena_used, result.arena_source = first.arena_used, "emulated run"
            if not again.ok:
                # TFLM's arena_used_bytes() can fall short (seen with WHILE subgraphs): search upward
                found = _smallest_arena(prepared, target, samples, timeout, first.arena_used, probe.arena_size)
                if found is None:
                    result.problems.append(f"with the arena it reported ({first.arena_used:,} B) the firmware "
                                           f"fails: {again.reason}")
                else:
                    result.notes.append(f"TFLM reported {first.arena_used:,} B of arena used, but fails with it "
                                        f"({again.reason}); the smallest arena that runs, searched on the "
                                        f"target, is {found[0].arena_size:,} B")
                    (final, again), result.arena_used = found, found[0].arena_size
                    result.arena_source = "emulated runs (smallest arena that runs)"
            final.compiled += probe.compiled  # the TFLM sources compiled for this build (cache misses)
            result.firmware = final
            result.run = again if again.ok else first
            if again.ok and again.outputs != first.outputs:
                result.problems.append("the outputs differ between the measurement run and the sized image")
    else:
        from edgeflow.runtime import tflm

        host = tflm.measure_arena(data)
        result.arena_used = host.arena_bytes if host.status == "ok" else None
        result.arena_source = "host (tflite-micro Python interpreter, 64-bit)"
        result.firmware = _build.link_image(prepared, result.arena_used, name="firmware")
        result.notes.append("not emulated (" + ("qemu-system-arm not found" if emulate else "emulation off")
                            + "): arena from the host interpreter, no instruction count")
    result.seconds = time.monotonic() - t0
    return result


def _smallest_arena(prepared, target, samples: bytes, timeout: float, failing: int, working: int):
    """The smallest arena (16-byte steps) in ``(failing, working]`` with which the image runs:
    grow by 25 % from ``failing`` until a run succeeds, then bisect. A crash counts as too
    small. Returns ``(firmware, run)``, or None when nothing below ``working`` runs."""
    from edgeflow.firmware import emulator
    from edgeflow.firmware import image as _build

    def attempt(size: int):
        fw = _build.link_image(prepared, size, name="firmware")
        run = emulator.run(fw.elf, target.machine, samples, timeout=timeout)
        return (fw, run) if run.ok else None

    low, ok = (failing + 15) // 16 * 16, None  # link_image rounds up: that size failed
    while ok is None:
        size = (low * 5 // 4 + 31) // 16 * 16
        if size >= working:
            return None
        ok = attempt(size)
        if ok is None:
            low = size
    high = ok[0].arena_size
    while high - low > 16:
        middle = (low + high) // 32 * 16  # strictly between: both are multiples of 16
        found = attempt(middle)
        if found is None:
            low = middle
        else:
            ok, high = found, found[0].arena_size
    return ok


def _known_cause(data: bytes, run) -> str:
    """``": <cause>"`` when :func:`edgeflow.runtime.tflm.known_aborts` explains the run's abort."""
    if run.aborted is None:
        return ""
    from edgeflow.runtime.tflm import known_aborts

    _, op, index = run.aborted
    for cause in known_aborts(data):
        head, _, why = cause.partition(": ")
        if head == f"{op} (operator {index})":
            return f": {why}"
    return ""
