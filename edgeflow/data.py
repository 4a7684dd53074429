"""Input data for calibration and evaluation: arrays, files, image folders, tf.data, iterables."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from edgeflow.errors import EdgeflowError, closest

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def read_arrays(path: str | os.PathLike) -> np.ndarray | dict[str, np.ndarray]:
    """The arrays of a ``.npy`` file (one array) or a ``.npz`` file (``{name: array}``, all
    read now), never unpickling objects (``allow_pickle=False``).

    Raises:
        EdgeflowError: the file does not exist, or is not a whole ``.npy``/``.npz`` file
            (a folder, another format, truncated, a broken zip, pickled objects).

    Example:
        >>> read_arrays("calib.npz")["x"].shape
        (200, 8, 8, 1)
    """
    import zipfile
    import zlib

    path = Path(path)
    if not path.exists():
        raise EdgeflowError(f"data file {str(path)!r} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        from edgeflow.errors import first_line

        raise EdgeflowError(f"cannot read {path} as .npy/.npz data: {first_line(err)}") from err


def load_arrays(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read ``(x, y)`` from a ``.npy`` (x only) or ``.npz`` file (keys ``x``/``y``, or the first array).

    Raises:
        EdgeflowError: see :func:`read_arrays`; an ``.npz`` without arrays.

    Example:
        >>> x, y = load_arrays("calib.npz")
    """
    loaded = read_arrays(path)
    if isinstance(loaded, np.ndarray):
        return loaded, None
    keys = list(loaded)
    if not keys:
        raise EdgeflowError(f"{path} holds no arrays")
    x_key = next((k for k in ("x", "X", "inputs", "images", "x_test") if k in keys), keys[0])
    y_key = next((k for k in ("y", "Y", "labels", "targets", "y_test") if k in keys), None)
    return loaded[x_key], (loaded[y_key] if y_key else None)


def by_name(npz, prefix: str) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` (:func:`read_arrays`' dict, or an open ``NpzFile``) saved as
    ``<prefix>:<name>`` (``x:<input name>``, ``y:<output name>``), by name in key order;
    empty when it has none."""
    return {k[len(prefix) + 1:]: npz[k] for k in sorted(npz) if k.startswith(f"{prefix}:")}


def in_output_order(labels: dict, names: list[str]) -> list[np.ndarray]:
    """Labels given by output name (``{name: array}``) as a list in the model's output order.

    Raises:
        EdgeflowError: the names are not the model's output names.
    """
    if set(labels) != set(names):
        raise EdgeflowError(
            f"the labels are for outputs {', '.join(sorted(labels))} but the model's outputs "
            f"are {', '.join(names)}: save one array per output as y:<output name>")
    return [np.asarray(labels[n]) for n in names]


#: How an error line names the data a command's option gives: the ``what`` of
#: :func:`labelled` and :func:`in_input_order` ("the data (--data) holds 1 NaN ...").
OPTION_DATA = {"--data": "data (--data)", "--eval-data": "evaluation data (--eval-data)",
               "--validation-data": "validation data (--validation-data)"}


def input_names(model) -> list[str]:
    """A Keras model's input names, in input order: the names ``x:<input name>`` keys and
    dicts of samples use."""
    return [t.name.split(":")[0] for t in model.inputs]


def in_input_order(model, x, what: str = "data"):
    """Samples for a Keras model's inputs, checked: one array for one input, else a list in
    the model's input order. ``x`` is one array, a list/tuple in input order, or a dict by
    input name (``x:<input name>`` arrays of a ``.npz``).

    Raises:
        EdgeflowError: an input without an array, a name that is no input, a number of
            arrays that is not the number of inputs, a sample shape that does not fit its
            input, or inputs holding different numbers of samples (one line naming the
            ``x:<input name>`` key and what to do).
    """
    names = input_names(model)
    shapes = [tuple(t.shape[1:]) for t in model.inputs]
    if isinstance(x, dict):
        for name in names:
            if name not in x:
                raise EdgeflowError(
                    f"the {what} has no array x:{name} for input {name!r}: the model's inputs are "
                    f"{', '.join(names)}; save one array per input as x:<input name>")
        extra = sorted(set(x) - set(names))
        if extra:
            raise EdgeflowError(
                f"the {what} has array x:{extra[0]} but the model has no input {extra[0]!r}"
                f"{closest(extra[0], names)}; its inputs are {', '.join(names)}")
        xs = [np.asarray(x[n]) for n in names]
    elif isinstance(x, (list, tuple)) and (len(names) > 1 or len(x) == 1 and isinstance(x[0], np.ndarray)):
        xs = [np.asarray(a) for a in x]  # in input order (one input: [x], as Keras takes it)
    else:
        xs = [np.asarray(x)]
    if len(xs) == 1 == len(names):  # one input: the message of every single-input check
        check_shape(tuple(xs[0].shape[1:]), shapes[0])
        return xs[0]
    if len(xs) != len(names):
        raise EdgeflowError(
            f"the model has {len(names)} inputs ({', '.join(names)}) but the {what} gives "
            f"{len(xs)} array(s): save one array per input as x:<input name>")
    for name, shape, arr in zip(names, shapes, xs, strict=True):
        _check_input_shape(arr.shape[1:], shape, name, what)
        if len(arr) != len(xs[0]):
            raise EdgeflowError(
                f"the {what}: x:{names[0]} has {len(xs[0])} samples but x:{name} has {len(arr)}: "
                "every input needs one row per sample")
    return xs


def as_labels(y):
    """Labels as one array, or a list of arrays for a model with several outputs (one per
    output, in output order); never stacked into one array."""
    return [np.asarray(v) for v in y] if isinstance(y, (list, tuple)) else np.asarray(y)


def labelled(data, what: str = "training data", model=None):
    """Labelled data for ``keras.Model.fit``: ``(x, y)`` arrays, or ``(dataset, None)``.

    ``data`` is ``(x, y)`` (arrays or array-likes; for a model with several inputs ``x`` is
    a list/tuple in input order or a dict by input name), a ``.npz`` path with ``x`` and
    ``y`` (several inputs: ``x:<input name>`` keys and ``y``), or a ``tf.data.Dataset`` of
    ``(x, y)`` (returned as it is, with ``None`` for y). ``what`` names the argument in
    error messages. With ``model``, arrays are checked before any work
    (:func:`check_labelled`: shapes, numbers, finite values, label range).

    Example:
        >>> x, y = labelled("train.npz")
    """
    from edgeflow._keras import tf

    if isinstance(data, (str, os.PathLike)):
        x, y = _load_labelled(Path(data), what)
    elif isinstance(data, tf.data.Dataset):
        return data, None
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        x = ({k: np.asarray(v) for k, v in x.items()} if isinstance(x, dict)
             else [np.asarray(v) for v in x] if isinstance(x, (list, tuple)) else np.asarray(x))
        y = as_labels(y)
    else:
        raise EdgeflowError(
            f"the {what} must be (x, y) arrays, a .npz file with x and y, or a tf.data.Dataset of "
            f"(x, y) batches, not {type(data).__name__}"
        )
    if model is not None:
        x = check_labelled(model, x, y, what)
    return x, y


def _load_labelled(path: Path, what: str):
    if path.suffix == ".npz" and path.exists():
        f = read_arrays(path)
        named = by_name(f, "x") if isinstance(f, dict) else {}
        if named:
            if "y" not in f:
                raise EdgeflowError(f"the {what} {str(path)!r} holds no labels: save them as 'y'")
            return named, f["y"]
    x, y = load_arrays(path)
    if y is None:
        raise EdgeflowError(
            f"the {what} {str(path)!r} holds no labels: save it with np.savez(path, x=x, y=y)"
        )
    return x, y


def check_labelled(model, x, y, what: str = "training data"):
    """Check labelled arrays against a Keras model before any training; returns ``x`` in the
    form ``fit`` takes (a list in input order for several inputs).

    Checks: the inputs as :func:`in_input_order` checks them (one array per model input, a
    dict taken by input name, sample shapes, one row per sample in every input), numbers
    only and no NaN or infinity in every input, then the labels as :func:`check_labels`
    checks them. Every line starts with "the ``what``".

    Raises:
        EdgeflowError: one line naming the input or output and what to do.
    """
    names = input_names(model)
    x = in_input_order(model, x, what)
    xs = x if isinstance(x, list) else [x]
    for name, arr in zip(names, xs, strict=True):
        check_values(arr, f"the {what}" + (f" for input {name!r}" if len(names) > 1 else ""))
    check_labels(model, y, len(xs[0]), what)
    return x


def check_labels(model, y, count: int, what: str = "training data") -> None:
    """Check the labels of ``count`` samples against a Keras model's outputs: one label array
    per output (a list in output order for several), numbers only, no NaN or infinity, one
    label per sample, and for an output of more than one unit either whole class indices in
    ``[0, units)`` (sparse labels) or one column per unit (one-hot labels).

    Raises:
        EdgeflowError: one line naming the labels ("y of the ``what``" for bad values, else
            "the ``what`` labels"; the output by name when there are several) and what to do.
    """
    ys = list(y) if isinstance(y, (list, tuple)) else [y]
    outputs = [tuple(t.shape[1:]) for t in model.outputs]
    if len(ys) != len(outputs):
        raise EdgeflowError(f"the model has {len(outputs)} output(s) but the {what} gives "
                            f"{len(ys)} label array(s)")
    for name, shape, labels in zip(model.output_names, outputs, ys, strict=True):
        labels = np.asarray(labels)
        several = len(outputs) > 1
        check_values(labels, f"y of the {what}" + (f" for output {name!r}" if several else ""))
        label = f"the {what} labels" + (f" of output {name!r}" if several else "")
        if len(labels) != count:
            raise EdgeflowError(f"the {what} has {count} samples but {len(labels)} labels: they "
                                "must match")
        width = shape[-1] if shape else 1
        sparse = labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1 and width != 1)
        if width and width > 1 and sparse and len(shape) == 1:
            if labels.size and (labels.min() < 0 or labels.max() >= width
                                or not np.all(labels == np.round(labels))):
                raise EdgeflowError(
                    f"{label} range from {labels.min():g} to {labels.max():g} but the output has "
                    f"{width} units: class labels must be whole numbers in [0, {width - 1}]"
                )
        elif width and len(shape) == 1 and labels.ndim == 2 and labels.shape[1] != width:
            raise EdgeflowError(f"{label} have {labels.shape[1]} columns but the output has "
                                f"{width} units: one-hot labels need one column per unit")


def load_image_dir(
    path: str | os.PathLike, input_shape: tuple[int, ...], *, value_range=(0.0, 1.0), limit=None
) -> np.ndarray:
    """Decode and resize every image in a folder to ``input_shape`` (H, W, C), scaled to ``value_range``."""
    from edgeflow._keras import tf

    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EdgeflowError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {path}")
    if len(input_shape) != 3:
        raise EdgeflowError(
            f"a folder of images needs a model with an (H, W, C) input, this one takes {input_shape}"
        )
    h, w, c = input_shape
    lo, hi = value_range
    images = []
    for file in files[:limit]:
        try:
            img = tf.io.decode_image(file.read_bytes(), channels=c, expand_animations=False)
        except Exception as err:
            raise EdgeflowError(f"cannot decode image {file}: {err}") from err
        img = tf.image.resize(tf.cast(img, tf.float32), (h, w)).numpy()
        images.append(lo + img / 255.0 * (hi - lo))
    return np.stack(images).astype(np.float32)


def resolve(data, input_shape: tuple[int, ...] | None = None, **image_kwargs):
    """Turn a path into arrays; pass arrays, datasets and iterables through.

    ``input_shape`` (without the batch axis) is needed only for image folders.
    """
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            if input_shape is None:
                raise EdgeflowError("an image folder needs the model's input shape")
            return load_image_dir(path, input_shape, **image_kwargs)
        return load_arrays(path)[0]
    return data


def samples(data, input_shape: tuple[int | None, ...], limit: int | None = None) -> Iterator[np.ndarray]:
    """Yield single samples shaped ``(1, *input_shape)`` as float32 from any supported source.

    ``data`` is an array of samples, a ``.npy``/``.npz`` path, an image folder, a
    ``tf.data.Dataset`` (batched or not, of ``x`` or ``(x, y)``) or any iterable of them.
    Raises an EdgeflowError naming both shapes when a sample does not fit the model input.
    """
    data = resolve(data, tuple(input_shape))
    if isinstance(data, np.ndarray):
        if _fits(data.shape, input_shape):  # a single sample without batch axis
            data = data[None]
        check_shape(data.shape[1:], input_shape)
        for row in data[:limit]:
            yield row[None].astype(np.float32)
        return
    count = 0
    for item in _iterate(data):
        if isinstance(item, (tuple, list)):
            item = item[0]
        arr = np.asarray(item.numpy() if hasattr(item, "numpy") else item)
        if _fits(arr.shape, input_shape):
            arr = arr[None]
        check_shape(arr.shape[1:], input_shape)
        for row in arr:
            if limit is not None and count >= limit:
                return
            count += 1
            yield row[None].astype(np.float32)


def _iterate(data) -> Iterable:
    if hasattr(data, "as_numpy_iterator"):
        return data.as_numpy_iterator()
    if isinstance(data, Iterable):
        return data
    raise EdgeflowError(
        f"unsupported data of type {type(data).__name__}: pass an array, a .npy/.npz file, an "
        "image folder, a tf.data.Dataset or an iterable of arrays"
    )


def _fits(got: tuple[int, ...], want: tuple[int | None, ...]) -> bool:
    return len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))


def check_shape(got: tuple[int, ...], want: tuple[int | None, ...]) -> None:
    """Raise an EdgeflowError naming both shapes when samples of shape ``got`` don't fit ``want``."""
    if not _fits(got, want):
        expect = "(N, " + ", ".join("?" if w is None else str(w) for w in want) + ")"
        raise EdgeflowError(
            f"data samples have shape {tuple(got)} but the model input is {expect}: "
            "reshape the data to the model's input"
        )


def take(data, input_shape, limit: int | None = None) -> np.ndarray:
    """All samples (up to ``limit``) as one float32 array ``(N, *input_shape)``."""
    rows = list(itertools.islice(samples(data, input_shape), limit))
    if not rows:
        raise EdgeflowError("the data holds no samples")
    return np.concatenate(rows)


def calibration(data, inputs: list[tuple[str, tuple]], limit: int | None = None,
                what: str = "calibration data") -> dict[str, np.ndarray]:
    """Calibration samples for every model input, checked before any work: ``{name: (N, ...)}``.

    ``inputs`` are the model's ``(name, shape without the batch axis)`` in its input order
    (``None`` for a free size). For one input, ``data`` is any source :func:`samples` reads.
    For several inputs it is one of:

    * a list or tuple of arrays in the model's input order;
    * a dict ``{input name: array}``;
    * a ``tf.data.Dataset`` (batched or not) of tuples or dicts of inputs, or of
      ``(inputs, labels)``;
    * a ``.npz`` file with one array per input, under the key ``x:<input name>`` (or the
      input name itself).

    Every input gets the same number of samples (at most ``limit``), float32.

    Raises:
        EdgeflowError: a missing or extra input, a sample shape that does not fit the model
            input, non-numeric data, NaN or infinite values, or no samples (one line naming
            the input and what to do).

    Example:
        >>> calibration({"patch": img, "features": feat}, [("patch", (8, 8, 1)), ("features", (3,))])
    """
    if len(inputs) == 1:
        name, shape = inputs[0]
        rows = list(itertools.islice(samples(data, shape), limit))
        if not rows:
            raise EdgeflowError(f"the {what} holds no samples")
        arrays = {name: np.concatenate(rows)}
    else:
        arrays = _several_inputs(data, inputs, what)
        for name, shape in inputs:
            arr = arrays[name]
            if _fits(arr.shape, shape):
                arr = arr[None]
            _check_input_shape(arr.shape[1:], shape, name, what)
            arrays[name] = arr[:limit]
        counts = {len(a) for a in arrays.values()}
        if len(counts) != 1:
            raise EdgeflowError(
                f"the {what} inputs hold different numbers of samples ("
                + ", ".join(f"{n}: {len(a)}" for n, a in arrays.items())
                + "): give every input the same samples"
            )
        if counts == {0}:
            raise EdgeflowError(f"the {what} holds no samples")
    for name, arr in arrays.items():
        check_values(arr, f"the {what}" + (f" for input {name!r}" if len(inputs) > 1 else ""))
        arrays[name] = arr.astype(np.float32)
    return arrays


def check_values(arr, what: str) -> None:
    """Raise an EdgeflowError unless ``arr`` is real numbers, all finite (no NaN, no inf).

    NaN and infinity make the TFLite calibrator and training produce garbage or crash
    natively, so they are refused before any work. ``what`` names the data in the message.
    """
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise EdgeflowError(
            f"{what} has dtype {arr.dtype}, not numbers: give int or float arrays"
        )
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            first = np.unravel_index(int(np.argmax(bad)), arr.shape)[0] if arr.ndim else 0
            raise EdgeflowError(
                f"{what} holds {int(bad.sum())} NaN or infinite value(s) (first in sample "
                f"{first}): remove or replace them before converting or training"
            )


def _several_inputs(data, inputs, what) -> dict[str, np.ndarray]:
    from edgeflow._keras import tf

    names = [n for n, _ in inputs]
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        loaded = read_arrays(path)
        if isinstance(loaded, np.ndarray):
            raise EdgeflowError(
                f"the model has {len(names)} inputs ({', '.join(names)}): save the {what} as a "
                ".npz with one array per input, np.savez(path, **{'x:NAME': array})"
            )
        data = {}
        for name in names:
            key = next((k for k in (f"x:{name}", name) if k in loaded), None)
            if key is None:
                raise EdgeflowError(
                    f"{path} has no array for input {name!r}: the model's inputs are "
                    + ", ".join(names) + "; store each under 'x:<input name>' (it has "
                    + ", ".join(sorted(loaded)) + ")"
                )
            data[name] = loaded[key]
    if isinstance(data, tf.data.Dataset):
        return _dataset_inputs(data, inputs, what)
    if isinstance(data, dict):
        missing = [n for n in names if n not in data]
        extra = [k for k in data if k not in names]
        if missing or extra:
            raise EdgeflowError(
                f"the {what} dict has keys {', '.join(map(str, data))} but the model's inputs are "
                + ", ".join(names) + ": key the arrays by input name"
            )
        return {n: np.asarray(data[n]) for n in names}
    if isinstance(data, (list, tuple)) and len(data) == len(names):
        return {n: np.asarray(a) for n, a in zip(names, data, strict=True)}
    raise EdgeflowError(
        f"the model has {len(names)} inputs ({', '.join(names)}): give the {what} as a list or "
        "tuple of arrays in that order, a dict by input name, a tf.data.Dataset of tuples, or a "
        ".npz file with 'x:<input name>' keys"
    )


def _dataset_inputs(dataset, inputs, what) -> dict[str, np.ndarray]:
    names = [n for n, _ in inputs]
    parts: dict[str, list] = {n: [] for n in names}
    for element in dataset.as_numpy_iterator():
        if isinstance(element, tuple) and len(element) == 2 and isinstance(element[0], (tuple, dict)):
            element = element[0]  # (inputs, labels)
        if isinstance(element, dict):
            element = [element.get(n) for n in names]
        if not isinstance(element, (tuple, list)) or len(element) != len(names) or any(
                e is None for e in element):
            raise EdgeflowError(
                f"the {what} dataset must yield one array per input ({', '.join(names)}) as a tuple "
                "or a dict by input name, optionally with labels: ((x1, x2), y)"
            )
        for (name, shape), arr in zip(inputs, element, strict=True):
            arr = np.asarray(arr)
            parts[name].append(arr[None] if _fits(arr.shape, shape) else arr)
    if not parts[names[0]]:
        raise EdgeflowError(f"the {what} holds no samples")
    for name, shape in inputs:
        for arr in parts[name]:
            _check_input_shape(arr.shape[1:], shape, name, what)
    return {n: np.concatenate(parts[n]) for n in names}


def _check_input_shape(got, want, name, what) -> None:
    if not _fits(tuple(got), tuple(want)):
        expect = "(N, " + ", ".join("?" if w is None else str(w) for w in want) + ")"
        raise EdgeflowError(
            f"the {what} for input {name!r} has samples of shape {tuple(got)} but the input is "
            f"{expect}: reshape the data to the model's input"
        )


def digits(test_fraction: float = 0.25, seed: int = 0):
    """The handwritten digits that ship with scikit-learn, as 8×8×1 floats in [0, 1].

    Returns ``(x_train, y_train), (x_test, y_test)``, split with a stratified shuffle.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:
        raise EdgeflowError("the digits data needs scikit-learn: pip install scikit-learn") from err
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return (x_tr, y_tr), (x_te, y_te)
