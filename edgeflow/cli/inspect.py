"""``edgeflow inspect``: what a .tflite holds, and the activation memory TFLM will plan."""

from __future__ import annotations

import click

from edgeflow.cli._output import finish, json_option


@click.command()
@click.argument("model")
@json_option
def inspect(model: str, as_json: bool) -> None:
    """Show MODEL's operators (versions, counts, MACs), inputs/outputs, weights and memory."""
    from edgeflow.report import inspect_payload
    from edgeflow.tflite import estimate_arena, parse, plan_memory

    info = parse(model)
    plan = plan_memory(info)
    arena = estimate_arena(info, pointer_bytes=4, plan=plan)
    finish("inspect", inspect_payload(info, plan, arena), text=render(model, info, plan, arena),
           model={"path": model, "size_bytes": info.size_bytes},
           summary=f"{len(info.ops)} operators, {info.total_macs:,} MACs, {len(info.float_ops())} float ops")


def _quant(t) -> str:
    if not t.scale:
        return "-"
    if len(t.scale) > 1:
        return f"per-channel ({len(t.scale)} scales)"
    zp = t.zero_point[0] if t.zero_point else 0
    return f"scale={t.scale[0]:.6g} zero_point={zp}"


def _table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """The lines of an indented table without a rule (report.table)."""
    from edgeflow.report import table

    return ["  " + line for line in table(header, rows, align, rule=False).splitlines()]


def render(path: str, info, plan, arena) -> str:
    """The human-readable report of ``edgeflow inspect`` (also used in tests)."""
    from edgeflow.report import arena_name

    out = [
        f"{path}: {info.size_bytes:,} bytes, schema v{info.schema_version}, "
        f"{info.subgraphs} subgraph(s), {len(info.tensors)} tensors"
    ]
    versions, counts = info.op_versions(), info.op_counts()
    macs: dict[str, int] = {}
    for op in info.ops:
        macs[op.name] = macs.get(op.name, 0) + op.macs
    out.append(f"\noperators ({len(info.ops)}, {info.total_macs:,} MACs):")
    rows = [[name, f"v{versions[name]}", str(counts[name]), f"{macs[name]:,}"]
            for name in sorted(counts, key=lambda n: (-macs[n], n))]
    out += _table(["op", "version", "count", "MACs"], rows, "llrr")
    for title, tensors in (("inputs", info.inputs), ("outputs", info.outputs)):
        out.append(f"\n{title}:")
        rows = [[_short(t.name) if t.name else f"tensor {t.index}", t.dtype, "x".join(map(str, t.shape)) or "scalar", _quant(t)]
                for t in tensors]
        out += _table(["name", "dtype", "shape", "quantization"], rows, "llll")
    floats = info.float_ops()
    out.append("")
    plan_name, arena_label = arena_name("plan"), arena_name("estimated", arena.pointer_bytes)
    width = max(len(plan_name), len(arena_label)) + 2
    out.append(f"{'weights:':<{width}}{info.weights_bytes:,} bytes")
    out.append(f"{plan_name + ':':<{width}}{plan.peak_bytes:,} bytes "
               f"(TFLM greedy plan, {len(plan.buffers)} buffers, {plan.alignment}-byte aligned)")
    out.append(f"{arena_label + ':':<{width}}{arena.total_bytes:,} bytes "
               f"({arena.nonpersistent_bytes:,} activations + {arena.persistent_bytes:,} persistent)")
    if floats:
        names = sorted({op.name for op in floats})
        out.append(f"{'float ops:':<{width}}{len(floats)} ({', '.join(names)})")
    else:
        out.append(f"{'float ops:':<{width}}none (integer-only compute)")
    return "\n".join(out)


def _short(name: str, width: int = 48) -> str:
    """Converter names can run to hundreds of characters: keep the end (--json has all)."""
    return name if len(name) <= width else "…" + name[-(width - 1):]
