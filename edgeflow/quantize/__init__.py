"""Quantization: QAT beyond TF-MOT's layer list, post-training modes, per-layer error.

Public API:
    qat(model, data=...) -> QatResult      quantization-aware training (TF-MOT)
    annotate(model)                        the annotated model, before quantize_apply
    custom_objects()                       classes needed to load a saved QAT model
"""

from __future__ import annotations

from edgeflow.quantize.configs import custom_objects
from edgeflow.quantize.qat import QatResult, annotate, kernel_sparsity, qat

__all__ = ["QatResult", "annotate", "custom_objects", "kernel_sparsity", "qat"]
