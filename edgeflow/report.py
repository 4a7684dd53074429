"""Rendering results: terminal tables, JSON and a self-contained HTML report with plots."""

from __future__ import annotations

__all__ = [
    "ARENA_FIGURES",
    "arena_name",
    "check_table",
    "devices_table",
    "findings",
    "firmware_breakdown",
    "firmware_cores",
    "format_bytes",
    "inspect_payload",
    "render_check_html",
    "render_run_html",
    "render_run_quiet",
    "render_run_table",
    "table",
]


#: The arena figures edgeflow prints, one name per meaning, used in every output (terminal,
#: JSON, HTML, firmware comments) and in the README:
#:
#: - ``plan``: the peak of the static activation plan (``tflite.plan_memory``, TFLM's greedy
#:   planner): activations only, no runtime structs. Also what LiteRT boards are checked with.
#: - ``estimated``: the activation plan plus TFLM's persistent structs for a pointer width
#:   (``tflite.estimate_arena``), e.g. 32-bit on a Cortex-M.
#: - ``measured``: the smallest arena tflite-micro ran the model with, on this 64-bit host
#:   (``runtime.tflm.measure_arena``); a 32-bit board needs somewhat less.
#: - ``configured``: what a generated firmware project allocates (``deploy mcu``): the
#:   measured arena plus a margin.
#: - ``firmware``: ``arena_used_bytes()`` of the board's firmware run under QEMU
#:   (``edgeflow.firmware``): the 32-bit target's own figure.
ARENA_FIGURES = {
    "plan": "activation plan peak",
    "estimated": "arena (estimated, {bits}-bit)",
    "measured": "arena (measured, host TFLM {bits}-bit)",
    "configured": "arena (configured in firmware)",
    "firmware": "arena (measured, firmware {bits}-bit)",
}


def arena_name(kind: str, pointer_bytes: int | None = None) -> str:
    """The name of an arena figure: ``arena_name("measured", 8) == "arena (measured, host TFLM 64-bit)"``.

    Args:
        kind: a key of :data:`ARENA_FIGURES`.
        pointer_bytes: 4 or 8, for ``estimated`` and ``measured``.
    """
    return ARENA_FIGURES[kind].format(bits=8 * (pointer_bytes or 0))


def device_arena_name(result) -> str:
    """The name of a ``DeviceResult``'s ``arena_bytes``: the plan peak on LiteRT/Edge TPU
    boards, the measured or estimated TFLM arena on microcontrollers."""
    if result.runtime != "tflm":
        return arena_name("plan")
    return arena_name(result.ram_source, result.pointer_bytes)


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


def output_rows(records) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the per-output table of a model with several outputs: one row per
    stage and output (``StageRecord.outputs``): accuracy or MAE, Keras and ``.tflite``."""
    rows = [[f"{r.index}. {r.label}", name, f["metric"], _acc(f["keras"]), _acc(f["tflite"])]
            for r in records for name, f in (r.outputs or {}).items()]
    return ["stage", "output", "metric", "keras", "tflite"], rows


def stage_figures(records) -> tuple[str, list[tuple[float | None, float | None]]]:
    """The figure the stage tables and the stage plot show, and ``(keras, tflite)`` per
    record: ``"acc"`` (``keras_accuracy``/``tflite_accuracy``), or ``"mae"``
    (``keras_mae``/``tflite_mae``, mean absolute error in the labels' units) when the run's
    model is a regression model: its stages record an MAE and no accuracy (for several
    outputs, the first output's figure, as ``StageRecord`` keeps it)."""
    mae = (any(r.keras_mae is not None or r.tflite_mae is not None for r in records)
           and all(r.keras_accuracy is None and r.tflite_accuracy is None for r in records))
    if mae:
        return "mae", [(r.keras_mae, r.tflite_mae) for r in records]
    return "acc", [(r.keras_accuracy, r.tflite_accuracy) for r in records]


def render_run_table(result) -> str:
    """The recipe run as a table: one row per stage (accuracy, or MAE for a regression
    model: :func:`stage_figures`), then one row per checked device."""
    metric, figures = stage_figures(result.records)
    rows = []
    for r, (keras, tflite) in zip(result.records, figures, strict=True):
        rows.append([
            f"{r.index}. {r.label}", _acc(keras), _acc(tflite),
            _bytes(r.size_bytes), _bytes(r.gzip_bytes), _pct(r.sparsity),
            f"{r.seconds:.1f}",
        ])
    text = table(
        ["stage", f"keras {metric}", f"tflite {metric}", "size B", "gzip B", "sparsity", "s"], rows,
        "lrrrrrr",
    )
    if any(r.outputs for r in result.records):
        text += "\n\n" + table(*output_rows(result.records), "lllrr")
    if result.check is None:
        return text
    return f"{text}\n\n{check_table(result.check)}"


def render_run_quiet(result) -> str:
    """What ``edgeflow run -q`` prints: a verbose run without its progress lines, so every
    stage's warnings (``RunResult.warnings``), the comparison with its warning over
    ``max_drop`` (``RunResult.render_comparisons``), then :func:`render_run_table`."""
    return "\n".join(filter(None, [*result.warnings(), result.render_comparisons(),
                                   render_run_table(result)]))


# ---------------------------------------------------------------- HTML


def render_run_html(result) -> str:
    """A self-contained HTML page for a recipe run (``edgeflow.records.RunResult``): versions and date,
    stages with an accuracy-vs-size plot (MAE for a regression model: :func:`stage_figures`), the operators of the converted model, the arena
    split, the devices with labelled RAM/flash limit lines, and every note and problem once.
    The layout lives in :mod:`edgeflow._html`."""
    from edgeflow import _html

    return _html.render(result)


def render_check_html(report, model: bytes) -> str:
    """A self-contained HTML page for a check ``Report`` (``edgeflow check --html``): the
    model's operators and arena split, the devices, the firmware figures (latency per board,
    operators with instructions and share of time, flash and arena splits) and every note and
    problem. ``model`` is the checked ``.tflite``'s bytes. Layout in :mod:`edgeflow._html`."""
    from edgeflow import _html

    return _html.render_check(report, model)


# ---------------------------------------------------------------- search


def search_rows(result, numbers=None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a search's trials (all, or the trial ``numbers`` given), best first."""
    figures = [f for f in ("accuracy", "arena", "ram", "flash", "macs", "latency")
               if any(t.figures.get(f) is not None for t in result.trials)]
    keys = list(result.space)
    head = ["trial", "state", *[k.split(".")[-1] for k in keys], *figures, "note"]
    chosen = [t for t in result.trials if numbers is None or t.number in numbers]
    chosen.sort(key=lambda t: (t.state != "complete", -(t.figures.get("accuracy") or 0), t.number))
    rows = []
    for t in chosen:
        shown = []
        for f in figures:
            v = t.figures.get(f)
            shown.append("" if v is None else _acc(v) if f == "accuracy" else f"{v:.3f}" if f == "latency"
                         else _bytes(int(v)))
        mark = "*" if t.number == result.best else ""
        state = t.state if t.state != "complete" else ("ok" if t.feasible else "breaks")
        note = "; ".join(t.violations) or t.note
        values = [f"{t.values[k]:.3g}" if isinstance(t.values.get(k), float) else str(t.values.get(k, ""))
                  for k in keys]
        rows.append([f"{t.number}{mark}", state, *values, *shown, note])
    return head, rows


def render_search_table(result) -> str:
    """The Pareto front of a search (``search.SearchResult``) as a table, and one summary line."""
    head, rows = search_rows(result, result.front)
    text = table(head, rows, "ll" + "r" * (len(head) - 3) + "l") if rows else "no trial satisfies every constraint"
    counts = {s: sum(t.state == s for t in result.trials) for s in ("complete", "dropped", "failed")}
    best = "none fits" if result.best is None else f"best #{result.best} (marked *)"
    return (f"Pareto front on {result.device} ({', '.join(result.objectives)}):\n{text}\n"
            f"{len(result.trials)} trials: {counts['complete']} complete, {counts['dropped']} dropped before "
            f"training, {counts['failed']} failed; {best}")


def render_search_html(result) -> str:
    """The HTML page of a search: the front, accuracy vs RAM/flash/latency with the board's
    limits, every trial and the best trial's artifacts (layout in :mod:`edgeflow._html`)."""
    from edgeflow import _html

    return _html.render_search(result)


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


# --------------------------------------------------------------------------- check


def _need(required: int | None, available: int | None, unknown: str) -> str:
    if required is None:
        return unknown
    share = f" ({100 * required / available:.0f}%)" if available else ""
    return f"{format_bytes(required)} / {format_bytes(available)}{share}"


def findings(report) -> list[tuple[str, str, list[str]]]:
    """Every problem, then every note, of a check ``Report``: ``(kind, text, devices)`` with
    each text once (a long TFLM error shared by seven boards is one entry naming the seven).

    ``kind`` is ``"problem"`` (problems and unsupported operators) or ``"note"``.
    """
    grouped: dict[tuple[str, str], list[str]] = {}
    for r in report.results:
        problems = list(r.problems) + [
            f"unsupported op {u['op']} v{u['version']}: {u['reason']}" for u in r.unsupported_ops
        ]
        for text in problems:
            grouped.setdefault(("problem", text), []).append(r.device)
    for r in report.results:
        for text in r.notes:
            grouped.setdefault(("note", text), []).append(r.device)
    return [(kind, text, devices) for (kind, text), devices in grouped.items()]


def check_table(report) -> str:
    """The terminal report of ``edgeflow check``: one row per device, then problems.

    The "arena figure" column names, per device, which arena the RAM figure is built on
    (:data:`ARENA_FIGURES`): measured by tflite-micro, estimated for a pointer width, or
    the activation plan peak (LiteRT and Edge TPU boards).

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
                f"{arena_name('measured', meas['pointer_bytes'])}: {format_bytes(meas['arena_bytes'])} "
                "(the smallest arena tflite-micro runs the model with)"
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
            device_arena_name(r),
            _need(r.ram_required_bytes, r.ram_available_bytes, "host"),
            _need(r.flash_required_bytes, r.flash_available_bytes, "not checked"),
            ops,
            r.verdict,
        ])
    lines += ["", table(
        ["device", "runtime", "arena", "arena figure", "RAM need / avail", "flash need / avail",
         "ops", "verdict"],
        rows, "llrlllll",
    )]
    trouble = [(text, devs) for kind, text, devs in findings(report) if kind == "problem"]
    if trouble:
        lines += ["", "problems:"] + [f"  {', '.join(devs)}: {text}" for text, devs in trouble]
    lines += [
        "",
        "RAM need = arena + runtime and application share (+ the model on Linux boards); "
        "flash need = model + runtime and application code. Shares are estimates from the "
        "profiles (edgeflow devices --json shows their sources).",
    ]
    built = [r for r in report.results if r.ram_source == "firmware"]
    if built:
        lines.append(
            f"{', '.join(r.device for r in built)}: firmware built and run under QEMU: RAM need = data + bss "
            "of the linked image (arena from the run; stack not counted) + the application share; flash need "
            "= the linked image + the application code; --json 'figures' names each figure's source.")
        lines += _latency_lines(built)
    for r in report.results:
        for note in r.notes:
            if note.startswith(("flash and RAM are profile estimates", "TFLM agrees with LiteRT")):
                lines.append(f"  {r.device}: {note}")
    for core, rs in firmware_cores(report).items():
        lines += ["", f"firmware for {core} ({', '.join(r.device for r in rs)}; {rs[0].figures['core']['source']}):",
                  *firmware_breakdown(rs[0].figures)]
    if firmware_cores(report):
        lines.append("")
    lines.append("verdict: " + ("fits every device" if report.fits else "does NOT fit every device"))
    return "\n".join(lines)



def _latency_lines(built: list) -> list[str]:
    """One line per built board (instructions, latency estimate and its formula), then each
    distinct CPI basis once as a footnote ``[n]``.

    A latency source reads ``estimate: instructions x CPI c / f MHz (basis)``
    (``FirmwareResult.figures``): the formula stays on the board's line, the basis, the same
    for every board of a CPI table, moves to the footnote. ``--json`` keeps the whole source.
    """
    lines, notes = [], {}
    for r in built:
        lat = r.figures.get("latency_ms")
        if not lat:
            continue
        formula, basis = lat["source"], None
        if formula.endswith(")") and " (" in formula:
            formula, basis = formula[:-1].split(" (", 1)
        mark = f"; CPI basis [{notes.setdefault(basis, len(notes) + 1)}]" if basis else ""
        lines.append(f"  {r.device}: {r.figures['instructions']['value']:,} instructions per inference, "
                     f"{lat['value']:.2f} ms ({formula}{mark})")
    return lines + [f"  [{n}] CPI basis: {basis}" for basis, n in notes.items()]


def firmware_cores(report) -> dict[str, list]:
    """The results of a check ``Report`` whose firmware was built, by core: ``{cpu: [DeviceResult]}``
    (boards of one core share one image, so one breakdown)."""
    cores: dict[str, list] = {}
    for r in report.results:
        if r.ram_source == "firmware" and "core" in r.figures:
            cores.setdefault(r.figures["core"]["value"], []).append(r)
    return cores


def firmware_breakdown(figures: dict) -> list[str]:
    """Text lines of a firmware's breakdown figures (``FirmwareResult.figures()`` or a check
    result's ``figures``): the operator table with instructions and share of the Invoke()
    total, then the flash split and the arena split, each summed; empty when absent."""
    from edgeflow.firmware import ARENA_PARTS
    from edgeflow.firmware.image import FLASH_PARTS

    lines = []
    ops = figures.get("operators")
    if ops:
        rows = [[str(r["index"]), r["op"], r.get("output_shape", ""), _bytes(r.get("macs")), f"{r['instructions']:,}",
                 f"{r['share']:.1%}", _bytes(r.get("weight_bytes")), _bytes(r.get("activation_bytes"))]
                for r in ops["value"]]
        outside = ops["outside_operators"]
        total = outside + sum(r["instructions"] for r in ops["value"])
        rows.append(["", "outside operators", "", "", f"{outside:,}", f"{outside / total:.1%}", "", ""])
        rows.append(["", "Invoke() total", "", _bytes(sum(r.get("macs") or 0 for r in ops["value"])), f"{total:,}",
                     "100.0%", "", ""])
        lines += ["", table(["#", "operator", "output shape", "MACs", "instructions", "share", "weight B",
                             "activation B"], rows, "lllrrrrr")]
    for key, names, whole in (("flash_split", FLASH_PARTS, "flash"),
                              ("arena_split", ARENA_PARTS, "arena")):
        split = figures.get(key)
        if split:
            parts = " + ".join(f"{name} {split['value'][name]:,}" for name in names)
            lines.append(f"{whole} split: {parts} = {sum(split['value'].values()):,} B ({split['source']})")
    return lines


# --------------------------------------------------------------------------- inspect

# Builtin-option fields that hold a schema enum: field -> enum class of the TFLite schema.
_OPTION_ENUMS = {
    "padding": "Padding",
    "fused_activation_function": "ActivationFunctionType",
    "weights_format": "FullyConnectedOptionsWeightsFormat",
    "kernel_type": "LSTMKernelType",
    "combiner": "CombinerType",
    "reduce_function": "ReduceWindowFunction",
    "algorithm": "RngAlgorithm",
    "comparison_direction": "StablehloComparisonDirection",
    "compare_type": "StablehloComparisonType",
    **{k: "TensorType" for k in ("quantized_bias_type", "out_data_type", "in_data_type",
                                 "output_type", "idx_out_type", "out_type")},
}
_OP_OPTION_ENUMS = {("LSH_PROJECTION", "type"): "LSHProjectionType", ("MIRROR_PAD", "mode"): "MirrorPadMode"}


def _enum_names(enum_class: str) -> dict[int, str]:
    from edgeflow.tflite._schema import schema

    return {v: k for k, v in vars(getattr(schema, enum_class)).items()
            if not k.startswith("_") and isinstance(v, int)}


def _named_options(op_name: str, options: dict) -> dict:
    """Builtin options with enum values as their schema names (``"padding": "SAME"``); a value
    the schema does not name (a damaged file) reads ``"unknown (66)"``."""
    named = {}
    for key, value in options.items():
        enum = _OP_OPTION_ENUMS.get((op_name, key)) or _OPTION_ENUMS.get(key)
        if enum and isinstance(value, int) and not isinstance(value, bool):
            value = _enum_names(enum).get(value, f"unknown ({value})")
        named[key] = value
    return named


def inspect_payload(info, plan, arena) -> dict:
    """``edgeflow inspect --json``'s payload: every field of the model, enums by name.

    Args:
        info: ``tflite.ModelInfo``; plan: its ``MemoryPlan``; arena: its ``ArenaEstimate``.

    Returns:
        ``info.to_dict()`` with each operator's builtin options named (``"padding": "SAME"``,
        ``"fused_activation_function": "RELU"``), plus ``memory_plan`` and ``arena_estimate``
        and the arena figures by their names (:data:`ARENA_FIGURES`).
    """
    data = info.to_dict()
    for op in data["ops"]:
        op["options"] = _named_options(op["name"], op.get("options") or {})
    data["memory_plan"] = plan.to_dict()
    data["arena_estimate"] = arena.to_dict()
    data["arena_figures"] = {
        arena_name("plan"): plan.peak_bytes,
        arena_name("estimated", arena.pointer_bytes): arena.total_bytes,
    }
    return data


def firmware_table(result) -> str:
    """The text report of ``edgeflow firmware``: figures with their sources, then operators."""
    fw, t = result.firmware, result.target
    name = result.board or t.cpu
    lines = [f"firmware for {name}: {t.description}, {t.cpu} on qemu-system-arm -M {t.machine}",
             f"  TFLM {fw.tflm['revision']} ({fw.tflm['origin']}), {len(fw.tflm_sources)} sources, "
             f"{fw.compiled} compiled now, {result.seconds:.1f} s"]
    s = fw.sizes()

    def limit(n):
        return f"of {n:,}" if n else ""

    rows = [["flash", f"{fw.flash:,} B", limit(result.flash_limit),
             f"linked image: text {s['text']:,} + rodata {s['rodata']:,} (model {s['model']:,}) + data {s['data']:,}"],
            ["static RAM", f"{fw.static_ram:,} B", limit(result.ram_limit),
             f"linked image: data {s['data']:,} + bss {s['bss']:,} (arena {fw.arena_size:,}); "
             f"stack {s['stack_reserved']:,} and heap {s['heap_reserved']:,} reserved, not counted"],
            ["arena", format_bytes(result.arena_used) if result.arena_used is None else f"{result.arena_used:,} B",
             "", result.arena_source]]
    if result.instructions is not None:
        rows.append(["instructions", f"{result.instructions:,}", "", "emulated run: one Invoke(), QEMU plugin"])
    if result.latency_ms is not None:
        rows.append(["latency", f"{result.latency_ms:.2f} ms", "",
                     f"estimate: instructions x CPI {t.cpi} / {result.clock_mhz:g} MHz"])
    lines.append(table(["figure", "value", "limit", "source"], rows, "lrrl"))
    lines += firmware_breakdown(result.figures())
    for p in result.problems:
        lines.append(f"problem: {p}")
    for n in result.notes:
        lines.append(f"note: {n}")
    return "\n".join(lines)
