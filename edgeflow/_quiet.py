"""One home for keeping the terminal clean: TensorFlow, absl, oneDNN and CUDA start-up lines,
converter dumps and library deprecation warnings never reach a command's stderr unless
``--debug`` is given.

Three layers, because the noise comes from three places:

- environment and Python: ``TF_CPP_MIN_LOG_LEVEL=3`` (TensorFlow's C++ logging), the
  ``absl`` and ``tensorflow`` Python loggers at ERROR, and warnings filters for
  deprecations and for warnings raised inside the libraries edgeflow drives;
- native code: absl's pre-``InitializeLog`` lines, the CUDA probes and the TFLite
  converter's prints (``fully_quantize: 0, inference_type: 6, ...``) are written by C++
  straight to file descriptor 2, past ``sys.stderr``. :func:`session` points fd 2 at a pipe
  and a thread forwards every line to the real stderr except those :data:`NOISE` matches;
  Python's own ``sys.stderr`` (edgeflow's messages, progress bars) writes to the real stderr
  directly;
- ``--json``: everything a library prints on stdout goes to stderr, so stdout holds the one
  JSON document (:func:`session` yields the stream to write it to).

Only the CLI calls :func:`session`; the Python API leaves the caller's streams alone.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
import warnings

__all__ = ["NOISE", "is_noise", "session"]

#: Lines written to fd 2 by native code that are never for the user (without --debug).
NOISE = re.compile(
    r"""^(?:
      [IWEF]\d{4}\ [\d:.]+\s+\d+\ [\w./-]+:\d+\]       # absl/glog C++ log lines (I0000 00:00:...)
    | \d{4}-\d\d-\d\d\ [\d:.]+:\ [IWEF]\ \S+:\d+\]     # TensorFlow's older C++ log format
    | WARNING:\ All\ log\ messages\ before\ absl::InitializeLog
    | To\ enable\ the\ following\ instructions:          # cpu_feature_guard's second line
    | fully_quantize:\ \d+,\ inference_type:             # the TFLite converter's calibration print
    | Estimated\ count\ of\ arithmetic\ ops:            # the converter's op count
    | INFO:\ (?:Created\ TensorFlow\ Lite|Initialized\ TensorFlow\ Lite)  # LiteRT start-up
    | loc\(                                             # MLIR diagnostics from the converter
    | (?:WARNING|INFO):(?:absl|tensorflow):            # Python logging through an old stream
    )""",
    re.VERBOSE,
)

#: Libraries whose warnings (any category) are hidden without --debug.
_LIBRARIES = r"(tensorflow|tf_keras|keras|tensorflow_model_optimization|absl|google|h5py|ml_dtypes|" \
             r"flatbuffers|ai_edge_litert|tflite_micro|optuna)(\.|$)"


def is_noise(line: str) -> bool:
    """True for a line that :func:`session` drops from stderr (see :data:`NOISE`)."""
    return bool(NOISE.match(line))


def _filter_python() -> None:
    """Warnings filters and logger levels for a quiet command (inside ``catch_warnings``)."""
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", module=_LIBRARIES)


class _Forwarder:
    """Reads a pipe that stands in for fd 2 and writes every non-noise line to ``out_fd``."""

    def __init__(self, out_fd: int):
        self.read_fd, self.write_fd = os.pipe()
        self.out_fd = out_fd
        self.thread = threading.Thread(target=self._run, name="edgeflow-stderr", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        pending = b""
        dropping = False  # inside a dropped multi-line message (indented continuation lines)
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                dropping = self._forward(line + b"\n", dropping)
        if pending:
            self._forward(pending, dropping)
        os.close(self.read_fd)

    def _forward(self, raw: bytes, dropping: bool) -> bool:
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if dropping and text[:1] in (" ", "\t"):
            return True
        if is_noise(text):
            return True
        with contextlib.suppress(OSError):
            os.write(self.out_fd, raw)
        return False

    def close(self) -> None:
        os.close(self.write_fd)
        self.thread.join(timeout=2.0)


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


@contextlib.contextmanager
def session(*, debug: bool = False, json_mode: bool = False):
    """Run one CLI command quietly; yield the text stream its result must be written to.

    Without ``debug``: TensorFlow's C++ logging off, library warnings and deprecations
    hidden, native noise on fd 2 dropped line by line (everything else passes). With
    ``json_mode``: whatever is printed on stdout during the block goes to stderr and the
    yielded stream is the real stdout. Everything is restored when the block ends.
    """
    restore: list = []
    with warnings.catch_warnings():
        try:
            if not debug:
                _filter_python()
                old_env = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
                os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
                restore.append(lambda v=old_env: _set_env("TF_CPP_MIN_LOG_LEVEL", v))
                for name in ("absl", "tensorflow"):
                    logger = logging.getLogger(name)
                    restore.append(lambda lg=logger, lvl=logger.level: lg.setLevel(lvl))
                    logger.setLevel(logging.ERROR)
                _quiet_fd2(restore)
            yield _stdout_to_stderr(restore) if json_mode else sys.stdout
        finally:
            for undo in reversed(restore):
                with contextlib.suppress(Exception):
                    undo()


def _stdout_to_stderr(restore: list):
    """Send stdout (Python's and, on a real stream, fd 1) to stderr; return the real stdout."""
    real = sys.stdout
    sys.stdout = sys.stderr
    restore.append(lambda: setattr(sys, "stdout", real))
    if _fileno(real) != 1:  # click's CliRunner: a buffer, nothing native to redirect
        return real
    with contextlib.suppress(OSError, ValueError):
        real.flush()
    saved_out = os.dup(1)
    os.dup2(2, 1)  # fd 2 is the filtering pipe unless --debug
    stream = os.fdopen(os.dup(saved_out), "w", encoding="utf-8", closefd=True)
    restore.append(lambda: (os.dup2(saved_out, 1), os.close(saved_out)))
    restore.append(stream.close)
    return stream


def _quiet_fd2(restore: list) -> None:
    """Point fd 2 at a filtering pipe; ``sys.stderr`` (if it is fd 2) keeps the real stderr."""
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    saved_err = os.dup(2)
    forwarder = _Forwarder(saved_err)
    os.dup2(forwarder.write_fd, 2)
    if _fileno(sys.stderr) == 2:  # a real terminal/pipe, not click's CliRunner buffer
        old = sys.stderr
        sys.stderr = os.fdopen(os.dup(saved_err), "w", encoding=old.encoding or "utf-8",
                               errors="backslashreplace", buffering=1)
        restore.append(lambda: (sys.stderr.flush(), sys.stderr.close(), setattr(sys, "stderr", old)))
    restore.append(lambda: (os.dup2(saved_err, 2), forwarder.close(), os.close(saved_err)))


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
