"""Native code that can kill its process runs in a child process: the one mechanism.

TFLM can ``abort()``, the TFLite converter's calibrator can die with SIGSEGV, and LiteRT
can crash on a hostile file; none of that may take edgeflow (or the caller's Python) with
it. Each such job runs as ``python -m <module> REQUEST.json`` in a private temporary folder:

* the parent (:class:`Workdir`) writes the request (JSON) and any input files there, runs
  the child with a timeout, and reads back the result (JSON) or learns how it died
  (:func:`signal_name`);
* the child (:func:`serve`) sends its file descriptors 1 and 2 into ``capture.txt``
  (:class:`Capture`: native libraries print there, nothing reaches the user's terminal),
  calls the handler named by ``request["command"]`` and writes its result atomically.

A handler returns a JSON-able dict; an uncaught Python exception in the child is a
failure of the child (exit status 1 with its traceback in the capture), not a crash.

A job whose child spends most of its time starting (the converter's child imports
TensorFlow: 4-5 s of CPU, more than converting a small model) may ask for a *kept* child
(``Workdir.run(..., keep=True)``): ``python -m <module> --serve`` reads request paths on
its stdin, one per line, and answers each on its stdout once the result is written. The
same containment holds: a crash or a timeout ends that child (and only it; the next job
starts a new one), a Python exception is the same failure line. A kept child serves
:data:`KEPT_REQUESTS` jobs at most, for the environment it was started with; one idle
child is kept per process, and it ends with the parent (its stdin closes).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from edgeflow import _io
from edgeflow.errors import EdgeflowError

__all__ = ["KEPT_REQUESTS", "Workdir", "Capture", "serve", "signal_name", "child_env", "CpuBudget", "cpu_budget", "cpu_exceeded",
           "cpu_timer", "limit_cpu", "over_cpu"]


class Workdir:
    """A private temporary folder for one job's files, and the runner of its child.

    Use as a context manager (the folder is removed on exit); ``path`` is the folder.

    Example:
        >>> with Workdir("edgeflow-tflm-", "TFLM") as work:
        ...     result, proc = work.run("edgeflow.runtime._tflm_child", {"command": "probe"}, 60)
    """

    def __init__(self, prefix: str = "edgeflow-child-", what: str = "child"):
        self.prefix = prefix
        self.what = what  # names the job in errors: "the TFLM child process failed: ..."

    def __enter__(self):
        self._tmp = _io.temporary_dir(self.prefix)
        self.path = Path(self._tmp.name)
        return self

    def __exit__(self, *exc) -> None:
        self._tmp.cleanup()

    def run(self, module: str, request: dict, timeout: float, *, keep: bool = False):
        """Run ``python -m module`` on ``request``; ``keep``: in a kept child (module docstring).

        Returns:
            ``(result, proc)``: the child's result dict (``None`` when it died without
            one: read ``proc.returncode``, negative for a signal) and the completed
            process; ``(None, None)`` when it ran past ``timeout`` seconds and was killed.

        Raises:
            EdgeflowError: the child failed in Python (exit status > 0), with its last line.
        """
        out = self.path / "result.json"
        out.unlink(missing_ok=True)
        request = {**request, "out": str(out), "capture": str(self.path / "capture.txt")}
        req_path = self.path / "request.json"
        req_path.write_text(json.dumps(request))
        if keep:
            return self._run_kept(module, req_path, out, timeout)
        try:
            proc = subprocess.run(
                [sys.executable, "-m", module, str(req_path)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=max(0.001, timeout),
                env=child_env(),
                cwd=self.path,
                check=False,
            )
        except subprocess.TimeoutExpired:  # subprocess.run has killed and reaped the child
            return None, None
        if proc.returncode == 0 and out.exists():
            return json.loads(out.read_text()), proc
        if proc.returncode > 0:
            self._failed(proc.stderr.decode("utf-8", "replace"), proc.returncode)
        return None, proc

    def _failed(self, stderr: str, status) -> None:
        lines = [ln for ln in (stderr + self.captured()).splitlines() if ln.strip()]
        raise EdgeflowError(f"the {self.what} child process failed: {lines[-1] if lines else status}")

    def _run_kept(self, module: str, req_path: Path, out: Path, timeout: float):
        child = _Kept.take(module)
        answer = child.ask(req_path, timeout)
        if answer == "ok" and out.exists():
            _Kept.give(child)
            return json.loads(out.read_text()), child.proc
        if answer is None and child.proc.returncode is None:  # past the timeout
            child.end(kill=True)
            return None, None
        child.end()
        if answer == "error" or child.proc.returncode > 0:
            self._failed(child.stderr(), child.proc.returncode)
        return None, child.proc

    def captured(self) -> str:
        """What the child's native code printed (fds 1 and 2)."""
        path = self.path / "capture.txt"
        return path.read_text(errors="replace") if path.exists() else ""


class Capture:
    """In the child: fds 1 and 2 into one file; ``since(offset)`` reads what came after it."""

    def __init__(self, path: str):
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        self._libc = ctypes.CDLL(None)

    def offset(self) -> int:
        self.flush()
        return os.path.getsize(self.path)

    def flush(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self._libc.fflush(None)

    def since(self, offset: int) -> str:
        self.flush()
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")


def serve(argv: list[str], handlers: dict[str, Callable[[dict, Capture], dict]]) -> int:
    """The child's main: read the request, capture output, run its handler, write the result.

    With ``--serve`` instead of a request path: answer request paths read from stdin, one
    per line, with ``ok`` or ``error`` (the handler raised; its traceback is in the
    request's capture) on the stdout it started with, for :data:`KEPT_REQUESTS` requests
    or until stdin closes.
    """
    if argv[1] != "--serve":
        _handle(argv[1], handlers)
        return 0
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # nothing but the answers reaches the pipe
    own = (os.dup(1), os.dup(2))  # restored after each request's capture
    for _ in range(KEPT_REQUESTS):
        line = sys.stdin.readline()
        if not line.strip():
            break
        try:
            _handle(line.strip(), handlers)
            answer = "ok"
        except Exception:
            traceback.print_exc()
            answer = "error"
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(own[0], 1)
        os.dup2(own[1], 2)
        answers.write(answer + "\n")
        answers.flush()
        if answer == "error":
            break
    return 0


def _handle(req_path: str, handlers) -> None:
    with open(req_path) as f:
        req = json.load(f)
    capture = Capture(req["capture"])
    command = req["command"]
    if command not in handlers:
        raise SystemExit(f"unknown command {command!r}")
    result = handlers[command](req, capture)
    tmp = req["out"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, req["out"])


#: Jobs a kept child serves before it ends (a fresh process bounds what a long-lived
#: TensorFlow accumulates).
KEPT_REQUESTS = 16


class _Kept:
    """A kept child (``python -m module --serve``) of this process, and the idle one."""

    _idle: list[_Kept] = []
    _lock = threading.Lock()

    def __init__(self, module: str, env: dict):
        self.key = (module, tuple(sorted(env.items())), os.getpid())
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", module, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, env=env,
                                     cwd=tempfile.gettempdir())
        self.served = 0

    @classmethod
    def take(cls, module: str) -> _Kept:
        """The idle child for ``module`` and this environment, else a new one."""
        env = child_env()
        key = (module, tuple(sorted(env.items())), os.getpid())
        with cls._lock:
            idle = cls._idle[:]
            cls._idle.clear()
        found = None
        for child in idle:
            if child.key == key and found is None and child.proc.poll() is None:
                found = child
            elif child.key[2] == os.getpid():  # another process's (forked) children are not ours
                child.end()
        return found or cls(module, env)

    @classmethod
    def give(cls, child: _Kept) -> None:
        """Keep ``child`` for the next job (unless it has served its share)."""
        if child.served >= KEPT_REQUESTS:
            child.end()
            return
        with cls._lock:
            old, cls._idle[:] = cls._idle[:], [child]
        for other in old:
            other.end()

    def ask(self, req_path: Path, timeout: float) -> str | None:
        """Send one request; ``ok``/``error``, or None (the child died, or ran past ``timeout``)."""
        self.served += 1
        try:
            self.proc.stdin.write(f"{req_path}\n".encode())
            self.proc.stdin.flush()
        except OSError:
            self.proc.wait()
            return None
        fd, line = self.proc.stdout.fileno(), b""
        deadline = time.monotonic() + max(0.001, timeout)
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(fd, 64)
            if not chunk:
                self.proc.wait()
                return None
            line += chunk
        return line.decode().strip()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def end(self, kill: bool = False) -> None:
        """Stop the child (killed at once, or if it does not end when its stdin closes)."""
        if self.proc.poll() is None:
            try:
                if kill:
                    raise OSError
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        self.proc.stdout.close()
        self._stderr.close()


@atexit.register
def _end_kept() -> None:
    with _Kept._lock:
        idle, _Kept._idle[:] = _Kept._idle[:], []
    for child in idle:
        if child.key[2] == os.getpid():
            child.end()


def limit_cpu(seconds: float | None) -> int | None:
    """In the child: let it use at most ``seconds`` more CPU time (user + system, every
    thread) from now, then the kernel stops it (``RLIMIT_CPU``: SIGXCPU, SIGKILL a second
    later); returns the limit set, in whole seconds of the process's CPU time (None, and
    no limit, when ``seconds`` is None).

    A wall-clock timeout alone lets a job burn a whole core for its length and, on a busy
    machine, cuts it at a different point each time; CPU time is the work itself.
    """
    import math
    import resource

    if seconds is None:
        return None
    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(used.ru_utime + used.ru_stime + seconds)
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1 if hard == resource.RLIM_INFINITY else hard))
    return soft


@contextlib.contextmanager
def cpu_timer(seconds: float | None):
    """In the child: stop the process if the block uses more than ``seconds`` of CPU time
    (user + system, every thread; ``ITIMER_PROF`` delivers SIGPROF, whose default action ends
    the process). Unlike :func:`limit_cpu` it can be armed again for each of several tries
    in one child (an arena search runs one inference per arena size). None: no limit.
    """
    if seconds is None:
        yield
        return
    signal.setitimer(signal.ITIMER_PROF, max(float(seconds), 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def cpu_budget(samples: int, seconds: float | None, macs: int, macs_per_second: float) -> float | None:
    """The CPU seconds a child may use to run ``samples`` inferences of a model whose
    operators state ``macs`` per inference (None when ``seconds`` is None: no limit)::

        budget = samples × (seconds + macs / macs_per_second)

    ``seconds`` is the allowance of one inference whatever its size (start-up of the
    interpreter, operators without MACs), ``macs_per_second`` a rate far below the runtime's
    real one on a slow host, so a model as stated never meets the limit; only a file that
    asks for far more work than its operators state (an enlarged shape) or never ends does.
    """
    if seconds is None:
        return None
    return max(1, samples) * (seconds + macs / macs_per_second)


def cpu_exceeded(runtime: str, budget: float, samples: int, seconds: float, macs: int, macs_per_second: float) -> str:
    """The one line for a child stopped by :func:`cpu_budget`'s limit (:func:`over_cpu`)."""
    rate = f"{macs_per_second:.0e}".replace("e+0", "e").replace("e+", "e")
    return (f"{runtime} used more than {budget:.3g} s of CPU on {samples} sample{'s' if samples != 1 else ''} "
            f"(the budget: {seconds:g} s per sample + 1 s per {rate} of the {macs:,} MACs the file's operators "
            f"state; child process stopped): the file asks for far more work than it states (an enlarged shape) "
            f"or never ends; cpu_seconds=None lifts the limit")


class CpuBudget:
    """The CPU budget of a child that runs ``samples`` inferences of a model stating ``macs``
    per inference (:func:`cpu_budget`), and the one line when the child ran past it.

    Attributes:
        seconds: the budget in CPU seconds, for the child's request (None: no limit).
    """

    def __init__(self, runtime: str, samples: int, per_sample: float | None, macs: int,
                 macs_per_second: float):
        self.runtime, self.samples, self.per_sample = runtime, samples, per_sample
        self.macs, self.macs_per_second = macs, macs_per_second
        self.seconds = cpu_budget(samples, per_sample, macs, macs_per_second)

    def exceeded(self, proc) -> str | None:
        """:func:`cpu_exceeded`'s line when ``proc`` (a child, or None) ended past the budget
        (:func:`over_cpu`), else None."""
        if self.seconds is None or proc is None or not over_cpu(proc.returncode):
            return None
        return cpu_exceeded(self.runtime, self.seconds, self.samples, self.per_sample, self.macs,
                            self.macs_per_second)


def over_cpu(returncode: int | None) -> bool:
    """Whether a child ended because it ran past :func:`limit_cpu`'s limit (SIGXCPU) or a
    :func:`cpu_timer` (SIGPROF)."""
    return returncode is not None and returncode in (-signal.SIGXCPU, -signal.SIGPROF)


def signal_name(returncode: int) -> str:
    """``SIGSEGV`` for a child killed by signal 11, ``exit status N`` otherwise."""
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


def child_env() -> dict:
    """The parent's environment, with this edgeflow importable in the child."""
    import edgeflow

    root = str(Path(edgeflow.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
