"""The user cache directory of edgeflow: ``$XDG_CACHE_HOME/edgeflow`` (default ``~/.cache/edgeflow``).

What lives there is rebuilt when missing (unpacked TFLM sources, compiled TFLM objects, the
QEMU instruction-count plugin); deleting the folder is always safe.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/edgeflow/<parts...>``, created (mode from the umask) if missing."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    path = Path(base, "edgeflow", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
