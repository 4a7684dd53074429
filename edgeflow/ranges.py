"""The valid range of every numeric option, in one place.

The CLI's option types (:func:`option_type`) and the recipe schema (:func:`ranged`) both read
:data:`RANGES`, so ``--num-samples 0`` on the command line and ``num_samples: 0`` in a
recipe are refused with the same rule, before any work starts (exit 2, nothing written).
Floats must also be finite: NaN and infinity are refused everywhere.

This module imports only the standard library (and click or pydantic inside the function
that needs it), so ``edgeflow --help`` stays fast.

Example:
    >>> RANGES["num_samples"].check(0, "--num-samples")
    Traceback (most recent call last):
    edgeflow.errors.EdgeflowError: --num-samples: 0 is not an integer >= 1 (calibration samples)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeflow.errors import EdgeflowError

__all__ = ["Range", "RANGES", "option_type", "ranged", "check"]


@dataclass(frozen=True)
class Range:
    """A closed or open interval of ints or finite floats.

    ``low``/``high`` are the bounds (None: unbounded); ``low_open``/``high_open`` exclude
    them. ``meaning`` is the short noun phrase printed in errors ("calibration samples").
    """

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    meaning: str = ""

    def describe(self) -> str:
        """'an integer >= 1', 'a number in [0, 1)', 'a number > 0'."""
        noun = "an integer" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            return (f"{noun} in {'(' if self.low_open else '['}{_num(self.low)}, "
                    f"{_num(self.high)}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{noun} {'<' if self.high_open else '<='} {_num(self.high)}"
        return noun

    def contains(self, value) -> bool:
        """Whether ``value`` (already of the right kind) lies in the range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def problem(self, value) -> str:
        """The error text for a value out of range: '0 is not an integer >= 1 (calibration samples)'."""
        what = f" ({self.meaning})" if self.meaning else ""
        return f"{value!r} is not {self.describe()}{what}"

    def check(self, value, name: str):
        """Return ``value`` if it is in range, else raise :class:`EdgeflowError` naming ``name``."""
        if not self.contains(value):
            raise EdgeflowError(f"{name}: {self.problem(value)}")
        return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _int(low=None, high=None, meaning=""):
    return Range(int, low, high, meaning=meaning)


def _float(low=None, high=None, low_open=False, high_open=False, meaning=""):
    return Range(float, low, high, low_open, high_open, meaning)


# One entry per quantity; options and recipe keys that mean the same thing share an entry.
RANGES: dict[str, Range] = {
    "num_samples": _int(1, meaning="calibration samples"),
    "epochs": _int(0, meaning="training epochs"),
    "batch_size": _int(1, meaning="samples per batch"),
    "learning_rate": _float(0, low_open=True, meaning="the optimizer's step size"),
    "sparsity": _float(0, 1, high_open=True, meaning="fraction of weights set to zero"),
    "ratio": _float(0, 1, high_open=True, meaning="fraction of filters or units removed"),
    "prune_steps": _int(1, meaning="prune/fine-tune steps"),
    "clusters": _int(2, 256, meaning="weight clusters per kernel"),
    "lut_bits": _int(1, 7, meaning="bits per table index"),
    "accuracy_drop": _float(0, 1, meaning="a fraction of accuracy, e.g. 0.02"),
    "keep_float": _int(0, meaning="operators kept in float"),
    "max_drop": _float(0, 100, meaning="points of accuracy (or percent of MAE) the result may lose"),
    "temperature": _float(0, low_open=True, meaning="softmax temperature"),
    "alpha": _float(0, 1, meaning="weight of the hard-label loss"),
    "loss_weight": _float(0, meaning="a distillation loss weight"),
    "test_fraction": _float(0, 1, True, True, meaning="fraction of the data held out for testing"),
    "validation_fraction": _float(0, 1, high_open=True, meaning="fraction held out for validation"),
    "step": _int(0, meaning="a training step"),
    "end_step": _int(1, meaning="the training step pruning ends at"),
    "frequency": _int(1, meaning="steps between pruning updates"),
    "multiple_of": _int(1, meaning="channel counts are kept a multiple of this"),
    "seed": _int(0, 2**32 - 1, meaning="random seed"),
    "runs": _int(1, meaning="timed runs"),
    "warmup": _int(0, meaning="untimed warm-up runs"),
    "threads": _int(1, 1024, meaning="interpreter threads"),
    "port": _int(1, 65535, meaning="TCP port"),
    "arena_margin": _float(0, 10, meaning="a fraction of the measured arena"),
    "arena_bytes": _int(1, 2**32 - 1, meaning="tensor arena bytes"),
    "samples": _int(1, meaning="input samples run"),
    "trials": _int(1, meaning="finished search trials"),
    "seconds": _float(0, low_open=True, meaning="seconds"),
    "emulation_seconds": _float(0, low_open=True, meaning="seconds each emulated firmware run may take"),
    "workers": _int(1, 1024, meaning="worker processes"),
}


def check(name: str, value, label: str | None = None):
    """Check ``value`` against ``RANGES[name]``; the error names ``label`` (default: the name)."""
    return RANGES[name].check(value, label or name)


def option_type(name: str):
    """A click parameter type for ``RANGES[name]``: a bad value is a usage error (exit 2)
    that states the range, raised while the arguments are parsed, so before any work."""
    import click

    rng = RANGES[name]

    class _Ranged(click.ParamType):
        name = "integer" if rng.kind is int else "float"

        def convert(self, value, param, ctx):
            typed = value
            if isinstance(value, str):
                try:
                    typed = rng.kind(value.strip())
                except ValueError:
                    typed = None
            elif rng.kind is float and isinstance(value, int) and not isinstance(value, bool):
                typed = float(value)
            if typed is None or not rng.contains(typed):
                shown = value.strip() if isinstance(value, str) else value
                self.fail(f"{shown} is not {rng.describe()}" + (f" ({rng.meaning})" if rng.meaning else ""),
                          param, ctx)
            return typed

        def get_metavar(self, param, ctx=None):
            return "INTEGER" if rng.kind is int else "FLOAT"

    return _Ranged()


def ranged(name: str):
    """The type of a recipe key in ``RANGES[name]`` (pydantic): ``epochs: ranged("epochs") = 2``.

    A value out of range fails validation with the same text as the CLI option.
    """
    from typing import Annotated

    from pydantic import AfterValidator, Field

    rng = RANGES[name]

    def _valid(value):
        if not rng.contains(value):
            raise ValueError(rng.problem(value))
        return value

    return Annotated[rng.kind, Field(description=rng.meaning), AfterValidator(_valid)]
