"""Progress for long work (calibration, training, search), on stderr."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def enabled() -> bool:
    """Progress bars are on when stderr is a terminal; ``EDGEFLOW_PROGRESS=1`` forces them on
    (e.g. for a log file), ``EDGEFLOW_PROGRESS=0`` off. CI logs and pipes get none."""
    setting = os.environ.get("EDGEFLOW_PROGRESS", "")
    if setting in ("0", "1"):
        return setting == "1"
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


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
