"""edgeflow.data.labelled: the one reader of labelled training data (prune, QAT, distill)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow._keras import tf
from edgeflow.data import labelled
from edgeflow.errors import EdgeflowError


def test_pairs_files_and_datasets(tmp_path):
    x, y = np.arange(12, dtype=np.float32).reshape(3, 4), np.array([0, 1, 0])
    got_x, got_y = labelled([x.tolist(), y.tolist()])
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    got_x, got_y = labelled(tmp_path / "d.npz")
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    assert labelled(ds) == (ds, None)


def test_missing_labels_and_wrong_types_are_clear(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(EdgeflowError, match="QAT data '.*x.npy' holds no labels"):
        labelled(tmp_path / "x.npy", "QAT data")
    with pytest.raises(EdgeflowError, match="training data must be .* not int"):
        labelled(3)
    with pytest.raises(EdgeflowError, match="does not exist"):
        labelled(tmp_path / "missing.npz")


def test_a_corrupt_npz_is_one_clear_error(tmp_path):
    """Every reader of arrays goes through one opener: a damaged .npz is an EdgeflowError, not
    numpy's ValueError (which the CLI would have reported as an internal error)."""
    bad = tmp_path / "d.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(EdgeflowError, match=r"^cannot read .*d\.npz as \.npy/\.npz data: "):
        labelled(bad)
