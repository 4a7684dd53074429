"""The one place that selects Keras 2 before TensorFlow is imported.

TF-MOT works only with Keras 2 (the ``tf_keras`` package). TensorFlow reads
``TF_USE_LEGACY_KERAS`` when it is first imported, so this module sets it before the
import. Every other edgeflow module imports ``tf``, ``keras`` and ``tfmot`` from here.
"""

from __future__ import annotations

import os
import sys

if "tensorflow" not in sys.modules:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from edgeflow.errors import EdgeflowError  # noqa: E402

__all__ = ["tf", "keras", "ensure_keras2", "is_keras3_model"]  # and tfmot, lazily


def __getattr__(name: str):
    # TF-MOT takes about a second to import: only when a stage needs it.
    if name == "tfmot":
        import tensorflow_model_optimization as tfmot

        return tfmot
    raise AttributeError(name)


def is_keras3_model(obj: object) -> bool:
    """True when ``obj`` is a Keras 3 object (``keras`` package), not Keras 2 (``tf_keras``)."""
    module = type(obj).__module__ or ""
    return module == "keras" or module.startswith("keras.")


def ensure_keras2(model: object) -> keras.Model:
    """Return ``model`` as a Keras 2 model: itself, or for a Keras 3 model its translation
    (:func:`edgeflow.keras3.translate`, checked by equal outputs). Raises EdgeflowError for
    anything else, or a Keras 3 layer without translation."""
    if is_keras3_model(model):
        from edgeflow.keras3 import translate

        return translate(model)[0]
    if not isinstance(model, keras.Model):
        raise EdgeflowError(
            f"expected a Keras model, got {type(model).__name__}: pass a Keras model object, "
            "a .keras/.h5 file or a SavedModel directory"
        )
    return model


from edgeflow import _activations  # noqa: E402,F401  (registers Keras 3's activations)
