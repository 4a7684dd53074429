"""Pruning that really shrinks models.

- ``magnitude``: TF-MOT magnitude pruning (zeros; ship the ``.tflite`` compressed) with
  named schedules, per-layer targets, m:n sparsity and the XNNPACK latency policy;
  ``strip``, ``callbacks`` and ``sparsity`` for users who train themselves.

Example:
    >>> from edgeflow import prune
    >>> result = prune.magnitude(model, 0.8, data=(x, y), epochs=2)
    >>> result.model.save("pruned.keras")
"""

from __future__ import annotations

from edgeflow.prune.magnitude import PruneResult, callbacks, magnitude, sparsity, strip
from edgeflow.prune.schedules import SCHEDULES

__all__ = ["PruneResult", "SCHEDULES", "callbacks", "magnitude", "sparsity", "strip"]
