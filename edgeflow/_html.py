"""The HTML report of a recipe run: one self-contained page (inline CSS and SVG, no script).

What an embedded engineer looks for, in order: the versions and the date; every stage
(accuracy, size, gzip size, sparsity) with an accuracy-vs-size plot; the converted model
operator by operator (type, output shape, MACs, weight and activation bytes, where it
runs); the arena split (every arena figure by its one name, ``report.ARENA_FIGURES``); the
devices with RAM and flash plots whose limit lines are labelled; and every note and
problem, each text once with the devices it concerns. ``edgeflow.report.render_run_html``
is the public entry point.
"""

from __future__ import annotations

import datetime
import html
from pathlib import Path

from edgeflow.report import (
    _acc,
    _bytes,
    _pct,
    arena_name,
    device_arena_name,
    findings,
    firmware_cores,
    format_bytes,
    output_rows,
    stage_figures,
)

esc = html.escape

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0} td,th{padding:.3em .7em;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6} td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600} .bad{color:#cf222e;font-weight:600} .muted{color:#777}
svg text{font:12px system-ui,sans-serif} .charts{display:flex;flex-wrap:wrap;gap:2em}
ol.findings li{margin:.3em 0} .tag{font-size:.85em;padding:0 .4em;border-radius:3px;background:#eee}
.tag.problem{background:#ffebe9;color:#cf222e}
"""

BLUE, RED, GREY, GREEN = "#2f81f7", "#cf222e", "#999", "#1a7f37"
#: Colours of the parts of a stacked bar, in order.
PALETTE = (BLUE, GREY, "#bf8700", GREEN, "#8250df")


# --------------------------------------------------------------------------- plots


def bars(title: str, labels: list[str], values: list, *, limits=None, limit_label: str = "",
         fmt=None, baseline: float = 0.0, width: int = 560, parts: list[str] | None = None) -> str:
    """A horizontal bar chart as inline SVG.

    With ``limits`` each bar is the share value/limit; a dashed line at 100 % carries
    ``limit_label`` (bars over it are red). ``baseline`` is where the axis starts. With
    ``parts`` (their names) each value is a sequence of that many numbers, drawn as one
    stacked bar in :data:`PALETTE` order, with a legend under the title.
    """
    fmt = fmt or format_bytes
    stacked = parts is not None
    pairs = [(lab, v, (limits[i] if limits else None))
             for i, (lab, v) in enumerate(zip(labels, values)) if v is not None]
    if not pairs:
        return ""

    def whole(v):
        return sum(v) if stacked else v

    label_w, bar_w, row_h = 230, width - 230 - 130, 22
    top_y = (40 if limits else 26) + (18 if stacked else 0)
    top = max((whole(v) / lim if lim else whole(v)) for _, v, lim in pairs) or 1.0
    scale_max = max(top, 1.0) if limits else top
    span = (scale_max - baseline) or 1.0
    height = top_y + 4 + row_h * len(pairs) + (14 if baseline else 0)
    out = [f'<svg width="{width}" height="{height}" role="img" aria-label="{esc(title)}">',
           f'<text x="0" y="16" font-weight="600">{esc(title)}</text>']
    if stacked:
        x = 0
        for name, colour in zip(parts, PALETTE):
            out.append(f'<rect x="{x}" y="25" width="10" height="10" fill="{colour}"/>'
                       f'<text x="{x + 14}" y="34">{esc(name)}</text>')
            x += 24 + 7 * len(name)
    if limits:
        x1 = label_w + bar_w / scale_max
        out.append(f'<line x1="{x1:.1f}" x2="{x1:.1f}" y1="{top_y - 10}" y2="{height}" stroke="{GREY}" '
                   'stroke-dasharray="3,3"/>')
        out.append(f'<text x="{x1:.1f}" y="{top_y - 13}" text-anchor="middle" fill="#555">'
                   f'{esc(limit_label or "limit")} (100%)</text>')
    for i, (lab, v, lim) in enumerate(pairs):
        y = top_y + i * row_h
        total = whole(v)
        frac = (total / lim) if lim else total
        w = max(1.0, bar_w * (frac - baseline) / span)
        shown = fmt(total) + (f" ({total / lim:.0%})" if lim else "")
        out.append(f'<text x="0" y="{y + 14}">{esc(lab[:34])}</text>')
        if stacked:
            x = float(label_w)
            for part, colour in zip(v, PALETTE):
                seg = w * part / total if total else 0.0
                out.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{seg:.1f}" height="{row_h - 7}" fill="{colour}"/>')
                x += seg
        else:
            colour = RED if (lim and v > lim) else BLUE
            out.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 7}" fill="{colour}"/>')
        out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{esc(shown)}</text>')
    if baseline:
        out.append(f'<text x="{label_w}" y="{height - 2}" fill="#777">axis from {baseline:g}</text>')
    out.append("</svg>")
    return "".join(out)


def scatter(title: str, points: list[tuple[str, float, float]], *, x_label: str, y_label: str,
            width: int = 560, height: int = 300, joined: bool = True, marked=(),
            limit: float | None = None, limit_label: str = "", x_fmt=None) -> str:
    """Labelled points (x, y as given) as an SVG plot with both axes.

    ``joined`` draws a line through the points in order; otherwise only the points in
    ``marked`` (indices) are joined, sorted by x (a Pareto front), and the others are grey.
    ``limit`` draws a labelled dashed vertical line at that x (a board's RAM, say).
    """
    if not points:
        return ""
    x_fmt = x_fmt or (lambda v: format_bytes(int(v)))
    left, right, top, bottom = 60, 20, 30, 45
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    x0, x1 = 0.0, max(xs + ([limit] if limit else [])) * 1.1 or 1.0
    y0 = max(0.0, int((min(ys) - 0.05) * 10) / 10)
    y1 = min(1.0, max(ys) + 0.02) if max(ys) <= 1 else max(ys) * 1.05
    y1 = y1 if y1 > y0 else y0 + 1.0

    def px(x):
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y):
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{esc(title)}">',
             f'<text x="0" y="16" font-weight="600">{esc(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#444"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#444"/>']
    for value in (y0, (y0 + y1) / 2, y1):
        parts.append(f'<text x="{left - 6}" y="{py(value) + 4:.1f}" text-anchor="end">{value:.2f}</text>')
    for value in (x0, x1 / 2.2, x1 / 1.1):
        parts.append(f'<text x="{px(value):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                     f'{esc(x_fmt(value))}</text>')
    parts.append(f'<text x="{(left + width - right) / 2:.1f}" y="{height - 6}" text-anchor="middle">'
                 f'{esc(x_label)}</text>')
    parts.append(f'<text x="12" y="{(top + height - bottom) / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {(top + height - bottom) / 2:.1f})">{esc(y_label)}</text>')
    if limit:
        parts.append(f'<line x1="{px(limit):.1f}" x2="{px(limit):.1f}" y1="{top}" y2="{height - bottom}" '
                     f'stroke="{RED}" stroke-dasharray="4,3"/>')
        parts.append(f'<text x="{px(limit) - 4:.1f}" y="{top + 12}" text-anchor="end" fill="{RED}">'
                     f'{esc(limit_label or "limit")} {esc(x_fmt(limit))}</text>')
    line = list(enumerate(points)) if joined else sorted(
        ((i, points[i]) for i in marked), key=lambda item: item[1][1])
    path = " ".join(f"{'M' if n == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for n, (_, (_, x, y)) in enumerate(line))
    if path:
        parts.append(f'<path d="{path}" fill="none" stroke="{BLUE}" stroke-width="1.5"/>')
    for i, (label, x, y) in enumerate(points):
        shown = joined or i in marked
        parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{BLUE if shown else GREY}"/>')
        if shown:
            parts.append(f'<text x="{px(x) + 6:.1f}" y="{py(y) - 6 - (i % 2) * 12:.1f}">{esc(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _accuracy_baseline(values) -> float:
    known = [v for v in values if v is not None]
    return max(0.0, int((min(known) - 0.05) * 10) / 10) if known else 0.0


# --------------------------------------------------------------------------- sections


def versions() -> dict[str, str]:
    """The versions that produced the figures: edgeflow, TensorFlow, LiteRT, TFLM (pip names)."""
    from importlib.metadata import PackageNotFoundError, version

    from edgeflow import __version__

    found = {"edgeflow": __version__}
    for label, dist in (("TensorFlow", "tensorflow"), ("LiteRT", "ai-edge-litert"),
                        ("TFLM (tflite-micro)", "tflite-micro"), ("TF-MOT", "tensorflow-model-optimization")):
        try:
            found[label] = version(dist)
        except PackageNotFoundError:
            found[label] = "not installed"
    return found


def _header(result, now: datetime.datetime) -> str:
    made = ", ".join(f"{name} {v}" for name, v in versions().items())
    return (f"<h1>edgeflow report: {esc(result.recipe)}</h1>"
            f"<p class=muted>Made {now:%Y-%m-%d %H:%M %Z} with {esc(made)}. "
            f"Artifacts in {esc(result.output_dir)}.</p>")


def _stage_notes(record) -> list[str]:
    notes = []
    for key, value in record.extra.items():
        if key == "float_layers":
            notes.append("left in float: " + ", ".join(value))
        elif key == "int8":
            notes.append(str(value))
        elif key == "fits":
            notes.append(f"fits {value}")
        elif key == "c_array":
            notes.append(f"C array {value}")
        else:
            notes.append(f"{key}: {value}")
    return notes


def _stages(result) -> str:
    recs = result.records
    metric, figures = stage_figures(recs)
    rows = "".join(
        f"<tr><td>{esc(r.label)}</td><td class=n>{_acc(keras)}</td>"
        f"<td class=n>{_acc(tflite)}</td><td class=n>{_bytes(r.size_bytes)}</td>"
        f"<td class=n>{_bytes(r.gzip_bytes)}</td><td class=n>{_pct(r.sparsity)}</td>"
        f"<td class=n>{r.seconds:.1f}</td><td>{'<br>'.join(esc(n) for n in _stage_notes(r))}</td>"
        f"<td class=muted>{esc(r.artifact or '')}</td></tr>"
        for r, (keras, tflite) in zip(recs, figures, strict=True)
    )
    labels = [r.label for r in recs]
    points = []
    for r, (keras, tflite) in zip(recs, figures, strict=True):
        figure = tflite if tflite is not None else keras
        if figure is not None and r.size_bytes is not None:
            points.append((r.label.split(" (")[0], float(r.size_bytes), float(figure)))
    title, axis = (("MAE", "mean absolute error (test split)") if metric == "mae"
                   else ("Accuracy", "accuracy (test split)"))
    charts = [
        scatter(f"{title} vs size over the stages", points, x_label="size (float32 weights; .tflite file)",
                y_label=axis),
        bars("Size after each stage", labels, [r.size_bytes for r in recs]),
        bars("Compressed size (gzip)", labels, [r.gzip_bytes for r in recs]),
    ]
    return (f"<h2>Stages</h2><table><tr><th>stage</th><th>keras {metric}</th><th>tflite {metric}</th>"
            "<th>size B</th><th>gzip B</th><th>sparsity</th><th>seconds</th><th>notes</th>"
            f"<th>artifact</th></tr>{rows}</table>" + _outputs(recs) +
            '<div class="charts">' + "".join(charts) + "</div>")


def _outputs(records) -> str:
    """The per-output table of a model with several outputs (empty for one output)."""
    headers, rows = output_rows(records)
    if not rows:
        return ""
    cells = "".join("<tr>" + "".join(f"<td{' class=n' if i > 2 else ''}>{esc(c)}</td>"
                                     for i, c in enumerate(row)) + "</tr>" for row in rows)
    return ("<h3>Per output</h3><p class=muted>accuracy for a classification output, mean "
            "absolute error for a regression one.</p><table><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in headers) + f"</tr>{cells}</table>")


def _tflite_path(result) -> Path | None:
    for record in reversed(result.records):
        path = result.artifact_path(record) if record.stage == "convert" else None
        if path is not None and path.is_file():
            return path
    return None


def _where_it_runs(info, data: bytes, check) -> list[str]:
    """Per operator: the runtimes of the checked devices that run it, and where it is missing."""
    from edgeflow.tflite._schema import FLOAT_DTYPES

    results = check.results if check is not None else []
    runtimes = {r.runtime for r in results}
    missing: dict[tuple[str, int], list[str]] = {}
    for r in results:
        for u in r.unsupported_ops:
            missing.setdefault((u["op"], u["version"]), []).append(r.device)
    tpu = None
    if "edgetpu" in runtimes:
        from edgeflow.deploy.coral import precheck

        tpu = {v.index: v for v in precheck(data).ops}
    places = []
    for op in info.ops:
        parts = []
        if "tflm" in runtimes:
            parts.append("TFLM" + (" (float reference kernel)" if op.dtype in FLOAT_DTYPES else ""))
        if "litert" in runtimes:
            parts.append("LiteRT CPU")
        if tpu is not None and op.index in tpu:
            parts.append("Edge TPU" if tpu[op.index].device == "tpu" else "host CPU (not the Edge TPU)")
        lacking = missing.get((op.name, op.version))
        if lacking:
            parts.append("missing on " + ", ".join(lacking))
        places.append("; ".join(parts) or "no device checked")
    return places


def _operators(info, data: bytes, check) -> str:
    places = _where_it_runs(info, data, check)
    rows, totals = [], [0, 0, 0]
    for op, place in zip(info.op_table(), places):
        totals = [totals[0] + op["macs"], totals[1] + op["weight_bytes"], totals[2] + op["activation_bytes"]]
        rows.append(f"<tr><td class=n>{op['index']}</td><td>{esc(op['op'])} v{op['version']}</td>"
                    f"<td>{esc(op['dtype'])}</td><td>{esc(op['output_shape'])}</td><td class=n>{op['macs']:,}</td>"
                    f"<td class=n>{op['weight_bytes']:,}</td><td class=n>{op['activation_bytes']:,}</td>"
                    f"<td>{esc(place)}</td></tr>")
    rows.append(f"<tr><th></th><th>total</th><th></th><th></th><th class=n>{totals[0]:,}</th>"
                f"<th class=n>{totals[1]:,}</th><th class=n>{totals[2]:,}</th><th></th></tr>")
    return ("<h2>Operators</h2><p class=muted>The converted model in execution order: output shape, "
            "MACs, constant (weight) bytes read and activation bytes written, and where each operator "
            "runs on the checked devices.</p><table><tr><th>#</th><th>operator</th><th>computes in</th>"
            "<th>output shape</th><th>MACs</th><th>weight B</th><th>activation B</th><th>where it runs</th>"
            f"</tr>{''.join(rows)}</table>")


def _arena_split(info, check) -> str:
    from edgeflow.tflite import estimate_arena, plan_memory

    plan = plan_memory(info)
    rows = [(arena_name("plan"), plan.peak_bytes, 0, "static plan (TFLM greedy planner)")]
    for pointer in (4, 8):
        est = estimate_arena(info, pointer_bytes=pointer)
        rows.append((arena_name("estimated", pointer), est.nonpersistent_bytes, est.persistent_bytes,
                     "static plan + TFLM struct sizes"))
    meas = check.measurement if check is not None else None
    if meas and meas.get("status") == "ok" and meas.get("arena_bytes"):
        parts = meas.get("breakdown") or {}
        head = parts.get("non_persistent")
        tail = parts.get("persistent")
        if head is None or tail is None:
            head, tail = meas["arena_bytes"], 0
        rows.append((arena_name("measured", meas["pointer_bytes"]), head, tail,
                     f"tflite-micro, smallest arena that runs the model ({meas['arena_bytes']:,} B)"))
    table_rows = "".join(
        f"<tr><td>{esc(name)}</td><td class=n>{head:,}</td><td class=n>{tail:,}</td>"
        f"<td class=n>{head + tail:,}</td><td class=muted>{esc(source)}</td></tr>"
        for name, head, tail, source in rows
    )
    svg = bars("Arena split", [name for name, *_ in rows], [(head, tail) for _, head, tail, _ in rows],
               parts=["activations (and scratch)", "persistent runtime structs"], width=640)
    return ("<h2>Arena split</h2><table><tr><th>figure</th><th>activations B</th><th>persistent B</th>"
            f"<th>total B</th><th>source</th></tr>{table_rows}</table>" + svg)


def _devices(check, refs: dict[str, list[int]]) -> str:
    rows = []
    for d in check.results:
        verdict = (f'<span class="ok">{esc(d.verdict or "fits")}</span>' if d.fits
                   else f'<span class="bad">{esc(d.verdict or "does not fit")}</span>')
        see = ", ".join(f"#{n}" for n in refs.get(d.device, []))
        rows.append(
            f"<tr><td>{esc(d.device)}</td><td>{verdict}</td><td class=n>{format_bytes(d.arena_bytes)}</td>"
            f"<td>{esc(device_arena_name(d))}</td><td class=n>{format_bytes(d.ram_required_bytes)}</td>"
            f"<td class=n>{format_bytes(d.ram_available_bytes)}</td>"
            f"<td class=n>{format_bytes(d.flash_required_bytes)}</td>"
            f"<td class=n>{format_bytes(d.flash_available_bytes)}</td><td>{see}</td></tr>"
        )
    names = [d.device for d in check.results]
    ram = bars("RAM needed, share of each board's RAM", names, [d.ram_required_bytes for d in check.results],
               limits=[d.ram_available_bytes for d in check.results], limit_label="board RAM")
    flash = bars("Flash needed, share of each board's flash", names,
                 [d.flash_required_bytes for d in check.results],
                 limits=[d.flash_available_bytes for d in check.results], limit_label="board flash")
    return (
        "<h2>Devices</h2><p class=muted>RAM need = arena + runtime and application share (+ the model "
        "on Linux boards); flash need = model + runtime and application code.</p>"
        "<table><tr><th>device</th><th>verdict</th><th>arena</th><th>arena figure</th>"
        "<th>RAM need</th><th>RAM have</th><th>flash need</th><th>flash have</th>"
        f"<th>notes and problems</th></tr>{''.join(rows)}</table>"
        f'<div class="charts">{ram}{flash}</div>'
    )


def _cells(values, numeric="") -> str:
    """Table cells; the columns whose index is in ``numeric`` (a string of digits) right-aligned."""
    return "".join(f"<td class=n>{esc(str(v))}</td>" if str(i) in numeric else f"<td>{esc(str(v))}</td>"
                   for i, v in enumerate(values))


def _split_section(title: str, key: str, names, cores: dict, what: dict) -> str:
    """One split (flash or arena) of every core: a table and one stacked bar per core."""
    have = {core: rs[0].figures[key] for core, rs in cores.items() if key in rs[0].figures}
    if not have:
        return ""
    head = "".join(f"<th>{esc(n)} B</th>" for n in names)
    rows = "".join(f"<tr><td>{esc(core)}</td>{_cells([format(f['value'][n], ',') for n in names], '0123456789')}"
                   f"<td class=n>{sum(f['value'].values()):,}</td></tr>" for core, f in have.items())
    source = next(iter(have.values()))["source"]
    legend = "".join(f"<li><b>{esc(n)}</b>: {esc(what[n])}</li>" for n in names if n in what)
    chart = bars(title, list(have), [tuple(f["value"][n] for n in names) for f in have.values()], parts=list(names),
                 width=640)
    return (f"<h3>{esc(title)}</h3><p class=muted>{esc(source)}</p><ul>{legend}</ul>"
            f"<table><tr><th>core</th>{head}<th>total B</th></tr>{rows}</table>{chart}")


def _firmware(check) -> str:
    """The firmware built for the checked microcontrollers: latency per board, then per core the
    operators with their instructions and share of time, the flash split and the arena split."""
    from edgeflow.firmware import ARENA_PARTS
    from edgeflow.firmware.image import FLASH_PARTS

    cores = firmware_cores(check)
    if not cores:
        return ""
    lat = []
    for core, rs in cores.items():
        for r in rs:
            f = r.figures
            if "instructions" in f:
                ms = f.get("latency_ms")
                lat.append(f"<tr><td>{esc(r.device)}</td><td>{esc(core)}</td>"
                           f"<td class=n>{f['instructions']['value']:,}</td>"
                           f"<td class=n>{'' if ms is None else format(ms['value'], '.2f')}</td>"
                           f"<td class=muted>{esc('' if ms is None else ms['source'])}</td></tr>")
    body = ["<h2>Firmware</h2><p class=muted>Each microcontroller's firmware (TFLM with CMSIS-NN) built for its "
            "core and run under qemu-system-arm; boards of one core share one image.</p>"]
    if lat:
        body.append("<h3>Latency per board</h3><table><tr><th>board</th><th>core</th><th>instructions per "
                    "inference</th><th>latency ms (estimate)</th><th>source</th></tr>" + "".join(lat) + "</table>")
    for core, rs in cores.items():
        ops = rs[0].figures.get("operators")
        if not ops:
            continue
        rows = ops["value"]
        outside = ops["outside_operators"]
        total = outside + sum(r["instructions"] for r in rows)
        cells = "".join(
            "<tr>" + _cells([r["index"], r["op"], r.get("output_shape", ""), _bytes(r.get("macs")),
                             f"{r['instructions']:,}", f"{r['share']:.1%}", _bytes(r.get("weight_bytes")),
                             _bytes(r.get("activation_bytes"))], "034567") + "</tr>" for r in rows)
        cells += "<tr>" + _cells(["", "outside operators", "", "", f"{outside:,}", f"{outside / total:.1%}", "", ""],
                                 "034567") + "</tr>"
        cells += (f"<tr><th></th><th>Invoke() total</th><th></th><th class=n>"
                  f"{sum(r.get('macs') or 0 for r in rows):,}</th><th class=n>{total:,}</th><th class=n>100.0%</th>"
                  "<th></th><th></th></tr>")
        chart = bars(f"Share of the Invoke() instructions on {core}",
                     [f"{r['index']} {r['op']}" for r in rows] + ["outside operators"],
                     [r["instructions"] / total for r in rows] + [outside / total], fmt=lambda v: f"{v:.1%}")
        body.append(f"<h3>Operators on {esc(core)} ({esc(', '.join(r.device for r in rs))})</h3>"
                    f"<p class=muted>{esc(ops['source'])}</p><table><tr><th>#</th><th>operator</th>"
                    "<th>output shape</th><th>MACs</th><th>instructions</th><th>share of time</th><th>weight B</th>"
                    f"<th>activation B</th></tr>{cells}</table>{chart}")
    body.append(_split_section("Flash split", "flash_split", list(FLASH_PARTS), cores, FLASH_PARTS))
    body.append(_split_section("Arena split on the target", "arena_split", list(ARENA_PARTS), cores,
                               ARENA_PARTS))
    return "".join(body)


def _findings(items: list[tuple[str, str, list[str]]]) -> str:
    if not items:
        return "<h2>Notes and problems</h2><p>None.</p>"
    lis = "".join(
        f'<li><span class="tag {kind}">{kind}</span> {esc(text)} '
        f'<span class="muted">({esc(", ".join(devices))})</span></li>'
        for kind, text, devices in items
    )
    return f'<h2>Notes and problems</h2><ol class="findings">{lis}</ol>'


def _check_sections(check, info, data: bytes | None) -> list[str]:
    """The model's operators and arena split (with ``info``), the devices, the firmware and
    every note and problem of a check ``Report`` (or none without one)."""
    body = [] if info is None else [_operators(info, data, check), _arena_split(info, check)]
    items = findings(check) if check is not None else []
    if check is not None and check.measurement and check.measurement.get("status") != "ok":
        meas = check.measurement
        text = f"tflite-micro {meas['status']}: {meas.get('message') or 'no message'}"
        if not any(text in t for _, t, _ in items):
            items.append(("problem", text, ["tflite-micro"]))
    if check is not None:
        refs: dict[str, list[int]] = {}
        for number, (_, _, devices) in enumerate(items, 1):
            for device in devices:
                refs.setdefault(device, []).append(number)
        body += [_devices(check, refs), _firmware(check)]
    body.append(_findings(items))
    return body


def _page(title: str, body: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{esc(title)}</title><style>{CSS}</style>"
            "</head><body>" + "\n".join(body) + "</body></html>")


def render(result, *, now: datetime.datetime | None = None) -> str:
    """The page for an ``edgeflow.records.RunResult`` (see the module docstring for what it holds)."""
    now = now or datetime.datetime.now().astimezone()
    body = [_header(result, now), _stages(result)]
    path = _tflite_path(result)
    data = info = None
    if path is not None:
        from edgeflow import tflite

        data, info = tflite.load(path)
    return _page(f"edgeflow: {result.recipe}", body + _check_sections(result.check, info, data))


def render_check(report, model: bytes, *, now: datetime.datetime | None = None) -> str:
    """The page of ``edgeflow check --html``: the model's operators and arena split, the devices,
    the firmware built for them (latency per board; per core the operators with their
    instructions and share of time, the flash split and the arena split) and every note and
    problem. ``model`` is the checked ``.tflite``'s bytes."""
    from edgeflow import tflite

    now = now or datetime.datetime.now().astimezone()
    made = ", ".join(f"{name} {v}" for name, v in versions().items())
    data, info = tflite.load(model)
    head = [f"<h1>edgeflow check: {esc(report.model['path'])}</h1>",
            f"<p class=muted>Made {now:%Y-%m-%d %H:%M %Z} with {esc(made)}.</p>"]
    return _page(f"edgeflow check: {report.model['path']}", head + _check_sections(report, info, data))


# --------------------------------------------------------------------------- search


def _trade_offs(result) -> str:
    """Accuracy vs RAM, flash and latency: every complete trial, the front joined, the limits."""
    done = [t for t in result.trials if t.state == "complete" and t.figures.get("accuracy") is not None]
    front = set(result.front)
    charts = []
    for figure, label, limit_key in (("ram", "RAM needed", "ram"), ("flash", "flash needed", "flash"),
                                     ("latency", "host latency (LiteRT, ms)", None)):
        points = [(f"#{t.number}", t.figures[figure], t.figures["accuracy"]) for t in done
                  if t.figures.get(figure) is not None]
        if not points:
            continue
        numbers = [int(p[0][1:]) for p in points]
        cap = result.limits.get(f"{figure}_max")
        limit = cap if cap is not None else (result.limits.get(limit_key) if limit_key else None)
        limit_label = f"{figure} cap" if cap is not None else f"{result.device} {figure}"
        charts.append(scatter(
            f"Accuracy vs {label}", points, x_label=label, y_label="accuracy (.tflite)", joined=False,
            marked=[i for i, n in enumerate(numbers) if n in front], limit=limit,
            limit_label=limit_label, x_fmt=None if figure != "latency" else (lambda v: f"{v:.3f} ms"),
        ))
    return "<h2>Trade-offs</h2><p class=muted>Blue: the Pareto front (joined); grey: other trials.</p>" \
        f'<div class="charts">{"".join(charts)}</div>' if charts else ""


def _trials_table(result, numbers=None) -> str:
    from edgeflow.report import search_rows

    head, rows = search_rows(result, numbers)
    cells = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def render_search(result, *, now: datetime.datetime | None = None) -> str:
    """The page of a fit-to-device search (``search.SearchResult``)."""
    now = now or datetime.datetime.now().astimezone()
    made = ", ".join(f"{name} {v}" for name, v in versions().items())
    counts = {state: sum(t.state == state for t in result.trials) for state in ("complete", "dropped", "failed")}
    best = result.best
    artifacts = "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in result.best_artifacts.items())
    body = [
        f"<h1>edgeflow search: {esc(result.recipe)} on {esc(result.device)}</h1>",
        f"<p class=muted>Made {now:%Y-%m-%d %H:%M %Z} with {esc(made)}. Study {esc(result.study)} in "
        f"{esc(result.storage)}; trials in {esc(result.output_dir)}/trials.</p>",
        f"<p>{len(result.trials)} trials: {counts['complete']} complete, {counts['dropped']} dropped before "
        f"training by a constraint, {counts['failed']} failed. Objectives: {esc(', '.join(result.objectives))}; "
        f"constraints: {esc(str(result.constraints))}.</p>",
        "<h2>Best</h2>" + (f"<p>Trial #{best}; ready for <code>edgeflow deploy</code>:</p><ul>{artifacts}</ul>"
                           if best is not None else '<p class="bad">No trial satisfies every constraint.</p>'),
        "<h2>Pareto front</h2>" + (_trials_table(result, result.front) if result.front else "<p>Empty.</p>"),
        _trade_offs(result),
        "<h2>Every trial</h2><p class=muted>Each trial's whole recipe is trials/NNNN/recipe.yaml.</p>"
        + _trials_table(result),
    ]
    return _page(f"edgeflow search: {result.recipe}", body)
