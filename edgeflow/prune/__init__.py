"""Pruning that really shrinks models.

- ``structured``: remove whole filters/neurons and rebuild a smaller functional model
  (residual groups, concatenation, flatten→dense), scored by a named criterion
  (``edgeflow.prune.criteria``: l1, l2, fpgm, activation, taylor, hessian).
- ``magnitude``: TF-MOT magnitude pruning (zeros; ship the ``.tflite`` compressed) with
  named schedules, per-layer targets, m:n sparsity and the XNNPACK latency policy;
  ``strip``, ``callbacks`` and ``sparsity`` for users who train themselves.
- ``tflite_sparsity``: zero weights and gzip size of a ``.tflite``; ``convert_sparse``: the
  converter's sparse encoding (``Optimize.EXPERIMENTAL_SPARSITY``).

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
from edgeflow.prune.tflite_size import TfliteSparsity, convert_sparse, tflite_sparsity

__all__ = [
    "CRITERIA",
    "PruneResult",
    "SCHEDULES",
    "StructuredResult",
    "TfliteSparsity",
    "callbacks",
    "convert_sparse",
    "magnitude",
    "sparsity",
    "strip",
    "structured",
    "tflite_sparsity",
]
