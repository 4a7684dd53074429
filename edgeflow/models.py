"""Loading Keras models safely from objects and files."""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from edgeflow import _io
from edgeflow._keras import ensure_keras2, keras
from edgeflow.errors import EdgeflowError, closest, first_line

# TFOpLambda is safe: it names a TF op and holds no bytecode.
_BYTECODE_LAYERS = ("Lambda",)


def load_model(model, *, safe_mode: bool = True, custom_objects: dict | None = None) -> keras.Model:
    """Return a Keras 2 model from a model object, a ``.keras``/``.h5`` file or a SavedModel.

    A model whose saved configuration holds a ``Lambda`` layer (arbitrary Python bytecode)
    is refused unless ``safe_mode=False``: loading it would run code from the file.

    Example:
        >>> model = load_model("digits.keras")

    The input object is returned as it is (not copied).
    """
    if not isinstance(model, (str, os.PathLike)):
        return ensure_keras2(model)
    path = Path(model)
    if not path.exists():
        raise EdgeflowError(f"model file {str(path)!r} does not exist")
    config = _saved_config(path)
    if safe_mode and config is not None:
        lambdas = _find_layers(config, _BYTECODE_LAYERS)
        if lambdas:
            raise EdgeflowError(
                f"{path} holds Lambda layer(s) {', '.join(lambdas)} whose Python code would run "
                "when loaded: pass --unsafe (safe_mode=False) only if you trust this file"
            )
    try:
        kwargs = {"custom_objects": custom_objects, "compile": False}
        if path.suffix == ".keras":
            kwargs["safe_mode"] = safe_mode
        loaded = keras.models.load_model(str(path), **kwargs)
    except EdgeflowError:
        raise
    except Exception as err:  # Keras raises many types for unreadable files
        raise EdgeflowError(
            f"cannot load {path} as a Keras model ({first_line(err)}); pass a .keras/.h5 file or a "
            "SavedModel directory saved by Keras 2 (tf_keras), with custom_objects for custom layers"
        ) from err
    return ensure_keras2(loaded)


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

    Keras writes to a temporary file in the same folder, which is then renamed to ``path``
    (:func:`edgeflow._io.atomic_path`: the umask's mode, or the mode of the file replaced);
    on any failure nothing is left behind and an existing ``path`` is unchanged. Models with
    QAT wrappers load again with ``edgeflow.quantize.custom_objects()``.

    Example:
        >>> save_model(result.model, "out/pruned.keras")
        PosixPath('out/pruned.keras')

    Side effects: creates the parent folder if needed and replaces ``path``.
    """
    path = Path(path)
    if path.suffix not in SAVE_SUFFIXES:
        raise EdgeflowError(f"write the model to a .keras or .h5 file, not {path.name!r}")
    with _io.atomic_path(path) as tmp, warnings.catch_warnings():
        # .h5 is chosen on purpose (QAT models need it)
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5")
        model.save(tmp)
    return path


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


def default_loss(model: keras.Model, loss=None, y=None):
    """The loss to train ``model`` with, by the first rule that applies:

    1. ``loss`` when given;
    2. the model's compiled loss;
    3. from the targets ``y`` when given: integer labels of shape (n,) → sparse categorical
       cross-entropy, 0/1 rows of shape (n, k) (one-hot) → categorical cross-entropy,
       anything else → mean squared error;
    4. from the output: a softmax classifier → sparse categorical cross-entropy.

    Example:
        >>> default_loss(digits_cnn())
        'sparse_categorical_crossentropy'
        >>> default_loss(regressor, y=np.zeros((4, 1), np.float32))
        'mse'

    Raises EdgeflowError when no rule applies. Nothing is modified.
    """
    if loss is not None:
        return loss
    compiled = getattr(model, "loss", None)
    if compiled is not None:
        return compiled
    if y is not None:
        y = np.asarray(y)
        if np.issubdtype(y.dtype, np.integer) and y.ndim == 1:
            return "sparse_categorical_crossentropy"
        if y.ndim == 2 and set(np.unique(y)) <= {0, 1}:
            return "categorical_crossentropy"
        return "mse"
    if output_activation(model) == "softmax":
        return "sparse_categorical_crossentropy"
    raise EdgeflowError(
        f"model {model.name!r} needs a loss: it is not compiled and does not end in a softmax; "
        "pass loss= (e.g. 'mse' or keras.losses.SparseCategoricalCrossentropy(from_logits=True))"
    )


def _saved_config(path: Path) -> dict | None:
    """The model config stored in a .keras zip, an .h5 file or a SavedModel, if readable."""
    if path.is_dir():
        return _savedmodel_config(path) if (path / "keras_metadata.pb").exists() else None
    try:
        if path.suffix == ".keras" and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return json.loads(zf.read("config.json"))
        if path.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
                if raw is None:
                    return None
                return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (OSError, KeyError, ValueError):
        return None
    return None


def _savedmodel_config(path: Path) -> dict | None:
    """Keras layer configs from a SavedModel's keras_metadata.pb (a JSON per layer)."""
    data = (path / "keras_metadata.pb").read_bytes()
    # The metadata proto stores JSON strings; scanning for class names is enough to find
    # Lambda layers and avoids depending on a private protobuf module.
    names = []
    marker = b'"class_name": "'
    start = 0
    while (i := data.find(marker, start)) != -1:
        j = data.find(b'"', i + len(marker))
        names.append({"class_name": data[i + len(marker) : j].decode(errors="replace")})
        start = j
    return {"layers": names}


def _find_layers(config, class_names: tuple[str, ...]) -> list[str]:
    """Names of layers of the given classes anywhere in a (nested) Keras config."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("class_name") in class_names:
                found.append(node.get("config", {}).get("name") or node.get("name") or node["class_name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def digits_cnn(num_classes: int = 10, input_shape=(8, 8, 1)) -> keras.Model:
    """A small functional CNN for 8×8 digits: Conv-BN-ReLU ×2, max pooling, Dense ×2.

    Example:
        >>> model = digits_cnn()
        >>> model.count_params()
        21738
    """
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
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
