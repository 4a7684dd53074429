"""The one output contract of every command: a text report, or one JSON document (``--json``).

Exit status (every command): 0 done and fits, 1 done but does not fit / not compatible /
over a limit the user set, 2 bad input, 3 internal error.

With ``--json`` stdout holds exactly one JSON document, on one line, the envelope described
by ``edgeflow/schema/output.schema.json`` (:func:`schema`; shown indented here)::

    {"schema_version": 1, "edgeflow_version": "0.1.0", "command": "check",
     "model": {"path": "m.tflite", ...} | null, "verdict": "pass" | "fail" | "bad_input" |
     "internal_error", "exit_code": 0, "summary": "one line", "devices": [{"device": ...,
     "fits": true, "verdict": "...", ...}], "outputs": ["files written"],
     "result": {...the command's payload...} | null, "error": null | {"message": "..."}}

A command adopts it with two calls: the :func:`json_option` decorator and, at its end,
:func:`finish` with its name and payload::

    @click.command()
    @json_option
    def mycommand(..., as_json):
        ...
        finish("mycommand", {"figure": 1}, text=table, model=path, exit_code=0)

Human lines a command prints with ``click.echo`` on the way go to stderr under ``--json``
(:func:`edgeflow._quiet.session` does that), so they never break the document. Bad input
is an ``EdgeflowError`` raised anywhere: the group prints the ``error:`` line and, under
``--json``, the error document; a command never catches it to print itself.

A new command's payload validates as an open object at once. To pin the keys it always
has, add ``ran_<name>`` and ``payload_<name>`` to ``$defs`` of the schema and one
``if``/``then`` line to its ``allOf`` (see ``check``), and validate its ``--json`` output in
its tests with ``tests/_schema.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import contextmanager
from typing import NoReturn

import click

__all__ = [
    "SCHEMA_VERSION",
    "VERDICTS",
    "emulation_timeout_option",
    "envelope",
    "finish",
    "force_option",
    "json_option",
    "max_drop_option",
    "schema",
    "timeout_unused",
]

SCHEMA_VERSION = 1
#: exit status -> the envelope's verdict
VERDICTS = {0: "pass", 1: "fail", 2: "bad_input", 3: "internal_error"}

# The command being run: its name, whether --json was asked for, and where the document goes.
_current: dict = {"command": None, "json": False, "stream": None, "done": False}


def json_option(f):
    """The ``--json`` flag every command has (parameter ``as_json``)."""
    return click.option(
        "--json", "as_json", is_flag=True,
        help="Print one JSON document on stdout instead of text (schema: edgeflow/schema/output.schema.json).",
    )(f)


def force_option(f):
    """The ``--force`` flag of commands that write outputs (parameter ``force``)."""
    return click.option(
        "--force", is_flag=True,
        help="Overwrite existing output files; update a folder edgeflow created (other files are kept).",
    )(f)


def max_drop_option(f):
    """The ``--max-drop`` option of commands that score a baseline and a result (``max_drop``).

    Over the limit the command warns and exits 1 (:class:`edgeflow.runtime.metrics.Comparison`).
    """
    from edgeflow.ranges import option_type

    return click.option(
        "--max-drop", type=option_type("max_drop"), default=1.0, show_default=True,
        help="Largest drop from the baseline to the result, in points of accuracy (percent of "
             "MAE for regression); more is a warning and exit 1.",
    )(f)


def emulation_timeout_option(f):
    """The ``--timeout`` option of commands that run firmware under QEMU (parameter ``timeout``):
    seconds each emulated run may take, checked before any work; None when not given, which
    the API reads as :data:`edgeflow.firmware.emulator.TIMEOUT` (300 s, not imported here so
    that ``--help`` stays fast). None tells an explicit value from the default, so a command
    can refuse ``--timeout`` where nothing is emulated (:func:`timeout_unused`)."""
    from edgeflow.ranges import option_type

    return click.option(
        "--timeout", type=option_type("emulation_seconds"), default=None, metavar="SECONDS",
        help="Seconds each emulated firmware run may take (default 300); QEMU is then killed and the run "
             "is the problem 'timed out after SECONDS s'.",
    )(f)


def timeout_unused(timeout: float | None, skipped_by: str | None) -> None:
    """Refuse an explicit ``--timeout`` (:func:`emulation_timeout_option`) when the option
    ``skipped_by`` (e.g. ``--no-firmware``) turns the emulated run off; nothing when either is
    None.

    Raises:
        click.UsageError: ``--timeout applies to the emulated firmware run, which
            --no-firmware turns off: drop one of them`` (exit 2, before any work).
    """
    if timeout is not None and skipped_by is not None:
        raise click.UsageError(f"--timeout applies to the emulated firmware run, which {skipped_by} turns off: "
                               "drop one of them", click.get_current_context())


def schema() -> dict:
    """The JSON Schema of every command's ``--json`` document (package data)."""
    from importlib.resources import files

    return json.loads(files("edgeflow.schema").joinpath("output.schema.json").read_text("utf-8"))


def envelope(
    command: str,
    payload: dict | None,
    *,
    exit_code: int = 0,
    model: str | dict | None = None,
    devices: Iterable[dict] = (),
    outputs: Iterable[str] = (),
    summary: str = "",
    error: str | None = None,
) -> dict:
    """The JSON document of one command run (see the module docstring for the keys).

    Args:
        command: the command as typed after ``edgeflow`` (``"check"``, ``"deploy mcu"``).
        payload: the command's own figures (``result``); None for an error.
        exit_code: 0, 1, 2 or 3; it decides ``verdict``.
        model: the model the command read: a path, or a dict with at least ``path``.
        devices: one dict per device with at least ``device``, ``fits`` and ``verdict``.
        outputs: the files and folders written.
        summary: one line for people.
        error: the error message (exit codes 2 and 3).
    """
    from edgeflow import __version__

    if isinstance(model, str):
        model = {"path": model}
    return {
        "schema_version": SCHEMA_VERSION,
        "edgeflow_version": __version__,
        "command": command,
        "model": None if model is None else dict(model),
        "verdict": VERDICTS[exit_code],
        "exit_code": exit_code,
        "summary": summary or (f"error: {error}" if error is not None else ""),
        "devices": [dict(d) for d in devices],
        "outputs": [str(o) for o in outputs],
        "result": None if error is not None else dict(payload or {}),
        "error": None if error is None else {"message": error},
    }


def finish(
    command: str,
    payload: dict | None = None,
    *,
    text: str | None = None,
    exit_code: int = 0,
    model: str | dict | None = None,
    devices: Iterable[dict] = (),
    outputs: Iterable[str] = (),
    summary: str = "",
) -> NoReturn:
    """End a command: print ``text`` (or, with ``--json``, the envelope) and exit with ``exit_code``."""
    json_mode = _current["json"]
    if _current["command"] is None:  # a command invoked on its own, not through `edgeflow`
        ctx = click.get_current_context(silent=True)
        json_mode = bool(ctx and ctx.params.get("as_json"))
    if json_mode:
        _write(envelope(command, payload, exit_code=exit_code, model=model, devices=devices,
                        outputs=outputs, summary=summary))
    elif text:
        click.echo(text)
    raise click.exceptions.Exit(exit_code)


def report_error(exit_code: int, message: str) -> None:
    """Print an error: the one ``error: ...`` line on stderr, and the envelope under ``--json``."""
    click.echo(f"error: {message}", err=True)
    if _current["json"] and not _current["done"]:
        _write(envelope(_current["command"] or "edgeflow", None, exit_code=exit_code, error=message))


def _write(document: dict) -> None:
    """The document on one line, compact: for programs (``jq`` indents it for people).

    Compact is also what makes a large document cheap: ``json.dumps`` with ``indent`` runs
    CPython's pure-Python encoder, about 5x slower (3.4 s of 4 for a 20,000-tensor
    ``inspect``; ``bench/bench_fuzz.py --big``)."""
    stream = _current["stream"] or click.get_text_stream("stdout")
    click.echo(json.dumps(document, separators=(",", ":"), default=str), file=stream)
    _current["done"] = True


@contextmanager
def command_run(command: str, json_mode: bool, stream):
    """Set the command being run for :func:`finish` and :func:`report_error` (the CLI group)."""
    saved = dict(_current)
    _current.update(command=command, json=json_mode, stream=stream, done=False)
    try:
        yield
    finally:
        _current.clear()
        _current.update(saved)
