"""Run a firmware image under ``qemu-system-arm`` and read back what it did.

The image (:mod:`edgeflow.firmware.image`) reads ``input.bin`` and writes ``output.bin``
in QEMU's working folder over semihosting, and prints ``EF <key> <value>`` lines. A TCG
plugin (``edgeflow/_data/firmware/qemu_count.c``, compiled once with the host's C
compiler into the cache) counts the guest instructions QEMU executes and logs the count
at three marker functions: around each ``Invoke()`` and at the start and end of each
operator (TFLM's profiler hooks). QEMU does not model cycles (the DWT cycle counter reads
0), so an instruction count is what it measures exactly; the counts are repeatable run to
run. A fault, a hang (``timeout``) or a failed ``AllocateTensors``/``Invoke`` is a
:class:`RunResult` with ``ok`` False and the reason, never an exception.
"""

from __future__ import annotations

import hashlib
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

__all__ = ["RunResult", "plugin", "run"]

_MARKERS = ("ef_invoke", "ef_begin", "ef_end")


@dataclass
class RunResult:
    """What one emulated run reported.

    ``instructions``: guest instructions of each ``Invoke()`` (one per sample);
    ``operators``: ``(operator, instructions)`` of the first sample's operators, in order.
    """

    ok: bool
    reason: str = ""
    arena_used: int | None = None
    outputs: bytes = b""
    samples: int = 0
    instructions: list[int] = field(default_factory=list)
    operators: list[tuple[str, int]] = field(default_factory=list)
    counted: bool = False
    console: str = ""

    def to_dict(self) -> dict:
        return {"ok": self.ok, "reason": self.reason, "arena_used": self.arena_used, "samples": self.samples,
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
        timeout: float = 300) -> RunResult:
    """Run an image once on ``machine``; ``inputs`` are whole samples of the input tensors.

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
        except subprocess.TimeoutExpired:
            return RunResult(False, f"the firmware did not finish within {timeout:.0f} s under QEMU (hang)")
        console = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
        facts: dict[str, str] = {}
        events: list[str] = []
        for line in console.splitlines():
            if line.startswith("EF "):
                key, _, value = line[3:].partition(" ")
                if key == "event":
                    events.append(value.split(" ", 1)[1])
                else:
                    facts[key] = value
        result = RunResult(facts.get("status") == "ok", console=console)
        if "arena_used" in facts:
            result.arena_used = int(facts["arena_used"])
        if not result.ok:
            result.reason = _reason(facts, console, p.returncode)
            return result
        result.samples = int(facts.get("samples", 0))
        result.outputs = (work / "output.bin").read_bytes()
        if so is not None and (work / "marks.txt").exists():
            result.instructions, result.operators = _counts((work / "marks.txt").read_text(), events)
            result.counted = True
        return result


def _reason(facts: dict, console: str, returncode: int) -> str:
    if "error" in facts:
        return facts["error"]
    if "EF fault" in console:
        return "the firmware faulted (HardFault) under QEMU"
    tail = [ln for ln in console.splitlines() if ln.strip()][-1:] or [f"QEMU exit status {returncode}"]
    return f"the firmware stopped without finishing: {tail[0][:200]}"


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
