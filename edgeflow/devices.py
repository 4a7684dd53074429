"""Device profiles (schema, loading) and ``check``: does a ``.tflite`` fit a named board?

Profiles are data: one YAML file per board in ``edgeflow/_data/devices/`` (the repository's
``devices/``), read through one strict schema. Operator lists live once in
``_ops.yaml`` beside them and profiles name them (``ops: tflm``). A user adds boards with
their own YAML file or directory (``--devices-dir``); a user profile with a shipped name
replaces the shipped one, and a user ``_ops.yaml`` adds operator lists.

``check`` gives, per device, RAM needed vs available (tensor arena + the runtime's and the
application's share), flash needed vs available (model + runtime code), every operator the
runtime lacks there, dtype problems and a verdict. On TFLM boards the arena is *measured*:
the smallest arena with which tflite-micro runs the model, found once per model in a child
process on this 64-bit host.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgeflow.errors import EdgeflowError, closest
from edgeflow.report import format_bytes

__all__ = [
    "Device",
    "DeviceResult",
    "OpList",
    "Report",
    "check",
    "get_device",
    "load_devices",
    "load_op_lists",
]

OPS_FILE = "_ops.yaml"
RUNTIMES = ("tflm", "litert", "edgetpu")


# --------------------------------------------------------------------------- schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """Where a figure comes from: a URL and what it backs."""

    url: str = Field(pattern=r"^https?://")
    backs: str


class OpEntry(_Strict):
    """One operator a runtime supports, with its limits where the vendor states some."""

    op: str
    max_version: int | None = Field(default=None, ge=1)
    limits: str | None = None
    min_runtime: str | None = None


class OpList(_Strict):
    """A named list of operators (``_ops.yaml``), shared by every profile that names it."""

    description: str
    version_checked: bool = True
    sources: list[Source] = Field(min_length=1)
    ops: list[str | OpEntry] = Field(min_length=1)

    @functools.cached_property
    def entries(self) -> dict[str, OpEntry]:
        """The operators by name (``ADD`` → ``OpEntry(op="ADD")``)."""
        return {
            (e if isinstance(e, str) else e.op): (OpEntry(op=e) if isinstance(e, str) else e)
            for e in self.ops
        }


class Footprint(_Strict):
    """RAM and flash a part of the firmware takes outside the tensor arena and the model."""

    ram_bytes: int = Field(ge=0)
    flash_bytes: int = Field(ge=0)
    estimate: bool
    basis: str


class Overhead(_Strict):
    """What the runtime (interpreter, kernels) and the application (OS, board core) take."""

    runtime: Footprint
    application: Footprint


class ExternalRam(_Strict):
    """Board RAM outside the SoC (SDRAM, PSRAM); ``arena`` says whether TFLM can use it."""

    kind: str
    bytes: int = Field(gt=0)
    arena: bool
    note: str | None = None


class ExternalFlash(_Strict):
    """Board flash outside the SoC; ``model`` says whether the weights can live there."""

    kind: str
    bytes: int = Field(gt=0)
    model: bool
    note: str | None = None


class Device(_Strict):
    """A real board: memory, runtime, supported operators, and where each figure comes from.

    Example:
        >>> dev = get_device("arduino-nano-33-ble")
        >>> dev.ram_bytes, dev.runtime
        (262144, 'tflm')
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    display_name: str
    soc: str
    core: str
    clock_mhz: float | None = Field(gt=0)
    ram_bytes: int | None = Field(gt=0, description="on-chip (MCU) or system RAM; None: the host's")
    arena_max_bytes: int | None = Field(
        default=None, gt=0, description="largest contiguous block for the arena (default ram_bytes)"
    )
    flash_bytes: int | None = Field(gt=0, description="what firmware may use; None: not checked")
    external_ram: ExternalRam | None = None
    external_flash: ExternalFlash | None = None
    accelerator_memory_bytes: int | None = Field(default=None, gt=0)
    runtime: Literal["tflm", "litert", "edgetpu"]
    kernels: str
    accelerator: str
    pointer_bytes: Literal[4, 8]
    dtypes: list[str] = Field(min_length=1)
    ops: str | list[str | OpEntry]
    overhead: Overhead
    notes: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(min_length=1)
    path: str | None = Field(default=None, exclude=True, description="the file it was read from")

    @field_validator("dtypes")
    @classmethod
    def _known_dtypes(cls, value: list[str]) -> list[str]:
        known = {"int4", "int8", "uint8", "int16", "int32", "int64", "float16", "float32", "bool"}
        for dtype in value:
            if dtype not in known:
                raise ValueError(f"unknown dtype {dtype!r}{closest(dtype, known)}")
        return value


# --------------------------------------------------------------------------- loading


def _shipped_dir() -> Path:
    return Path(str(resources.files("edgeflow") / "_data" / "devices"))


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise EdgeflowError(f"cannot read device file {path}: {err.strerror or err}") from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise EdgeflowError(f"{path}:{where}: invalid YAML: {problem}") from err


def _validation_error(path: Path, err: ValidationError) -> EdgeflowError:
    errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key" + closest(str(first["loc"][-1]), _known_keys(first["loc"]))
    elif first["type"] == "missing":
        msg = "required key is missing"
    more = len(errors) - 1
    extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return EdgeflowError(f"{path}: key '{key}': {msg}{extra}")


def _known_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = Device
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        annotation = model.model_fields.get(str(part))
        sub = getattr(annotation, "annotation", None) if annotation else None
        candidates = [a for a in getattr(sub, "__args__", (sub,)) if isinstance(a, type)]
        nested = [a for a in candidates if issubclass(a, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def _load_op_file(path: Path) -> dict[str, OpList]:
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise EdgeflowError(f"{path}: expected a mapping of operator-list names to lists")
    lists = {}
    for name, body in raw.items():
        try:
            lists[str(name)] = OpList.model_validate(body)
        except ValidationError as err:
            raise _validation_error(path, _prefixed(err, name)) from err
    return lists


def _prefixed(err: ValidationError, prefix) -> ValidationError:
    """The same error with ``prefix`` in front of every location (op-list name)."""
    errors = [{**e, "loc": (prefix, *e["loc"])} for e in err.errors()]
    for e in errors:
        e.pop("url", None)
        if e.get("ctx"):
            e["ctx"] = {k: str(v) for k, v in e["ctx"].items()}
    return ValidationError.from_exception_data(err.title, errors)


def _load_device_file(path: Path) -> Device:
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise EdgeflowError(f"{path}: a device profile must be a YAML mapping of keys to values")
    try:
        device = Device.model_validate(raw)
    except ValidationError as err:
        raise _validation_error(path, err) from err
    return device.model_copy(update={"path": str(path)})


def _profile_files(where: Path) -> tuple[list[Path], list[Path]]:
    """(device files, op-list files) in a file or directory."""
    if where.is_dir():
        files = sorted(p for p in where.iterdir() if p.suffix in (".yaml", ".yml"))
    elif where.is_file():
        files = [where]
        sibling = where.with_name(OPS_FILE)
        if sibling.is_file() and sibling != where:
            files.append(sibling)
    else:
        raise EdgeflowError(f"device profile path {where} does not exist")
    ops = [p for p in files if p.name.startswith("_")]
    return [p for p in files if not p.name.startswith("_")], ops


def _load(extra: tuple[str, ...]) -> tuple[dict[str, Device], dict[str, OpList]]:
    """Profiles and op lists, cached until a file under the given paths changes."""
    stamp = []
    for where in extra:
        path = Path(where)
        files = path.iterdir() if path.is_dir() else [path]
        stamp += [(str(f), f.stat().st_mtime_ns) for f in files if f.exists()]
    return _load_cached(extra, tuple(sorted(stamp)))


@functools.lru_cache(maxsize=16)
def _load_cached(extra: tuple[str, ...], _stamp: tuple) -> tuple[dict[str, Device], dict[str, OpList]]:
    devices: dict[str, Device] = {}
    op_lists: dict[str, OpList] = {}
    for where in (str(_shipped_dir()), *extra):
        files, op_files = _profile_files(Path(where))
        for path in op_files:
            op_lists.update(_load_op_file(path))
        for path in files:
            device = _load_device_file(path)
            devices[device.name] = device
    for device in devices.values():
        if isinstance(device.ops, str) and device.ops not in op_lists:
            raise EdgeflowError(
                f"{device.path}: key 'ops': unknown operator list {device.ops!r}"
                f"{closest(device.ops, op_lists)}; known lists: {', '.join(sorted(op_lists))}"
            )
    return devices, op_lists


def _extra_paths(extra) -> tuple[str, ...]:
    if extra is None:
        return ()
    if isinstance(extra, (str, os.PathLike)):
        extra = [extra]
    return tuple(str(Path(p).expanduser().resolve()) for p in extra)


def load_devices(extra=None) -> dict[str, Device]:
    """All device profiles: the shipped ones plus a user's YAML file(s) or directory.

    Args:
        extra: a profile file, a directory of them (files starting with ``_`` hold operator
            lists), or a list of such paths. A user profile with a shipped name replaces it.

    Returns:
        ``{name: Device}`` in name order.

    Raises:
        EdgeflowError: a file is missing, not YAML, or breaks the schema (the message names
            the file and the key).

    Example:
        >>> sorted(load_devices())[:2]
        ['arduino-nano-33-ble', 'arduino-portenta-h7']
    """
    devices, _ = _load(_extra_paths(extra))
    return dict(sorted(devices.items()))


def load_op_lists(extra=None) -> dict[str, OpList]:
    """The operator lists (``_ops.yaml``), shipped plus the user's, by name."""
    return dict(_load(_extra_paths(extra))[1])


def get_device(name_or_path, devices_dir=None) -> Device:
    """One device profile by name, or from a YAML file path.

    Args:
        name_or_path: a profile name (``"nucleo-h743zi"``), a ``.yaml`` path, or a ``Device``.
        devices_dir: extra profiles to search (see ``load_devices``).

    Raises:
        EdgeflowError: unknown name (with the closest known name) or an invalid file.

    Example:
        >>> get_device("raspberry-pi-pico").soc
        'Raspberry Pi RP2040'
    """
    if isinstance(name_or_path, Device):
        return name_or_path
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise EdgeflowError(f"device profile file {path} does not exist")
        extras = _extra_paths(devices_dir) + (str(path.resolve()),)
        device = _load_device_file(path.resolve())
        return _load(extras)[0][device.name]
    devices = load_devices(devices_dir)
    if text not in devices:
        hint = closest(text, devices)
        partial = [name for name in devices if text.lower() in name]
        if not hint and partial:
            hint = " (did you mean " + " or ".join(repr(n) for n in partial[:3]) + "?)"
        raise EdgeflowError(
            f"unknown device {text!r}{hint}; known devices: "
            + ", ".join(devices)
            + " (or give a profile .yaml, or --devices-dir)"
        )
    return devices[text]


def op_list(device: Device, devices_dir=None) -> OpList:
    """The operator list a device names (or carries inline)."""
    if not isinstance(device.ops, str):
        return OpList(
            description=f"inline list of {device.name}",
            sources=device.sources,
            ops=device.ops,
        )
    extra = _extra_paths(devices_dir)
    if device.path and not device.path.startswith(str(_shipped_dir())):
        extra = extra + (device.path,)
    return _load(extra)[1][device.ops]


# --------------------------------------------------------------------------- the check


@dataclass
class DeviceResult:
    """The verdict for one device, with the figures behind it.

    ``arena_bytes`` is the tensor arena alone; ``ram_required_bytes`` adds the runtime's and
    the application's share (and, on Linux boards, the model itself, which LiteRT loads into
    RAM). ``ram_source`` says whether the arena was measured by the runtime or estimated from
    the static memory plan, and ``pointer_bytes`` which pointer width it is for.
    """

    device: str
    runtime: str
    fits: bool
    arena_bytes: int
    ram_required_bytes: int | None
    ram_available_bytes: int | None
    ram_source: Literal["measured", "estimated"]
    pointer_bytes: int
    flash_required_bytes: int | None
    flash_available_bytes: int | None
    unsupported_ops: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdict: str = ""

    def to_dict(self) -> dict:
        """A JSON-ready dict (the keys of ``edgeflow check --json``)."""
        return {
            "device": self.device,
            "runtime": self.runtime,
            "fits": self.fits,
            "arena_bytes": self.arena_bytes,
            "ram_required_bytes": self.ram_required_bytes,
            "ram_available_bytes": self.ram_available_bytes,
            "ram_source": self.ram_source,
            "pointer_bytes": self.pointer_bytes,
            "flash_required_bytes": self.flash_required_bytes,
            "flash_available_bytes": self.flash_available_bytes,
            "unsupported_ops": [dict(op) for op in self.unsupported_ops],
            "problems": list(self.problems),
            "notes": list(self.notes),
            "verdict": self.verdict,
        }


@dataclass
class Report:
    """``check``'s answer: one ``DeviceResult`` per device, and the model facts used."""

    model: dict
    results: list[DeviceResult]
    measurement: dict | None = None

    @property
    def fits(self) -> bool:
        """True when the model fits every device checked."""
        return all(r.fits for r in self.results)

    @property
    def exit_code(self) -> int:
        """0 when it fits every device, 1 otherwise (the CLI's exit status)."""
        return 0 if self.fits else 1

    def __getitem__(self, name: str) -> DeviceResult:
        for result in self.results:
            if result.device == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict:
        """A JSON-ready dict: model facts, the TFLM measurement, and one entry per device."""
        return {
            "model": dict(self.model),
            "measurement": self.measurement,
            "fits": self.fits,
            "results": [r.to_dict() for r in self.results],
        }


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


def check(model, devices="all", *, devices_dir=None, measure: bool = True) -> Report:
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
        measure: measure the arena with tflite-micro (a child process; a few seconds).

    Returns:
        A ``Report``; ``report.fits`` and ``report.exit_code`` sum it up. Nothing is written.

    Raises:
        EdgeflowError: the model is not a readable ``.tflite``, or a device is unknown.

    Example:
        >>> report = check("model.tflite", ["arduino-nano-33-ble", "raspberry-pi-4"])
        >>> report["arduino-nano-33-ble"].ram_source
        'measured'
    """
    from edgeflow import tflite

    source, label = _read_model(model)
    data, info = tflite.load(source)  # one read and one walk; errors name the file
    targets = _resolve_devices(devices, devices_dir)
    facts = _facts(info, data, label)
    estimates = {pb: tflite.estimate_arena(info, pointer_bytes=pb).total_bytes for pb in (4, 8)}
    estimates["plan"] = tflite.plan_memory(info).peak_bytes
    measurement = None
    if measure and any(d.runtime == "tflm" for d in targets):
        measurement = _measure(data)
    results = [
        _check_device(d, facts, estimates, measurement, devices_dir) for d in targets
    ]
    return Report(model=facts["summary"], results=results, measurement=measurement)


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


def _facts(info, data: bytes, label: str) -> dict:
    """What the check needs from a parsed model (``edgeflow.tflite.ModelInfo``), as plain values."""
    graph_outputs = {t.index for t in info.outputs}
    ops = [
        {"op": op.name, "version": op.version, "dtype": op.dtype,
         "at_output": bool(set(op.outputs) & graph_outputs)}
        for op in info.ops
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
        "ops": len(ops),
        "float_ops": len(float_ops),
        "op_types": sorted({o["op"] for o in ops}),
    }
    return {"ops": ops, "float_ops": float_ops, "dynamic": dynamic, "summary": summary}


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


def _check_device(device: Device, facts: dict, estimates: dict, measurement, devices_dir):
    problems: list[str] = []
    notes: list[str] = []
    ov = device.overhead
    model_bytes = facts["summary"]["size_bytes"]

    # --- RAM: the arena, measured on TFLM boards when tflite-micro ran the model
    copy_arena = measurement.get("copy_arena_bytes") if measurement else None
    if device.runtime == "tflm" and measurement and measurement["status"] == "ok":
        arena, source, pointer = measurement["arena_bytes"], "measured", measurement["pointer_bytes"]
        est32 = estimates[4]
        notes.append(
            f"arena {format_bytes(arena)} measured by tflite-micro on this {pointer * 8}-bit host; "
            f"the board's {device.pointer_bytes * 8}-bit pointers make its bookkeeping smaller "
            f"(static 32-bit estimate {format_bytes(est32)}); the measured figure is the one reported"
        )
    else:
        source, pointer = "estimated", device.pointer_bytes
        arena = estimates[device.pointer_bytes] if device.runtime == "tflm" else estimates["plan"]
        if device.runtime == "tflm" and measurement:
            status, message = measurement["status"], measurement["message"]
            if status == "timeout":
                notes.append(
                    "tflite-micro did not finish within the time limit; RAM is the static "
                    f"estimate ({device.pointer_bytes * 8}-bit)"
                )
            elif status == "failed" and _unsupported(device, facts, devices_dir):
                notes.append(
                    "tflite-micro refused the model (an op it lacks, listed under "
                    f"unsupported_ops); RAM is the static {device.pointer_bytes * 8}-bit estimate"
                )
            else:
                what = "aborted (the process crashed)" if status == "aborted" else "failed"
                if copy_arena is not None:
                    arena, source, pointer = copy_arena, "measured", measurement["pointer_bytes"]
                    ram = (f"RAM is measured on a copy with the softmax input scale raised "
                           f"({format_bytes(arena)} arena; the arena does not depend on a scale)")
                else:
                    ram = f"RAM is the static {device.pointer_bytes * 8}-bit estimate"
                problems.append(
                    f"TFLM {what} on this model{': ' + message if message else ''}; "
                    f"the firmware runs the same kernels, so expect the same; {ram}"
                )
        elif device.runtime == "tflm":
            notes.append("not measured (measure=False); RAM is the static estimate")
        else:
            notes.append(
                f"RAM is estimated: the {device.runtime} arena is taken as the peak of the static "
                "memory plan (greedy by size, like LiteRT's arena planner), plus the model, which "
                "the runtime holds in RAM"
            )

    overhead_ram = ov.runtime.ram_bytes + ov.application.ram_bytes
    on_linux = device.runtime in ("litert", "edgetpu")
    ram_required = arena + overhead_ram + (model_bytes if on_linux else 0)
    ram_available = device.ram_bytes
    ext = device.external_ram
    ram_ok = True
    if device.ram_bytes is None:
        ram_required = None
        notes.append("RAM is the host's, not part of this profile: check the host too")
    else:
        arena_max = device.arena_max_bytes or device.ram_bytes
        on_chip = ram_required <= device.ram_bytes and arena <= arena_max
        if on_chip:
            pass
        elif ext is not None and ext.arena and arena <= ext.bytes and overhead_ram <= device.ram_bytes:
            ram_available = device.ram_bytes + ext.bytes
            notes.append(
                f"the arena ({format_bytes(arena)}) does not fit on-chip RAM; it fits the "
                f"{ext.kind} ({format_bytes(ext.bytes)}), which is slower"
            )
        else:
            ram_ok = False
            if ram_required > device.ram_bytes:
                problems.append(
                    f"RAM: needs {format_bytes(ram_required)} (arena {format_bytes(arena)} + runtime and "
                    f"application {format_bytes(overhead_ram)}"
                    + (f" + model {format_bytes(model_bytes)}" if on_linux else "")
                    + f"), {format_bytes(device.ram_bytes)} available"
                )
            else:
                problems.append(
                    f"RAM: the arena ({format_bytes(arena)}) is larger than the largest contiguous "
                    f"RAM block ({format_bytes(arena_max)})"
                )

    # --- flash: model + runtime code + application code
    overhead_flash = ov.runtime.flash_bytes + ov.application.flash_bytes
    flash_required = model_bytes + overhead_flash
    flash_available = device.flash_bytes
    flash_ok = True
    fext = device.external_flash
    if device.flash_bytes is None:
        flash_required = None
        notes.append("storage is not checked for this board (microSD/NVMe or the host's)")
    else:
        if flash_required <= device.flash_bytes:
            pass
        elif fext is not None and fext.model and model_bytes <= fext.bytes and overhead_flash <= device.flash_bytes:
            flash_available = device.flash_bytes + fext.bytes
            notes.append(
                f"the model ({format_bytes(model_bytes)}) does not fit internal flash with the code; "
                f"it fits the {fext.kind} ({format_bytes(fext.bytes)})"
            )
        else:
            flash_ok = False
            problems.append(
                f"flash: needs {format_bytes(flash_required)} (model {format_bytes(model_bytes)} + code "
                f"{format_bytes(overhead_flash)}), {format_bytes(device.flash_bytes)} available"
            )

    # --- operators and dtypes
    unsupported = _unsupported(device, facts, devices_dir, notes)
    float_ops = facts["float_ops"]
    if float_ops and "float32" not in device.dtypes:
        names = sorted({o["op"] for o in float_ops})
        problems.append(
            f"{len(float_ops)} op(s) compute in float32 ({', '.join(names)}); "
            f"{device.display_name} needs a full-integer model: convert with mode 'int8'"
        )
    elif float_ops and device.runtime == "tflm":
        notes.append(
            f"{len(float_ops)} op(s) compute in float32: they use TFLM's reference kernels "
            f"(no {device.kernels} speed-up)"
            + ("; this core has no FPU, so float is emulated in software" if "no FPU" in device.core else "")
        )
    if device.runtime == "edgetpu":
        if facts["dynamic"]:
            problems.append(
                f"the Edge TPU needs static tensor shapes; {len(facts['dynamic'])} tensor(s) "
                f"have dynamic dimensions (e.g. {facts['dynamic'][0]})"
            )
        notes.append("compile the model with edgetpu_compiler before deploying")
        weights = facts["summary"]["weights_bytes"]
        if device.accelerator_memory_bytes and weights > device.accelerator_memory_bytes:
            notes.append(
                f"weights ({format_bytes(weights)}) exceed the Edge TPU's {format_bytes(device.accelerator_memory_bytes)}"
                " parameter cache: they stream from host memory on every inference (slower)"
            )
    elif device.runtime == "tflm" and facts["dynamic"]:
        notes.append(
            f"{len(facts['dynamic'])} tensor(s) have dynamic dimensions; TFLM plans memory for "
            "the shapes stored in the file"
        )

    fits = ram_ok and flash_ok and not unsupported and not problems
    verdict = _verdict(fits, ram_ok, flash_ok, unsupported, problems, ram_required, ram_available)
    return DeviceResult(
        device=device.name,
        runtime=device.runtime,
        fits=fits,
        arena_bytes=int(arena),
        ram_required_bytes=ram_required,
        ram_available_bytes=ram_available,
        ram_source=source,
        pointer_bytes=int(pointer),
        flash_required_bytes=flash_required,
        flash_available_bytes=flash_available,
        unsupported_ops=unsupported,
        problems=problems,
        notes=notes,
        verdict=verdict,
    )


def _verdict(fits, ram_ok, flash_ok, unsupported, problems, ram_required, ram_available) -> str:
    if fits:
        if ram_required is not None and ram_available:
            return f"fits ({100 * ram_required / ram_available:.0f}% RAM)"
        return "fits"
    reasons = []
    if not ram_ok:
        reasons.append("RAM")
    if not flash_ok:
        reasons.append("flash")
    if unsupported:
        reasons.append(f"{len(unsupported)} unsupported op{'s' if len(unsupported) > 1 else ''}")
    others = [p for p in problems if not p.startswith(("RAM:", "flash:"))]
    if any("TFLM" in p for p in others):
        reasons.append("TFLM fails")
    if any("float32" in p or "static tensor" in p for p in others):
        reasons.append("dtype/shape")
    return "does not fit: " + ", ".join(reasons or ["see problems"])
