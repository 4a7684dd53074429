"""The cross compiler and the emulator: ``arm-none-eabi-gcc`` (with newlib) and ``qemu-system-arm``.

Found on ``PATH``. On Debian/Ubuntu: ``apt-get install gcc-arm-none-eabi
libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm``.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass

from edgeflow.errors import EdgeflowError

__all__ = ["APT_PACKAGES", "Toolchain", "find", "qemu"]

APT_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm"


@dataclass(frozen=True)
class Toolchain:
    """Paths of the cross tools and the compiler's version line (part of the cache key)."""

    gcc: str
    gxx: str
    version: str

    def to_dict(self) -> dict:
        return {"gcc": self.gcc, "gxx": self.gxx, "version": self.version}


@functools.lru_cache(maxsize=1)
def _find() -> Toolchain | None:
    gcc, gxx = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-g++")
    if not (gcc and gxx):
        return None
    try:
        out = subprocess.run([gcc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return Toolchain(gcc, gxx, out.stdout.splitlines()[0].strip())


def find(required: bool = True) -> Toolchain | None:
    """The ``arm-none-eabi`` toolchain, or None when absent and not ``required``.

    Raises:
        EdgeflowError: absent and ``required``.
    """
    found = _find()
    if found is None and required:
        raise EdgeflowError(f"arm-none-eabi-gcc not found on PATH: install it (Debian/Ubuntu: "
                            f"apt-get install {APT_PACKAGES})")
    return found


def qemu(required: bool = True) -> str | None:
    """The ``qemu-system-arm`` executable, or None when absent and not ``required``.

    Raises:
        EdgeflowError: absent and ``required``.
    """
    path = shutil.which("qemu-system-arm")
    if path is None and required:
        raise EdgeflowError("qemu-system-arm not found on PATH: install it (Debian/Ubuntu: "
                            "apt-get install qemu-system-arm)")
    return path
