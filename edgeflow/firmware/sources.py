"""Where the TensorFlow Lite Micro sources come from.

In this order: the ``path`` given (option ``--tflm-root``) or ``$EDGEFLOW_TFLM_ROOT``
(a tflite-micro checkout whose ``tensorflow/lite/micro/tools/make/downloads/`` holds
CMSIS-NN, CMSIS and flatbuffers, or a ``tflite-micro-*.tar.xz`` archive of one); else
such an archive in a ``shared/third_party/`` folder beside the project (searched upwards
from the package); else, when ``git`` reaches GitHub, tflite-micro at
:data:`PINNED_REVISION` cloned once into the cache with its third-party trees fetched by
TFLM's own download scripts; else an error that says how to get them.

Archives and clones are unpacked into ``<cache>/tflm-src/<revision>/`` once
(:func:`edgeflow._cache.cache_dir`); the sources are only read afterwards.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeflow._cache import cache_dir
from edgeflow.errors import EdgeflowError

__all__ = ["PINNED_REVISION", "TflmSources", "locate"]

#: tflite-micro upstream commit edgeflow is built and tested against (2026-08-20).
PINNED_REVISION = "90b983c2b3f1480642e040bbd2ddb37b998f3424"
UPSTREAM = "https://github.com/tensorflow/tflite-micro.git"
DOWNLOADS = Path("tensorflow/lite/micro/tools/make/downloads")
# What a Cortex-M build with CMSIS-NN reads under downloads/.
NEEDED = ("cmsis_nn/Source", "cmsis/CMSIS/Core/Include", "flatbuffers/include", "gemmlowp")
# TFLM's download scripts, run in this order for a fresh clone (they pin the revisions).
_SCRIPTS = ("flatbuffers_download.sh", "kissfft_download.sh", "pigweed_download.sh",
            "ext_libs/cmsis_download.sh", "ext_libs/cmsis_nn_download.sh",
            "ext_libs/gemmlowp_download.sh", "ext_libs/ruy_download.sh",
            "ext_libs/eyalroz_printf_download.sh")
_HOW = ("set EDGEFLOW_TFLM_ROOT (or --tflm-root) to a tflite-micro checkout with its make "
        "downloads, or to a tflite-micro-*.tar.xz of one; or go online once so edgeflow can "
        f"fetch revision {PINNED_REVISION[:8]} with git")


@dataclass(frozen=True)
class TflmSources:
    """A tflite-micro tree ready to compile: its root, revision and where it came from."""

    root: Path
    revision: str     # a git commit (or its first 8 hex digits), or "tree-<hash>" for a bare tree
    origin: str       # "path", "archive" or "git"

    @property
    def downloads(self) -> Path:
        return self.root / DOWNLOADS

    def to_dict(self) -> dict:
        return {"root": str(self.root), "revision": self.revision, "origin": self.origin}


def locate(path: str | os.PathLike | None = None, *, online: bool = True) -> TflmSources:
    """The TFLM sources to build with (see the module docstring for the order).

    Raises:
        EdgeflowError: a given path that is not a usable tree or archive, or no sources at
            all (offline, nothing found): one line saying how to get them.
    """
    given = path or os.environ.get("EDGEFLOW_TFLM_ROOT")
    if given:
        where = "--tflm-root" if path else "EDGEFLOW_TFLM_ROOT"
        p = Path(given).expanduser()
        if p.is_file() and p.name.endswith((".tar.xz", ".tar.gz", ".tar")):
            return _from_archive(p)
        if p.is_dir():
            return _checked(_tree_root(p), "path", where)
        raise EdgeflowError(f"{where}: {given} is neither a tflite-micro folder nor a .tar.xz archive of one")
    archive = _shared_archive()
    if archive is not None:
        return _from_archive(archive)
    cloned = cache_dir("tflm-src") / f"git-{PINNED_REVISION[:8]}" / "tflite-micro"
    if (cloned / ".edgeflow-complete").exists():
        return TflmSources(cloned, PINNED_REVISION[:8], "git")
    if online and shutil.which("git"):
        return _clone(cloned)
    raise EdgeflowError(f"no TensorFlow Lite Micro sources: {_HOW}")


def _tree_root(p: Path) -> Path:
    """A folder holding tflite-micro, or tflite-micro itself."""
    if (p / "tensorflow/lite/micro").is_dir():
        return p
    if (p / "tflite-micro/tensorflow/lite/micro").is_dir():
        return p / "tflite-micro"
    return p


def _checked(root: Path, origin: str, where: str, revision: str | None = None) -> TflmSources:
    if not (root / "tensorflow/lite/micro/micro_interpreter.h").is_file():
        raise EdgeflowError(f"{where}: {root} is not a tflite-micro tree (no tensorflow/lite/micro); {_HOW}")
    missing = [n for n in NEEDED if not (root / DOWNLOADS / n).is_dir()]
    if missing:
        raise EdgeflowError(f"{where}: {root} lacks {DOWNLOADS}/{missing[0]}; run TFLM's "
                            "'make -f tensorflow/lite/micro/tools/make/Makefile third_party_downloads' "
                            "there once (online)")
    return TflmSources(root, revision or _revision(root), origin)


def _revision(root: Path) -> str:
    """The git commit of a checkout, else a hash of the tree's file names, sizes and times."""
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()[:12]
    except (OSError, subprocess.SubprocessError):
        pass
    h = hashlib.sha1()
    for sub in ("tensorflow/lite", "tensorflow/compiler", str(DOWNLOADS / "cmsis_nn")):
        for dirpath, dirnames, files in sorted(os.walk(root / sub)):
            dirnames.sort()
            for f in sorted(files):
                st = os.stat(os.path.join(dirpath, f))
                h.update(f"{dirpath}/{f}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return "tree-" + h.hexdigest()[:12]


def _shared_archive() -> Path | None:
    """``shared/third_party/tflite-micro-*.tar.xz`` in a folder above the package or the cwd."""
    seen = set()
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in start.parents:
            folder = parent / "shared" / "third_party"
            if folder in seen:
                continue
            seen.add(folder)
            found = sorted(folder.glob("tflite-micro-*.tar.xz")) if folder.is_dir() else []
            if found:
                return found[-1]
    return None


def _from_archive(archive: Path) -> TflmSources:
    """Unpack a tflite-micro archive into the cache once; its revision comes from its name."""
    stem = archive.name.split(".tar")[0]
    revision = stem.removeprefix("tflite-micro-") if stem.startswith("tflite-micro-") else (
        "archive-" + hashlib.sha1(f"{archive.resolve()}:{archive.stat().st_size}".encode()).hexdigest()[:12])
    dest = cache_dir("tflm-src") / revision
    if not (dest / ".edgeflow-complete").exists():
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            (tmp / ".edgeflow-complete").write_text(str(archive) + "\n")
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        except (OSError, tarfile.TarError) as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if (dest / ".edgeflow-complete").exists():  # another process unpacked it meanwhile
                return _checked(_tree_root(dest), "archive", str(archive), revision)
            raise EdgeflowError(f"{archive}: cannot unpack ({err}); {_HOW}") from err
    return _checked(_tree_root(dest), "archive", str(archive), revision)


def _clone(dest: Path) -> TflmSources:
    """``git clone`` tflite-micro at the pinned revision, then TFLM's third-party downloads."""
    tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=dest.parent.parent))
    try:
        def run(*cmd, cwd=tmp):
            subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=900)

        run("git", "init", "-q", ".")
        run("git", "fetch", "-q", "--depth", "1", UPSTREAM, PINNED_REVISION)
        run("git", "checkout", "-q", "FETCH_HEAD")
        make = tmp / "tensorflow/lite/micro/tools/make"
        for script in _SCRIPTS:
            run("bash", str(make / script), str(make / "downloads"), str(tmp))
        (tmp / ".edgeflow-complete").write_text(UPSTREAM + "@" + PINNED_REVISION + "\n")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    except (OSError, subprocess.SubprocessError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EdgeflowError(f"cannot fetch TensorFlow Lite Micro with git ({type(err).__name__}); {_HOW}") from err
    return TflmSources(dest, PINNED_REVISION[:8], "git")
