"""What sparsity buys in a ``.tflite``: zero weights, size after gzip, the converter's sparse encoding.

Magnitude pruning only zeroes weights: the flatbuffer keeps its size and its compute. The
gain is realised when the file is compressed (firmware images, OTA updates, app bundles
are shipped compressed), or when the converter encodes sparse tensors
(``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``) — which only some kernels can then run.
"""

from __future__ import annotations

import gzip
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["TfliteSparsity", "tflite_sparsity", "convert_sparse"]

@dataclass
class TfliteSparsity:
    """Sparsity and shipping size of a ``.tflite``.

    Attributes:
        size_bytes: the flatbuffer as it is.
        gzip_bytes: gzip -9 of it (how sparse models are shipped today).
        weight_elements, zero_elements: over the constant tensors of rank ≥ 2 (kernels).
        sparsity: zero_elements / weight_elements (a weight is zero when it equals the
            tensor's zero point; encoded sparse tensors count their dense shape).
        sparse_encoded: names of tensors the converter stored in a sparse format.
        tensors: per kernel tensor: name, shape, dtype, zeros, elements, encoded.
    """

    size_bytes: int
    gzip_bytes: int
    weight_elements: int
    zero_elements: int
    sparsity: float
    sparse_encoded: list[str] = field(default_factory=list)
    tensors: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def tflite_sparsity(tflite: bytes) -> TfliteSparsity:
    """Measure the zero weights and the gzip size of a ``.tflite``.

    Example:
        >>> r = tflite_sparsity(convert(pruned_model, "int8", x))
        >>> r.sparsity, r.size_bytes, r.gzip_bytes
        (0.79, 27360, 9120)
    """
    from edgeflow.tflite import constant_values, parse

    data = bytes(tflite)
    info = parse(data)
    tensors, encoded = [], []
    zeros = total = 0
    for t in info.tensors:
        if len(t.shape) < 2:
            continue
        values = constant_values(data, t)
        if values is None:
            continue
        is_sparse = t.sparse_encoded
        zero_point = t.zero_point[0] if t.zero_point and len(set(t.zero_point)) == 1 else 0
        nonzero = int(np.count_nonzero(values != zero_point))
        n = t.elements
        z = n - nonzero
        tensors.append({"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "zeros": z,
                        "elements": n, "encoded": "sparse" if is_sparse else "dense"})
        if is_sparse:
            encoded.append(t.name)
        zeros, total = zeros + z, total + n
    return TfliteSparsity(
        size_bytes=len(data),
        gzip_bytes=len(gzip.compress(data, compresslevel=9, mtime=0)),
        weight_elements=total,
        zero_elements=zeros,
        sparsity=zeros / total if total else 0.0,
        sparse_encoded=encoded,
        tensors=tensors,
    )


def convert_sparse(model, mode: str = "int8", data=None, **kwargs) -> bytes:
    """Convert with the TFLite converter's sparse encoding (``Optimize.EXPERIMENTAL_SPARSITY``).

    Tensors that are sparse enough are stored as compressed sparse data (CSR-like
    ``Sparsity`` metadata) and a ``DENSIFY`` op may be inserted; which runtimes still run
    the result is measured in ``bench/bench_prune.py`` and the tests, not assumed.
    Arguments are those of ``edgeflow.convert.convert``.

    Example:
        >>> tflite = convert_sparse(pruned_model, "int8", x_train[:200])
    """
    from edgeflow._keras import tf
    from edgeflow.convert import convert

    options = dict(kwargs.pop("converter_options", None) or {})
    optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if mode != "float32":
        optimizations.insert(0, tf.lite.Optimize.DEFAULT)
    options["optimizations"] = optimizations
    return convert(model, mode, data, converter_options=options, **kwargs)
