"""Importance criteria for structured pruning: one score per filter/neuron, low = remove first.

Every criterion is a small function registered under a short name (the same names in the
API, the CLI and recipes) and reads one of three kinds of evidence about a layer's units:

- ``weights``: a matrix ``W`` of shape ``(units, fan_in)``, row j = the weights that make
  unit j (a Conv2D filter flattened, a Dense column);
- ``activations``: ``A`` of shape ``(N, ..., units)``, the unit outputs on N samples;
- ``gradients``: ``A`` and ``G = ∂L/∂A`` (same shape), L the per-sample loss.

``get(name_or_callable)`` returns a ``Criterion``; a plain callable is taken as a weights
criterion unless it carries a ``needs`` attribute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeflow.errors import EdgeflowError, closest

__all__ = ["Criterion", "CRITERIA", "get", "l1", "l2", "fpgm", "activation", "taylor", "hessian"]

NEEDS = ("weights", "activations", "gradients")


@dataclass(frozen=True)
class Criterion:
    """A named importance function and the evidence it needs (``weights``/``activations``/``gradients``)."""

    name: str
    fn: Callable[..., np.ndarray]
    needs: str = "weights"

    @property
    def needs_data(self) -> bool:
        return self.needs != "weights"

    def __call__(self, *args) -> np.ndarray:
        return np.asarray(self.fn(*args), dtype=np.float64)


def l1(weights: np.ndarray) -> np.ndarray:
    """Filter L1 norm: s_j = Σ_k |W_jk|.

    Example:
        >>> l1(np.array([[1.0, -2.0], [0.5, 0.5]]))
        array([3., 1.])
    """
    return np.abs(weights).sum(axis=1)


def l2(weights: np.ndarray) -> np.ndarray:
    """Filter L2 norm: s_j = √(Σ_k W_jk²).

    Example:
        >>> l2(np.array([[3.0, 4.0], [0.0, 1.0]]))
        array([5., 1.])
    """
    return np.sqrt(np.square(weights).sum(axis=1))


def fpgm(weights: np.ndarray) -> np.ndarray:
    """Geometric-median distance (FPGM, He et al. 2019): s_j = Σ_i ‖W_j − W_i‖₂.

    The filter closest to the geometric median of all filters (smallest total distance to
    the others) is the most replaceable by the rest, so it goes first.

    Example:
        >>> fpgm(np.array([[0.0], [1.0], [3.0]]))  # distances 0+1+3, 1+0+2, 3+2+0
        array([4., 3., 5.])
    """
    w = np.asarray(weights, np.float64)
    diff = w[:, None, :] - w[None, :, :]
    return np.sqrt(np.square(diff).sum(axis=-1)).sum(axis=1)


def activation(activations: np.ndarray) -> np.ndarray:
    """Mean absolute activation: s_j = mean over samples n and positions p of |A_npj|.

    Example:
        >>> activation(np.array([[1.0, -4.0], [-3.0, 0.0]]))
        array([2., 2.])
    """
    a = np.abs(np.asarray(activations, np.float64))
    return a.reshape(-1, a.shape[-1]).mean(axis=0)


def _mask_gradient(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """g_nj = Σ_p A_npj · G_npj: the derivative of sample n's loss with respect to a
    multiplicative mask m_j = 1 on unit j (shape ``(N, units)``)."""
    a = np.asarray(activations, np.float64)
    g = np.asarray(gradients, np.float64)
    return (a * g).reshape(a.shape[0], -1, a.shape[-1]).sum(axis=1)


def taylor(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """First-order Taylor importance (Molchanov et al.): s_j = mean_n |Σ_p A_npj · ∂L_n/∂A_npj|.

    |a · ∂L/∂a| is the first-order estimate of the change of the loss when unit j is
    removed (a → 0), computed per sample n and averaged over the data.

    Example:
        >>> taylor(np.array([[2.0, 1.0], [1.0, 1.0]]), np.array([[0.5, -1.0], [-1.0, 1.0]]))
        array([1., 1.])
    """
    return np.abs(_mask_gradient(activations, gradients)).mean(axis=0)


def hessian(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Second-order (diagonal Fisher) importance: s_j = ½ · mean_n (Σ_p A_npj · ∂L_n/∂A_npj)².

    Removing unit j sets its mask m_j from 1 to 0 (δm = −1). With the Hessian of the loss
    in m approximated by its diagonal empirical Fisher, H_jj ≈ mean_n g_nj² where
    g_nj = ∂L_n/∂m_j = Σ_p A_npj G_npj, the OBD loss change is ΔL_j ≈ ½ H_jj δm² = s_j.

    Example:
        >>> hessian(np.array([[2.0, 1.0], [1.0, 1.0]]), np.array([[0.5, -1.0], [-1.0, 1.0]]))
        array([0.5, 0.5])
    """
    return 0.5 * np.square(_mask_gradient(activations, gradients)).mean(axis=0)


CRITERIA: dict[str, Criterion] = {
    c.name: c
    for c in (
        Criterion("l1", l1, "weights"),
        Criterion("l2", l2, "weights"),
        Criterion("fpgm", fpgm, "weights"),
        Criterion("activation", activation, "activations"),
        Criterion("taylor", taylor, "gradients"),
        Criterion("hessian", hessian, "gradients"),
    )
}


def get(criterion) -> Criterion:
    """Return a Criterion from a name (``l1``, ``l2``, ``fpgm``, ``activation``, ``taylor``,
    ``hessian``), a Criterion, or a callable (``needs`` attribute, default ``"weights"``).

    Example:
        >>> get("fpgm").needs
        'weights'
    """
    if isinstance(criterion, Criterion):
        return criterion
    if isinstance(criterion, str):
        if criterion not in CRITERIA:
            raise EdgeflowError(
                f"unknown pruning criterion {criterion!r}{closest(criterion, CRITERIA)}; valid "
                "criteria are " + ", ".join(CRITERIA)
            )
        return CRITERIA[criterion]
    if callable(criterion):
        needs = getattr(criterion, "needs", "weights")
        if needs not in NEEDS:
            raise EdgeflowError(
                f"criterion {criterion!r} needs {needs!r}; it must be one of " + ", ".join(NEEDS)
            )
        return Criterion(getattr(criterion, "__name__", "custom"), criterion, needs)
    raise EdgeflowError(
        f"a pruning criterion must be a name ({', '.join(CRITERIA)}) or a callable, "
        f"not {type(criterion).__name__}"
    )
