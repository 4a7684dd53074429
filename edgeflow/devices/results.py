"""What ``check`` answers: one ``DeviceResult`` per board, the ``Report`` over all, the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DeviceResult", "Report", "verdict"]


@dataclass
class DeviceResult:
    """The verdict for one device, with the figures behind it.

    ``arena_bytes`` is the tensor arena alone; ``ram_required_bytes`` adds the runtime's and
    the application's share (and, on Linux boards, the model itself, which LiteRT loads into
    RAM). ``ram_source`` says whether the arena was measured by the runtime or estimated from
    the static memory plan, ``pointer_bytes`` which pointer width it is for, and
    ``arena_figure`` its name in every output. ``figures`` gives every figure with its
    source (``{"value": ..., "source": ...}``; the schema's ``figures`` definition), on a
    board whose firmware was built also the per-operator instructions and the flash and
    arena splits.
    """

    device: str
    runtime: str
    fits: bool
    arena_bytes: int
    ram_required_bytes: int | None
    ram_available_bytes: int | None
    ram_source: Literal["measured", "estimated", "firmware"]
    pointer_bytes: int
    flash_required_bytes: int | None
    flash_available_bytes: int | None
    unsupported_ops: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdict: str = ""
    figures: dict = field(default_factory=dict)

    @property
    def arena_figure(self) -> str:
        """The name of ``arena_bytes`` (``edgeflow.report.ARENA_FIGURES``), e.g.
        ``"arena (measured, host TFLM 64-bit)"`` or ``"activation plan peak"``."""
        from edgeflow.report import device_arena_name

        return device_arena_name(self)

    def to_dict(self) -> dict:
        """A JSON-ready dict (a device entry of ``edgeflow check --json``)."""
        return {
            "device": self.device,
            "runtime": self.runtime,
            "fits": self.fits,
            "arena_bytes": self.arena_bytes,
            "arena_figure": self.arena_figure,
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
            "figures": {k: dict(v) for k, v in self.figures.items()},
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


def verdict(fits: bool, ram_ok: bool, flash_ok: bool, unsupported: list, problems: list[str],
            ram_required: int | None, ram_available: int | None) -> str:
    """One line: ``"fits (23% RAM)"`` or ``"does not fit: RAM, 2 unsupported ops"``."""
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
