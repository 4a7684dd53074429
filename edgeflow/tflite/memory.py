"""The activation memory plan (like TFLM's GreedyMemoryPlanner) and the arena estimate.

The plan follows TFLM's ``AllocationInfoBuilder`` + ``GreedyMemoryPlanner``:

1. Lifetimes, in TFLM's "allocation scopes": the subgraph's inputs and outputs are created
   at scope 0; operator ``i`` runs at scope ``i + 1``; a tensor lives from the scope of
   the operator that writes it (0 for model inputs) to the last scope that reads it; model
   outputs live until the last operator.
2. Buffers: every tensor of the main subgraph that has no data in the model, is not a
   variable (TFLM keeps those in the persistent tail) and has a non-zero size, with its
   size rounded up to the arena alignment (16 bytes in TFLM).
3. Kernel scratch buffers (see :func:`scratch_requests`) follow the tensors, alive for
   their operator's scope only.
4. Placement: buffers sorted by size, largest first (equal sizes in reverse order of
   addition, because TFLM fills its sort array from the tail); each is put at the lowest
   offset where it does not overlap, in memory, any already placed buffer whose lifetime
   overlaps its own (first fit over the placed buffers in offset order).
5. ``peak_bytes = max(offset + size)`` over all buffers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgeflow.tflite.reader import ModelInfo

__all__ = ["PlannedBuffer", "MemoryPlan", "ArenaEstimate", "plan_memory", "estimate_arena"]


@dataclass
class PlannedBuffer:
    """One tensor's place in the activation arena; lifetime in TFLM scopes (op ``i`` = ``i+1``)."""

    tensor: int  # -1 for a kernel's scratch buffer
    offset: int
    size: int
    first: int
    last: int


@dataclass
class MemoryPlan:
    """The planned (non-persistent) activation memory."""

    peak_bytes: int
    buffers: list[PlannedBuffer]
    alignment: int = 16

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def lifetimes(info: ModelInfo) -> dict[int, tuple[int, int]]:
    """``{tensor: (first, last)}`` in TFLM allocation scopes for the main subgraph."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}

    def created(t: int, scope: int) -> None:  # TFLM's UpdateFirstCreated
        first[t] = scope
        last[t] = scope

    for t in info.inputs:
        created(t.index, 0)
    for t in info.outputs:
        created(t.index, 0)
    for op in info.ops:
        scope = op.index + 1
        for t in op.outputs:
            created(t, scope)
        for t in op.inputs:
            if t >= 0:
                last[t] = scope
                first.setdefault(t, scope)  # read but never written: only constants in TFLM
        for t in op.outputs:
            last[t] = scope
    end = len(info.ops)
    for t in info.outputs:
        last[t.index] = end
    return {t: (first[t], last[t]) for t in first}


def scratch_requests(info: ModelInfo, op) -> list[int]:
    """Bytes of the scratch buffers TFLM's reference kernels request for ``op`` in Prepare.

    Only MEAN/SUM on int8/int16/uint8 (an int32 accumulator per output element,
    ``reduce_common.cc``) among the common kernels; optimized kernels (CMSIS-NN, ESP-NN)
    request more (e.g. im2col buffers) and are not modelled.
    """
    if op.name in ("MEAN", "SUM") and op.dtype in ("int8", "int16", "uint8") and op.outputs:
        return [4 * info.tensors[op.outputs[0]].elements]
    return []


def plan_memory(info: ModelInfo, *, alignment: int = 16, scratch: bool = True) -> MemoryPlan:
    """Plan the activation (non-persistent) arena of the main subgraph like TFLM does.

    See the module docstring for the algorithm; ``scratch=False`` plans the tensors alone. The plan matches TFLM's "head" of the arena
    for models whose kernels request no scratch buffers (the reference kernels of the
    ``tflite-micro`` package request none for CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
    pooling or SOFTMAX); optimized kernels (CMSIS-NN, ESP-NN) may add scratch buffers.

    Example:
        >>> plan = plan_memory(parse("model.tflite"))
        >>> plan.peak_bytes
        3072
    """
    if alignment < 1:
        raise ValueError("alignment must be at least 1")
    spans = lifetimes(info)
    # (tensor, size, first, last) in TFLM's AddBuffer order: tensors, then scratch buffers
    requests = []
    for t in info.tensors:
        if t.is_constant or t.is_variable or t.nbytes == 0 or t.index not in spans:
            continue
        requests.append((t.index, _align(t.nbytes, alignment), *spans[t.index]))
    for op in info.ops if scratch else ():
        for size in scratch_requests(info, op):
            requests.append((-1, _align(size, alignment), op.index + 1, op.index + 1))
    # TFLM fills its sort array from the tail (the last added buffer comes first), then
    # runs a stable bubble sort, largest first: equal sizes end up in reverse tensor order.
    order = sorted(reversed(range(len(requests))), key=lambda i: -requests[i][1])
    offsets = _place([requests[i][1:] for i in order])
    offsets = dict(zip(order, offsets, strict=True))
    buffers = [
        PlannedBuffer(tensor=t, offset=offsets[i], size=size, first=first, last=last)
        for i, (t, size, first, last) in enumerate(requests)
    ]
    peak = max((b.offset + b.size for b in buffers), default=0)
    return MemoryPlan(peak_bytes=peak, buffers=buffers, alignment=alignment)


def _place(buffers: list[tuple[int, int, int]]) -> list[int]:
    """First-fit offsets for ``(size, first, last)`` buffers, placed in the given order.

    Each buffer goes at the lowest offset where it overlaps, in memory, no placed buffer
    alive at the same time: scanning the live placed buffers in offset order, the offset
    before the k-th is the running maximum of the ends before it, and the buffer goes in the
    first gap at least its size. The placed buffers are kept sorted by offset in NumPy
    arrays, so each placement is a few vector operations (no Python loop over the placed
    buffers): 20,000 buffers take well under a second (``bench/bench_fuzz.py --big``).
    """
    import numpy as np

    n = len(buffers)
    p_offset, p_end = np.zeros(n, np.int64), np.zeros(n, np.int64)  # in placement order
    p_first, p_last = np.zeros(n, np.int64), np.zeros(n, np.int64)
    offsets = []
    for count, (size, first, last) in enumerate(buffers):
        live = np.flatnonzero((p_first[:count] <= last) & (p_last[:count] >= first))
        offset = 0
        if live.size:
            # offset order; ties in any order give the same first fit
            live = live[np.argsort(p_offset[live], kind="stable")]
            before = np.concatenate(([0], np.maximum.accumulate(p_end[live])))  # offset before the k-th
            fits = np.flatnonzero(p_offset[live] - before[:-1] >= size)
            offset = int(before[fits[0]] if fits.size else before[-1])
        offsets.append(offset)
        p_offset[count], p_end[count], p_first[count], p_last[count] = offset, offset + size, first, last
    return offsets


@dataclass
class ArenaEstimate:
    """What TFLM's tensor arena will hold, estimated for a pointer width.

    ``nonpersistent_bytes`` is the planned activation memory (the arena "head");
    ``persistent_bytes`` the runtime structures kept for the model's lifetime (the "tail").
    """

    nonpersistent_bytes: int
    persistent_bytes: int
    total_bytes: int
    pointer_bytes: int
    notes: list[str] = field(default_factory=list)
    breakdown: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def estimate_arena(info: ModelInfo, *, pointer_bytes: int = 4, plan: MemoryPlan | None = None) -> ArenaEstimate:
    """Estimate TFLM's arena (planned activations + persistent runtime structs).

    See :mod:`edgeflow.tflite.arena` for the struct sizes and their sources. ``plan`` is
    ``plan_memory(info)`` when the caller has it already (it is made otherwise).

    Example:
        >>> estimate_arena(parse("model.tflite"), pointer_bytes=4).total_bytes
        5120
    """
    from edgeflow.tflite.arena import persistent_bytes

    if pointer_bytes not in (4, 8):
        raise ValueError("pointer_bytes must be 4 (32-bit MCU) or 8 (64-bit host)")
    plan = plan or plan_memory(info)
    persistent, breakdown, notes = persistent_bytes(info, pointer_bytes)
    return ArenaEstimate(
        nonpersistent_bytes=plan.peak_bytes,
        persistent_bytes=persistent,
        total_bytes=plan.peak_bytes + persistent,
        pointer_bytes=pointer_bytes,
        notes=notes,
        breakdown=breakdown,
    )
