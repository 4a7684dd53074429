"""Running ``.tflite`` models on the real runtimes.

* ``edgeflow.runtime.litert`` — LiteRT (``ai_edge_litert``) in this process: ``predict``,
  ``evaluate``, ``benchmark``.
* ``edgeflow.runtime.tflm`` — TensorFlow Lite Micro in a child process (it can abort):
  ``measure_arena`` (the measured RAM), ``probe``, ``predict``, ``known_aborts``.
* ``edgeflow.runtime.metrics`` — ``score`` and ``evaluate_keras``: the same figures for a
  Keras model, so reports show Keras and ``.tflite`` side by side.

Importing this package does not import TensorFlow.
"""

from __future__ import annotations
