"""Rebuild a Keras model as one flat functional graph that TF-MOT can annotate.

TF-MOT refuses nested models (TF-MOT #957) and breaks on ``TFOpLambda`` layers when it
clones a model. ``flatten`` walks the model's graph node by node and calls a fresh copy
of every layer on the new tensors: layers of nested models are inlined, single-tensor
``TFOpLambda`` layers become :class:`~edgeflow.quantize.configs.TensorOp`, and
``TFOpLambda`` adds/multiplies of two tensors become ``Add``/``Multiply`` layers.
Weights are copied; the input model is not touched.
"""

from __future__ import annotations

import numpy as np

from edgeflow._keras import keras, tf
from edgeflow.errors import EdgeflowError
from edgeflow.quantize.configs import INPUT, TFMOT_ACTIVATIONS, TensorOp, is_constant

# TFOpLambda functions on two tensors that have a Keras merge layer.
_MERGE = {
    "__operators__.add": keras.layers.Add,
    "math.add": keras.layers.Add,
    "math.multiply": keras.layers.Multiply,
    "__operators__.mul": keras.layers.Multiply,
    "math.subtract": keras.layers.Subtract,
    "__operators__.sub": keras.layers.Subtract,
}


def flatten(model: keras.Model) -> tuple[keras.Model, list[str]]:
    """Return ``(flat_model, notes)``: a new functional model with no nested models.

    ``notes`` says what was changed ("inlined nested model 'base'", "tf.__operators__.add
    → TensorOp"). Raises EdgeflowError for a model that is not a built graph network.

    Example:
        >>> flat, notes = flatten(keras.Sequential([base, keras.layers.Dense(2)]))
    """
    if not getattr(model, "_is_graph_network", False) or not model.inputs:
        raise EdgeflowError(
            f"model {model.name!r} is a subclassed or unbuilt model: QAT needs a functional or "
            "Sequential model built with an input shape (keras.Input or input_shape=)"
        )
    notes: list[str] = []
    used_names: set[str] = set()
    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=_input_name(t, i))
              for i, t in enumerate(model.inputs)]
    outputs = _inline(model, inputs, "", notes, used_names)
    flat = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)
    return flat, notes


def _input_name(tensor, index: int) -> str:
    layer = tensor._keras_history.layer
    return layer.name if layer is not None else f"input_{index}"


def _inline(model, inputs, prefix: str, notes: list[str], used: set[str]):
    """Call copies of ``model``'s layers on ``inputs``; return the new output tensors."""
    tensors = {str(id(t)): new for t, new in zip(model.inputs, inputs, strict=True)}
    depth_keys = sorted(model._nodes_by_depth, reverse=True)
    called: set[int] = set()
    for depth in depth_keys:
        for node in model._nodes_by_depth[depth]:
            layer = node.layer
            if node.is_input or isinstance(layer, keras.layers.InputLayer):
                continue
            args, kwargs = _map(node, tensors)
            if isinstance(layer, keras.Model) and getattr(layer, "_is_graph_network", False):
                if id(layer) in called:
                    raise EdgeflowError(
                        f"nested model {layer.name!r} is called more than once (shared weights): "
                        "QAT cannot inline it; build the model without sharing"
                    )
                called.add(id(layer))
                sub_inputs = tf.nest.flatten((args, kwargs))
                outs = _inline(layer, sub_inputs, f"{prefix}{layer.name}_", notes, used)
                notes.append(f"inlined nested model {layer.name!r} ({len(layer.layers)} layers)")
                new_out = outs if len(outs) > 1 else outs[0]
            elif isinstance(layer, keras.layers.BatchNormalization) and not _folds(node):
                new_out = _split_bn(layer, args, kwargs, _unique(layer.name, prefix, used),
                                    notes, used)
            else:
                new_out = _call_copy(layer, args, kwargs, prefix, notes, used)
            for old, new in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(new_out), strict=True):
                tensors[str(id(old))] = new
    return [tensors[str(id(t))] for t in model.outputs]


def _map(node, tensors):
    def sub(x):
        if hasattr(x, "_keras_history"):
            return tensors[str(id(x))]
        return x

    return (tf.nest.map_structure(sub, list(node.call_args)),
            tf.nest.map_structure(sub, dict(node.call_kwargs)))


def _unique(name: str, prefix: str, used: set[str]) -> str:
    candidate = name if name not in used else f"{prefix}{name}"
    i = 1
    while candidate in used:
        candidate = f"{prefix}{name}_{i}"
        i += 1
    used.add(candidate)
    return candidate


def _call_copy(layer, args, kwargs, prefix, notes, used):
    name = _unique(layer.name, prefix, used)
    if type(layer).__name__ == "TFOpLambda":
        replaced = _replace_op(layer, args, kwargs, name)
        if replaced is not None:
            notes.append(f"{layer.name}: tf.{layer.get_config()['function']} → "
                         f"{type(replaced[0]).__name__}")
            return replaced[1]
    if isinstance(layer, keras.layers.Rescaling):
        return _split_rescaling(layer, args, kwargs, name, notes, used)
    if (isinstance(layer, keras.layers.Activation)
            and getattr(layer.activation, "__name__", "") not in TFMOT_ACTIVATIONS):
        # TF-MOT's Conv/Dense + Activation transforms would pick the layer up and fail on it.
        function = f"keras.activations.{layer.activation.__name__}"
        notes.append(f"{layer.name}: Activation → TensorOp({function})")
        return TensorOp(function, name=name)(args[0] if args else kwargs["inputs"])
    config = layer.get_config()
    config["name"] = name
    copy = type(layer).from_config(config)
    out = copy(*args, **kwargs)
    copy.set_weights(layer.get_weights())
    return out


def _replace_op(layer, args, kwargs, name):
    """A (layer, output) pair standing in for a TFOpLambda, or None to keep it as it is."""
    function = layer.get_config()["function"]
    kwargs = {k: v for k, v in kwargs.items() if not (k == "name" and v is None)}
    flat = tf.nest.flatten((args, kwargs))
    tensor_args = [x for x in flat if tf.is_tensor(x) or hasattr(x, "_keras_history")]
    if len(tensor_args) == 2 and function in _MERGE and not kwargs.keys() - {"x", "y"}:
        pair = [a for a in list(args) + [kwargs.get("x"), kwargs.get("y")] if a is not None]
        new = _MERGE[function](name=name)
        return new, new(pair)
    if len(tensor_args) != 1:
        return None
    tensor = tensor_args[0]

    def mark(x):
        if x is tensor:
            return INPUT
        return x.item() if isinstance(x, np.generic) else x

    op_args = [mark(a) for a in args]
    op_kwargs = {k: mark(v) for k, v in kwargs.items()}
    if not all(is_constant(v) for v in op_args + list(op_kwargs.values())):
        return None
    new = TensorOp(function, op_args, op_kwargs, name=name)
    return new, new(tensor)


def _split_rescaling(layer, args, kwargs, name, notes, used):
    """``Rescaling`` as two ops, ``x * scale`` then ``+ offset``, each with its own range.

    TFLite runs Rescaling as MUL then ADD; with one fake-quant after both, the MUL output
    has no range and both ops stay float behind a DEQUANTIZE (TF-MOT #647).
    """
    x = args[0] if args else kwargs["inputs"]
    scale, offset = layer.scale, layer.offset
    out = TensorOp("math.multiply", kwargs={"y": _plain(scale)}, name=name)(x)
    if np.any(np.asarray(offset) != 0):
        out = TensorOp("math.add", kwargs={"y": _plain(offset)},
                       name=_unique(f"{name}_offset", "", used))(out)
    notes.append(f"{layer.name}: Rescaling → multiply, add (a quantized range for each)")
    return out


def _plain(value):
    """A layer-config-friendly number or list."""
    arr = np.asarray(value, dtype=np.float32)
    return float(arr) if arr.ndim == 0 else arr.tolist()


def _folds(node) -> bool:
    """True when TF-MOT folds this BatchNormalization into the convolution before it."""
    parents = tf.nest.flatten(node.inbound_layers)
    # The exact classes: TF-MOT's fold patterns match the class name, and Conv2DTranspose
    # (a subclass of Conv2D) is not folded.
    return (len(parents) == 1
            and type(parents[0]) in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
            and len(parents[0]._outbound_nodes) == 1)


def _split_bn(layer, args, kwargs, name, notes, used):
    """A BatchNormalization TF-MOT cannot fold (TF-MOT #363), as its inference affine.

    y = x * a + b with a = gamma / sqrt(moving_var + epsilon) and b = beta - moving_mean * a,
    computed as two ops with a quantized range each (TFLite runs BN as MUL then ADD). The
    statistics are frozen during QAT, as they are after folding.
    """
    x = args[0] if args else kwargs["inputs"]
    gamma = layer.gamma.numpy() if layer.gamma is not None else 1.0
    beta = layer.beta.numpy() if layer.beta is not None else 0.0
    a = gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
    b = beta - layer.moving_mean.numpy() * a
    rank = len(x.shape)
    axis = [ax % rank for ax in (layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis])]
    shape = [x.shape[i] if i in axis else 1 for i in range(1, rank)]
    out = TensorOp("math.multiply", kwargs={"y": _plain(np.reshape(a, shape))}, name=name)(x)
    out = TensorOp("math.add", kwargs={"y": _plain(np.reshape(b, shape))},
                   name=_unique(f"{name}_offset", "", used))(out)
    notes.append(f"{layer.name}: BatchNormalization not after Conv2D/DepthwiseConv2D → frozen multiply, add")
    return out
