"""edgeflow: Keras models to microcontrollers and edge boards.

The public API is this short list; everything else is private. Names load lazily so that
``import edgeflow`` (and the CLI's help) does not import TensorFlow.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

_API = {
    # Keras 2 (tf_keras), the one edgeflow and TF-MOT work with
    "keras": "edgeflow._keras:keras",
    "load_model": "edgeflow.models:load_model",
    "save_model": "edgeflow.models:save_model",
    # Keras → .tflite, and firmware arrays
    "convert": "edgeflow.convert:convert",
    "to_c_array": "edgeflow.convert:to_c_array",
    # does it fit a board?
    "check": "edgeflow.devices:check",
    "get_device": "edgeflow.devices:get_device",
    "load_devices": "edgeflow.devices:load_devices",
    # recipes
    "load_recipe": "edgeflow.recipe:load_recipe",
    "run_recipe": "edgeflow.pipeline:run_recipe",
    "search": "edgeflow.search:search",
    "EdgeflowError": "edgeflow.errors:EdgeflowError",
    # the stages and tools, one subpackage each
    "prune": "edgeflow.prune",
    "cluster": "edgeflow.cluster",
    "quantize": "edgeflow.quantize",
    "distill": "edgeflow.distill",
    "tflite": "edgeflow.tflite",
    "runtime": "edgeflow.runtime",
    "deploy": "edgeflow.deploy",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'edgeflow' has no attribute {name!r}")
    module, _, attr = _API[name].partition(":")
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package keeps its API functions when a submodule of the same name is imported.

    ``edgeflow.convert`` (and ``edgeflow.search``) is the function even after
    ``import edgeflow.convert`` or ``from edgeflow.convert import MODES``: the import system
    binds a freshly imported submodule on its package (``setattr(edgeflow, "convert",
    module)``), and that one binding is skipped here. The module stays importable by name
    (``from edgeflow.convert import X``, ``importlib.import_module("edgeflow.convert")``);
    ``import edgeflow.convert as m`` gives the function, as ``edgeflow.convert`` does.
    """

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _API.get(name, "").startswith(f"{value.__name__}:"):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
