"""Helpers shared by magnitude and structured pruning: copies, losses, training data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgeflow._keras import ensure_keras2, keras, tf
from edgeflow.errors import EdgeflowError

# Weight names (the part after the last '/') that hold a layer's connections.
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings", "recurrent_kernel")


def copy_model(model: keras.Model) -> keras.Model:
    """A new functional/Sequential model with the same graph and copied weights (not shared)."""
    model = ensure_keras2(model)
    try:
        clone = keras.models.clone_model(model)
    except Exception as err:  # Keras raises many types for odd models
        raise EdgeflowError(
            f"cannot copy model {model.name!r} ({err}); edgeflow prunes functional and Sequential "
            "Keras models whose custom layers implement get_config"
        ) from err
    clone.set_weights(model.get_weights())
    return clone


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


def output_activation(model: keras.Model) -> str | None:
    """Name of the activation that ends the model's (single) output, if it is a plain one."""
    layer = model.layers[-1] if model.layers else None
    if layer is None:
        return None
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None) if act is not None else None


def has_loss(model: keras.Model, loss=None) -> bool:
    """True when ``default_loss`` can find a loss for ``model``."""
    return (loss is not None or getattr(model, "loss", None) is not None
            or output_activation(model) == "softmax")


def default_loss(model: keras.Model, loss=None):
    """The loss to fine-tune with: ``loss`` if given, the model's compiled loss, or, for a
    softmax classifier, sparse categorical cross-entropy."""
    if loss is not None:
        return loss
    compiled = getattr(model, "loss", None)
    if compiled is not None:
        return compiled
    if output_activation(model) == "softmax":
        return "sparse_categorical_crossentropy"
    raise EdgeflowError(
        f"model {model.name!r} is not compiled and does not end in a softmax: pass loss= "
        "(for example keras.losses.SparseCategoricalCrossentropy(from_logits=True))"
    )


def training_data(data, batch_size: int):
    """``(fit_kwargs, steps_per_epoch)`` for ``model.fit`` from ``(x, y)`` or a tf.data.Dataset.

    ``steps_per_epoch`` is None when a dataset's length is unknown.
    """
    if isinstance(data, tf.data.Dataset):
        card = int(data.cardinality().numpy())
        return {"x": data}, (card if card > 0 else None)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (np.asarray(a) for a in data)
        if len(x) != len(y):
            raise EdgeflowError(f"data x has {len(x)} samples but y has {len(y)}: they must match")
        if len(x) == 0:
            raise EdgeflowError("the training data holds no samples")
        return {"x": x, "y": y, "batch_size": batch_size}, math.ceil(len(x) / batch_size)
    raise EdgeflowError(
        f"training data must be a tuple (x, y) of arrays or a tf.data.Dataset of (x, y) batches, "
        f"not {type(data).__name__}"
    )


def compile_like(model: keras.Model, source: keras.Model, *, optimizer, loss, metrics) -> None:
    """Compile ``model`` for fine-tuning with ``loss`` (default from ``source``). Side effect:
    ``model`` is compiled with a fresh optimizer: a name, or a copy of the optimizer object
    given (an optimizer's state belongs to the variables it was first applied to)."""
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    else:
        optimizer = optimizer.__class__.from_config(optimizer.get_config())
    model.compile(
        optimizer=optimizer,
        loss=default_loss(source, loss),
        metrics=list(metrics or ()),
    )


def load_training_data(path) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` from a ``.npz`` file with keys ``x`` and ``y`` (labels are required)."""
    from edgeflow.data import load_arrays

    x, y = load_arrays(path)
    if y is None:
        raise EdgeflowError(f"{path} holds no labels: pruning fine-tunes on a .npz with x and y")
    return x, y


def save_keras(model: keras.Model, path) -> Path:
    """Save ``model`` atomically as a ``.keras`` file (nothing half-written on failure)."""
    from edgeflow.pipeline import _save_model

    path = Path(path)
    if path.suffix != ".keras":
        raise EdgeflowError(f"write the pruned model to a .keras file, not {path.name!r}")
    return _save_model(model, path.with_suffix(""))
