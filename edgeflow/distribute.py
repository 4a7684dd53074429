"""Training across devices and machines: the ``tf.distribute`` strategy a recipe names.

A recipe's ``distribute:`` section picks one strategy for its training stages (``train``,
``prune``, ``qat``, ``distill``); the model is built and every training stage runs inside
its scope::

    distribute: {strategy: mirrored}                    # every local GPU (or the CPU), one process
    distribute: {strategy: mirrored, devices: ["/gpu:0", "/gpu:1"]}
    distribute: {strategy: multi_worker}                # one process per machine, TF_CONFIG set

``multi_worker`` is ``tf.distribute.MultiWorkerMirroredStrategy``: every worker runs the
same recipe with its own ``TF_CONFIG`` (the cluster's ``worker`` addresses and this
worker's ``task`` index); the workers train one model in step (all-reduce of the
gradients), and each then converts and checks it. ``batch_size`` is the global batch,
split across the replicas.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

from edgeflow.errors import EdgeflowError

__all__ = ["strategy", "scope", "check_tf_config"]

# One strategy per process and kind: TensorFlow allows one multi-worker strategy per program.
_STRATEGIES: dict = {}


def check_tf_config() -> dict:
    """The ``TF_CONFIG`` of a multi-worker run, checked: ``{"cluster": {"worker": [...]},
    "task": {"type": "worker", "index": i}}``.

    Raises:
        EdgeflowError: TF_CONFIG is missing, not JSON, or has no worker list or task index.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise EdgeflowError(
            "distribute: multi_worker needs TF_CONFIG: set it on every worker to "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": N}}'
        )
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        index = config["task"]["index"]
    except (ValueError, KeyError, TypeError) as err:
        raise EdgeflowError(f"TF_CONFIG is not a cluster with a worker list and a task index ({err})") from err
    if not isinstance(workers, list) or not workers or not 0 <= int(index) < len(workers):
        raise EdgeflowError(f"TF_CONFIG: task index {index} is not one of the {len(workers)} worker(s)")
    return config


def strategy(spec):
    """The ``tf.distribute`` strategy of a recipe's ``distribute`` section (None: none).

    Created once per process (a multi-worker strategy must be created before any other
    TensorFlow operation, so :func:`edgeflow.pipeline.run_recipe` calls this first).

    Raises:
        EdgeflowError: multi_worker without a usable TF_CONFIG.
    """
    if spec is None:
        return None
    key = (spec.strategy, tuple(spec.devices or ()))
    if key not in _STRATEGIES:
        from edgeflow._keras import tf

        if spec.strategy == "multi_worker":
            check_tf_config()
            _STRATEGIES[key] = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            _STRATEGIES[key] = tf.distribute.MirroredStrategy(devices=list(spec.devices) if spec.devices else None)
    return _STRATEGIES[key]


@contextmanager
def scope(spec):
    """The strategy's scope (nothing without a ``distribute`` section); yields the strategy."""
    found = strategy(spec)
    if found is None:
        yield None
        return
    with found.scope():
        yield found
