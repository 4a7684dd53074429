"""Helpers shared by magnitude and structured pruning: kernels, losses, training data."""

from __future__ import annotations

import math

from edgeflow._keras import keras
from edgeflow.errors import EdgeflowError
from edgeflow.models import default_loss, default_metrics

# Weight names (the part after the last '/') that hold a layer's connections.
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings", "recurrent_kernel")


def weight_name(variable) -> str:
    """``'conv1/kernel:0'`` → ``'kernel'``."""
    return variable.name.split("/")[-1].split(":")[0]


def kernels(layer) -> list:
    """The connection weights of a layer (kernels, embeddings), not biases or BN statistics."""
    return [w for w in layer.weights if weight_name(w) in KERNEL_NAMES]


def iter_layers(model):
    """Every layer of a model, descending into nested models."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def has_loss(model: keras.Model, loss=None, y=None) -> bool:
    """True when :func:`edgeflow.models.default_loss` can find a loss for ``model``."""
    try:
        default_loss(model, loss, y)
    except EdgeflowError:
        return False
    return True


def training_data(data, batch_size: int, model=None):
    """``(fit_kwargs, steps_per_epoch)`` for ``model.fit`` from any labelled data that
    ``edgeflow.data.labelled`` reads (``(x, y)``, a ``.npz`` file, a tf.data.Dataset).

    ``steps_per_epoch`` is None when a dataset's length is unknown. With ``model`` the
    arrays are checked first (``edgeflow.data.check_labelled``).
    """
    from edgeflow.data import labelled

    x, y = labelled(data, model=model)
    if y is None:  # a tf.data.Dataset of (x, y) batches
        card = int(x.cardinality().numpy())
        return {"x": x}, (card if card > 0 else None)
    count = len(x[0]) if isinstance(x, list) else len(x)
    if model is None and count != len(y):
        raise EdgeflowError(f"data x has {count} samples but y has {len(y)}: they must match")
    if count == 0:
        raise EdgeflowError("the training data holds no samples")
    return {"x": x, "y": y, "batch_size": batch_size}, math.ceil(count / batch_size)


def labels(data):
    """The labels of labelled ``data`` (``(x, y)``, a ``.npz``), or None (no data, a dataset)."""
    if data is None:
        return None
    from edgeflow.data import labelled

    try:
        return labelled(data)[1]
    except EdgeflowError:
        return None


def compile_like(model: keras.Model, source: keras.Model, *, optimizer, loss, metrics, y=None) -> None:
    """Compile ``model`` for fine-tuning with ``loss`` (default from ``source`` and the
    labels ``y``: :func:`edgeflow.models.default_loss`) and ``metrics`` (None: accuracy
    per class output, MAE per regression output, :func:`edgeflow.models.default_metrics`;
    ``()`` for none). Side effect:
    ``model`` is compiled with a fresh optimizer: a name, or a copy of the optimizer object
    given (an optimizer's state belongs to the variables it was first applied to)."""
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    else:
        optimizer = optimizer.__class__.from_config(optimizer.get_config())
    model.compile(
        optimizer=optimizer,
        loss=default_loss(source, loss, y),
        metrics=default_metrics(source, loss, y) if metrics is None else list(metrics),
    )
