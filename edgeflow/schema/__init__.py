"""Package data: ``output.schema.json``, the JSON Schema of every command's ``--json`` output
(read it with :func:`edgeflow.cli._output.schema`)."""
