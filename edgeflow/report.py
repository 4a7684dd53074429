"""Rendering results for people and programs: terminal tables and JSON.

Plain functions of a result object that return text; printing is the caller's job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

__all__ = ["check_json", "check_table", "devices_json", "devices_table", "format_bytes", "table"]


def format_bytes(n: int | None, *, unknown: str = "n/a") -> str:
    """Bytes in binary units with one decimal: ``format_bytes(1536) == '1.5 KiB'``."""
    if n is None:
        return unknown
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, right: Iterable[int] = ()) -> str:
    """A plain-text table with a rule under the header; columns in ``right`` align right.

    Example:
        >>> print(table(["a", "b"], [["x", "1"]], right=[1]))
        a  b
        -  -
        x  1
    """
    rows = [[str(c) for c in row] for row in rows]
    right = set(right)
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(
            (c.rjust(w) if i in right else c.ljust(w)) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line([str(h) for h in headers]), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------- devices


def devices_table(devices) -> str:
    """The board list of ``edgeflow devices``: memory, clock, runtime, ops list.

    Args:
        devices: ``Device`` objects (``load_devices().values()``).
    """
    rows = []
    for d in devices:
        ram = format_bytes(d.ram_bytes, unknown="host")
        if d.external_ram is not None:
            ram += f" + {format_bytes(d.external_ram.bytes)} {d.external_ram.kind.split()[-1]}"
        rows.append([
            d.name,
            d.soc,
            "-" if d.clock_mhz is None else f"{d.clock_mhz:g} MHz",
            ram,
            format_bytes(d.flash_bytes, unknown="not checked"),
            f"{d.runtime}/{d.kernels}",
            d.ops if isinstance(d.ops, str) else "inline",
        ])
    return table(["device", "SoC", "clock", "RAM", "flash", "runtime", "ops"], rows)


def devices_json(devices) -> str:
    """All profiles as a JSON list (every key of the schema)."""
    return json.dumps([d.model_dump(mode="json") for d in devices], indent=2)


# --------------------------------------------------------------------------- check


def _ram_source(r) -> str:
    return f"{r.ram_source} ({r.pointer_bytes * 8}-bit)"


def _need(required: int | None, available: int | None, unknown: str) -> str:
    if required is None:
        return unknown
    share = f" ({100 * required / available:.0f}%)" if available else ""
    return f"{format_bytes(required)} / {format_bytes(available)}{share}"


def check_table(report) -> str:
    """The terminal report of ``edgeflow check``: one row per device, then problems.

    The RAM column says, per device, whether the arena was measured by tflite-micro or
    estimated from the static plan, and for which pointer width.

    Args:
        report: a ``edgeflow.devices.Report``.
    """
    m = report.model
    head = (
        f"model {m['path']}: {format_bytes(m['size_bytes'])}, {m['ops']} ops"
        f" ({m['float_ops']} in float32), weights {format_bytes(m['weights_bytes'])}"
    )
    lines = [head]
    meas = report.measurement
    if meas is not None:
        if meas["status"] == "ok":
            lines.append(
                f"tflite-micro arena: {format_bytes(meas['arena_bytes'])} measured on this "
                f"{meas['pointer_bytes'] * 8}-bit host (smallest arena that runs the model)"
            )
        else:
            lines.append(f"tflite-micro: {meas['status']}: {meas['message'] or 'no message'}")
    rows = []
    for r in report.results:
        ops = "ok" if not r.unsupported_ops else f"{len(r.unsupported_ops)} missing"
        rows.append([
            r.device,
            r.runtime,
            format_bytes(r.arena_bytes),
            _ram_source(r),
            _need(r.ram_required_bytes, r.ram_available_bytes, "host"),
            _need(r.flash_required_bytes, r.flash_available_bytes, "not checked"),
            ops,
            r.verdict,
        ])
    lines += ["", table(
        ["device", "runtime", "arena", "arena source", "RAM need / avail", "flash need / avail",
         "ops", "verdict"],
        rows, right=[2],
    )]
    trouble = [(r.device, p) for r in report.results for p in r.problems]
    trouble += [
        (r.device, f"unsupported op {u['op']} v{u['version']}: {u['reason']}")
        for r in report.results for u in r.unsupported_ops
    ]
    if trouble:
        lines += ["", "problems:"] + [f"  {dev}: {text}" for dev, text in trouble]
    lines += [
        "",
        "RAM need = arena + runtime and application share (+ the model on Linux boards); "
        "flash need = model + runtime and application code. Shares are estimates from the "
        "profiles (edgeflow devices --json shows their sources).",
    ]
    lines.append("verdict: " + ("fits every device" if report.fits else "does NOT fit every device"))
    return "\n".join(lines)


def check_json(report) -> str:
    """``edgeflow check --json``: a JSON list, one object per device."""
    return json.dumps([r.to_dict() for r in report.results], indent=2)
