"""Pruning that really shrinks models.

- ``structured``: remove whole filters/neurons and rebuild a smaller functional model
  (residual groups, concatenation, flatten→dense), scored by a named criterion
  (``edgeflow.prune.criteria``: l1, l2, fpgm, activation, taylor, hessian).
- ``magnitude``: TF-MOT magnitude pruning (zeros; ship the ``.tflite`` compressed) with
  named schedules, per-layer targets, m:n sparsity and the XNNPACK latency policy;
  ``strip``, ``callbacks`` and ``sparsity`` for users who train themselves.

Example:
    >>> from edgeflow import prune
    >>> result = prune.magnitude(model, 0.8, data=(x, y), epochs=2)
    >>> result.model.save("pruned.keras")
"""

from __future__ import annotations

from edgeflow.prune.criteria import CRITERIA
from edgeflow.prune.magnitude import PruneResult, callbacks, magnitude, sparsity, strip
from edgeflow.prune.schedules import SCHEDULES
from edgeflow.prune.structured import StructuredResult, structured

__all__ = [
    "CRITERIA",
    "PruneResult",
    "SCHEDULES",
    "StructuredResult",
    "callbacks",
    "magnitude",
    "sparsity",
    "strip",
    "structured",
]
