"""A model's inputs and outputs for the runtimes (numpy only): the caller's arrays checked
against the input shapes, and float ↔ integer conversion.

Both LiteRT and TFLM describe an input/output tensor with a details dict; the affine
quantization is ``real = scale * (q - zero_point)``, so

    q = clip(round(x / scale) + zero_point, dtype min, dtype max)
    x = scale * (q - zero_point)

A tensor with scale 0 is not quantized: values pass through with a plain cast.
"""

from __future__ import annotations

import numpy as np

from edgeflow.errors import EdgeflowError


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


def by_input_name(x, model: bytes):
    """``x`` as given, or, when it is a dict by input name, a list in the file's input order.

    The names are the first signature def's (``serving_default``: the Keras input names,
    which :func:`edgeflow.convert.convert` writes), each mapped to its tensor and so to its
    place in the subgraph's input list.

    Raises:
        EdgeflowError: the file has no signature def (a slim file keeps none: give a list
            in input order), or the dict's keys are not the file's input names.
    """
    if not isinstance(x, dict):
        return x
    from edgeflow.tflite._schema import schema

    try:
        root = schema.Model.GetRootAs(model, 0)
        sig = root.SignatureDefs(0) if root.SignatureDefsLength() else None
        if sig is not None:
            graph = root.Subgraphs(sig.SubgraphIndex())
            tensor = {sig.Inputs(j).Name().decode(): sig.Inputs(j).TensorIndex()
                      for j in range(sig.InputsLength())}
            order = [graph.Inputs(i) for i in range(graph.InputsLength())]
    except Exception as err:  # noqa: BLE001 - a damaged flatbuffer fails in many ways
        raise EdgeflowError(f"cannot read the .tflite's input names: {type(err).__name__}: the "
                            "file is damaged; give the arrays as a list in input order") from err
    if sig is None:
        raise EdgeflowError("the .tflite has no input names (no signature def; slim files drop "
                            "them): give the arrays as a list in the model's input order")
    names = sorted(tensor, key=lambda n: order.index(tensor[n]) if tensor[n] in order else len(order))
    if set(x) != set(names):
        raise EdgeflowError(f"the arrays are for inputs {', '.join(sorted(map(str, x)))} but the "
                            f".tflite's inputs are {', '.join(names)}: key them by input name")
    return [x[n] for n in names]


def input_arrays(x, shapes: list[tuple]) -> list[np.ndarray]:
    """``x`` (one array, or a list for several inputs; a dict by input name goes through
    :func:`by_input_name` first) as float32 arrays with a batch axis.

    ``shapes`` are the model's input shapes with the batch axis first (``None`` or -1 for
    a free size). A single sample without the batch axis gets one. Raises an EdgeflowError
    naming both shapes when a sample does not fit.
    """
    from edgeflow.data import check_shape

    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(xs) != len(shapes):
        raise EdgeflowError(f"the model has {len(shapes)} inputs but {len(xs)} arrays were given")
    arrays = []
    for xi, shape in zip(xs, shapes, strict=True):
        want = tuple(None if d is None or d < 0 else int(d) for d in shape[1:])
        xi = np.asarray(xi, dtype=np.float32)
        if xi.ndim == len(want):
            xi = xi[None]
        check_shape(xi.shape[1:], want)
        arrays.append(xi)
    if len({len(a) for a in arrays}) != 1 or len(arrays[0]) == 0:
        raise EdgeflowError("the inputs must hold the same, non-zero number of samples")
    return arrays
