"""Sparse models as .tflite: zero weights survive int8 conversion, gzip ships them small,
and the converter's sparse encoding is measured on LiteRT and TFLM."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow import prune
from edgeflow._keras import keras
from edgeflow.convert import convert
from edgeflow.errors import EdgeflowError
from edgeflow.runtime import litert, tflm


@pytest.fixture(scope="module")
def pruned_cnn(trained_cnn, digits):
    (x_tr, y_tr), _ = digits
    keras.utils.set_random_seed(0)
    return prune.magnitude(trained_cnn, 0.8, data=(x_tr, y_tr), epochs=2, per_layer={"conv1": 0})


def test_int8_tflite_keeps_the_zeros_and_gzip_shrinks_it(pruned_cnn, trained_cnn, int8_cnn, digits):
    (x_tr, _), _ = digits
    sparse = prune.tflite_sparsity(convert(pruned_cnn.model, "int8", x_tr[:100]))
    dense = prune.tflite_sparsity(int8_cnn)
    # int8 kernels are symmetric (zero point 0): every float zero stays a zero.
    assert sparse.sparsity >= pruned_cnn.overall_sparsity - 1e-6
    assert sparse.sparsity < pruned_cnn.overall_sparsity + 0.02
    assert dense.sparsity < 0.02
    assert sparse.size_bytes == dense.size_bytes  # zeros take the same room uncompressed
    assert sparse.gzip_bytes < 0.55 * dense.gzip_bytes
    assert not sparse.sparse_encoded
    kernels = {t["shape"][0] for t in sparse.tensors}
    assert {16, 32, 10} <= kernels  # conv1/conv2 filters, fc1 units, logits


def test_converter_sparse_encoding_measured_on_litert_and_tflm(pruned_cnn, digits):
    (x_tr, _), (x_te, y_te) = digits
    from edgeflow.tflite import parse

    dense = convert(pruned_cnn.model, "int8", x_tr[:100])
    encoded = prune.convert_sparse(pruned_cnn.model, "int8", x_tr[:100])
    report = prune.tflite_sparsity(encoded)
    assert len(report.sparse_encoded) == 3  # conv2, fc1, logits; conv1 was left dense
    assert report.size_bytes < 0.85 * len(dense)
    assert parse(encoded).op_counts()["DENSIFY"] == 3
    # Measured with ai-edge-litert: the default XNNPACK delegate refuses the densified
    # int8 FULLY_CONNECTED; LiteRT's builtin kernels run it with the dense model's results.
    with pytest.raises(EdgeflowError, match="XNNPack|delegate"):
        litert.predict(encoded, x_te[:4])
    got = litert.predict(encoded, x_te[:32], delegates=False)
    want = litert.predict(dense, x_te[:32])
    # Same classes; scores within a few int8 steps (XNNPACK and builtin kernels round differently).
    assert np.mean(np.argmax(got, axis=1) == np.argmax(want, axis=1)) >= 0.95
    oscale = parse(encoded).outputs[0].scale[0]
    assert np.abs(got - want).max() <= 4 * oscale
    # TFLM has no DENSIFY kernel: a clean refusal in the child process, not a crash.
    measured = tflm.measure_arena(encoded, timeout=120)
    assert measured.status == "failed" and "DENSIFY" in measured.message
