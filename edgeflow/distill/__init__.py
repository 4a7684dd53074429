"""Knowledge distillation: train a small student from a larger teacher.

Three kinds of terms, combinable with weights (``edgeflow.distill.losses``): soft
labels (``soft``), feature maps with learned adapters (``feature``) and attention
transfer (``attention``). :class:`Distiller` is a Keras model for the usual
``compile``/``fit`` workflow; :func:`distill` is the one-call form that returns a plain
student ready for QAT and conversion; :func:`chain` runs prune → distill from the
unpruned model → QAT → int8 and reports every stage's accuracy and size.

Example:
    >>> from edgeflow.distill import distill
    >>> small = distill(student, teacher, (x, y), losses=["soft"], epochs=20).model
"""

from __future__ import annotations

from edgeflow.distill.chain import ChainResult, chain, chain_recipe
from edgeflow.distill.distiller import Distiller, DistillResult, distill
from edgeflow.distill.losses import LOSSES, DistillationLoss, get

__all__ = [
    "LOSSES",
    "ChainResult",
    "DistillResult",
    "DistillationLoss",
    "Distiller",
    "chain",
    "chain_recipe",
    "distill",
    "get",
]
