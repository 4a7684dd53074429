"""Quantization: QAT beyond TF-MOT's layer list, post-training modes, per-layer error.

Public API:
    qat(model, data=...) -> QatResult           quantization-aware training on TF-MOT
    ptq(model, mode, data) -> bytes             post-training int8/int16x8/float16/dynamic
    verify_int8(tflite) -> Int8Check            names float ops and stray (de)quantize ops
    clipping_warnings(tflite, model, x)         int8 outputs that clip the float model's outputs
    layer_errors(model, data) -> LayerErrors    per-op error (TFLite debugger), worst first
    compare_keep_float(model, data, eval, n)    int8 vs int8 with n worst ops in float vs int16x8
    custom_objects()                            classes needed to load a saved QAT model
    quantize_to_tflite(model, mode, data, ...)  one step for CLI/recipes: .tflite + report
"""

from __future__ import annotations

from edgeflow.quantize.configs import custom_objects
from edgeflow.quantize.ptq import (
    LayerError,
    LayerErrors,
    Variant,
    compare_keep_float,
    layer_errors,
    ptq,
    variants_table,
)
from edgeflow.quantize.qat import QatResult, annotate, qat
from edgeflow.quantize.stage import QUANTIZE_MODES, Outcome, quantize_to_tflite
from edgeflow.quantize.verify import Int8Check, clipping_warnings, verify_int8

__all__ = [
    "Int8Check",
    "Outcome",
    "QUANTIZE_MODES",
    "LayerError",
    "LayerErrors",
    "QatResult",
    "Variant",
    "annotate",
    "clipping_warnings",
    "compare_keep_float",
    "custom_objects",
    "layer_errors",
    "ptq",
    "qat",
    "quantize_to_tflite",
    "variants_table",
    "verify_int8",
]
