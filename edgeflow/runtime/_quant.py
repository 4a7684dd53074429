"""Float ↔ integer conversion at a model's inputs and outputs (numpy only).

Both LiteRT and TFLM describe an input/output tensor with a details dict; the affine
quantization is ``real = scale * (q - zero_point)``, so

    q = clip(round(x / scale) + zero_point, dtype min, dtype max)
    x = scale * (q - zero_point)

A tensor with scale 0 is not quantized: values pass through with a plain cast.
"""

from __future__ import annotations

import numpy as np


def qparams(details: dict) -> tuple[float, int]:
    """``(scale, zero_point)`` from a LiteRT or TFLM details dict (``(0.0, 0)`` when unquantized)."""
    params = details.get("quantization_parameters")
    if params is not None and len(params.get("scales", ())) == 1:
        return float(params["scales"][0]), int(params["zero_points"][0])
    scale, zero_point = details.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


def quantize(x: np.ndarray, details: dict) -> np.ndarray:
    """Float ``x`` in the tensor's dtype: quantized with its scale/zero point if it has them."""
    dtype = np.dtype(details["dtype"])
    x = np.asarray(x)
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = qparams(details)
    if scale == 0.0:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, details: dict) -> np.ndarray:
    """The tensor's values as float32 (integer outputs without quantization stay integers)."""
    q = np.asarray(q)
    if q.dtype.kind == "f":
        return q.astype(np.float32)
    scale, zero_point = qparams(details)
    if scale == 0.0:
        return q
    return (scale * (q.astype(np.float64) - zero_point)).astype(np.float32)
