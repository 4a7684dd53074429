"""The JSON document a command prints with --json, parsed and validated against the packaged schema."""

from __future__ import annotations

import json

import jsonschema

from edgeflow.cli._output import schema

_VALIDATOR = jsonschema.Draft202012Validator(schema())


def document(stdout: str) -> dict:
    """Parse ``stdout`` (exactly one JSON document) and validate it against the schema."""
    doc = json.loads(stdout)
    errors = sorted(_VALIDATOR.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    return doc
