"""Run a firmware image under ``qemu-system-arm`` and read back what it did.

The image (:mod:`edgeflow.firmware.image`) reads ``input.bin`` and writes ``output.bin``
in QEMU's working folder over semihosting, and prints ``EF <key> <value>`` lines. A TCG
plugin (``edgeflow/_data/firmware/qemu_count.c``, compiled once with the host's C
compiler into the cache) counts the guest instructions QEMU executes and logs the count
at three marker functions: around each ``Invoke()`` and at the start and end of each
operator (TFLM's profiler hooks). QEMU does not model cycles (the DWT cycle counter reads
0), so an instruction count is what it measures exactly; the counts are repeatable run to
run. A fault, a hang (``timeout``) or a failed ``AllocateTensors``/``Invoke`` is a
:class:`RunResult` with ``ok`` False and the reason, never an exception; a kernel's Prepare
that fails is named with the last line it logged (``EF log``), e.g. ``AllocateTensors failed
with an arena of 1040384 bytes, in Prepare of TFLM_DECODE (operator 0): unsupported DECODE
type 1 (Huffman): ...``.

Nothing in the image spins until the timeout: TFLM's abort (``TFLITE_ABORT``, an endless
loop in TFLM's ``AbortImpl``, reached e.g. from a failed ``TFLITE_CHECK``) is caught in the
image's ``DebugLog`` and printed as ``EF abort <stage> [<operator> <index> <subgraph>]``;
a fault (HardFault and the configurable faults) prints ``EF fault <exception> pc=… lr=…
cfsr=… hfsr=… mmfar=… bfar=…`` (the stacked registers and the fault status registers,
Armv7-M Architecture Reference Manual B3.2.15–B3.2.18); newlib's ``abort()`` prints
``EF abort abort()``. Each then ends QEMU at once with the exit status in
:data:`EXIT_STATUS` (semihosting ``SYS_EXIT_EXTENDED``). Only a real endless loop in the
model's code still runs into the timeout ("timed out after N s").
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np

from edgeflow import _io
from edgeflow._cache import cache_dir
from edgeflow.errors import EdgeflowError
from edgeflow.firmware import elf as _elf
from edgeflow.firmware.toolchain import qemu

__all__ = ["TIMEOUT", "RunResult", "plugin", "run"]

#: Seconds (wall clock) an emulated run may take before QEMU is killed: the default of
#: ``timeout`` here, in :func:`edgeflow.firmware.build` and :func:`edgeflow.devices.check`,
#: and of ``--timeout`` (``edgeflow firmware``, ``edgeflow check``).
TIMEOUT = 300.0

_MARKERS = ("ef_invoke", "ef_begin", "ef_end")
_PREPARE_FAILED = re.compile(r".*, in Prepare of \S+ \(operator (\d+)(?:, subgraph (\d+))?\)")
_SOURCE_PATH = re.compile(r"\S*/([^/\s]+\.(?:cc|cpp|c|h):\d+)")  # a TFLM check's file:line, without its folders

#: QEMU's exit status for each way the measurement image ends (main.cc, startup.c).
EXIT_STATUS = {0: "ok", 3: "AllocateTensors failed", 4: "Invoke failed", 5: "cannot write output.bin",
               6: "TFLM aborted", 7: "abort() called", 8: "fault"}

# Configurable Fault Status Register bits (Armv7-M ARM B3.2.15), lowest first.
_CFSR = {0: "IACCVIOL", 1: "DACCVIOL", 3: "MUNSTKERR", 4: "MSTKERR", 5: "MLSPERR", 8: "IBUSERR",
         9: "PRECISERR", 10: "IMPRECISERR", 11: "UNSTKERR", 12: "STKERR", 13: "LSPERR", 16: "UNDEFINSTR",
         17: "INVSTATE", 18: "INVPC", 19: "NOCP", 20: "STKOF", 24: "UNALIGNED", 25: "DIVBYZERO"}


@dataclass
class RunResult:
    """What one emulated run reported.

    ``instructions``: guest instructions of each ``Invoke()`` (one per sample);
    ``operators``: ``(operator, instructions)`` of the first sample's operators, in order;
    ``arena_head`` / ``arena_tail``: the arena's non-persistent part (activations and kernel
    scratch buffers, as planned) and persistent part (runtime structs), which sum to
    ``arena_used`` (``SingleArenaBufferAllocator``'s used bytes).
    """

    ok: bool
    reason: str = ""
    arena_used: int | None = None
    arena_head: int | None = None
    arena_tail: int | None = None
    outputs: bytes = b""
    samples: int = 0
    instructions: list[int] = field(default_factory=list)
    operators: list[tuple[str, int]] = field(default_factory=list)
    counted: bool = False
    console: str = ""
    exit_status: int | None = None
    aborted: tuple[str, str, int] | None = None  # (stage, operator, index) of a TFLM abort in an operator

    def to_dict(self) -> dict:
        return {"ok": self.ok, "reason": self.reason, "arena_used": self.arena_used, "arena_head": self.arena_head,
                "arena_tail": self.arena_tail, "samples": self.samples,
                "instructions": self.instructions,
                "operators": [{"op": op, "instructions": n} for op, n in self.operators]}


def plugin(required: bool = False) -> Path | None:
    """The instruction-count plugin, compiled into the cache once (None without a C compiler)."""
    source = files("edgeflow").joinpath("_data/firmware/qemu_count.c").read_bytes()
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        if required:
            raise EdgeflowError("no host C compiler (cc) to build the QEMU instruction-count plugin: install gcc")
        return None
    out = cache_dir("qemu-plugin") / f"count-{hashlib.sha1(source).hexdigest()[:12]}.so"
    if not out.exists():
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            src = Path(tmp, "qemu_count.c")
            src.write_bytes(source)
            p = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(Path(tmp, "count.so")), str(src)],
                               capture_output=True, text=True)
            if p.returncode != 0:
                if required:
                    raise EdgeflowError(f"the QEMU instruction-count plugin does not compile: {p.stderr.strip()[:200]}")
                return None
            Path(tmp, "count.so").replace(out)
    return out


def run(elf_path: str | Path, machine: str, inputs: bytes | None = None, *, count: bool = True,
        timeout: float = TIMEOUT) -> RunResult:
    """Run an image once on ``machine``; ``inputs`` are whole samples of the input tensors.

    ``timeout``: seconds (wall clock) before QEMU is killed; the result is then not ``ok``
    with the reason "timed out after N s".

    Raises:
        EdgeflowError: qemu-system-arm is not installed.
    """
    exe = qemu()
    image = _elf.read(elf_path)
    with _io.temporary_dir("edgeflow-qemu-") as tmp:
        work = Path(tmp)
        if inputs is not None:
            (work / "input.bin").write_bytes(inputs)
        cmd = [exe, "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
               "-semihosting-config", "enable=on,target=native", "-kernel", str(Path(elf_path).resolve())]
        so = plugin() if count else None
        if so is not None:
            marks = ",".join(f"mark={image.address(m):x}" for m in _MARKERS)
            cmd += ["-plugin", f"{so},out={work / 'marks.txt'},{marks}"]
        try:
            p = subprocess.run(cmd, cwd=work, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            console = (err.stdout or b"").decode("utf-8", "replace") + (err.stderr or b"").decode("utf-8", "replace")
            return RunResult(False, f"timed out after {timeout:g} s: the firmware neither finished nor stopped "
                                    f"(an endless loop?)", console=console)
        console = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
        facts: dict[str, str] = {}
        events: list[str] = []
        logs: dict[tuple[str, str], str] = {}  # (operator index, subgraph) -> the last line it logged in Prepare
        for line in console.splitlines():
            if line.startswith("EF "):
                key, _, value = line[3:].partition(" ")
                if key == "event":
                    events.append(value.split(" ", 1)[1])
                elif key == "log":
                    index, subgraph, text = (value.split(" ", 2) + ["", ""])[:3]
                    logs[(index, subgraph)] = text.strip()
                else:
                    facts[key] = value
        result = RunResult(facts.get("status") == "ok", console=console, exit_status=p.returncode)
        for key in ("arena_used", "arena_head", "arena_tail"):
            if key in facts:
                setattr(result, key, int(facts[key]))
        if not result.ok:
            abort = facts.get("abort", "").split()
            if len(abort) >= 3:
                result.aborted = (abort[0], abort[1], int(abort[2]))
            result.reason = _reason(facts, console, p.returncode, elf_path, logs)
            return result
        result.samples = int(facts.get("samples", 0))
        result.outputs = (work / "output.bin").read_bytes()
        if so is not None and (work / "marks.txt").exists():
            result.instructions, result.operators = _counts((work / "marks.txt").read_text(), events)
            result.counted = True
        return result


def _reason(facts: dict, console: str, returncode: int, elf_path, logs: dict | None = None) -> str:
    """One line: why the image stopped without ``EF status ok``; a failed Prepare with the
    last line that operator logged (``logs``, by operator index and subgraph)."""
    if "error" in facts:
        failed = _PREPARE_FAILED.fullmatch(facts["error"])
        said = (logs or {}).get((failed.group(1), failed.group(2) or "0")) if failed else None
        return facts["error"] + (": " + _SOURCE_PATH.sub(r"\1", said) if said else "")
    if "abort" in facts:
        words = facts["abort"].split()
        if words == ["abort()"]:
            return "the firmware called abort() (a failed assert() or the C++ runtime giving up)"
        where = f"TFLM aborted (TFLITE_ABORT) in {words[0]}"
        if len(words) >= 4:
            where += f" of {words[1]} (operator {words[2]}" + (f", subgraph {words[3]})" if words[3] != "0" else ")")
        return where
    if "fault" in facts:
        kind, _, rest = facts["fault"].partition(" ")
        regs = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
        pc = int(regs.get("pc", "0"), 16)
        cfsr = int(regs.get("cfsr", "0"), 16)
        bits = [name for bit, name in _CFSR.items() if cfsr >> bit & 1]
        where = _function_at(elf_path, pc)
        return (f"the firmware faulted ({kind}) at pc 0x{pc:08x}" + (f" in {where}" if where else "")
                + (f" (CFSR 0x{cfsr:08x}: {', '.join(bits)})" if cfsr else ""))
    tail = [ln for ln in console.splitlines() if ln.strip()][-1:] or [f"QEMU exit status {returncode}"]
    return f"the firmware stopped without finishing: {tail[0][:200]}"


def _function_at(elf_path, address: int) -> str | None:
    """The (demangled, when ``c++filt`` is installed) function of the image holding ``address``."""
    name = _elf.read(elf_path).function_at(address)
    filt = shutil.which("arm-none-eabi-c++filt") or shutil.which("c++filt")
    if name is None or filt is None:
        return name
    p = subprocess.run([filt, name], capture_output=True, text=True)
    return p.stdout.strip() or name if p.returncode == 0 else name


def _counts(log: str, events: list[str]) -> tuple[list[int], list[tuple[str, int]]]:
    """Per-Invoke totals and the first Invoke's per-operator counts from the plugin's log."""
    rows = [tuple(map(int, ln.split())) for ln in log.splitlines() if ln.strip()]
    totals: list[int] = []
    operators: list[tuple[str, int]] = []
    start = None
    stack: list[tuple[int, int]] = []
    event = 0
    for marker, value in rows:
        if marker == 0:
            if start is None:
                start = value
            else:
                totals.append(value - start)
                start = None
        elif start is not None and not totals and marker == 1:
            stack.append((event, value))
            event += 1
        elif start is not None and not totals and marker == 2 and stack:
            index, begun = stack.pop()
            if not stack:  # top-level operators (a WHILE's body is inside its own event)
                operators.append((events[index] if index < len(events) else "?", value - begun))
    return totals, operators


def as_array(outputs: bytes, dtype, shape) -> np.ndarray:
    """Output bytes of the samples as an array of ``(samples, *shape)``."""
    arr = np.frombuffer(outputs, dtype=dtype)
    return arr.reshape((-1, *shape))
