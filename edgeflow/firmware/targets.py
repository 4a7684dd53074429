"""Cores edgeflow builds firmware for, and the QEMU machines that run them.

A :class:`Target` is what the compiler and the emulator need: ``-mcpu``/``-mfpu``/float ABI
for ``arm-none-eabi-gcc``, the CMSIS device name, and a ``qemu-system-arm`` machine whose
core executes the same instructions, with its memory map (from ``info mtree`` of QEMU 7.2:
MPS2 boards have 4 MiB of SSRAM at 0x0 for code and 4 MiB at 0x20000000 for data; the
MPS3 AN547 (Cortex-M55, SSE-300) has 512 KiB ITCM at 0x0, 512 KiB DTCM at 0x20000000 and
8 MiB of QSPI flash at 0x28000000, which holds the read-only data).

A board profile names its core in ``firmware.cpu`` (:data:`CPUS`); the Cortex-M0+ of the
RP2040 has no QEMU machine of its own and runs on the Cortex-M3 machine, which executes the
ARMv6-M instruction set unchanged (ARMv7-M is a superset), so instruction counts hold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgeflow.errors import EdgeflowError, closest

__all__ = ["CPI_BASIS", "CPUS", "MACHINES", "Machine", "Target", "for_profile", "target"]


@dataclass(frozen=True)
class Machine:
    """A ``qemu-system-arm -M`` machine: where code, read-only data and RAM go."""

    name: str
    code: tuple[int, int]     # (origin, length) of vectors and code
    rodata: tuple[int, int]   # read-only data (the model)
    ram: tuple[int, int]      # .data, .bss (the arena), heap and stack


_MPS2 = dict(code=(0x0, 4 << 20), rodata=(0x0, 4 << 20), ram=(0x20000000, 4 << 20))
MACHINES: dict[str, Machine] = {
    "mps2-an385": Machine("mps2-an385", **_MPS2),   # Cortex-M3
    "mps2-an386": Machine("mps2-an386", **_MPS2),   # Cortex-M4
    "mps2-an500": Machine("mps2-an500", **_MPS2),   # Cortex-M7
    "mps3-an547": Machine("mps3-an547", code=(0x0, 512 << 10), rodata=(0x28000000, 8 << 20),
                          ram=(0x20000000, 512 << 10)),  # Cortex-M55
}


@dataclass(frozen=True)
class Target:
    """One core as the compiler sees it, and the QEMU machine that runs its code."""

    cpu: str                 # the name profiles use, e.g. "cortex-m4f"
    mcpu: str                # gcc -mcpu
    fpu: str | None          # gcc -mfpu (None: no FPU, soft float)
    device: str              # CMSIS device (Cortex_DFP), e.g. "ARMCM4"
    machine: str             # qemu-system-arm -M
    description: str
    cpi: float = 1.0         # cycles per instruction (estimate), see CPI_BASIS
    cpi_basis: str = ""

    @property
    def float_abi(self) -> str:
        return "soft" if self.fpu is None else "hard"

    def flags(self) -> list[str]:
        """gcc flags that select the core, its FPU and the float ABI."""
        flags = [f"-mcpu={self.mcpu}", "-mthumb", f"-mfloat-abi={self.float_abi}"]
        if self.fpu:
            flags.append(f"-mfpu={self.fpu}")
        return flags

    def to_dict(self) -> dict:
        return {"cpu": self.cpu, "mcpu": self.mcpu, "fpu": self.fpu, "float_abi": self.float_abi,
                "qemu_machine": self.machine, "description": self.description, "cpi": self.cpi,
                "cpi_basis": self.cpi_basis}


CPUS: dict[str, Target] = {t.cpu: t for t in (
    Target("cortex-m0plus", "cortex-m0plus", None, "ARMCM0plus", "mps2-an385",
           "Arm Cortex-M0+ (ARMv6-M, no FPU, no DSP); runs on QEMU's Cortex-M3 machine"),
    Target("cortex-m3", "cortex-m3", None, "ARMCM3", "mps2-an385", "Arm Cortex-M3 (ARMv7-M)"),
    Target("cortex-m4", "cortex-m4+nofp", None, "ARMCM4", "mps2-an386",
           "Arm Cortex-M4 without FPU (DSP extension)"),
    Target("cortex-m4f", "cortex-m4", "fpv4-sp-d16", "ARMCM4_FP", "mps2-an386",
           "Arm Cortex-M4F (DSP extension, single-precision FPU)"),
    Target("cortex-m7", "cortex-m7", "fpv5-sp-d16", "ARMCM7_SP", "mps2-an500",
           "Arm Cortex-M7 (DSP extension, single-precision FPU)"),
    Target("cortex-m7-dp", "cortex-m7", "fpv5-d16", "ARMCM7_DP", "mps2-an500",
           "Arm Cortex-M7 (DSP extension, double-precision FPU)"),
    Target("cortex-m55", "cortex-m55", "auto", "ARMCM55", "mps3-an547",
           "Arm Cortex-M55 (Helium MVE, FPU)"),
)}


#: Default cycles per instruction by core (estimates; a profile's firmware.cpi overrides).
CPI_BASIS = ("estimate: in-order cores issue at most one instruction per cycle (the Cortex-M7 "
             "up to two); loads, multiplies and taken branches add cycles. Not yet calibrated "
             "against measured boards (bench/bench_firmware.py prints the residual)")
_CPI = {"cortex-m0plus": 1.3, "cortex-m3": 1.25, "cortex-m4": 1.2, "cortex-m4f": 1.2, "cortex-m7": 0.8,
        "cortex-m7-dp": 0.8, "cortex-m55": 1.0}
CPUS = {name: replace(t, cpi=_CPI[name], cpi_basis=CPI_BASIS) for name, t in CPUS.items()}


def for_profile(spec) -> Target:
    """The target of a board profile's ``firmware`` section (fpu, QEMU machine and CPI from it).

    Raises:
        EdgeflowError: no buildable core (``cpu: null``), or an unknown core or machine.
    """
    if spec is None or spec.cpu is None:
        raise EdgeflowError("no firmware target" + (f": {spec.note}" if spec is not None and spec.note else ""))
    t = target(spec.cpu)
    if spec.fpu is not None:
        t = replace(t, fpu=None if spec.fpu == "none" else spec.fpu)
    if spec.qemu_machine is not None:
        if spec.qemu_machine not in MACHINES:
            raise EdgeflowError(f"unknown QEMU machine {spec.qemu_machine!r}{closest(spec.qemu_machine, MACHINES)}")
        t = replace(t, machine=spec.qemu_machine)
    if spec.cpi is not None:
        t = replace(t, cpi=spec.cpi, cpi_basis=spec.cpi_basis or "the board profile")
    return t


def target(cpu: str) -> Target:
    """The :class:`Target` of a core name (:data:`CPUS`).

    Raises:
        EdgeflowError: a core edgeflow cannot build for (with the closest name).
    """
    try:
        return CPUS[cpu]
    except KeyError:
        raise EdgeflowError(f"no firmware target for core {cpu!r}{closest(cpu, CPUS)}; "
                            f"known cores: {', '.join(CPUS)}") from None
