"""An offline arena plan: tensor offsets chosen by edgeflow, written for TFLM to use.

TFLM places activations with a greedy planner: largest buffer first, each at the lowest
offset free for its lifetime (:mod:`edgeflow.tflite.memory`). On a chain of layers whose
sizes grow and shrink (MobileNet) that leaves holes: its plan of MobileNetV1 α=0.25 is
1.33× the largest live set. TFLM also reads an *offline* plan from the model's metadata
``OfflineMemoryAllocation`` (``micro_allocator.cc``): int32 ``[version 1, subgraph 0,
number of tensors, offset per tensor]``, ``-1`` for a tensor it places itself (constants,
scratch buffers). :func:`best_offsets` tries placement orders (TFLM's, by first use, by
lifetime, by size × lifetime, then seeded random orders) with first-fit and best-fit, and
keeps the smallest peak; it stops as soon as the peak equals the peak live set (no
placement of these lifetimes can go below it). :func:`with_offline_plan` writes the plan
when it beats TFLM's own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from edgeflow.tflite.memory import _align, lifetimes, plan_memory
from edgeflow.tflite.reader import ModelInfo, load

__all__ = ["OfflinePlan", "best_offsets", "with_offline_plan", "METADATA_NAME"]

METADATA_NAME = "OfflineMemoryAllocation"
ALIGNMENT = 16


@dataclass
class OfflinePlan:
    """Offsets for the planned tensors (``{tensor: offset}``) and the resulting peak, bytes."""

    offsets: dict[int, int]
    peak_bytes: int
    tflm_peak_bytes: int  # TFLM's own greedy plan of the same model
    live_bound: int  # the largest sum of sizes alive at one scope
    method: str


def _requests(info: ModelInfo) -> list[tuple[int, int, int, int]]:
    spans = lifetimes(info)
    return [
        (t.index, _align(t.nbytes, ALIGNMENT), *spans[t.index]) for t in info.tensors
        if not t.is_constant and not t.is_variable and t.nbytes > 0 and t.index in spans
    ]


def _place(requests, order, best_fit: bool) -> tuple[dict[int, int], int]:
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    offsets: dict[int, int] = {}
    peak = 0
    for i in order:
        tensor, size, first, last = requests[i]
        live = sorted((o, s) for o, s, f, la in placed if not (f > last or first > la))
        gaps, cursor = [], 0
        for o, s in live:
            if o - cursor >= size:
                gaps.append((o - cursor, cursor))
            cursor = max(cursor, o + s)
        if best_fit and gaps:
            offset = min(gaps)[1]
        else:
            offset = gaps[0][1] if gaps else cursor
        offsets[tensor] = offset
        placed.append((offset, size, first, last))
        peak = max(peak, offset + size)
    return offsets, peak


def _live_bound(requests) -> int:
    scopes = {s for _, _, f, la in requests for s in (f, la)}
    return max((sum(size for _, size, f, la in requests if f <= s <= la) for s in scopes), default=0)


def best_offsets(model, *, trials: int = 300, seed: int = 0) -> OfflinePlan:
    """The placement with the smallest peak among the orders tried (module docstring).

    Example:
        >>> plan = best_offsets("mobilenet_v1.tflite")
        >>> plan.tflm_peak_bytes, plan.peak_bytes, plan.live_bound
        (73728, 55296, 55296)
    """
    info = model if isinstance(model, ModelInfo) else load(model)[1]
    requests = _requests(info)
    n = range(len(requests))
    bound = _live_bound(requests)
    orders = {
        "tflm (largest first)": sorted(reversed(n), key=lambda i: -requests[i][1]),
        "first use": sorted(n, key=lambda i: (requests[i][2], -requests[i][1])),
        "longest lifetime": sorted(n, key=lambda i: (requests[i][2] - requests[i][3], -requests[i][1])),
        "size x lifetime": sorted(n, key=lambda i: -requests[i][1] * (requests[i][3] - requests[i][2] + 1)),
        "last use": sorted(n, key=lambda i: (-requests[i][3], -requests[i][1])),
    }
    best: tuple[int, dict, str] | None = None
    for name, order in orders.items():
        for best_fit in (False, True):
            offsets, peak = _place(requests, order, best_fit)
            if best is None or peak < best[0]:
                best = (peak, offsets, f"{name}, {'best' if best_fit else 'first'} fit")
    rng = random.Random(seed)
    base = orders["tflm (largest first)"]
    for _ in range(trials if best and best[0] > bound else 0):
        order = list(base)
        for _ in range(max(1, len(order) // 8)):  # a few swaps of TFLM's order
            a, b = rng.randrange(len(order)), rng.randrange(len(order))
            order[a], order[b] = order[b], order[a]
        offsets, peak = _place(requests, order, rng.random() < 0.5)
        if peak < best[0]:
            best = (peak, offsets, "random search from TFLM's order")
            base = order
        if best[0] <= bound:
            break
    tflm_peak = plan_memory(info).peak_bytes
    peak, offsets, method = best if best else (0, {}, "nothing to plan")
    return OfflinePlan(offsets, peak, tflm_peak, bound, method)


def with_offline_plan(model, plan: OfflinePlan | None = None) -> bytes:
    """The model with ``plan`` (default :func:`best_offsets`) in its ``OfflineMemoryAllocation``
    metadata, replacing any plan it had. Nothing else changes.

    Example:
        >>> data = with_offline_plan("model.tflite")
    """
    import numpy as np

    from edgeflow.tflite._schema import schema
    from edgeflow.tflite.writer import pack, unpack

    data, info = load(model)
    plan = plan or best_offsets(info)
    values = [1, 0, len(info.tensors)] + [plan.offsets.get(t.index, -1) for t in info.tensors]
    obj = unpack(data)
    buf = schema.BufferT()
    buf.data = np.asarray(values, "<i4").view(np.uint8)
    obj.buffers.append(buf)
    meta = schema.MetadataT()
    meta.name = METADATA_NAME
    meta.buffer = len(obj.buffers) - 1
    obj.metadata = [m for m in obj.metadata or [] if _name(m) != METADATA_NAME] + [meta]
    return pack(obj)


def _name(meta) -> str:
    return meta.name.decode() if isinstance(meta.name, bytes) else str(meta.name or "")
