"""Progress for long work (calibration, training, search), on stderr."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def enabled() -> bool:
    """Progress bars are on unless EDGEFLOW_PROGRESS=0."""
    return os.environ.get("EDGEFLOW_PROGRESS", "1") != "0"


def bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it"):
    """A tqdm bar on stderr that disappears when it ends and is silent when disabled."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        leave=False,
        file=sys.stderr,
        disable=not enabled(),
        dynamic_ncols=True,
    )
