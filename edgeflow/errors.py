"""Typed exceptions. The library raises them; only the CLI turns them into exit codes."""

from __future__ import annotations


class EdgeflowError(Exception):
    """Bad input or a request edgeflow cannot carry out. The CLI exits with status 2.

    The message is one line that says what is wrong and what to do.
    """

    exit_code = 2


class RuntimeCrash(EdgeflowError):
    """A native runtime (LiteRT, TFLM) crashed or aborted on a model."""


def first_line(err: BaseException) -> str:
    """The first non-blank line of an exception's message (its type name when empty):
    native libraries put pages of context after it."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


def closest(name: str, choices) -> str:
    """A ' (did you mean X?)' suffix for an unknown name, or ''."""
    import difflib

    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""
