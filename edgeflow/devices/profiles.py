"""Device profiles: the schema of a board's YAML file and loading the shipped and user profiles.

Profiles are data: one YAML file per board in ``edgeflow/_data/devices/`` (the repository's
``devices/``), read through one strict schema. Operator lists live once in
``_ops.yaml`` beside them and profiles name them (``ops: tflm``). A user adds boards with
their own YAML file or directory (``--devices-dir``); a user profile with a shipped name
replaces the shipped one, and a user ``_ops.yaml`` adds operator lists.
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgeflow.errors import EdgeflowError, closest

__all__ = ["Device", "OpList", "get_device", "load_devices", "load_op_lists", "op_list"]

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


class FirmwareSpec(_Strict):
    """How edgeflow builds and emulates firmware for the board's core (``edgeflow firmware``).

    ``cpu`` names an entry of :data:`edgeflow.firmware.targets.CPUS` (None: a core edgeflow
    cannot build or emulate, e.g. Xtensa; its figures stay estimates, ``note`` says why);
    ``fpu`` is the gcc ``-mfpu`` of the board's FPU ("none" without one); ``qemu_machine``
    the ``qemu-system-arm`` machine that runs the core's instructions. ``cpi`` (cycles per
    instruction, an estimate unless ``cpi_estimate`` is false) turns the emulated instruction
    count into a latency at ``clock_mhz``; ``cpi_basis`` says where it comes from.
    """

    cpu: str | None
    fpu: str | None = None
    qemu_machine: str | None = None
    cpi: float | None = Field(default=None, gt=0)
    cpi_estimate: bool = True
    cpi_basis: str | None = None
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
    firmware: FirmwareSpec | None = None
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
    from edgeflow import _yaml

    return _yaml.load(path, f"device file {path}")  # bounded: size and alias expansion


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
            + " (or give a profile .yaml, or a folder of profiles: --devices-dir, or devices_dir in a recipe)"
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
