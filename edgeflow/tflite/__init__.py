"""Reading ``.tflite`` models (operators, tensors, weights, MACs, the TFLM memory plan) and
rewriting them (slim files, operator order and offline plan for a smaller arena).

Example:
    >>> from edgeflow.tflite import parse, plan_memory, estimate_arena
    >>> info = parse("model.tflite")
    >>> plan_memory(info).peak_bytes, estimate_arena(info, pointer_bytes=4).total_bytes
"""

from edgeflow.tflite.memory import (
    ArenaEstimate,
    MemoryPlan,
    PlannedBuffer,
    estimate_arena,
    plan_memory,
)
from edgeflow.tflite.reader import (
    ModelInfo,
    OpInfo,
    TensorInfo,
    constant_values,
    load,
    parse,
    read_bytes,
)
from edgeflow.tflite.schedule import ReorderResult, best_order, live_set_bound, reorder_for_arena
from edgeflow.tflite.slim import SlimResult, flash_overhead, litert_twin, slim

__all__ = [
    "read_bytes",
    "parse",
    "load",
    "constant_values",
    "plan_memory",
    "estimate_arena",
    "ModelInfo",
    "OpInfo",
    "TensorInfo",
    "MemoryPlan",
    "PlannedBuffer",
    "ArenaEstimate",
    "slim",
    "litert_twin",
    "flash_overhead",
    "SlimResult",
    "best_order",
    "live_set_bound",
    "reorder_for_arena",
    "ReorderResult",
]
