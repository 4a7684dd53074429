"""edgeflow: Keras models to microcontrollers and edge boards.

The public API is this short list; everything else is private. Names load lazily so that
``import edgeflow`` (and the CLI's help) does not import TensorFlow.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "keras": "edgeflow._keras:keras",
    "load_model": "edgeflow.models:load_model",
    "convert": "edgeflow.convert:convert",
    "to_c_array": "edgeflow.convert:to_c_array",
    "EdgeflowError": "edgeflow.errors:EdgeflowError",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'edgeflow' has no attribute {name!r}")
    module, attr = _API[name].split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
