"""``check``: does a ``.tflite`` fit a named board? RAM, flash, operators, dtypes and shapes.

Each figure has its own small function (``_arena``, ``_ram``, ``_flash``, ``_operators``,
``_dtypes_and_shapes``); they add what they find to one ``_Findings`` in a fixed order, and
``results.verdict`` sums it up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgeflow.devices.profiles import Device, get_device, load_devices, op_list
from edgeflow.devices.results import DeviceResult, Report, verdict
from edgeflow.errors import EdgeflowError
from edgeflow.report import arena_name, format_bytes

__all__ = ["check"]


def check(model, devices="all", *, devices_dir=None, measure: bool = True, firmware: bool = False,
          firmware_timeout: float | None = None) -> Report:
    """Check whether a ``.tflite`` model fits each device: RAM, flash, operators, dtypes.

    RAM needed = tensor arena + runtime share + application share (+ the model on Linux
    boards, where LiteRT holds it in RAM). Flash needed = model bytes + runtime code +
    application code. On TFLM boards the arena is the smallest one with which tflite-micro
    runs the model, measured once in a child process on this 64-bit host (``pointer_bytes``
    8); the static 32-bit estimate is given in the notes. Where TFLM aborts for the known
    softmax-scale cause (``tflm.known_aborts``) the abort is a problem and the arena is
    measured on a copy with the scale raised; where TFLM cannot run the model otherwise, or
    ``measure`` is False, the arena is the static estimate for the device's pointer width.

    Args:
        model: ``.tflite`` bytes or a path to a ``.tflite`` file.
        devices: ``"all"``, a name, a profile path, a ``Device``, or a list of these.
        devices_dir: extra profiles (a YAML file or directory), see ``load_devices``.
        measure: measure the arena with tflite-micro (a child process; a few seconds) and
            compare TFLM's outputs with LiteRT's builtin kernels on a few fixed inputs: a difference beyond
            one quantization step of the output is a problem.
        firmware: with ``measure``, build each TFLM board's firmware and run it under QEMU
            (:mod:`edgeflow.firmware`; needs arm-none-eabi-gcc, qemu-system-arm and the TFLM
            sources, else a note says the figures stay estimates): flash = the linked image
            + the application share of the profile, RAM = its data + bss with the arena from
            the emulated run + the application share. ``figures`` of each result names
            every figure's source; a built board's also hold its ``core``, ``instructions``,
            ``latency_ms`` (estimate) and the breakdown of its image: ``operators``,
            ``flash_split`` and ``arena_split`` (``FirmwareResult.figures``).
        firmware_timeout: seconds (wall clock) each emulated firmware run may take before
            QEMU is killed (the board's problem is then "timed out after N s"); None:
            :data:`edgeflow.firmware.emulator.TIMEOUT` (300 s).

    Returns:
        A ``Report``; ``report.fits`` and ``report.exit_code`` sum it up. Nothing is written.

    Raises:
        EdgeflowError: the model is not a readable ``.tflite``, a device is unknown, or
            ``firmware_timeout`` is not a number > 0.

    Example:
        >>> report = check("model.tflite", ["arduino-nano-33-ble", "raspberry-pi-4"])
        >>> report["arduino-nano-33-ble"].ram_source
        'measured'
    """
    from edgeflow import tflite

    if firmware_timeout is not None:
        from edgeflow.ranges import check as check_range

        check_range("emulation_seconds", firmware_timeout, "firmware_timeout")
    source, label = _read_model(model)
    data, info = tflite.load(source)  # one read and one walk; errors name the file
    targets = _resolve_devices(devices, devices_dir)
    facts = _facts(info, data, label)
    plan = tflite.plan_memory(info)
    estimates = {pb: tflite.estimate_arena(info, pointer_bytes=pb, plan=plan).total_bytes for pb in (4, 8)}
    estimates["plan"] = plan.peak_bytes
    measurement = None
    if measure and any(d.runtime == "tflm" for d in targets):
        measurement = _measure(data)
    portable = tflite.litert_twin(data)  # a TFLM-only file (slim tflm_only) as LiteRT loads it
    loads = _litert_probe(portable, estimates["plan"])
    agreement = _agreement(data, portable, info) if measure and loads.ok and measurement and measurement["status"] == "ok" \
        and any(d.runtime == "tflm" for d in targets) else None
    built = _firmware(data, info, targets, firmware_timeout) if firmware and measure else {}
    results = [
        _check_device(d, facts, estimates, measurement, loads, devices_dir, built.get(d.name), agreement)
        for d in targets
    ]
    return Report(model=facts["summary"], results=results, measurement=measurement)


# --------------------------------------------------------------------------- inputs


def _read_model(model) -> tuple[bytes | Path, str]:
    """(.tflite bytes or a checked path, a display name). Anything else is a clear error."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "<bytes>"
    if isinstance(model, (str, os.PathLike)):
        path = Path(model).expanduser()
        if not path.exists():
            raise EdgeflowError(f"model file {path} does not exist")
        if path.is_dir():
            raise EdgeflowError(
                f"{path} is a directory; check needs a .tflite file "
                "(convert a Keras model first: edgeflow export MODEL -o model.tflite)"
            )
        if path.suffix.lower() in (".keras", ".h5", ".hdf5", ".pb"):
            raise EdgeflowError(
                f"{path} is a Keras/TensorFlow model; check needs a .tflite file: convert it "
                f"first (edgeflow export {path} -o model.tflite)"
            )
        return path, str(path)
    raise EdgeflowError(
        f"check needs .tflite bytes or a .tflite path, not {type(model).__name__}; "
        "convert a Keras model first with edgeflow.convert(model, 'int8', data)"
    )


def _resolve_devices(devices, devices_dir) -> list[Device]:
    if devices is None or (isinstance(devices, str) and devices == "all"):
        return list(load_devices(devices_dir).values())
    if isinstance(devices, (str, os.PathLike, Device)):
        devices = [devices]
    resolved: list[Device] = []
    for item in devices:
        if isinstance(item, str) and item == "all":
            resolved.extend(load_devices(devices_dir).values())
        else:
            resolved.append(get_device(item, devices_dir))
    if not resolved:
        raise EdgeflowError("no device to check against; name one, or 'all'")
    unique = {d.name: d for d in resolved}
    return list(unique.values())


def _measure(data: bytes) -> dict:
    """Run tflite-micro once (child process) and return its finding as a dict."""
    from edgeflow.runtime.tflm import known_aborts, measure_arena, raise_softmax_scale

    m = measure_arena(data)
    result = {
        "status": m.status,
        "arena_bytes": m.arena_bytes,
        "pointer_bytes": m.pointer_bytes,
        "message": m.message or "",
        "breakdown": m.breakdown,
        "copy_arena_bytes": None,
    }
    if m.status == "aborted" and known_aborts(data):
        # The known softmax-scale abort: the arena does not depend on a scale, so measure a
        # copy whose softmax TFLM accepts. The model itself still aborts (a problem).
        copy = measure_arena(raise_softmax_scale(data))
        if copy.ok:
            result["copy_arena_bytes"] = copy.arena_bytes
    return result


# Above this planned activation memory LiteRT is not run: no board has the RAM (the RAM
# figure fails), and allocating and running such a model would take minutes.
_PROBE_MAX_BYTES = 1 << 30


def _litert_probe(data: bytes, plan_bytes: int):
    """LiteRT loads, allocates and runs the model once (a child process unless edgeflow made
    it, at most 30 s): its verifier and kernels are the reference for a well-formed file."""
    from edgeflow.runtime.litert import Probe, probe

    if plan_bytes > _PROBE_MAX_BYTES:
        return Probe("not run", f"LiteRT was not run: the model plans {format_bytes(plan_bytes)} of "
                                "activations, more than any board has")
    return probe(data, timeout=30)


def _agreement(data: bytes, portable: bytes, info, samples: int = 4) -> dict | None:
    """Host TFLM vs LiteRT's builtin (reference) kernels, without XNNPACK, whose int8 rounding
    differs by a step or two, on ``samples`` fixed inputs (the firmware's default inputs, as floats):
    ``portable`` is ``data`` as LiteRT loads it (``tflite.litert_twin``). Returns
    the largest output difference in quantization steps of the output (one int8 step of the
    output's range when the output is float), and the top-1 agreement for 2-D outputs."""
    import numpy as np

    from edgeflow.firmware import default_inputs
    from edgeflow.runtime import litert, tflm
    from edgeflow.runtime._quant import dequantize

    if len(info.inputs) != 1 or len(info.outputs) != 1:
        return None
    t = info.inputs[0]
    raw = np.frombuffer(default_inputs(info, samples), np.dtype(t.dtype)).reshape((samples, *t.shape[1:]))
    details = {"dtype": t.dtype, "quantization": (t.scale[0] if t.scale else 0.0, t.zero_point[0] if t.zero_point else 0)}
    x = dequantize(raw, details) if np.dtype(t.dtype).kind in "iu" else raw
    try:
        ref = np.asarray(litert.predict(portable, x, delegates=False), np.float64)
        got = np.asarray(tflm.predict(data, x), np.float64)
    except EdgeflowError as err:
        return {"error": str(err).splitlines()[0]}
    out = info.outputs[0]
    span = float(np.ptp(ref)) or 1.0
    step = out.scale[0] if out.scale and out.scale[0] > 0 else span / 255
    diff = float(np.abs(ref - got).max())
    result = {"samples": samples, "max_abs_diff": diff, "steps": diff / step, "step": step, "span": span}
    if ref.ndim == 2 and ref.shape[1] > 1:
        result["top1_agreement"] = float((ref.argmax(1) == got.argmax(1)).mean())
    return result


def _firmware(data: bytes, info, devices: list[Device], timeout: float | None) -> dict:
    """Firmware built and emulated once per core: ``{device name: FirmwareResult | note str}``."""
    from edgeflow import firmware
    from edgeflow.firmware import targets as _targets

    out: dict = {}
    by_target: dict = {}
    for d in devices:
        if d.runtime != "tflm":
            continue
        if d.firmware is None or d.firmware.cpu is None:
            why = d.firmware.note if d.firmware is not None and d.firmware.note else "no firmware core in its profile"
            out[d.name] = f"flash and RAM are profile estimates: no firmware build ({why})"
            continue
        by_target.setdefault(_targets.for_profile(d.firmware), []).append(d)
    if by_target and not firmware.available():
        for ds in by_target.values():
            for d in ds:
                out[d.name] = ("flash and RAM are profile estimates: arm-none-eabi-gcc or qemu-system-arm "
                               "is not installed, so no firmware was built")
        return out
    from edgeflow._progress import bar

    with bar(total=len(by_target), desc="firmware", unit="core") as progress:
        for target, ds in by_target.items():
            progress.set_postfix_str(f"{target.cpu}: build, run under QEMU")
            try:
                built = firmware.build_for(data, info, target, timeout=timeout)
            except EdgeflowError as err:
                for d in ds:
                    out[d.name] = f"flash and RAM are profile estimates: the firmware build failed ({err})"
                continue
            finally:
                progress.update()
            for d in ds:
                out[d.name] = firmware.for_device(built, d)
    return out


def _facts(info, data: bytes, label: str) -> dict:
    """What the check needs from a parsed model (``edgeflow.tflite.ModelInfo``), as plain values."""
    graph_outputs = {t.index for t in info.outputs}
    ops = [
        {"op": op.name, "version": op.version, "dtype": op.dtype,
         "at_output": op.subgraph == 0 and bool(set(op.outputs) & graph_outputs)}
        for op in (*info.ops, *info.subgraph_ops)  # a WHILE body's operators need kernels too
    ]
    float_ops = [{"op": op.name, "version": op.version, "dtype": op.dtype}
                 for op in info.float_ops()]
    # A free dimension (-1 in the signature) other than the batch makes shapes dynamic.
    dynamic = [t.name for t in info.tensors
               if any(d < 0 for d in t.shape) or any(d < 0 for d in t.shape_signature[1:])]
    summary = {
        "path": label,
        "size_bytes": info.size_bytes or len(data),
        "weights_bytes": info.weights_bytes,
        "ops": len(info.ops),
        "float_ops": len(float_ops),
        "op_types": sorted({o["op"] for o in ops}),
    }
    return {"ops": ops, "float_ops": float_ops, "dynamic": dynamic, "summary": summary}


# --------------------------------------------------------------------------- one device


@dataclass
class _Findings:
    """What the checks of one device found, in the order they ran."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Arena:
    bytes: int
    source: str  # "measured" | "estimated" | "firmware"
    pointer_bytes: int


@dataclass
class _Budget:
    """A required vs available figure (RAM or flash) and whether it is met."""

    required: int | None
    available: int | None
    ok: bool = True


def _check_device(device: Device, facts: dict, estimates: dict, measurement, loads, devices_dir,
                  fw=None, agreement=None) -> DeviceResult:
    found = _Findings()
    _litert(device, loads, measurement, found)
    _agrees(device, agreement, found)
    emulated = fw is not None and not isinstance(fw, str) and fw.emulated
    if isinstance(fw, str):
        found.notes.append(fw)
    elif fw is not None:
        found.problems.extend(fw.problems)
    if emulated:
        arena = _Arena(fw.arena_used, "firmware", 4)
        found.notes.append(f"{arena_name('firmware', 4)} {format_bytes(arena.bytes)} from the emulated run on "
                           f"{fw.target.cpu}" + (f"; {arena_name('measured', measurement['pointer_bytes'])} "
                                                  f"{format_bytes(measurement['arena_bytes'])}"
                                                  if measurement and measurement.get("arena_bytes") else ""))
        ram = _ram(device, arena.bytes, facts["summary"]["size_bytes"], found, image=fw.firmware.static_ram)
        flash = _flash(device, facts["summary"]["size_bytes"], found, image=fw.firmware.flash)
    else:
        arena = _arena(device, facts, estimates, measurement, devices_dir, found)
        ram = _ram(device, arena.bytes, facts["summary"]["size_bytes"], found)
        flash = _flash(device, facts["summary"]["size_bytes"], found)
    figures = _figures(device, arena, ram, flash, fw if emulated else None)
    unsupported = _unsupported(device, facts, devices_dir, found.notes)
    _dtypes_and_shapes(device, facts, found)

    fits = ram.ok and flash.ok and not unsupported and not found.problems
    return DeviceResult(
        device=device.name,
        runtime=device.runtime,
        fits=fits,
        arena_bytes=int(arena.bytes),
        ram_required_bytes=ram.required,
        ram_available_bytes=ram.available,
        ram_source=arena.source,
        pointer_bytes=int(arena.pointer_bytes),
        flash_required_bytes=flash.required,
        flash_available_bytes=flash.available,
        unsupported_ops=unsupported,
        problems=found.problems,
        notes=found.notes,
        verdict=verdict(fits, ram.ok, flash.ok, unsupported, found.problems, ram.required,
                        ram.available),
        figures=figures,
    )


def _agrees(device: Device, agreement, found: _Findings) -> None:
    """TFLM boards: host TFLM must compute what LiteRT computes (within one quantization step)."""
    if device.runtime != "tflm" or not agreement:
        return
    if "error" in agreement:
        found.notes.append(f"TFLM's outputs were not compared with LiteRT's: {agreement['error']}")
        return
    top1 = agreement.get("top1_agreement")
    where = (f"max |TFLM - LiteRT| = {agreement['max_abs_diff']:.4g} = {agreement['steps']:.1f} quantization "
             f"steps of the output (outputs span {agreement['span']:.3g}) on {agreement['samples']} fixed inputs"
             + (f", top-1 agrees on {100 * top1:.0f}%" if top1 is not None else ""))
    if agreement["steps"] > 1.0 + 1e-6:
        found.problems.append(f"TFLM computes something else than LiteRT for this model: {where}; "
                              "the firmware runs TFLM's kernels, so it would answer wrongly")
    else:
        found.notes.append(f"TFLM agrees with LiteRT: {where}")


def _figures(device: Device, arena: _Arena, ram: _Budget, flash: _Budget, fw) -> dict:
    """Each figure of a result with its source: linked image, emulated run, host or profile."""
    app = device.overhead.application
    app_src = "profile " + ("estimate" if app.estimate else "figure")
    if fw is not None:
        out = {
            "flash_required_bytes": {"value": flash.required, "source": f"linked image (text + rodata + data "
                                     f"{fw.firmware.flash:,} B) + application share ({app_src})"},
            "ram_required_bytes": {"value": ram.required, "source": f"linked image (data + bss "
                                   f"{fw.firmware.static_ram:,} B, arena from the emulated run; stack not "
                                   f"counted) + application share ({app_src})"},
            "arena_bytes": {"value": arena.bytes, "source": f"emulated run on {fw.target.cpu} (QEMU)"},
            "core": {"value": fw.target.cpu, "source": f"board profile (firmware.cpu), run on qemu-system-arm -M "
                                                       f"{fw.target.machine}"},
        }
        for name, figure in fw.figures().items():
            if name in ("instructions", "latency_ms", "flash_split", "arena_split", "operators"):
                out[name] = figure
        return out
    kind = {"measured": "host TFLM (tflite-micro Python interpreter, 64-bit)",
            "estimated": "estimate (static memory plan)"}.get(arena.source, arena.source)
    if device.runtime != "tflm":
        kind = "estimate (activation plan peak)"
    return {
        "flash_required_bytes": {"value": flash.required, "source": "model + runtime and application shares "
                                 "(profile estimates)"},
        "ram_required_bytes": {"value": ram.required, "source": f"arena ({kind}) + runtime and application "
                               "shares (profile estimates)"},
        "arena_bytes": {"value": arena.bytes, "source": kind},
    }


def _litert(device: Device, loads, measurement, found: _Findings) -> None:
    """A model LiteRT refuses or crashes on fits no LiteRT board, nor a TFLM board unless
    tflite-micro itself ran it (TFLM has kernels LiteRT lacks, e.g. DECODE); one it was not
    run on (over 1 GiB of activations) fits no board."""
    if loads.ok:
        return
    if loads.status == "not run":  # a problem also where RAM is the host's and not checked
        found.problems.append(loads.message)
        return
    line = loads.message  # "LiteRT cannot load the model: ...", "LiteRT crashed on ..."
    if device.runtime == "tflm" and measurement and measurement["status"] == "ok":
        found.notes.append(f"{line}; tflite-micro runs it")
    else:
        found.problems.append(f"{line}; a file LiteRT cannot run is damaged or not a model "
                              "for this board: reconvert it")


def _arena(device: Device, facts: dict, estimates: dict, measurement, devices_dir,
           found: _Findings) -> _Arena:
    """The tensor arena: measured on TFLM boards when tflite-micro ran the model, else estimated."""
    if device.runtime == "tflm" and measurement and measurement["status"] == "ok":
        pointer = measurement["pointer_bytes"]
        arena = _Arena(measurement["arena_bytes"], "measured", pointer)
        found.notes.append(
            f"{arena_name('measured', pointer)} {format_bytes(arena.bytes)} is the one reported; "
            f"the board's {device.pointer_bytes * 8}-bit pointers make its bookkeeping smaller "
            f"({arena_name('estimated', 4)} {format_bytes(estimates[4])})"
        )
        return arena

    bits = device.pointer_bytes * 8
    static = estimates[device.pointer_bytes] if device.runtime == "tflm" else estimates["plan"]
    arena = _Arena(static, "estimated", device.pointer_bytes)
    if device.runtime != "tflm":
        found.notes.append(
            f"RAM is estimated: the {device.runtime} arena is taken as the {arena_name('plan')} "
            "(greedy by size, like LiteRT's arena planner), plus the model, which the runtime "
            "holds in RAM"
        )
    elif not measurement:
        found.notes.append("not measured (measure=False); RAM is the static estimate")
    elif measurement["status"] == "timeout":
        found.notes.append(
            f"tflite-micro did not finish within the time limit; RAM is the static estimate ({bits}-bit)"
        )
    elif measurement["status"] == "failed" and _unsupported(device, facts, devices_dir):
        found.notes.append(
            "tflite-micro refused the model (an op it lacks, listed under unsupported_ops); "
            f"RAM is the static {bits}-bit estimate"
        )
    else:
        status, message = measurement["status"], measurement["message"]
        what = "aborted (the process crashed)" if status == "aborted" else "failed"
        copy_arena = measurement.get("copy_arena_bytes")
        if copy_arena is not None:
            arena = _Arena(copy_arena, "measured", measurement["pointer_bytes"])
            ram = (f"RAM is measured on a copy with the softmax input scale raised "
                   f"({format_bytes(copy_arena)} arena; the arena does not depend on a scale)")
        else:
            ram = f"RAM is the static {bits}-bit estimate"
        found.problems.append(
            f"TFLM {what} on this model{': ' + message if message else ''}; "
            f"the firmware runs the same kernels, so expect the same; {ram}"
        )
    return arena


def _ram(device: Device, arena: int, model_bytes: int, found: _Findings, image: int | None = None) -> _Budget:
    """RAM needed (arena + runtime and application share, + the model on Linux) vs available;
    with a linked firmware ``image`` (its data + bss, the arena included): image + application share."""
    ov = device.overhead
    overhead = ov.runtime.ram_bytes + ov.application.ram_bytes
    on_linux = device.runtime in ("litert", "edgetpu")
    required = arena + overhead + (model_bytes if on_linux else 0)
    if image is not None:
        overhead = image - arena + ov.application.ram_bytes
        required = image + ov.application.ram_bytes
    if device.ram_bytes is None:
        found.notes.append("RAM is the host's, not part of this profile: check the host too")
        return _Budget(None, None)
    arena_max = device.arena_max_bytes or device.ram_bytes
    if required <= device.ram_bytes and arena <= arena_max:
        return _Budget(required, device.ram_bytes)
    ext = device.external_ram
    if ext is not None and ext.arena and arena <= ext.bytes and overhead <= device.ram_bytes:
        found.notes.append(
            f"the arena ({format_bytes(arena)}) does not fit on-chip RAM; it fits the "
            f"{ext.kind} ({format_bytes(ext.bytes)}), which is slower"
        )
        return _Budget(required, device.ram_bytes + ext.bytes)
    if required > device.ram_bytes:
        found.problems.append(
            f"RAM: needs {format_bytes(required)} (arena {format_bytes(arena)} + runtime and "
            f"application {format_bytes(overhead)}"
            + (f" + model {format_bytes(model_bytes)}" if on_linux else "")
            + f"), {format_bytes(device.ram_bytes)} available"
        )
    else:
        found.problems.append(
            f"RAM: the arena ({format_bytes(arena)}) is larger than the largest contiguous "
            f"RAM block ({format_bytes(arena_max)})"
        )
    return _Budget(required, device.ram_bytes, ok=False)


def _flash(device: Device, model_bytes: int, found: _Findings, image: int | None = None) -> _Budget:
    """Flash needed (model + runtime code + application code) vs available; with a linked
    firmware ``image`` (text + rodata + data, the model included): image + application code."""
    ov = device.overhead
    overhead = ov.runtime.flash_bytes + ov.application.flash_bytes
    required = model_bytes + overhead
    if image is not None:
        overhead = image - model_bytes + ov.application.flash_bytes
        required = image + ov.application.flash_bytes
    if device.flash_bytes is None:
        found.notes.append("storage is not checked for this board (microSD/NVMe or the host's)")
        return _Budget(None, None)
    if required <= device.flash_bytes:
        return _Budget(required, device.flash_bytes)
    ext = device.external_flash
    if ext is not None and ext.model and model_bytes <= ext.bytes and overhead <= device.flash_bytes:
        found.notes.append(
            f"the model ({format_bytes(model_bytes)}) does not fit internal flash with the code; "
            f"it fits the {ext.kind} ({format_bytes(ext.bytes)})"
        )
        return _Budget(required, device.flash_bytes + ext.bytes)
    found.problems.append(
        f"flash: needs {format_bytes(required)} (model {format_bytes(model_bytes)} + code "
        f"{format_bytes(overhead)}), {format_bytes(device.flash_bytes)} available"
    )
    return _Budget(required, device.flash_bytes, ok=False)


def _unsupported(device: Device, facts: dict, devices_dir, notes: list[str] | None = None) -> list[dict]:
    """Every distinct (op, version) the device's runtime lacks, with the reason.

    On the Edge TPU a DEQUANTIZE that writes a model output (float32 model output) is not a
    failure: the compiler leaves that last op to the CPU; it goes to ``notes`` instead.
    """
    oplist = op_list(device, devices_dir)
    runtime_name = {
        "tflm": "TFLM's op resolver (kernels in tflite-micro)",
        "litert": "LiteRT's builtin op resolver",
        "edgetpu": "the Edge TPU compiler's supported-operations table",
    }[device.runtime]
    missing: dict[tuple[str, int], dict] = {}
    for op in facts["ops"]:
        name, version = op["op"], op["version"]
        entry = oplist.entries.get(name)
        if entry is None and device.runtime == "edgetpu" and name == "DEQUANTIZE" and op["at_output"]:
            if notes is not None and not any("DEQUANTIZE" in n for n in notes):
                notes.append("the final DEQUANTIZE (float32 output) runs on the CPU after the Edge TPU")
            continue
        if entry is None:
            reason = f"not in {runtime_name}"
            if device.runtime == "edgetpu":
                reason += "; it and every op after it run on the CPU"
        elif oplist.version_checked and entry.max_version and version > entry.max_version:
            reason = f"version {version} > {entry.max_version}, the newest {runtime_name} has"
        else:
            continue
        missing.setdefault((name, version), {"op": name, "version": version, "reason": reason})
    return list(missing.values())


def _dtypes_and_shapes(device: Device, facts: dict, found: _Findings) -> None:
    """Float ops on an integer-only board, dynamic shapes, and the Edge TPU's own limits."""
    float_ops = facts["float_ops"]
    if float_ops and "float32" not in device.dtypes:
        names = sorted({o["op"] for o in float_ops})
        found.problems.append(
            f"{len(float_ops)} op(s) compute in float32 ({', '.join(names)}); "
            f"{device.display_name} needs a full-integer model: convert with mode 'int8'"
        )
    elif float_ops and device.runtime == "tflm":
        found.notes.append(
            f"{len(float_ops)} op(s) compute in float32: they use TFLM's reference kernels "
            f"(no {device.kernels} speed-up)"
            + ("; this core has no FPU, so float is emulated in software" if "no FPU" in device.core else "")
        )
    dynamic = facts["dynamic"]
    if device.runtime == "edgetpu":
        if dynamic:
            found.problems.append(
                f"the Edge TPU needs static tensor shapes; {len(dynamic)} tensor(s) "
                f"have dynamic dimensions (e.g. {dynamic[0]})"
            )
        found.notes.append("compile the model with edgetpu_compiler before deploying")
        weights = facts["summary"]["weights_bytes"]
        if device.accelerator_memory_bytes and weights > device.accelerator_memory_bytes:
            found.notes.append(
                f"weights ({format_bytes(weights)}) exceed the Edge TPU's "
                f"{format_bytes(device.accelerator_memory_bytes)} parameter cache: they stream "
                "from host memory on every inference (slower)"
            )
    elif device.runtime == "tflm" and dynamic:
        found.problems.append(
            f"{len(dynamic)} tensor(s) have dynamic dimensions (e.g. {dynamic[0]}); TFLM cannot "
            "resize tensors and plans memory for the sizes stored in the file: convert with "
            "fixed input shapes (edgeflow export --input-shape, or data of the real length)"
        )
