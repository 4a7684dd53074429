"""Rendering results: terminal tables, JSON and a self-contained HTML report with plots."""

from __future__ import annotations

import html
import json

__all__ = [
    "check_json",
    "check_table",
    "devices_json",
    "devices_table",
    "format_bytes",
    "render_run_html",
    "render_run_table",
    "table",
]


def table(
    headers: list[str], rows: list[list[str]], align: str | None = None, *, rule: bool = True
) -> str:
    """A plain-text table; ``align`` has one character per column, ``l`` or ``r``;
    ``rule`` draws a dashed line under the headers."""
    align = align or "l" * len(headers)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]

    def line(cells):
        out = []
        for cell, width, a in zip(cells, widths, align):
            out.append(str(cell).rjust(width) if a == "r" else str(cell).ljust(width))
        return "  ".join(out).rstrip()

    dashes = ["  ".join("-" * w for w in widths)] if rule else []
    return "\n".join([line(headers), *dashes, *(line(r) for r in rows)])


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


def _pct(value) -> str:
    return "" if value is None else f"{value:.1%}"


def _acc(value) -> str:
    return "" if value is None else f"{value:.4f}"


def _bytes(value) -> str:
    return "" if value is None else f"{value:,}"


def render_run_table(result) -> str:
    """The recipe run as a table: one row per stage, then one row per checked device."""
    rows = []
    for r in result.records:
        rows.append([
            f"{r.index}. {r.label}", _acc(r.keras_accuracy), _acc(r.tflite_accuracy),
            _bytes(r.size_bytes), _bytes(r.gzip_bytes), _pct(r.sparsity),
            f"{r.seconds:.1f}",
        ])
    text = table(
        ["stage", "keras acc", "tflite acc", "size B", "gzip B", "sparsity", "s"], rows,
        "lrrrrrr",
    )
    if result.check is None:
        return text
    return f"{text}\n\n{check_table(result.check)}"


# ---------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0} td,th{padding:.3em .7em;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6} td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600} .bad{color:#cf222e;font-weight:600} .muted{color:#777}
svg text{font:12px system-ui,sans-serif} .charts{display:flex;flex-wrap:wrap;gap:2em}
"""


def _bars(title: str, labels: list[str], values: list[float], *, limits=None, fmt=None,
          baseline: float = 0.0, width: int = 560) -> str:
    """A horizontal bar chart as inline SVG.

    With ``limits`` each bar is the share value/limit (a dashed line marks 100%, bars over
    it are red). ``baseline`` is where the axis starts (for accuracies close together).
    """
    fmt = fmt or format_bytes
    pairs = [(lab, v, (limits[i] if limits else None))
             for i, (lab, v) in enumerate(zip(labels, values)) if v is not None]
    if not pairs:
        return ""
    label_w, bar_w, row_h = 230, width - 230 - 130, 22
    top = max((v / lim if lim else v) for _, v, lim in pairs) or 1.0
    scale_max = max(top, 1.0) if limits else top
    span = (scale_max - baseline) or 1.0
    height = 30 + row_h * len(pairs) + (14 if baseline else 0)
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="0" y="16" font-weight="600">{html.escape(title)}</text>']
    if limits:
        x1 = label_w + bar_w / scale_max
        parts.append(f'<line x1="{x1:.1f}" x2="{x1:.1f}" y1="22" y2="{height}" stroke="#999" '
                     'stroke-dasharray="3,3"/>')
    for i, (lab, v, lim) in enumerate(pairs):
        y = 26 + i * row_h
        frac = (v / lim) if lim else v
        w = max(1.0, bar_w * (frac - baseline) / span)
        colour = "#cf222e" if (lim and v > lim) else "#2f81f7"
        shown = fmt(v) + (f" ({v / lim:.0%})" if lim else "")
        parts.append(f'<text x="0" y="{y + 14}">{html.escape(lab[:34])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 7}" '
                     f'fill="{colour}"/>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{html.escape(shown)}</text>')
    if baseline:
        parts.append(f'<text x="{label_w}" y="{height - 2}" fill="#777">axis from {baseline:g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _accuracy_baseline(values) -> float:
    """Start the accuracy axis a little below the lowest value, at a round tenth."""
    known = [v for v in values if v is not None]
    return max(0.0, int((min(known) - 0.05) * 10) / 10) if known else 0.0


def render_run_html(result) -> str:
    """A self-contained HTML page: stage table and plots, device verdicts and plots."""
    esc = html.escape
    recs = result.records
    stage_rows = "".join(
        f"<tr><td>{esc(r.label)}</td><td class=n>{_acc(r.keras_accuracy)}</td>"
        f"<td class=n>{_acc(r.tflite_accuracy)}</td><td class=n>{_bytes(r.size_bytes)}</td>"
        f"<td class=n>{_bytes(r.gzip_bytes)}</td><td class=n>{_pct(r.sparsity)}</td>"
        f"<td class=n>{r.seconds:.1f}</td><td class=muted>{esc(r.artifact or '')}</td></tr>"
        for r in recs
    )
    labels = [r.label for r in recs]
    acc = [r.tflite_accuracy if r.tflite_accuracy is not None else r.keras_accuracy for r in recs]
    charts = [
        _bars("Accuracy after each stage (test split)", labels, acc, fmt=lambda v: f"{v:.4f}",
              baseline=_accuracy_baseline(acc)),
        _bars("Size after each stage (bytes)", labels, [r.size_bytes for r in recs]),
        _bars("Compressed size (gzip, bytes)", labels, [r.gzip_bytes for r in recs]),
    ]
    body = [
        f"<h1>edgeflow report: {esc(result.recipe)}</h1>",
        f"<p class=muted>Artifacts in {esc(result.output_dir)}.</p>",
        "<h2>Stages</h2><table><tr><th>stage</th><th>keras acc</th><th>tflite acc</th>"
        "<th>size B</th><th>gzip B</th><th>sparsity</th><th>seconds</th><th>artifact</th></tr>"
        f"{stage_rows}</table>",
        '<div class="charts">' + "".join(charts) + "</div>",
    ]
    if result.check is not None:
        body.append(_devices_html(result.check))
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>edgeflow: {esc(result.recipe)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body) + "</body></html>"
    )


def _devices_html(report) -> str:
    esc = html.escape
    rows = []
    for d in report.results:
        verdict = '<span class="ok">fits</span>' if d.fits else '<span class="bad">does not fit</span>'
        problems = [*d.problems, *(f"unsupported {o['op']} v{o['version']}: {o.get('reason', '')}"
                                   for o in d.unsupported_ops)]
        rows.append(
            f"<tr><td>{esc(d.device)}</td><td>{verdict}</td><td class=n>{format_bytes(d.arena_bytes)}</td>"
            f"<td>{esc(d.ram_source)}</td><td class=n>{format_bytes(d.ram_required_bytes)}</td>"
            f"<td class=n>{format_bytes(d.ram_available_bytes)}</td>"
            f"<td class=n>{format_bytes(d.flash_required_bytes)}</td>"
            f"<td class=n>{format_bytes(d.flash_available_bytes)}</td>"
            f"<td>{'<br>'.join(esc(p) for p in problems)}</td></tr>"
        )
    names = [d.device for d in report.results]
    ram = _bars("RAM needed, share of the board's RAM", names,
                [d.ram_required_bytes for d in report.results],
                limits=[d.ram_available_bytes for d in report.results])
    flash = _bars("Flash needed, share of the board's flash", names,
                  [d.flash_required_bytes for d in report.results],
                  limits=[d.flash_available_bytes for d in report.results])
    return (
        "<h2>Devices</h2><p class=muted>RAM = tensor arena + runtime and application share; "
        "'measured' arenas come from TensorFlow Lite Micro on this (64-bit) host.</p>"
        "<table><tr><th>device</th><th>verdict</th><th>arena B</th><th>source</th>"
        "<th>RAM need</th><th>RAM have</th><th>flash need</th><th>flash have</th>"
        f"<th>problems</th></tr>{''.join(rows)}</table>"
        f'<div class="charts">{ram}{flash}</div>'
    )


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
        rows, "llrlllll",
    )]
    trouble: dict[str, list[str]] = {}  # the same problem on several devices is listed once
    for r in report.results:
        texts = list(r.problems) + [
            f"unsupported op {u['op']} v{u['version']}: {u['reason']}" for u in r.unsupported_ops
        ]
        for text in texts:
            trouble.setdefault(text, []).append(r.device)
    if trouble:
        lines += ["", "problems:"] + [
            f"  {', '.join(devs)}: {text}" for text, devs in trouble.items()
        ]
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
