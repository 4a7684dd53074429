"""Build a model into a bare-metal firmware image for one core (TFLM + CMSIS-NN, newlib).

The application is edgeflow's measurement program (``edgeflow/_data/firmware/``): the
model as a 16-byte aligned array in read-only data, a ``MicroMutableOpResolver`` with
exactly the model's operators (:func:`edgeflow.deploy.mcu.resolver_calls`), a static
arena, a ``main`` that runs the model on inputs read over semihosting, and a start-up
file. The arena is its own object, so resizing it relinks without recompiling.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from edgeflow import _io
from edgeflow.deploy.mcu import OWN_KERNELS, cxx_call, own_kernel_sources
from edgeflow.errors import EdgeflowError
from edgeflow.firmware import elf as _elf
from edgeflow.firmware.library import Library
from edgeflow.firmware.sources import TflmSources
from edgeflow.firmware.targets import MACHINES, Target
from edgeflow.firmware.toolchain import Toolchain

__all__ = ["HEAP_BYTES", "STACK_BYTES", "Firmware", "link_image", "link_script", "prepare"]

STACK_BYTES = 32 << 10
HEAP_BYTES = 16 << 10
# RAM of the QEMU machine kept free of the measurement arena: stack, heap, TFLM's and
# newlib's own .data/.bss.
_RAM_RESERVE = STACK_BYTES + HEAP_BYTES + (64 << 10)


@dataclass
class Firmware:
    """A linked image and what it is made of.

    ``flash`` = text + rodata + data and ``static_ram`` = data + bss (the arena included,
    stack and heap excluded) are read from the linked ELF (:mod:`edgeflow.firmware.elf`).
    """

    elf: Path
    target: Target
    arena_size: int
    model_bytes: int
    image: _elf.Image
    tflm: dict
    tflm_sources: list[str]
    compiled: int
    seconds: float
    workdir: Path
    flash_split: dict = field(default_factory=dict)
    _keep: object = field(default=None, repr=False)

    @property
    def flash(self) -> int:
        return self.image.flash

    @property
    def static_ram(self) -> int:
        return self.image.static_ram

    def sizes(self) -> dict:
        """Bytes by section kind, with the model's and the arena's share."""
        im = self.image
        return {"text": im.text, "rodata": im.rodata, "data": im.data, "bss": im.bss,
                "flash": im.flash, "static_ram": im.static_ram, "model": self.model_bytes,
                "arena": self.arena_size, "stack_reserved": im.size(".stack"),
                "heap_reserved": im.size(".heap")}


@dataclass
class _Build:
    """Compiled application objects, ready to link with any arena size."""

    library: Library
    toolchain: Toolchain
    target: Target
    workdir: Path
    objects: list[Path]
    model_bytes: int
    compile_seconds: float
    keep: object


def _template(name: str) -> str:
    return files("edgeflow").joinpath("_data/firmware/" + name).read_text("utf-8")


def link_script(target: Target) -> str:
    """The linker script of the measurement image for the QEMU machine of ``target``."""
    machine = MACHINES[target.machine]
    separate = machine.rodata != machine.code
    return (_template("link.ld")
            .replace("EF_CODE_ORIGIN", hex(machine.code[0])).replace("EF_CODE_LENGTH", hex(machine.code[1]))
            .replace("EF_RAM_ORIGIN", hex(machine.ram[0])).replace("EF_RAM_LENGTH", hex(machine.ram[1]))
            .replace("EF_RODATA_MEMORY", f"RODATA (r) : ORIGIN = {hex(machine.rodata[0])}, "
                                         f"LENGTH = {hex(machine.rodata[1])}" if separate else "")
            .replace("EF_RODATA_ALIAS", "" if separate else 'REGION_ALIAS("RODATA", CODE);')
            .replace("EF_HEAP_SIZE", hex(HEAP_BYTES)).replace("EF_STACK_SIZE", hex(STACK_BYTES)))


def prepare(data: bytes, calls: list[str], target: Target, sources: TflmSources, toolchain: Toolchain,
            *, jobs: int | None = None) -> _Build:
    """Write and compile the application for a model (everything but the arena)."""
    t0 = time.monotonic()
    keep = _io.temporary_dir("edgeflow-fw-")
    work = Path(keep.name)
    library = Library(sources, target, toolchain, jobs)
    (work / "model.tflite").write_bytes(data)
    main = _template("main.cc").replace("EF_RESOLVER_CALLS", "\n".join(f"  resolver.{cxx_call(c)};" for c in calls))
    (work / "main.cc").write_text(main.replace("EF_OP_COUNT", str(max(1, len(calls)))))
    (work / "edgeflow_decode.h").write_text(_template("edgeflow_decode.h"))  # main.cc includes it
    kernels = own_kernel_sources(calls)
    for name, text in kernels.items():
        (work / name).write_text(text)
    (work / "startup.c").write_text(_template("startup.c"))
    (work / "model.S").write_text(_template("model.S").replace("EF_MODEL_PATH", f'"{work / "model.tflite"}"'))
    (work / "link.ld").write_text(link_script(target))
    fpu = ["-DEF_HAS_FPU"] if target.fpu else []
    objects = []
    for name in ("main.cc", "startup.c", "model.S", *(n for n in kernels if n.endswith(".cc"))):
        src = work / name
        obj = work / (name + ".o")
        compiler = toolchain.gxx if name.endswith(".cc") else toolchain.gcc
        flags = library.cflags(name) if name != "model.S" else target.flags()
        command = [compiler, *flags, *fpu, "-c"]
        cached = _cached_object(library, command, src) if name.endswith(".cc") else None
        if cached is not None and cached.exists():
            obj.write_bytes(cached.read_bytes())
        else:
            p = subprocess.run([*command, str(src), "-o", str(obj)], capture_output=True, text=True)
            if p.returncode != 0:
                raise EdgeflowError(f"the firmware's {name} does not compile for {target.cpu}: "
                                    f"{_first(p.stderr)}")
            if cached is not None:
                _io.write_bytes(cached, obj.read_bytes())
        objects.append(obj)
    return _Build(library, toolchain, target, work, objects, len(data), time.monotonic() - t0, keep)


def _cached_object(library: Library, command: list[str], src: Path) -> Path:
    """Where the object of an application source compiled by ``command`` is cached.

    ``main.cc`` includes TFLM's interpreter headers and takes 3-4 s of CPU to compile; a
    model with the same operators writes the same text. The key hashes the command (the
    core's flags, the TFLM include folders), the source and the headers beside it; the
    library folder's own key holds the TFLM revision and the compiler. The object is copied
    into the build folder, so the flash split still counts it as the application.
    """
    text = [src.read_text()] + [h.read_text() for h in sorted(src.parent.glob("*.h"))]
    key = hashlib.sha1(json.dumps([command, text]).encode()).hexdigest()[:16]
    return library.dir / "app" / f"{src.name}-{key}.o"


def link_image(build: _Build, arena_size: int | None = None, *, name: str = "firmware") -> Firmware:
    """Link the application with an arena of ``arena_size`` bytes (default: all the RAM of
    the QEMU machine that the stack, heap and static data leave)."""
    t0 = time.monotonic()
    machine = MACHINES[build.target.machine]
    if arena_size is None:
        arena_size = machine.ram[1] - _RAM_RESERVE
    arena_size = (arena_size + 15) // 16 * 16
    work = build.workdir
    arena_c = work / f"{name}_arena.c"
    arena_c.write_text(f"__attribute__((aligned(16))) unsigned char g_arena[{arena_size}];\n"
                       f"const int ef_arena_size = {arena_size};\n")
    p = subprocess.run([build.toolchain.gcc, *build.target.flags(), "-c", str(arena_c), "-o", str(arena_c) + ".o"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise EdgeflowError(f"the firmware's arena does not compile: {_first(p.stderr)}")
    out = work / f"{name}.elf"
    command = [build.toolchain.gxx, *build.target.flags(), "-nostartfiles", "--specs=rdimon.specs", "-Wl,--gc-sections",
               f"-T{work / 'link.ld'}", f"-Wl,-Map={work / (name + '.map')}", "-o", str(out)]
    compiled_before = len(build.library.compiled)
    used = build.library.link([*build.objects, Path(str(arena_c) + ".o")], command)
    image = _elf.read(out)
    return Firmware(out, build.target, arena_size, build.model_bytes, image,
                    build.library.sources.to_dict() | {"library": str(build.library.dir)}, used,
                    len(build.library.compiled) - compiled_before,
                    time.monotonic() - t0 + build.compile_seconds, work,
                    flash_split(image, (work / (name + ".map")).read_text(errors="replace"), build), build.keep)


#: The parts of the flash split (:func:`flash_split`), in order, with what each holds.
FLASH_PARTS = {
    "model": "the .tflite array (g_model)",
    "tflm": "TFLM's interpreter and kernels with CMSIS-NN (the TFLM sources compiled for the core), and "
            "the kernels edgeflow ships (its DECODE, edgeflow_decode.cc)",
    "application": "edgeflow's measurement main, start-up code and arena size (yours replaces them on a board)",
    "libraries": "the C and C++ runtime: newlib (printf, semihosting file I/O), libstdc++, libgcc",
    "padding": "alignment padding and bytes the linker adds itself",
}


def flash_split(image: _elf.Image, map_text: str, build: _Build) -> dict[str, int]:
    """The image's flash (text + rodata + data) by where its bytes come from (:data:`FLASH_PARTS`).

    Each input section of a flash output section is counted for its object file, as the
    linker map lists it (:func:`edgeflow.firmware.elf.map_contributions`): ``model.S.o`` is
    the model, objects of the TFLM library folder and edgeflow's own kernels are TFLM, edgeflow's other objects are the
    application, archives and start files of the toolchain are libraries. ``padding`` is the
    rest of the flash, so the parts sum to ``image.flash`` exactly.
    """
    sections = {s.name for s in image.sections if s.alloc and not s.nobits}
    files, _fill = _elf.map_contributions(map_text, sections)
    library, work = str(build.library.dir), str(build.workdir)
    own = {n for names in OWN_KERNELS.values() for n in names if n.endswith(".cc")}
    parts = dict.fromkeys(FLASH_PARTS, 0)
    for path, size in files.items():
        if path.endswith("model.S.o"):
            parts["model"] += size
        elif path.startswith(library) or any(path.endswith(f"/{n}.o") for n in own):
            parts["tflm"] += size
        elif path.startswith(work):
            parts["application"] += size
        else:
            parts["libraries"] += size
    parts["padding"] = image.flash - sum(parts.values())
    return parts


def _first(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if "error" in ln.lower()]
    return (lines or [ln.strip() for ln in stderr.splitlines() if ln.strip()] or ["unknown error"])[0]
