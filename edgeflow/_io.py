"""Outputs, the one way edgeflow writes them: atomically, with the user's umask, and never
over the user's work.

- A file is written to a temporary file in the same folder and renamed over the target, so
  an interrupted write leaves nothing half-written and keeps the old file. The result gets
  the mode a plain ``open()`` would give under the user's umask (``0644`` under ``022``);
  an overwritten file keeps its mode.
- A folder (a firmware project, a SavedModel) is built in a temporary folder that becomes
  the target when the block succeeds. edgeflow never deletes or replaces a non-empty folder:
  it writes into a folder only when the folder is new or empty, or when edgeflow created it
  (it holds :data:`MARKER`) and ``force`` is given; then it replaces its own files one by one
  and leaves every other file alone.
- :func:`check_file` and :func:`check_dir` validate an output before any work starts: an
  existing file needs ``force`` (``--force`` on the command line), and the folder it goes
  in (or the nearest one that exists, when folders are to be made) must be a folder this
  process can create files in (:func:`check_writable`).
- Every temporary file or folder edgeflow makes carries ``edgeflow`` and the process id in
  its name (:func:`temporary_dir`, and the atomic writes above). A killed process cannot
  remove them; :func:`clean_stale` does, on the next start, for exactly those whose process
  is gone: never a file edgeflow did not make, never one a live run is writing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
from pathlib import Path

__all__ = [
    "MARKER",
    "atomic_path",
    "check_dir",
    "check_file",
    "check_writable",
    "claim_dir",
    "clean_stale",
    "output_dir",
    "temporary_dir",
    "write_bytes",
    "write_text",
]

#: The file that marks a folder as created by edgeflow (JSON: tool, version, files written).
MARKER = ".edgeflow-output.json"

_umask_lock = threading.Lock()

#: In the name of every temporary file and folder edgeflow makes, before the process id.
_TAG = "edgeflow-tmp-"
_STALE = re.compile(rf"{re.escape(_TAG)}(\d+)-")


def _umask() -> int:
    """The process umask (read by setting it and putting it back, under a lock)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _mode_for(path: Path, *, directory: bool = False) -> int:
    """The mode a new ``path`` gets from a plain ``open()``/``mkdir()``; an existing one keeps its own."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return (0o777 if directory else 0o666) & ~_umask()


def _error(message: str):
    from edgeflow.errors import EdgeflowError

    return EdgeflowError(message)


# --------------------------------------------------------------------------- files


def check_file(path: str | os.PathLike, *, force: bool = False, example: str = "model.tflite") -> Path:
    """Check, before any work, that ``path`` can be written as an output file (``example``
    is the file name the error suggests when ``path`` is a folder).

    Raises:
        EdgeflowError: ``path`` is a folder, or it exists and ``force`` is False.

    Example:
        >>> check_file("out/model.tflite", force=False)
        PosixPath('out/model.tflite')
    """
    path = Path(path)
    if path.is_dir():
        raise _error(f"{path} is a folder: name the output file, e.g. {path / example}")
    if path.exists() and not force:
        raise _error(f"{path} exists: pass --force to overwrite it, or choose another output")
    check_writable(path)
    return path


def check_writable(path: str | os.PathLike) -> Path:
    """Check, before any work, that the output ``path`` (a file or a folder) can be created.

    The nearest folder above ``path`` that exists must be a folder (not a file) in which
    this process can create a file: tried with a temporary file (tagged like every other,
    removed at once), because permission bits alone do not tell (root on a read-only file
    system, ``/sys``). The missing folders between it and ``path`` are made only when the
    output is written.

    Raises:
        EdgeflowError: a file is in the way, or the folder takes no new file (with the
            system's reason).
    """
    path = Path(path)
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise _error(f"cannot write {path}: {_shown(parent, path)} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{_TAG}{os.getpid()}-", suffix=".probe", dir=parent)
    except OSError as err:
        raise _error(f"cannot write {path}: {_shown(parent, path)} takes no new file "
                     f"({err.strerror}): choose another output") from err
    os.close(fd)
    os.unlink(probe)
    return path


def _shown(folder: Path, path: Path) -> str:
    """``folder`` as the user wrote it, when ``path`` was relative and it lies inside the current one."""
    if not path.is_absolute():
        with contextlib.suppress(ValueError):
            return str(folder.relative_to(Path.cwd())) or "."
    return str(folder)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; it becomes ``path`` only if the block succeeds.

    For writers that want a file name rather than bytes (Keras ``model.save``). The
    temporary name keeps ``path``'s suffix. On success the file gets the mode of the file it
    replaces, or the umask's; on any failure it is removed and ``path`` is unchanged.

    Side effects: creates ``path``'s parent folder if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{_TAG}{os.getpid()}-", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; on any failure nothing is left behind.

    The file gets the mode ``open()`` would give it under the umask (an overwritten file
    keeps its mode). Returns ``path`` as a ``Path``.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_bytes`)."""
    return write_bytes(path, text.encode("utf-8"))


# --------------------------------------------------------------------------- folders


def _is_empty_dir(path: Path, staging: Path | None = None) -> bool:
    return path.is_dir() and not any(p != staging for p in path.iterdir())


def check_dir(path: str | os.PathLike, *, force: bool = False, flag: str = "--force",
              _staging: Path | None = None) -> Path:
    """Check, before any work, that edgeflow may write its files into the folder ``path``.

    Allowed: a folder that does not exist or is empty; with ``force``, a folder edgeflow
    created before (it holds :data:`MARKER`). Never a file, never someone else's folder,
    never a place this process cannot create files in (:func:`check_writable`).
    ``flag`` is the command-line option that gives ``force`` (named in the error).

    Raises:
        EdgeflowError: with what to do instead.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise _error(f"{path} is a file, not a folder: choose a folder for the output")
    if not path.exists():
        check_writable(path)
        return path
    if _is_empty_dir(path, _staging):
        check_writable(path / MARKER)
        return path
    if not (path / MARKER).is_file():
        raise _error(
            f"{path} is not empty and edgeflow did not create it: choose a new or empty "
            "folder (edgeflow never deletes or replaces files it did not write)"
        )
    if not force:
        raise _error(
            f"{path} holds files edgeflow wrote before: pass {flag} to replace them "
            "(other files in it are kept), or choose a new folder"
        )
    check_writable(path / MARKER)
    return path


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, *, force: bool = False, flag: str = "--force"):
    """Yield an empty staging folder whose files become the folder ``path`` if the block succeeds.

    - ``path`` does not exist: the staging folder (beside it) is renamed to ``path``.
    - ``path`` is empty, or (with ``force``) was created by edgeflow: each staged file is
      renamed into ``path`` (an overwritten file keeps its mode); nothing else in ``path``
      is touched.
    - otherwise :func:`check_dir` raises before the block runs (naming ``flag``).

    The folder gets the umask's mode and a :data:`MARKER` file listing what edgeflow wrote.
    On any failure the staging folder is removed and ``path`` is unchanged.

    Example:
        >>> with output_dir("fw/digits") as tmp:
        ...     (tmp / "main.cpp").write_text(source)
    """
    path = Path(os.path.abspath(path))
    check_dir(path, force=force, flag=flag)
    exists = path.exists()
    if exists:  # stage inside: the same file system, and never a rename over the folder itself
        staging = Path(tempfile.mkdtemp(prefix=f".staging.{_TAG}{os.getpid()}-", dir=path))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_TAG}{os.getpid()}-", dir=path.parent))
    try:
        yield staging
        written = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        _write_marker(staging, path, written)
        if not exists:
            os.chmod(staging, _mode_for(path, directory=True))
            os.replace(staging, path)
        else:
            check_dir(path, force=force, flag=flag, _staging=staging)  # again: something may have appeared
            _merge(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_marker(staging: Path, target: Path, written: list[str]) -> None:
    from edgeflow import __version__

    old = []
    with contextlib.suppress(OSError, ValueError, AttributeError):
        old = list(json.loads((target / MARKER).read_text()).get("files", []))
    record = {"created_by": f"edgeflow {__version__}", "files": sorted(set(old) | set(written))}
    (staging / MARKER).write_text(json.dumps(record, indent=2) + "\n")


def _merge(staging: Path, target: Path) -> None:
    """Rename every staged file into ``target`` (folders are created, files replaced)."""
    for src in sorted(staging.rglob("*")):
        if src.is_dir():
            continue
        dst = target / src.relative_to(staging)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_dir():
            raise _error(f"{dst} is a folder where edgeflow writes a file: move it away and retry")
        os.chmod(src, _mode_for(dst))
        os.replace(src, dst)


def claim_dir(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Create the folder ``path`` (or take one edgeflow created) to write files into one by one.

    For outputs that grow over time and must survive an interruption (a recipe run's
    artifacts), where :func:`output_dir`'s all-at-once rename does not fit. The rules are
    :func:`check_dir`'s; the folder gets the umask's mode and :data:`MARKER`.

    Raises:
        EdgeflowError: see :func:`check_dir`.
    """
    path = check_dir(path, force=force)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / MARKER).is_file():
        from edgeflow import __version__

        write_text(path / MARKER, json.dumps({"created_by": f"edgeflow {__version__}", "files": []},
                                             indent=2) + "\n")
    return path


def temporary_dir(prefix: str) -> tempfile.TemporaryDirectory:
    """A ``tempfile.TemporaryDirectory`` named ``<prefix>edgeflow-tmp-<pid>-...``, so that
    :func:`clean_stale` can remove it if this process is killed before it does.

    Side effect: first removes what killed edgeflow processes left in the system's
    temporary folder (:func:`clean_stale`).
    """
    clean_stale()
    return tempfile.TemporaryDirectory(prefix=f"{prefix}{_TAG}{os.getpid()}-")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_stale(*folders: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed edgeflow processes left in ``folders`` and in the
    system's temporary folder; return what was removed.

    Only entries whose name carries edgeflow's tag with the id of a process that no longer
    runs, owned by this user, are removed (a live run's temporaries are kept).
    """
    removed = []
    for folder in (tempfile.gettempdir(), *folders):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _STALE.search(entry.name)
            if not match or _alive(int(match.group(1))):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError:
                continue
            removed.append(Path(entry.path))
    return removed
