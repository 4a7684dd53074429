"""Pruning schedules by name: when, during fine-tuning, TF-MOT raises the sparsity.

A schedule here is a *factory*: ``factory(target, initial_sparsity=, begin_step=, end_step=,
frequency=)`` returns a TF-MOT ``PruningSchedule`` for one layer, so that every layer can
get its own target sparsity (per-layer pruning) from one named schedule.
"""

from __future__ import annotations

from collections.abc import Callable

from edgeflow.errors import EdgeflowError, closest

__all__ = ["SCHEDULES", "get", "default_frequency"]


def polynomial(
    target: float,
    *,
    initial_sparsity: float = 0.0,
    begin_step: int = 0,
    end_step: int,
    frequency: int,
):
    """TF-MOT ``PolynomialDecay``: sparsity rises fast, then settles at ``target``.

    s(t) = s_f + (s_i - s_f) · (1 - (t - t_0) / (t_1 - t_0))³ for t_0 ≤ t ≤ t_1, where
    s_i = ``initial_sparsity``, s_f = ``target``, t_0 = ``begin_step``, t_1 = ``end_step``;
    masks are recomputed every ``frequency`` steps.

    Example:
        >>> schedule = polynomial(0.8, begin_step=0, end_step=100, frequency=10)
    """
    from edgeflow._keras import tfmot

    if end_step is None or end_step < 0:
        raise EdgeflowError(
            "the polynomial schedule needs end_step (the step at which the target sparsity is "
            "reached): pass end_step=, or data= so that it is computed from the epochs"
        )
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=float(initial_sparsity),
        final_sparsity=float(target),
        begin_step=int(begin_step),
        end_step=int(end_step),
        frequency=int(frequency),
    )


def constant(
    target: float,
    *,
    initial_sparsity: float = 0.0,
    begin_step: int = 0,
    end_step: int | None = None,
    frequency: int,
):
    """TF-MOT ``ConstantSparsity``: s(t) = ``target`` from ``begin_step`` on.

    Masks are recomputed every ``frequency`` steps until ``end_step`` (None: to the end of
    training). ``initial_sparsity`` is ignored.

    Example:
        >>> schedule = constant(0.5, begin_step=0, frequency=10)
    """
    from edgeflow._keras import tfmot

    del initial_sparsity
    return tfmot.sparsity.keras.ConstantSparsity(
        target_sparsity=float(target),
        begin_step=int(begin_step),
        end_step=-1 if end_step is None else int(end_step),
        frequency=int(frequency),
    )


SCHEDULES: dict[str, Callable] = {"polynomial": polynomial, "constant": constant}


def get(schedule) -> Callable:
    """Return a schedule factory from a name, a factory, or a TF-MOT ``PruningSchedule`` object.

    A ``PruningSchedule`` object is used as it is for every layer (its own target applies).

    Example:
        >>> factory = get("polynomial")
    """
    from edgeflow._keras import tfmot

    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise EdgeflowError(
                f"unknown pruning schedule {schedule!r}{closest(schedule, SCHEDULES)}; valid "
                "schedules are " + ", ".join(SCHEDULES)
            )
        return SCHEDULES[schedule]
    if isinstance(schedule, tfmot.sparsity.keras.PruningSchedule):
        return lambda target, **_: schedule
    if callable(schedule):
        return schedule
    raise EdgeflowError(
        f"a pruning schedule must be a name ({', '.join(SCHEDULES)}), a factory function or a "
        f"TF-MOT PruningSchedule, not {type(schedule).__name__}"
    )


def default_frequency(begin_step: int, end_step: int) -> int:
    """Recompute masks about ten times between ``begin_step`` and ``end_step`` (at least every step)."""
    return max(1, (end_step - begin_step) // 10)
