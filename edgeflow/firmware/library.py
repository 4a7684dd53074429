"""The TFLM library for one core: compiled object by object into the cache, only what a model needs.

A full ``microlite`` build compiles about 315 files (10–12 CPU-minutes); one model needs a
few dozen. :func:`link` therefore starts from the application's objects, links, reads the
linker's "undefined reference" lines, finds the TFLM / CMSIS-NN source that defines each
missing symbol, compiles it (cached) and links again, until nothing is missing. The
objects live in ``<cache>/tflm-lib/<key>/`` where ``key`` hashes the TFLM revision, the
compiler version, the core's flags and the compile flags below; a later model reuses them
and compiles only kernels it is the first to need.

The compile flags are those of TFLM's Makefile for ``TARGET=cortex_m_generic
OPTIMIZED_KERNEL_DIR=cmsis_nn`` (default build type): ``-Os`` for the interpreter,
``-O2`` for kernels and CMSIS-NN, ``TF_LITE_STATIC_MEMORY``, no RTTI or exceptions,
function and data sections (the linker drops what is not called).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from edgeflow._cache import cache_dir
from edgeflow.errors import EdgeflowError
from edgeflow.firmware.sources import TflmSources
from edgeflow.firmware.targets import Target
from edgeflow.firmware.toolchain import Toolchain

__all__ = ["FLAGS_VERSION", "Library"]

#: Bumped when the flags or the object layout below change (part of the cache key).
FLAGS_VERSION = 1
_COMMON = ["-fno-unwind-tables", "-fno-asynchronous-unwind-tables", "-ffunction-sections",
           "-fdata-sections", "-fmessage-length=0", "-DTF_LITE_STATIC_MEMORY",
           "-DTF_LITE_DISABLE_X86_NEON", "-DCMSIS_NN", "-DKERNELS_OPTIMIZED_FOR_SPEED",
           "-DTF_LITE_MCU_DEBUG_LOG", "-mlittle-endian", "-funsigned-char", "-fomit-frame-pointer",
           "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0", "-w"]
_CXX = ["-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics"]
_C = ["-std=c17"]
_UNDEFINED = re.compile(r"undefined reference to `([^']+)'")
_MAX_ROUNDS = 16


class Library:
    """TFLM + CMSIS-NN objects for one (revision, compiler, core, flags), compiled on demand.

    Args:
        sources: the TFLM tree (:func:`edgeflow.firmware.sources.locate`).
        target: the core.
        toolchain: the cross compiler.
        jobs: parallel compiler processes (default: the CPU count).
    """

    def __init__(self, sources: TflmSources, target: Target, toolchain: Toolchain, jobs: int | None = None):
        self.sources, self.target, self.toolchain = sources, target, toolchain
        self.jobs = jobs or os.cpu_count() or 1
        key = json.dumps([sources.revision, str(sources.root) if sources.origin == "path" else "",
                          toolchain.version, target.flags(), target.device, _COMMON, _CXX, _C,
                          FLAGS_VERSION])
        self.key = hashlib.sha1(key.encode()).hexdigest()[:16]
        self.dir = cache_dir("tflm-lib", f"{sources.revision[:12]}-{target.cpu}-{self.key}")
        self.compiled: list[str] = []   # sources compiled by this instance (cache misses)
        self._candidates: list[str] | None = None

    # -- flags ------------------------------------------------------------------------------
    def includes(self) -> list[str]:
        r, d = self.sources.root, self.sources.downloads
        dirs = [r, d, d / "gemmlowp", d / "flatbuffers/include", d / "kissfft", d / "ruy",
                d / "cmsis", d / "cmsis_nn", d / "cmsis_nn/Include", d / "cmsis/CMSIS/Core/Include",
                d / f"cmsis/Cortex_DFP/Device/{self.target.device.split('_')[0]}/Include"]
        return [f"-I{p}" for p in dirs]

    def cflags(self, source: str) -> list[str]:
        """Flags for one source (relative to the TFLM root, or absolute for the application)."""
        cxx = source.endswith(".cc") or source.endswith(".cpp")
        opt = "-Os" if ("tensorflow/lite/" in source and "/kernels/" not in source) else "-O2"
        return [*self.target.flags(), *_COMMON, *(_CXX if cxx else _C), opt, *self.includes()]

    # -- objects ----------------------------------------------------------------------------
    def object_path(self, source: str) -> Path:
        return self.dir / "obj" / (source + ".o")

    def compile(self, sources: list[str]) -> list[Path]:
        """Compile TFLM sources (paths relative to its root) not yet in the cache; their objects."""
        todo = [s for s in sources if not self.object_path(s).exists()]
        if todo:
            from edgeflow._progress import bar

            with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool, \
                    bar(total=len(todo), desc=f"compiling TFLM for {self.target.cpu}", unit="file") as progress:
                for source, error in zip(todo, pool.map(self._compile_one, todo)):
                    if error:
                        raise EdgeflowError(f"TFLM source {source} does not compile for {self.target.cpu}: {error}")
                    progress.update()
            self.compiled.extend(todo)
        return [self.object_path(s) for s in sources]

    def _compile_one(self, source: str) -> str | None:
        out = self.object_path(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".o", dir=out.parent)
        os.close(fd)
        compiler = self.toolchain.gxx if source.endswith(".cc") else self.toolchain.gcc
        cmd = [compiler, *self.cflags(source), "-c", str(self.sources.root / source), "-o", tmp]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            os.unlink(tmp)
            lines = [ln for ln in p.stderr.splitlines() if "error" in ln] or p.stderr.splitlines()
            return lines[0] if lines else f"exit {p.returncode}"
        os.replace(tmp, out)
        return None

    # -- linking ----------------------------------------------------------------------------
    def link(self, app_objects: list[Path], command: list[str]) -> list[str]:
        """Link ``command + app objects + the TFLM objects they need``; the TFLM sources used.

        ``command`` is the linker command up to its inputs (``g++ ... -o out.elf``); libraries
        (``-lm`` ...) are appended after the objects.

        Raises:
            EdgeflowError: a symbol no TFLM source defines, or another link error.
        """
        used: list[str] = []
        for _ in range(_MAX_ROUNDS):
            objects = [*app_objects, *self.compile(used)]
            p = subprocess.run([*command, *map(str, objects), "-Wl,--start-group", "-lstdc++", "-lm",
                                "-lc", "-lrdimon", "-lgcc", "-Wl,--end-group"],
                               capture_output=True, text=True)
            if p.returncode == 0:
                return used
            missing = sorted(set(_UNDEFINED.findall(p.stderr)))
            if not missing:
                raise EdgeflowError(f"linking the firmware failed: {_first_error(p.stderr)}")
            new = self._defining(missing, set(used))
            if not new:
                raise EdgeflowError(f"linking the firmware failed: no TFLM source defines {missing[0]}")
            used.extend(new)
        raise EdgeflowError("linking the firmware failed: the TFLM sources a model needs did not converge")

    def candidates(self) -> list[str]:
        """Every TFLM / CMSIS-NN source a Cortex-M build may use (kernels specialized for CMSIS-NN)."""
        if self._candidates is not None:
            return self._candidates
        root = self.sources.root
        out: list[str] = []

        def rel(p: Path) -> str:
            return str(p.relative_to(root))

        micro = root / "tensorflow/lite/micro"
        skip = ("_test.cc", "fake_micro_context.cc", "mock_micro_graph.cc", "test_helpers.cc", "kernel_runner.cc",
                "test_helper_custom_ops.cc")
        for sub in ("", "arena_allocator", "memory_planner", "tflite_bridge"):
            out += [rel(p) for p in sorted((micro / sub).glob("*.cc")) if not p.name.endswith(skip)]
        for top in ("tensorflow/lite", "tensorflow/compiler"):
            for p in sorted((root / top).rglob("*.c*")):
                r = rel(p)
                if p.suffix in (".cc", ".c") and not r.startswith(("tensorflow/lite/micro", "tensorflow/lite/experimental")) \
                        and not r.endswith(("_test.cc", "array.cc")):
                    out.append(r)
        optimized = {p.name: rel(p) for p in (micro / "kernels/cmsis_nn").glob("*.cc")}
        for p in sorted((micro / "kernels").glob("*.cc")):
            if not p.name.endswith(skip):
                out.append(optimized.get(p.name, rel(p)))
        for p in sorted((self.sources.downloads / "cmsis_nn/Source").rglob("*.c")):
            if not p.name.endswith(("_f16.c", "_f32.c")) and p.name != "arm_nntables_flt.c":
                out.append(rel(p))
        self._candidates = list(dict.fromkeys(out))
        return self._candidates

    def _defining(self, symbols: list[str], used: set[str]) -> list[str]:
        """The not-yet-used sources that define the demangled ``symbols``."""
        pool = [c for c in self.candidates() if c not in used]
        texts = {}

        def text(c: str) -> str:
            if c not in texts:
                texts[c] = (self.sources.root / c).read_text(errors="replace")
            return texts[c]

        found: list[str] = []
        for symbol in symbols:
            for hit in _find_definition(symbol, pool, text):
                if hit not in found:
                    found.append(hit)
        return found


def _split(symbol: str) -> tuple[str | None, str]:
    """``(class or None, name)`` of a demangled symbol (arguments and templates dropped)."""
    s = symbol.removeprefix("vtable for ").removeprefix("non-virtual thunk to ")
    s = s.split("(")[0]
    while "<" in s:
        new = re.sub(r"<[^<>]*>", "", s)
        if new == s:
            break
        s = new
    parts = [p for p in s.split("::") if p]
    if symbol.startswith("vtable for "):
        return parts[-1], parts[-1]
    name = parts[-1].split()[-1] if parts else s
    owner = parts[-2] if len(parts) > 1 and parts[-2][:1].isupper() else None
    return owner, name


def _find_definition(symbol: str, pool: list[str], text) -> list[str]:
    owner, name = _split(symbol)
    base = {c.rsplit("/", 1)[-1]: c for c in pool}
    if f"{name}.c" in base:  # CMSIS-NN: one function per file, named after it
        return [base[f"{name}.c"]]
    if owner is not None:
        pattern = re.compile(rf"\b{re.escape(owner)}::{'~?' if name == owner else ''}{re.escape(name)}\s*\(")
        if symbol.startswith("vtable for "):
            pattern = re.compile(rf"\b{re.escape(owner)}::")
        hits = [c for c in pool if c.endswith((".cc", ".c")) and pattern.search(text(c))]
        if hits:
            return hits[:1] if symbol.startswith("vtable for ") else hits
    # a definition starts at column 0 (Google style, namespaces unindented) and is no declaration
    pattern = re.compile(rf"^[A-Za-z_][^;\n]*\b{re.escape(name)}\s*\([^;]*$", re.M)
    hits = [c for c in pool if pattern.search(text(c))]
    if hits:
        return hits
    pattern = re.compile(rf"^[A-Za-z_].*\b{re.escape(name)}\b", re.M)  # data
    return [c for c in pool if pattern.search(text(c))]


def _first_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if "error" in ln.lower() or "overflow" in ln.lower()]
    return (lines or stderr.splitlines() or ["unknown error"])[0].strip()
