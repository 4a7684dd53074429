"""Operator order for a smaller TFLM arena.

TFLM runs the operators in the order the file lists them and plans the activation arena
over that order (:mod:`edgeflow.tflite.memory`). Any topological order computes the same
outputs, but the tensors alive at once differ: in a residual block, running the shortcut
projection before or after the main path decides which tensor waits in memory.

The *live set* of a step is every activation alive while one operator runs: the tensors
already produced that a later operator still reads (or that are model outputs), plus the
operator's own outputs; sizes are rounded up to TFLM's 16-byte alignment. The peak of the
live set over the steps is a lower bound of the planned arena for that order, and the
largest set one operator needs by itself (its activation inputs and outputs),
:func:`live_set_bound`, is a lower bound for every order.

:func:`best_order` finds the order with the smallest peak live set: an exact dynamic
program over the sets of executed operators (the live memory after a set has run depends
only on the set; memoised, ``O(states · ops)``) while the number of reachable sets stays
under ``max_states``, otherwise a greedy heuristic (run next the ready operator with the
smallest step peak, then the smallest memory after it). :func:`reorder_for_arena` writes
the reordered file only if TFLM's measured arena is not larger.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field

from edgeflow.tflite.reader import ModelInfo, load

__all__ = [
    "Schedule", "ReorderResult", "live_set_bound", "peak_live_bytes", "best_order", "reorder",
    "reorder_for_arena",
]

ALIGNMENT = 16
MAX_STATES = 200_000


@dataclass
class Schedule:
    """An operator order (indices into the file's operators) and its peak live set in bytes."""

    order: list[int]
    peak_live_bytes: int
    method: str  # "exact", "heuristic" or "original"


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


class _Graph:
    """The activation dataflow of the main subgraph as bit masks over operators."""

    def __init__(self, info: ModelInfo):
        n = len(info.ops)
        self.n = n
        planned = {
            t.index: _align(t.nbytes) for t in info.tensors
            if not t.is_constant and not t.is_variable and t.nbytes > 0
        }
        producer: dict[int, int] = {}
        consumers: dict[int, int] = {}
        for op in info.ops:
            for t in op.outputs:
                if t in planned:
                    producer[t] = op.index
            for t in op.inputs:
                if t in planned:
                    consumers[t] = consumers.get(t, 0) | (1 << op.index)
        outputs = {t.index for t in info.outputs}
        self.preds = [0] * n
        for op in info.ops:
            for t in op.inputs:
                if t in producer and producer[t] != op.index:
                    self.preds[op.index] |= 1 << producer[t]
        # tensors: (size, producer or -1, consumer mask, kept to the end)
        self.tensors = [
            (size, producer.get(t, -1), consumers.get(t, 0), t in outputs)
            for t, size in planned.items() if t in producer or consumers.get(t)
        ]
        self.out_bytes = [0] * n
        self.frees: list[list[tuple[int, int]]] = [[] for _ in range(n)]  # op -> [(consumer mask, size)]
        self.start = 0  # model inputs (and anything no op writes) live from scope 0
        for size, p, cons, keep in self.tensors:
            if p >= 0:
                self.out_bytes[p] += size
            else:
                self.start += size
            if not keep and not cons and p >= 0:
                self.frees[p].append((1 << p, size))  # written, never read: freed at once
            elif not keep:
                m = cons
                while m:
                    low = m & -m
                    self.frees[low.bit_length() - 1].append((cons, size))
                    m ^= low

    def released(self, done: int, v: int) -> int:
        """Bytes freed once ``v`` has run after the set ``done``: tensors ``v`` reads last."""
        after = done | (1 << v)
        return sum(size for cons, size in self.frees[v] if cons & after == cons)

    def peak(self, order: list[int]) -> int:
        done, mem, peak = 0, self.start, self.start
        for v in order:
            peak = max(peak, mem + self.out_bytes[v])
            mem += self.out_bytes[v] - self.released(done, v)
            done |= 1 << v
        return peak


def live_set_bound(model) -> int:
    """The largest live set any single operator needs: its activation inputs and outputs,
    16-byte aligned, in bytes. No operator order and no memory planner can go below it."""
    info = model if isinstance(model, ModelInfo) else load(model)[1]
    sizes = {t.index: _align(t.nbytes) for t in info.tensors
             if not t.is_constant and not t.is_variable and t.nbytes > 0}
    return max((sum(sizes.get(t, 0) for t in {*op.inputs, *op.outputs}) for op in info.ops), default=0)


def peak_live_bytes(model, order: list[int] | None = None) -> int:
    """The peak live set of ``order`` (default: the file's order), in bytes."""
    info = model if isinstance(model, ModelInfo) else load(model)[1]
    graph = _Graph(info)
    return graph.peak(list(range(graph.n)) if order is None else order)


class _TooLarge(Exception):
    pass


def _exact(graph: _Graph, max_states: int) -> list[int]:
    """The order with the smallest peak live set (ties: the smallest sum of step peaks)."""
    full = (1 << graph.n) - 1
    memo: dict[int, tuple[int, int, int]] = {full: (0, 0, -1)}

    def solve(done: int, mem: int) -> tuple[int, int, int]:
        hit = memo.get(done)
        if hit is not None:
            return hit
        if len(memo) >= max_states:
            raise _TooLarge
        best = None
        for v in range(graph.n):
            bit = 1 << v
            if done & bit or graph.preds[v] & ~done:
                continue
            step = mem + graph.out_bytes[v]
            rest_peak, rest_sum, _ = solve(done | bit, step - graph.released(done, v))
            cand = (max(step, rest_peak), step + rest_sum, v)
            if best is None or cand[:2] < best[:2]:
                best = cand
        memo[done] = best
        return best

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * graph.n + 100))
    try:
        solve(0, graph.start)
    finally:
        sys.setrecursionlimit(limit)
    order, done = [], 0
    while done != full:
        v = memo[done][2]
        order.append(v)
        done |= 1 << v
    return order


def _greedy(graph: _Graph) -> list[int]:
    done, mem, order = 0, graph.start, []
    for _ in range(graph.n):
        ready = [v for v in range(graph.n) if not done & (1 << v) and not graph.preds[v] & ~done]
        v = min(ready, key=lambda v: (mem + graph.out_bytes[v],
                                      graph.out_bytes[v] - graph.released(done, v), v))
        mem += graph.out_bytes[v] - graph.released(done, v)
        done |= 1 << v
        order.append(v)
    return order


def best_order(model, *, max_states: int = MAX_STATES) -> Schedule:
    """The topological operator order with the smallest peak live set.

    Exact (dynamic programming over executed-operator sets) while at most ``max_states``
    sets are reachable, greedy otherwise (module docstring). The file's own order wins
    ties, so a model that is already best keeps its order.

    Example:
        >>> best_order("model.tflite").order
        [0, 1, 3, 2, 4]
    """
    info = model if isinstance(model, ModelInfo) else load(model)[1]
    graph = _Graph(info)
    original = list(range(graph.n))
    try:
        order, method = _exact(graph, max_states), "exact"
    except _TooLarge:
        order, method = _greedy(graph), "heuristic"
    if graph.peak(order) >= graph.peak(original):
        return Schedule(original, graph.peak(original), "original")
    return Schedule(order, graph.peak(order), method)


def reorder(model, order: list[int]) -> bytes:
    """The model with the main subgraph's operators in ``order`` (a permutation of their
    indices that runs every producer before its consumers); nothing else changes.

    Raises:
        EdgeflowError: ``order`` is not a topological order of the operators.

    Example:
        >>> data = reorder("model.tflite", best_order("model.tflite").order)
    """
    from edgeflow.errors import EdgeflowError
    from edgeflow.tflite.writer import pack, unpack

    data, info = load(model)
    graph = _Graph(info)
    done = 0
    if sorted(order) != list(range(graph.n)):
        raise EdgeflowError(f"the order must list each of the {graph.n} operators once")
    for v in order:
        if graph.preds[v] & ~done:
            raise EdgeflowError(f"operator {v} runs before an operator whose output it reads")
        done |= 1 << v
    obj = unpack(data)
    ops = obj.subgraphs[0].operators
    obj.subgraphs[0].operators = [ops[i] for i in order]
    return pack(obj)


@dataclass
class ReorderResult:
    """What :func:`reorder_for_arena` found; arena figures measured by TFLM on this host.

    ``written`` is True when a rewritten file was returned (its arena is smaller, or equal
    with a smaller peak live set); ``offline_plan`` when it carries edgeflow's tensor offsets
    (:mod:`edgeflow.tflite.placement`). ``plan_before``/``plan_after`` are the planned
    activation bytes (TFLM's greedy plan, or the offline plan). ``measured_on`` notes a
    stand-in when TFLM aborts on the model itself (a softmax scale raised as in
    ``runtime.tflm.raise_softmax_scale``: the arena does not depend on it).
    """

    method: str
    order: list[int]
    live_set_bound: int
    peak_live_before: int
    peak_live_after: int
    plan_before: int
    plan_after: int
    arena_before: int | None
    arena_after: int | None
    written: bool
    offline_plan: bool = False
    measured_on: str = "the model"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def reorder_for_arena(model: bytes | str | os.PathLike, *, max_states: int = MAX_STATES,
                      offline_plan: bool = True, timeout: float = 300) -> tuple[bytes, ReorderResult]:
    """Shrink TFLM's arena: the operator order with the smallest peak live set and, where
    TFLM's greedy planner leaves holes, an offline plan of the tensor offsets
    (:mod:`edgeflow.tflite.placement`). A rewrite is kept only if TFLM's measured arena is
    not larger than the original's.

    Returns:
        ``(bytes, ReorderResult)``: the rewritten model, or the input unchanged when
        nothing helps.

    Raises:
        EdgeflowError: the input is not a TFLite model.

    Example:
        >>> data, r = reorder_for_arena("model.tflite")
        >>> r.arena_before, r.arena_after, r.live_set_bound
    """
    from edgeflow.runtime import tflm
    from edgeflow.tflite.memory import plan_memory
    from edgeflow.tflite.placement import best_offsets, with_offline_plan

    data, info = load(model)
    schedule = best_order(info, max_states=max_states)
    plan_before = plan_memory(info).peak_bytes
    result = ReorderResult(
        method=schedule.method, order=list(range(len(info.ops))), live_set_bound=live_set_bound(info),
        peak_live_before=peak_live_bytes(info), peak_live_after=peak_live_bytes(info),
        plan_before=plan_before, plan_after=plan_before, arena_before=None, arena_after=None,
        written=False,
    )
    # candidates, best first: (bytes, order, planned bytes, offline plan)
    reordered = data if schedule.method == "original" else reorder(data, schedule.order)
    reordered_info = load(reordered)[1]
    candidates = []
    if offline_plan:
        plan = best_offsets(reordered_info)
        if plan.peak_bytes < plan.tflm_peak_bytes:
            candidates.append((with_offline_plan(reordered, plan), plan.peak_bytes, True))
    if reordered is not data:
        candidates.append((reordered, plan_memory(reordered_info).peak_bytes, False))

    def runnable(b: bytes) -> bytes:
        return tflm.raise_softmax_scale(b) if tflm.known_aborts(b) else b

    if tflm.known_aborts(data):
        result.measured_on = "the model with its softmax input scale raised (TFLM aborts on it)"
    first = tflm.measure_arena(runnable(data), timeout=timeout)
    if not first.ok:
        result.notes.append(f"TFLM did not run the model: {first.message}")
        return data, result
    result.arena_before = result.arena_after = first.arena_bytes
    for candidate, planned, offline in candidates:
        measured = tflm.measure_arena(runnable(candidate), timeout=timeout)
        if not measured.ok:
            result.notes.append(f"TFLM did not run the rewritten model: {measured.message}")
            continue
        if measured.arena_bytes > first.arena_bytes:
            result.notes.append(f"TFLM's arena grew to {measured.arena_bytes:,} bytes with "
                                f"{'the offline plan' if offline else 'the new order'}: not kept")
            continue
        result.arena_after, result.plan_after, result.offline_plan = measured.arena_bytes, planned, offline
        result.written = True
        if reordered is not data:
            result.order, result.peak_live_after = schedule.order, schedule.peak_live_bytes
        else:
            result.method = "original"
        return candidate, result
    return data, result
