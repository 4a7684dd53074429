"""Keras 3 models in: translate a Keras 3 model to Keras 2 (``tf_keras``) layer by layer.

TensorFlow ≥ 2.16 makes ``import keras`` Keras 3, while TF-MOT (pruning, QAT) needs Keras 2.
:func:`translate` rebuilds a Keras 3 model object as a ``tf_keras`` model — each layer from
its configuration, the same graph (functional, Sequential, nested and shared models), the
same weights — and proves the result by running both on the same random input: the largest
absolute difference of the outputs must be at most :data:`TOLERANCE` (float32).
:func:`load` reads a Keras 3 ``.keras`` or ``.h5`` file with Keras 3's own reader (safe
mode) after :func:`edgeflow.models.load_model` has checked the file for code.

Which layers translate is the table :data:`LAYERS`; any other layer is refused with one
line naming it (:class:`edgeflow.errors.EdgeflowError`).
"""

from __future__ import annotations

import inspect
import operator
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass

import numpy as np

from edgeflow._keras import keras, tf
from edgeflow.errors import EdgeflowError, first_line

TOLERANCE = 1e-5  # max |Keras 3 - Keras 2| on random input, float32 (issue 9)

# Keras 3 layer classes that translate to the tf_keras class of the same name; a value
# renames configuration keys (Keras 3 name -> Keras 2 name).
LAYERS: dict[str, dict[str, str]] = {name: {} for name in (
    "Dense", "EinsumDense", "Embedding", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose",
    "Conv2DTranspose", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "Activation", "ReLU", "ELU",
    "PReLU", "Softmax", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Reshape",
    "Flatten", "Permute", "RepeatVector", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "GaussianNoise", "GaussianDropout", "UpSampling1D", "UpSampling2D", "ZeroPadding1D",
    "ZeroPadding2D", "Cropping1D", "Cropping2D", "Rescaling", "LSTM", "GRU", "SimpleRNN",
    "Bidirectional", "TimeDistributed",
)}
LAYERS["LeakyReLU"] = {"negative_slope": "alpha"}

# Keras 3 operations on symbolic tensors (``x + 3.0`` in a functional model: a node whose
# config ``module`` is ``keras.src.ops...``, e.g. MobileNetV3's hard sigmoid) that translate to
# the same arithmetic on tf_keras tensors (tf_keras wraps it in a TFOpLambda layer).
OPERATIONS = {"Add": operator.add, "Subtract": operator.sub, "Multiply": operator.mul,
              "Divide": operator.truediv, "TrueDivide": operator.truediv}


def _is_operation(entry: dict) -> bool:
    return str(entry.get("module") or "").startswith("keras.src.ops")

# Layer base-class keyword arguments tf_keras accepts (tf_keras Layer.__init__).
_BASE_KWARGS = {"name", "trainable", "dtype", "dynamic", "input_dim", "input_shape",
                "batch_input_shape", "batch_size", "weights", "activity_regularizer", "autocast",
                "implementation"}
# Keys whose Keras 3 value at its default has no Keras 2 counterpart and changes nothing.
_NEUTRAL = (None, False, 0, 0.0, "channels_last")
_TRANSLATIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_RECORDING: ContextVar[list | None] = ContextVar("edgeflow_keras3_recording", default=None)


@dataclass(frozen=True)
class Translation:
    """The record of one Keras 3 → Keras 2 translation.

    Attributes:
        keras_version: the Keras 3 version that built the model (``"3.15.1"``).
        layers: number of layers translated (nested models counted with their layers).
        max_abs_diff: largest ``|Keras 3 output - Keras 2 output|`` on the random input.
        tolerance: the bound it was checked against (:data:`TOLERANCE`).
        samples: random input samples compared (uniform in [-1, 1], seed 0).
    """

    keras_version: str
    layers: int
    max_abs_diff: float
    tolerance: float = TOLERANCE
    samples: int = 4

    def summary(self) -> str:
        return (f"translated from Keras {self.keras_version} to Keras 2 ({self.layers} layers): "
                f"outputs equal on random input, max abs diff {self.max_abs_diff:.1e} "
                f"<= {self.tolerance:.0e}")

    def to_dict(self) -> dict:
        return asdict(self)


def translation_of(model) -> Translation | None:
    """The :class:`Translation` record of a model :func:`translate` returned, else None."""
    try:
        return _TRANSLATIONS.get(model)
    except TypeError:
        return None


@contextmanager
def recording() -> Iterator[list[Translation]]:
    """Collect the :class:`Translation` records of every translation made in the block
    (the CLI prints them and puts them in ``--json``).

    Example:
        >>> with recording() as records:
        ...     model = load_model("keras3_model.keras")
        >>> records[0].max_abs_diff
    """
    records: list[Translation] = []
    token = _RECORDING.set(records)
    try:
        yield records
    finally:
        _RECORDING.reset(token)


def load(path: str, *, custom_objects: dict | None = None, safe_mode: bool = True):
    """Read a Keras 3 ``.keras`` (zip) or ``.h5`` file with Keras 3 (the ``keras`` package).

    ``path`` must carry the suffix of its content (:func:`edgeflow.models.load_model` sees
    to it). Returns the Keras 3 model, not compiled. Raises EdgeflowError when it is
    unreadable.
    """
    import keras as keras3

    try:
        return keras3.saving.load_model(path, custom_objects=custom_objects, compile=False,
                                        safe_mode=safe_mode)
    except Exception as err:  # Keras raises many types for unreadable files
        raise EdgeflowError(f"cannot read the Keras 3 model ({first_line(err)})") from err


def translate(model, *, check: bool = True) -> tuple[keras.Model, Translation]:
    """Rebuild the Keras 3 ``model`` as a Keras 2 (``tf_keras``) model with the same weights.

    Every layer is created from its Keras 3 configuration (keys renamed where Keras 2
    names them differently, Keras 3-only keys dropped only at their neutral default) and
    called on the translated inputs in the original graph order; nested models become
    nested Keras 2 models. With ``check``, both models run on 4 random samples (uniform in
    [-1, 1], seed 0; sizes of None dimensions other than the batch: 8) and every output
    must agree within :data:`TOLERANCE`.

    Example:
        >>> k2_model, record = translate(keras3_model)
        >>> record.max_abs_diff <= 1e-5
        True

    Returns ``(model, record)``; the input is not modified. Raises EdgeflowError naming a
    layer that has no translation (and what to do), or when the outputs differ.
    """
    import keras as keras3

    translator = _Translator()
    try:
        k2 = translator.model(model)
    except EdgeflowError:
        raise
    except Exception as err:  # a Keras 2 layer refusing a translated configuration
        raise EdgeflowError(
            f"cannot translate Keras 3 layer {translator.current!r} to Keras 2 ({first_line(err)}); "
            "rebuild the model with tf_keras (`from edgeflow import keras`) and load its weights"
        ) from err
    diff = _max_abs_diff(model, k2) if check else float("nan")
    if check and not diff <= TOLERANCE:
        raise EdgeflowError(
            f"the Keras 2 translation of {model.name!r} differs from the Keras 3 model by {diff:.2e} "
            f"(> {TOLERANCE:.0e}) on random input; rebuild it with tf_keras (`from edgeflow import keras`) "
            "and please report the model"
        )
    record = Translation(keras3.__version__, translator.count, diff)
    _TRANSLATIONS[k2] = record
    if (records := _RECORDING.get()) is not None:
        records.append(record)
    return k2, record


def untranslatable(config: dict) -> list[str]:
    """``"name (ClassName)"`` of every layer in a saved Keras 3 model config (``config.json``
    or an ``.h5`` ``model_config``) that :func:`translate` cannot translate."""
    found: list[str] = []

    def walk(node):
        cls = node.get("class_name")
        inner = node.get("config") or {}
        if cls in ("Functional", "Sequential", "Model"):
            for layer in inner.get("layers", []):
                walk(layer)
        elif cls in ("Bidirectional", "TimeDistributed"):
            for key in ("layer", "backward_layer"):
                if isinstance(inner.get(key), dict):
                    walk(inner[key])
        elif _is_operation(node):
            if cls not in OPERATIONS:
                found.append(f"{inner.get('name') or node.get('name')} ({cls} operation)")
        elif cls != "InputLayer" and cls not in LAYERS:
            found.append(f"{inner.get('name') or node.get('name')} ({cls})")

    walk(config)
    return found


def advice(layers: list[str]) -> str:
    """The one error line for Keras 3 layers without a Keras 2 translation."""
    return (f"Keras 3 layer(s) {', '.join(layers)} have no Keras 2 translation in edgeflow: "
            "replace them with built-in layers, or rebuild the model with tf_keras "
            "(`from edgeflow import keras`) and load its weights")


class _Translator:
    def __init__(self):
        self.count = 0
        self.current = ""

    def model(self, model3) -> keras.Model:
        if type(model3).__name__ == "Sequential":
            return self._sequential(model3)
        if isinstance(model3.get_config(), dict) and "layers" in model3.get_config():
            return self._functional(model3)
        raise EdgeflowError(
            f"Keras 3 model {model3.name!r} is a subclassed {type(model3).__name__}: only functional "
            "and Sequential models translate to Keras 2; rebuild it with keras.Input and layers"
        )

    def _sequential(self, model3) -> keras.Model:
        out = keras.Sequential(name=model3.name)
        shape = _batch_shape(model3)
        if shape is not None:
            out.add(keras.Input(batch_shape=shape, dtype=_input_dtype(model3)))
        pairs = []
        for layer3 in model3.layers:
            layer2 = self.layer(layer3)
            out.add(layer2)
            pairs.append((layer3, layer2))
        self._copy_weights(pairs)
        return out

    def _functional(self, model3) -> keras.Model:
        config = model3.get_config()
        tensors: dict[tuple, object] = {}
        pairs, pending = [], []
        for entry in config["layers"]:
            name = entry["name"]
            if entry["class_name"] == "InputLayer":
                cfg = entry["config"]
                tensors[(name, 0, 0)] = keras.Input(batch_shape=cfg["batch_shape"], dtype=cfg.get("dtype"),
                                                    sparse=cfg.get("sparse") or False, name=name)
                continue
            if _is_operation(entry):
                if entry["class_name"] not in OPERATIONS:
                    raise EdgeflowError(advice([f"{name} ({entry['class_name']} operation)"]))
                fn = OPERATIONS[entry["class_name"]]
                pending += [(fn, name, i, node) for i, node in enumerate(entry["inbound_nodes"])]
                continue
            layer3 = model3.get_layer(name)
            layer2 = self.layer(layer3)
            pairs.append((layer3, layer2))
            pending += [(layer2, name, i, node) for i, node in enumerate(entry["inbound_nodes"])]
        while pending:  # graph order, whatever the order of the layer list (shared layers)
            ready = [p for p in pending if _available(p[3], tensors)]
            if not ready:
                raise EdgeflowError(f"cannot order the graph of Keras 3 model {model3.name!r}")
            for item in ready:
                layer2, name, index, node = item
                self.current = name
                args = _resolve(node.get("args", []), tensors)
                kwargs = _resolve(node.get("kwargs", {}), tensors)
                outputs = layer2(*args, **kwargs)
                for k, tensor in enumerate(tf.nest.flatten(outputs)):
                    tensors[(name, index, k)] = tensor
                pending.remove(item)
        self._copy_weights(pairs)
        inputs = [tensors[tuple(ref)] for ref in _refs(config["input_layers"])]
        outputs = [tensors[tuple(ref)] for ref in _refs(config["output_layers"])]
        single = len(outputs) == 1 and isinstance(config["output_layers"][0], str)
        return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs[0] if single else outputs,
                           name=model3.name)

    def layer(self, layer3):
        self.current = layer3.name
        cls = type(layer3).__name__
        if hasattr(layer3, "layers") and cls in ("Functional", "Sequential", "Model"):
            return self.model(layer3)
        self.count += 1
        return keras.layers.deserialize({"class_name": cls, "config": layer_config(layer3)})

    def _copy_weights(self, pairs):
        for layer3, layer2 in pairs:
            if isinstance(layer2, keras.Model):
                continue  # its own layers were copied when it was built
            self.current = layer3.name
            weights = layer3.get_weights()
            if len(weights) != len(layer2.get_weights()):
                raise EdgeflowError(
                    f"Keras 3 layer {layer3.name!r} ({type(layer3).__name__}) has {len(weights)} weights, "
                    f"its Keras 2 translation {len(layer2.get_weights())}: rebuild the model with tf_keras"
                )
            layer2.set_weights(weights)


def layer_config(layer3) -> dict:
    """The Keras 2 configuration of a built-in Keras 3 layer (raises EdgeflowError if none)."""
    cls = type(layer3).__name__
    if cls not in LAYERS:
        raise EdgeflowError(advice([f"{layer3.name} ({cls})"]))
    return _config(cls, layer3.get_config(), layer3.name)


def _config(cls: str, config: dict, name: str) -> dict:
    target = getattr(keras.layers, cls)
    accepted = _accepted(target)
    renames = LAYERS[cls]
    out = {}
    for key, value in config.items():
        key2 = renames.get(key, key)
        if key2.endswith("_initializer"):
            continue  # the weights are copied: initializers never run
        if key2 not in accepted:
            if _neutral(value):
                continue
            raise EdgeflowError(
                f"Keras 3 layer {name!r} ({cls}) sets {key}={value!r}, which Keras 2 does not have: "
                "set it to its default or rebuild the model with tf_keras"
            )
        if key2 in ("layer", "backward_layer") and isinstance(value, dict):
            inner = value["class_name"]
            if inner not in LAYERS:
                raise EdgeflowError(advice([f"{value['config'].get('name')} ({inner})"]))
            value = {"class_name": inner, "config": _config(inner, value["config"], value["config"].get("name"))}
        else:
            value = _value(value, f"{name}.{key}")
        out[key2] = value
    return out


def _accepted(cls) -> set[str]:
    names = set(_BASE_KWARGS)
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in params) or klass is keras.layers.Layer:
            break
    return names - {"self"}


def _neutral(value) -> bool:
    return any(value is v or (type(value) is type(v) and value == v) for v in _NEUTRAL)


def _value(value, where: str):
    """A Keras 3 config value as Keras 2 reads it (serialized objects, dtype policies)."""
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        cls, cfg = value["class_name"], value["config"]
        if cls in ("DTypePolicy", "Policy", "FloatDTypePolicy"):
            return cfg["name"]
        if cls == "function":  # a built-in function by name (an activation)
            return cfg
        if cls == "__lambda__":
            raise EdgeflowError(f"{where} is Python code (a lambda): rebuild it with a named function")
        return {"class_name": cls, "config": _value(cfg, where)}
    if isinstance(value, dict):
        return {k: _value(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v, where) for v in value]
    if where.endswith("activation") and isinstance(value, str):
        return _activation(value, where)
    return value


def _activation(name: str, where: str) -> str:
    """The tf_keras activation name computing what Keras 3's ``name`` computes
    (:data:`edgeflow._activations.KERAS3` for those Keras 2 spells or defines differently)."""
    from edgeflow._activations import KERAS3

    name = KERAS3.get(name, name)
    try:
        keras.activations.get(name)
    except ValueError as err:
        raise EdgeflowError(
            f"Keras 3 activation {name!r} ({where}) has no Keras 2 counterpart: use another "
            "activation or rebuild the model with tf_keras"
        ) from err
    return name


def _refs(value) -> list:
    return [value] if value and isinstance(value[0], str) else list(value)


def _is_tensor_ref(node) -> bool:
    return isinstance(node, dict) and node.get("class_name") == "__keras_tensor__"


def _available(node, tensors) -> bool:
    if _is_tensor_ref(node):
        return tuple(node["config"]["keras_history"]) in tensors
    if isinstance(node, dict):
        return all(_available(v, tensors) for v in node.values())
    if isinstance(node, (list, tuple)):
        return all(_available(v, tensors) for v in node)
    return True


def _resolve(node, tensors):
    if _is_tensor_ref(node):
        return tensors[tuple(node["config"]["keras_history"])]
    if isinstance(node, dict):
        return {k: _resolve(v, tensors) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_resolve(v, tensors) for v in node]
    return node


def _batch_shape(model3):
    try:
        return tuple(model3.inputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def _input_dtype(model3) -> str:
    try:
        return str(model3.inputs[0].dtype)
    except (AttributeError, IndexError):
        return "float32"


def _max_abs_diff(model3, model2, samples: int = 4) -> float:
    """Largest |output difference| of the two models on the same random input."""
    rng = np.random.default_rng(0)
    xs = []
    for tensor in model2.inputs:
        shape = [samples] + [8 if d is None else int(d) for d in tensor.shape[1:]]
        dtype = tensor.dtype.as_numpy_dtype
        xs.append(rng.integers(0, 2, shape).astype(dtype) if np.issubdtype(dtype, np.integer)
                  else rng.uniform(-1, 1, shape).astype(dtype))
    feed = xs if len(xs) > 1 else xs[0]
    got3 = tf.nest.flatten(model3(feed, training=False))
    got2 = tf.nest.flatten(model2(feed, training=False))
    if len(got3) != len(got2):
        return float("inf")
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
               for a, b in zip(got3, got2))
