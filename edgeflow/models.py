"""Loading Keras models safely from objects and files."""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgeflow import _io
from edgeflow._keras import ensure_keras2, keras
from edgeflow.errors import EdgeflowError, closest, first_line

# TFOpLambda is safe: it names a TF op and holds no bytecode. A Lambda layer (Keras 2 and 3)
# and a Keras 3 ``__lambda__`` object carry Python code that runs when the model is loaded.
_CODE_CLASSES = ("Lambda", "__lambda__")
_HDF5_SUFFIXES = (".h5", ".hdf5")


def load_model(model, *, safe_mode: bool = True, custom_objects: dict | None = None) -> keras.Model:
    """Return a Keras 2 model from a model object, a ``.keras``/``.h5`` file or a SavedModel.

    Files are recognised by their content, never by their name: an HDF5 file, a ``.keras``
    zip or a SavedModel folder, whatever it is called. Before anything is deserialized,
    a file whose saved configuration holds code (a ``Lambda`` layer, a Keras 3 lambda) is
    refused unless ``safe_mode=False``: loading it would run code from the file. Keras 3
    files and Keras 3 model objects are translated to Keras 2 layer by layer and checked
    by equal outputs (:func:`edgeflow.keras3.translate`; the record is
    :func:`edgeflow.keras3.translation_of` the returned model). Models edgeflow saved with
    TF-MOT wrappers (QAT) load without further arguments.

    Example:
        >>> model = load_model("digits.keras")

    Raises EdgeflowError for a missing or unreadable file, code in safe mode, or a Keras 3
    layer without translation. A Keras 2 input object is returned as it is (not copied).
    """
    if not isinstance(model, (str, os.PathLike)):
        return ensure_keras2(model)
    path = Path(model)
    if not path.exists():
        raise EdgeflowError(f"model file {str(path)!r} does not exist")
    kind = container(path)
    if kind is None:
        raise EdgeflowError(
            f"{path} is not a Keras model: expected a .keras zip, an HDF5 (.h5) file or a "
            "SavedModel folder"
        )
    configs = saved_configs(path)
    if safe_mode:
        code = list(dict.fromkeys(name for config in configs for name in _code_layers(config)))
        if code:
            raise EdgeflowError(
                f"{path} holds Lambda layer(s) {', '.join(code)} whose Python code would run "
                "when loaded: pass --unsafe (safe_mode=False) only if you trust this file"
            )
    version = keras_version(path) or ""
    with _readable(path, kind) as readable:
        if version.startswith("3."):
            return _load_keras3(path, readable, configs, safe_mode, custom_objects)
        loaded = _load_keras2(path, readable, kind, configs, safe_mode, custom_objects)
    if not isinstance(loaded, keras.Model):
        raise EdgeflowError(
            f"{path} is a SavedModel without Keras layers (as Keras 3's model.export() writes): "
            "pass the model saved with model.save('model.keras'); `edgeflow export` converts "
            "such a SavedModel as it is"
        )
    return loaded


def _load_keras2(path: Path, readable: str, kind: str, configs: list, safe_mode: bool,
                 custom_objects: dict | None):
    from contextlib import nullcontext

    unknown = list(dict.fromkeys(n for c in configs for n in _unknown_layers(c, custom_objects or {})))
    if unknown:
        raise EdgeflowError(
            f"{path} uses layer classes Keras does not know: {', '.join(unknown)}; pass "
            "--custom-objects FILE.py defining them (with --unsafe; API: custom_objects=)"
        )
    scope = nullcontext()
    if any(_find_layers(c, _TFMOT_CLASSES) for c in configs):
        from edgeflow._keras import tfmot
        from edgeflow.quantize import custom_objects as quantize_objects

        scope = tfmot.quantization.keras.quantize_scope(quantize_objects())
    try:
        kwargs = {"custom_objects": custom_objects, "compile": False}
        if kind == "zip":
            kwargs["safe_mode"] = safe_mode
        with scope:
            return keras.models.load_model(readable, **kwargs)
    except Exception as err:  # Keras raises many types for unreadable files
        raise EdgeflowError(
            f"cannot load {path} as a Keras model ({first_line(err)}); pass a .keras/.h5 file or a "
            "SavedModel directory saved by Keras, with --custom-objects for custom layers"
        ) from err


def _load_keras3(path: Path, readable: str, configs: list, safe_mode: bool,
                 custom_objects: dict | None) -> keras.Model:
    from edgeflow import keras3

    if not custom_objects:
        missing = [name for config in configs for name in keras3.untranslatable(config)]
        if missing:
            raise EdgeflowError(f"{path}: {keras3.advice(missing)}")
    model3 = keras3.load(readable, custom_objects=custom_objects, safe_mode=safe_mode)
    try:
        return keras3.translate(model3)[0]
    except EdgeflowError as err:
        raise EdgeflowError(f"{path}: {err}") from err


def read_custom_objects(path: str | os.PathLike, *, safe_mode: bool = True) -> dict:
    """The custom Keras objects a Python file defines, for loading models that use them.

    Runs the file. Returns its ``CUSTOM_OBJECTS`` dict when it defines one, else every class
    and function defined in the file itself (not the ones it imports), by name.

    Example:
        >>> read_custom_objects("layers.py", safe_mode=False)
        {'Swish': <class 'layers.Swish'>}

    Raises EdgeflowError in safe mode (running a file is running its code), or when the
    file is missing or fails to run.
    """
    import importlib.util

    path = Path(path)
    if safe_mode:
        raise EdgeflowError(
            f"custom objects from {path} run that Python file: pass --unsafe (recipe: model.unsafe: "
            "true) too, only if you trust it"
        )
    if not path.is_file() or path.suffix != ".py":
        raise EdgeflowError(f"custom objects file {str(path)!r} is not a Python (.py) file")
    spec = importlib.util.spec_from_file_location(f"edgeflow_custom_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's code: any error
        raise EdgeflowError(f"running {path} failed ({type(err).__name__}: {first_line(err)})") from err
    objects = getattr(module, "CUSTOM_OBJECTS", None)
    if isinstance(objects, dict):
        return dict(objects)
    return {name: obj for name, obj in vars(module).items()
            if not name.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == module.__name__}


_MODEL_CLASSES = ("Functional", "Sequential", "Model", "TFOpLambda", "SlicingOpLambda")


def _unknown_layers(config, custom_objects: dict) -> list[str]:
    """``"name (Class)"`` of layers in a saved Keras 2 config whose class Keras cannot find."""
    found = []
    for layer in (config.get("config") or {}).get("layers", []) if isinstance(config, dict) else []:
        cls = layer.get("class_name", "")
        if cls in ("Functional", "Sequential", "Model"):
            found += _unknown_layers(layer, custom_objects)
        elif not (cls in custom_objects or cls in _MODEL_CLASSES or cls in _TFMOT_CLASSES
                  or hasattr(keras.layers, cls) or keras.utils.get_registered_object(cls) is not None):
            found.append(f"{(layer.get('config') or {}).get('name') or layer.get('name')} ({cls})")
    return found


# Classes of TF-MOT wrappers a QAT model saved by edgeflow holds.
_TFMOT_CLASSES = ("QuantizeLayer", "QuantizeWrapper", "QuantizeWrapperV2", "QuantizeAnnotate")


def container(path: str | os.PathLike) -> str | None:
    """What a model file is by its content: ``"hdf5"``, ``"zip"`` (``.keras``),
    ``"savedmodel"`` (a folder with ``saved_model.pb``), or None. The name is not looked at.

    Example:
        >>> container("model.keras")
        'zip'
    """
    path = Path(path)
    if path.is_dir():
        return "savedmodel" if any((path / n).exists() for n in ("saved_model.pb", "saved_model.pbtxt")) \
            else None
    import h5py

    try:
        if h5py.is_hdf5(str(path)):  # what Keras itself asks, whatever the name
            return "hdf5"
        return "zip" if zipfile.is_zipfile(path) else None
    except OSError:
        return None


def keras_version(path: str | os.PathLike) -> str | None:
    """The Keras version that saved a ``.keras`` zip or an HDF5 model file, if recorded."""
    path = Path(path)
    kind = container(path)
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                return str(json.loads(zf.read("metadata.json")).get("keras_version") or "") or None
        if kind == "hdf5":
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("keras_version")
                return raw.decode() if isinstance(raw, bytes) else (str(raw) if raw is not None else None)
    except (OSError, KeyError, ValueError):
        return None
    return None


def saved_configs(path: str | os.PathLike) -> list:
    """Every saved model configuration Keras could read from ``path`` (decided by content:
    a file that is both HDF5 and zip gives both), for checks before loading."""
    path = Path(path)
    if path.is_dir():
        return _savedmodel_configs(path)
    configs = []
    import h5py

    try:
        if h5py.is_hdf5(str(path)):
            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
                if raw is not None:
                    configs.append(json.loads(raw.decode() if isinstance(raw, bytes) else raw))
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                if "config.json" in zf.namelist():
                    configs.append(json.loads(zf.read("config.json")))
    except (OSError, KeyError, ValueError) as err:
        raise EdgeflowError(f"cannot read the model configuration in {path} ({first_line(err)})") from err
    return configs


def _savedmodel_configs(path: Path) -> list:
    """The Keras metadata of a SavedModel: ``keras_metadata.pb``, or for older files the
    metadata inside ``saved_model.pb`` (both are read, as the Keras loader may use either)."""
    from edgeflow._keras import tf

    texts = []
    meta = path / "keras_metadata.pb"
    try:
        if meta.exists():
            from tf_keras.protobuf import saved_metadata_pb2

            proto = saved_metadata_pb2.SavedMetadata()
            proto.ParseFromString(meta.read_bytes())
            texts += [node.metadata for node in proto.nodes]
        graph = tf.__internal__.saved_model.parse_saved_model(str(path)).meta_graphs[0].object_graph_def
        texts += [node.user_object.metadata for node in graph.nodes
                  if node.WhichOneof("kind") == "user_object" and node.user_object.metadata]
        return [json.loads(text) for text in texts if text]
    except Exception as err:  # protobuf and JSON errors: unreadable is unsafe to load
        raise EdgeflowError(
            f"cannot read the Keras metadata of SavedModel {path} ({first_line(err)}); save the "
            "model again with model.save('model.keras')"
        ) from err


@contextmanager
def _readable(path: Path, kind: str):
    """``path`` named as its content, so that Keras reads the container that was checked."""
    suffix = {"zip": ".keras", "hdf5": ".h5"}.get(kind)
    if suffix is None or path.suffix == suffix or (kind == "hdf5" and path.suffix in _HDF5_SUFFIXES):
        yield str(path)
        return
    with _io.temporary_dir("model-") as tmp:
        link = Path(tmp) / f"model{suffix}"
        os.symlink(path.resolve(), link)
        yield str(link)


def _code_layers(config) -> list[str]:
    """Names of layers or objects that carry Python code anywhere in a (nested) config."""
    found = _find_layers(config, _CODE_CLASSES)
    found += [node.get("name") or "a lambda function" for node in _config_dicts(config)
              if "lambda" in (node.get("function_type"), node.get("output_shape_type"))]
    named = [name for name in dict.fromkeys(found) if name != "__lambda__"]
    return named or found[:1]


def copy_model(model: keras.Model) -> keras.Model:
    """A new functional/Sequential model with the same graph and copied weights (not shared).

    Example:
        >>> copy = copy_model(model)
        >>> copy is model
        False

    The input model is not modified; the copy is not compiled.
    """
    model = ensure_keras2(model)
    try:
        clone = keras.models.clone_model(model)
    except Exception as err:  # Keras raises many types for odd models
        raise EdgeflowError(
            f"cannot copy model {model.name!r} ({err}); edgeflow copies functional and Sequential "
            "Keras models whose custom layers implement get_config"
        ) from err
    clone.set_weights(model.get_weights())
    return clone


SAVE_SUFFIXES = (".keras", ".h5")


def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """Save ``model`` atomically to a ``.keras`` (or ``.h5``) file and return its path.

    Keras writes to a temporary file in the same folder, which is loaded back with
    :func:`load_model` and only then renamed to ``path`` (:func:`edgeflow._io.atomic_path`:
    the umask's mode, or the mode of the file replaced): a file that would not load again
    (a QAT model in ``.keras``) is refused, and on any failure nothing is left behind and an
    existing ``path`` is unchanged. Models with QAT wrappers load again from ``.h5``.

    A :class:`~edgeflow.distill.Distiller` saves its student only: the model it predicts
    with and the one that deploys (the frozen teacher would make the file as large as the
    teacher, for nothing the board runs). ``distiller.save(path)`` (Keras) keeps the teacher
    and the losses' adapters, to go on training later.

    Example:
        >>> save_model(result.model, "out/pruned.keras")
        PosixPath('out/pruned.keras')

    Side effects: creates the parent folder if needed and replaces ``path``.
    """
    path = Path(path)
    if path.suffix not in SAVE_SUFFIXES:
        raise EdgeflowError(f"write the model to a .keras or .h5 file, not {path.name!r}")
    from edgeflow.distill.distiller import Distiller

    if isinstance(model, Distiller):
        model = model.student
    with _io.atomic_path(path) as tmp, warnings.catch_warnings():
        # .h5 is chosen on purpose (QAT models need it)
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5")
        model.save(tmp)
        _loads_again(model, tmp, path)
    return path


def _loads_again(model: keras.Model, saved: Path, path: Path) -> None:
    """Raise EdgeflowError unless ``saved`` loads (the model's own layer classes given)."""
    classes = {type(m).__name__: type(m) for m in model.submodules if isinstance(m, keras.layers.Layer)}
    try:
        load_model(saved, safe_mode=False, custom_objects=classes)
    except EdgeflowError as err:
        qat = any(name in classes for name in _TFMOT_CLASSES)
        advice = ("QAT models load again from .h5: write to a .h5 file" if qat and path.suffix == ".keras"
                  else "give its custom layers get_config(), or write to the other format (.keras/.h5)")
        raise EdgeflowError(
            f"not saving {model.name!r} to {path}: the file would not load again "
            f"({first_line(err.__cause__ or err)}); {advice}"
        ) from err


def weight_bytes(model: keras.Model) -> tuple[int, int]:
    """``(raw, gzipped)`` bytes of the model's weights as float32, gzip level 9.

    The gzipped figure is how a sparse model ships: zeros compress, the raw size does not
    change.

    Example:
        >>> weight_bytes(digits_cnn())[0]
        86952
    """
    import gzip

    raw = b"".join(np.asarray(w, np.float32).tobytes() for w in model.get_weights())
    return len(raw), len(gzip.compress(raw, 9))


def output_activation(model: keras.Model) -> str | None:
    """Name of the activation that ends the model's (single) output, if it is a plain one
    (``"softmax"`` for a ``Softmax`` layer or ``Dense(..., activation="softmax")``)."""
    layer = model.layers[-1] if model.layers else None
    if layer is None:
        return None
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None) if act is not None else None


_CROSSENTROPIES = {
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "binary_crossentropy": "BinaryCrossentropy",
}


def default_loss(model: keras.Model, loss=None, y=None):
    """The loss to train ``model`` with, by the one rule every training command and stage uses.

    1. ``loss`` when given; a cross-entropy given by name (``"binary_crossentropy"``…) reads
       ``from_logits`` from the last layer;
    2. the model's compiled loss;
    3. from the last layer and the labels ``y``. The output holds probabilities when the
       last layer ends in softmax or sigmoid, else logits. With ``k`` output units:
       class ids of shape (n,) or (n, 1) and k > 1 → sparse categorical cross-entropy;
       0/1 rows of shape (n, k), k > 1 → categorical cross-entropy; k = 1 and labels all
       0 or 1 → binary cross-entropy; any other labels → mean squared error (regression);
    4. without labels: softmax → sparse categorical, sigmoid with one unit → binary
       cross-entropy.

    A model with several outputs gets a list: the rule applied to each output with its own
    labels (``y`` a list in output order).

    A cross-entropy on probabilities is returned by name (``'sparse_categorical_crossentropy'``),
    on logits as a loss object with ``from_logits=True``.

    Example:
        >>> default_loss(digits_cnn())
        'sparse_categorical_crossentropy'
        >>> default_loss(regressor, y=np.full((4, 1), 0.5, np.float32))
        'mse'

    Raises EdgeflowError when no rule applies. Nothing is modified.
    """
    head = output_activation(model)
    logits = head not in ("softmax", "sigmoid")
    if isinstance(loss, str):
        try:
            keras.losses.get(loss)
        except ValueError as err:
            raise EdgeflowError(
                f"unknown loss {loss!r}: use a Keras loss name such as mse, binary_crossentropy or "
                "sparse_categorical_crossentropy"
            ) from err
    if loss is not None:
        return _crossentropy(loss, logits) if isinstance(loss, str) and loss in _CROSSENTROPIES else loss
    compiled = getattr(model, "loss", None)
    if compiled is not None:
        return compiled
    if len(model.outputs) > 1:  # the rule per output, on its own labels (a list in output order)
        ys = list(y) if isinstance(y, (list, tuple)) else [None] * len(model.outputs)
        return [default_loss(keras.Model(model.inputs, out), None, labels)
                for out, labels in zip(model.outputs, ys, strict=True)]
    units = _output_units(model)
    if y is not None and units is not None:
        y = np.asarray(y)
        if y.size and units > 1 and (y.ndim == 1 or y.shape[1:] == (1,)) and _whole(y):
            return _crossentropy("sparse_categorical_crossentropy", logits)
        if units > 1 and y.ndim == 2 and y.shape[1] == units and _binary(y):
            return _crossentropy("categorical_crossentropy", logits)
        if units == 1 and y.size and _binary(y):
            return _crossentropy("binary_crossentropy", logits)
        return "mse"
    if head == "softmax":
        return "sparse_categorical_crossentropy"
    if head == "sigmoid" and units == 1:
        return "binary_crossentropy"
    raise EdgeflowError(
        f"model {model.name!r} needs a loss: it is not compiled, does not end in a softmax or "
        "sigmoid, and no labels were given; pass --loss (recipe: loss:), e.g. mse or "
        "sparse_categorical_crossentropy"
    )


def default_metrics(model: keras.Model, loss=None, y=None) -> list:
    """The metric to compile ``model`` with, per output, by the rule of :func:`default_loss`:
    ``"accuracy"`` for an output trained with a cross-entropy (a class output), ``"mae"``
    (mean absolute error, in the labels' units) for any other loss (a regression output),
    as the run's figures read them (``edgeflow.runtime.metrics.score``).

    Returns:
        ``["accuracy"]`` or ``["mae"]`` for one output; for several outputs one such list
        per output, in output order (``[["accuracy"], ["mae"]]``), as ``keras.Model.compile``
        takes them.

    Example:
        >>> default_metrics(digits_cnn())
        ['accuracy']
        >>> default_metrics(regressor, y=np.full((4, 1), 0.5, np.float32))
        ['mae']

    Raises EdgeflowError when :func:`default_loss` finds no loss. Nothing is modified.
    """
    chosen = default_loss(model, loss, y)
    if isinstance(chosen, dict):  # a compiled loss by output name
        chosen = [chosen.get(name) for name in model.output_names]
    if len(model.outputs) > 1 and isinstance(chosen, (list, tuple)):
        return [[_metric_for(one)] for one in chosen]
    return [_metric_for(chosen)]


def _metric_for(loss) -> str:
    """``"accuracy"`` for a cross-entropy (a name, a loss object or function), else ``"mae"``."""
    name = loss if isinstance(loss, str) else getattr(loss, "name", None) or getattr(loss, "__name__", "")
    return "accuracy" if "crossentropy" in str(name) else "mae"


def _crossentropy(name: str, logits: bool):
    return getattr(keras.losses, _CROSSENTROPIES[name])(from_logits=True) if logits else name


def _output_units(model: keras.Model) -> int | None:
    shape = model.output_shape
    if isinstance(shape, list) or not shape or shape[-1] is None:
        return None
    return int(shape[-1])


def _whole(y: np.ndarray) -> bool:
    if np.issubdtype(y.dtype, np.integer):
        return True
    return bool(np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0) and np.all(y >= 0))


def _binary(y: np.ndarray) -> bool:
    return bool(np.isin(y, (0, 1)).all())


def _find_layers(config, class_names: tuple[str, ...]) -> list[str]:
    """Names of layers of the given classes anywhere in a (nested) Keras config."""
    found = []
    for node in _config_dicts(config):
        if node.get("class_name") in class_names:
            inner = node.get("config")
            name = inner.get("name") if isinstance(inner, dict) else None
            found.append(name or node.get("name") or node["class_name"])
    return found


def _config_dicts(node):
    """Every dict in a (nested) Keras config, parents before their children, in order."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _config_dicts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _config_dicts(value)


def digits_cnn(num_classes: int = 10, input_shape=(8, 8, 1), width: float = 1.0) -> keras.Model:
    """A small functional CNN for 8×8 digits: Conv-BN-ReLU ×2, max pooling, Dense ×2.

    ``width`` scales the number of filters and units (16, 32 and 32 at 1.0; at least 1
    each), like MobileNet's ``alpha``: the knob a fit-to-device search turns.

    Example:
        >>> model = digits_cnn()
        >>> model.count_params()
        21738
    """
    if width <= 0:
        raise EdgeflowError(f"digits_cnn: width must be > 0 (got {width})")

    def n(base: int) -> int:
        return max(1, round(base * width))

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(n(16), 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(n(32), 3, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(n(32), activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


# Models a recipe can build by name (``model: {builder: NAME}``).
BUILDERS = {"digits_cnn": digits_cnn}


def build(name: str, **kwargs) -> keras.Model:
    """Build a model by name: a builder of BUILDERS or a ``keras.applications`` class.

    ``keras.applications`` models are always built with ``weights=None``: nothing is
    downloaded.

    Example:
        >>> build("MobileNetV2", input_shape=(96, 96, 3), alpha=0.35, classes=2)
    """
    if name in BUILDERS:
        return BUILDERS[name](**kwargs)
    app = getattr(keras.applications, name, None)
    if app is None or not callable(app) or name[0].islower():
        apps = [n for n in dir(keras.applications) if n[0].isupper()]
        raise EdgeflowError(
            f"unknown model builder {name!r}{closest(name, list(BUILDERS) + apps)}; use one of "
            f"{', '.join(BUILDERS)} or a keras.applications class such as MobileNetV2"
        )
    if kwargs.get("weights") not in (None, "None"):
        raise EdgeflowError(
            f"{name}: only weights=None is possible (nothing is downloaded); train the model or "
            "pass a saved model file instead"
        )
    kwargs["weights"] = None
    try:
        return app(**kwargs)
    except (TypeError, ValueError) as err:
        raise EdgeflowError(f"cannot build {name} with {kwargs}: {err}") from err
