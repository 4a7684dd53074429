"""Importance criteria, each against an example computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow.errors import EdgeflowError
from edgeflow.prune import criteria

# Three units (rows) with two incoming weights each.
W = np.array([[3.0, -4.0], [0.0, 1.0], [-1.0, 1.0]])


def test_l1_sums_absolute_weights():
    # |3| + |-4| = 7, 0 + 1 = 1, 1 + 1 = 2
    np.testing.assert_allclose(criteria.get("l1")(W), [7.0, 1.0, 2.0])


def test_l2_is_euclidean_norm():
    # √(9 + 16) = 5, √1 = 1, √2
    np.testing.assert_allclose(criteria.get("l2")(W), [5.0, 1.0, np.sqrt(2.0)])


def test_fpgm_sums_distances_to_other_filters():
    # ‖w0−w1‖ = √(9+25) = √34, ‖w0−w2‖ = √(16+25) = √41, ‖w1−w2‖ = √(1+0) = 1
    d01, d02, d12 = np.sqrt(34.0), np.sqrt(41.0), 1.0
    np.testing.assert_allclose(criteria.get("fpgm")(W), [d01 + d02, d01 + d12, d02 + d12])
    # Unit 1 is nearest the geometric median: FPGM removes it first.
    assert int(np.argmin(criteria.get("fpgm")(W))) == 1


def test_activation_mean_absolute_over_samples_and_positions():
    # 2 samples × 2 positions × 2 units
    a = np.array([[[1.0, -2.0], [3.0, 0.0]], [[-1.0, 2.0], [0.0, 4.0]]])
    # unit 0: (1 + 3 + 1 + 0) / 4 = 1.25 ; unit 1: (2 + 0 + 2 + 4) / 4 = 2
    np.testing.assert_allclose(criteria.get("activation")(a), [1.25, 2.0])


A = np.array([[[1.0, 2.0], [3.0, -1.0]], [[2.0, 0.5], [-1.0, 2.0]]])  # (N=2, P=2, units=2)
G = np.array([[[0.5, 1.0], [-0.5, 1.0]], [[1.0, 2.0], [1.0, -1.0]]])
# Per-sample mask gradients g_nj = Σ_p A·G:
#   n=0: unit0 0.5 − 1.5 = −1.0, unit1 2 − 1 = 1.0
#   n=1: unit0 2 − 1 = 1.0,      unit1 1 − 2 = −1.0  → both units: |g| = 1, g² = 1
# Make unit 1 of sample 1 larger to tell the two apart:
G2 = G.copy()
G2[1, 0, 1] = 4.0  # n=1 unit1: 0.5·4 − 2 = 0.0


def test_taylor_is_mean_absolute_first_order_change():
    np.testing.assert_allclose(criteria.get("taylor")(A, G), [1.0, 1.0])
    # unit1: (|1.0| + |0.0|) / 2 = 0.5
    np.testing.assert_allclose(criteria.get("taylor")(A, G2), [1.0, 0.5])


def test_hessian_is_half_mean_squared_mask_gradient():
    np.testing.assert_allclose(criteria.get("hessian")(A, G), [0.5, 0.5])
    # unit1: ½ · (1.0² + 0.0²) / 2 = 0.25
    np.testing.assert_allclose(criteria.get("hessian")(A, G2), [0.5, 0.25])


def test_registry_names_and_custom_callables():
    assert list(criteria.CRITERIA) == ["l1", "l2", "fpgm", "activation", "taylor", "hessian"]
    assert [c.needs for c in criteria.CRITERIA.values()] == [
        "weights", "weights", "weights", "activations", "gradients", "gradients"
    ]

    def first_weight(w):
        return w[:, 0]

    custom = criteria.get(first_weight)
    assert custom.needs == "weights" and custom.name == "first_weight"
    np.testing.assert_allclose(custom(W), [3.0, 0.0, -1.0])
    with pytest.raises(EdgeflowError, match="did you mean 'fpgm'"):
        criteria.get("fpmg")
    first_weight.needs = "labels"
    with pytest.raises(EdgeflowError, match="must be one of weights, activations, gradients"):
        criteria.get(first_weight)
