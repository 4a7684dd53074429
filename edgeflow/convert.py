"""Keras → ``.tflite`` bytes in every mode the TFLite converter offers, and C arrays for firmware."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeflow import _progress
from edgeflow.errors import EdgeflowError, closest, first_line

__all__ = ["MODES", "Mode", "convert", "make_converter", "to_c_array", "get_mode"]


@dataclass(frozen=True)
class Mode:
    """A conversion mode: how weights and activations are stored in the ``.tflite``."""

    name: str
    description: str
    needs_data: bool
    io_types: tuple[str, ...]  # accepted model input/output types; the first is the default


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("int8", "full integer: int8 weights and activations (MCUs, Edge TPU)", True,
             ("int8", "uint8", "float32")),
        Mode("int16x8", "int16 activations, int8 weights (more accurate, fewer kernels)", True,
             ("float32", "int16")),
        Mode("float16", "float16 weights, float32 compute", False, ("float32",)),
        Mode("dynamic", "dynamic range: int8 weights, float activations", False, ("float32",)),
        Mode("float32", "no quantization", False, ("float32",)),
    )
}


def get_mode(mode: str | Mode) -> Mode:
    """Return a Mode from its name (``int8``, ``int16x8``, ``float16``, ``dynamic``, ``float32``)."""
    if isinstance(mode, Mode):
        return mode
    if mode not in MODES:
        raise EdgeflowError(
            f"unknown conversion mode {mode!r}{closest(str(mode), MODES)}; valid modes are "
            + ", ".join(MODES)
        )
    return MODES[mode]


def convert(
    model,
    mode: str | Mode = "int8",
    data=None,
    *,
    input_type: str | None = None,
    output_type: str | None = None,
    num_samples: int = 200,
    safe_mode: bool = True,
    custom_objects: dict | None = None,
    converter_options: dict | None = None,
) -> bytes:
    """Convert a Keras model to ``.tflite`` flatbuffer bytes.

    Args:
        model: a Keras 2 model, a ``.keras``/``.h5`` file or a SavedModel directory.
        mode: ``int8`` (default), ``int16x8``, ``float16``, ``dynamic`` or ``float32``.
        data: calibration samples for ``int8``/``int16x8`` (an array, a ``.npy``/``.npz``
            path, an image folder, a ``tf.data.Dataset`` or an iterable). A model trained
            with quantization-aware training carries its own ranges and needs none.
        input_type, output_type: the model interface type; for ``int8`` one of ``int8``
            (default), ``uint8`` or ``float32``.
        num_samples: at most this many calibration samples are used.
        safe_mode: refuse files holding ``Lambda`` layers (Python bytecode).
        converter_options: extra attributes set on the ``TFLiteConverter`` as they are.

    Returns:
        The flatbuffer bytes. The input model is not modified.

    Example:
        >>> tflite = convert(model, "int8", data=x_train[:200])
    """
    converter = make_converter(
        model, mode, data, input_type=input_type, output_type=output_type,
        num_samples=num_samples, safe_mode=safe_mode, custom_objects=custom_objects,
        converter_options=converter_options,
    )
    mode = get_mode(mode)
    try:
        tflite = bytes(converter.convert())
    except Exception as err:
        raise EdgeflowError(f"the TFLite converter failed ({mode.name}): {_first_error(err)}") from err
    from edgeflow.runtime.litert import made_here

    return made_here(tflite)  # LiteRT may run what edgeflow made in-process


def make_converter(
    model,
    mode: str | Mode = "int8",
    data=None,
    *,
    input_type: str | None = None,
    output_type: str | None = None,
    num_samples: int = 200,
    safe_mode: bool = True,
    custom_objects: dict | None = None,
    converter_options: dict | None = None,
):
    """The ``tf.lite.TFLiteConverter`` that :func:`convert` runs, configured but not run.

    For tools that drive the converter themselves (the quantization debugger of
    ``edgeflow.quantize.layer_errors``). Arguments as for :func:`convert`.

    Example:
        >>> converter = make_converter(model, "int8", x_train[:200])
    """
    from edgeflow._keras import tf
    from edgeflow.models import load_model

    mode = get_mode(mode)
    input_type = _io_type(mode, input_type, "input_type")
    output_type = _io_type(mode, output_type, "output_type")

    saved_model = _plain_saved_model(model)
    if saved_model is not None:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        input_shape = _saved_model_input_shape(saved_model)
        qat = False
    else:
        keras_model = load_model(model, safe_mode=safe_mode, custom_objects=custom_objects)
        input_shape = _input_shape(keras_model)
        qat = is_quantization_aware(keras_model)
        converter = (_from_function(keras_model) if qat
                     else tf.lite.TFLiteConverter.from_keras_model(keras_model))

    if mode.name != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode.name == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode.needs_data:
        if data is None and not qat:
            raise EdgeflowError(
                f"{mode.name} conversion needs calibration data (--data): a .npy/.npz file, "
                "an image folder, or about 100-500 representative input samples"
            )
        if data is not None:
            converter.representative_dataset = _representative(data, input_shape, num_samples)
        if mode.name == "int8":
            # A QAT model carries its ranges in fake-quant ops. TF 2.21's converter refuses
            # TFLITE_BUILTINS_INT8 without a representative dataset (it validates before it
            # looks at the graph), so QAT converts with the default op set; ops left in float
            # are found by edgeflow.quantize.verify_int8.
            if not (qat and data is None):
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
        converter.inference_input_type = getattr(tf, input_type)
        converter.inference_output_type = getattr(tf, output_type)
    for key, value in (converter_options or {}).items():
        setattr(converter, key, value)
    return converter


def _from_function(keras_model):
    """A converter from the model's inference function, skipping the SavedModel export.

    ``from_keras_model`` first saves a SavedModel, which traces every layer's functions
    again; for a QAT model full of quantize wrappers that is most of the conversion time
    (MobileNetV3Small: about 40% of it).
    """
    from edgeflow._keras import tf

    spec = keras_model.inputs[0]
    fn = tf.function(lambda x: keras_model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec(spec.shape, spec.dtype))
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], keras_model)


def is_quantization_aware(model) -> bool:
    """True when the model holds TF-MOT quantize layers (it was prepared for QAT)."""
    def layers(m):
        for layer in m.layers:
            yield layer
            if hasattr(layer, "layers"):
                yield from layers(layer)

    return any(type(layer).__name__ in ("QuantizeLayer", "QuantizeWrapper", "QuantizeWrapperV2")
               for layer in layers(model))


def _io_type(mode: Mode, value: str | None, what: str) -> str:
    if value is None:
        return mode.io_types[0]
    if value not in mode.io_types:
        raise EdgeflowError(
            f"{what} {value!r} is not possible in {mode.name} mode; choose one of "
            + ", ".join(mode.io_types)
        )
    return value


def _input_shape(model) -> tuple:
    if len(model.inputs) != 1:
        raise EdgeflowError(
            f"the model has {len(model.inputs)} inputs; calibration supports single-input models"
        )
    return tuple(model.inputs[0].shape[1:])


def _plain_saved_model(model) -> Path | None:
    """A SavedModel directory that was not written by Keras (no keras_metadata.pb)."""
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.is_dir() and (path / "saved_model.pb").exists() and not (
            path / "keras_metadata.pb"
        ).exists():
            return path
        if path.is_dir() and not (path / "saved_model.pb").exists():
            raise EdgeflowError(f"{path} is a directory but not a SavedModel (no saved_model.pb)")
    return None


def _saved_model_input_shape(path: Path) -> tuple:
    from edgeflow._keras import tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    specs = list(fn.structured_input_signature[1].values())
    if len(specs) != 1:
        raise EdgeflowError(f"{path} has {len(specs)} inputs; calibration supports one")
    return tuple(specs[0].shape[1:])


def _representative(data, input_shape, num_samples):
    from edgeflow.data import samples

    # Validate shape eagerly so a wrong array fails before the converter starts.
    first = next(samples(data, input_shape, limit=1), None)
    if first is None:
        raise EdgeflowError("the calibration data holds no samples")

    def gen():
        for sample in _progress.bar(
            samples(data, input_shape, limit=num_samples),
            total=_count(data, num_samples),
            desc="calibrating",
            unit="sample",
        ):
            yield [sample]

    return gen


def _count(data, limit):
    n = len(data) if isinstance(data, np.ndarray) else None
    return min(n, limit) if n is not None else limit


def _first_error(err: Exception) -> str:
    for line in str(err).splitlines():
        if "error:" in line.lower():
            return line.split("error:", 1)[-1].strip()
    return first_line(err)


_C_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def to_c_array(tflite: bytes, name: str = "g_model", header_name: str | None = None) -> tuple[str, str]:
    """Return ``(header, source)`` C++ text holding the model as a 16-byte aligned array.

    Like ``xxd -i``, but aligned (TFLM reads the flatbuffer in place) and named:
    the header declares ``{name}`` and ``{name}_len`` and defines ``{NAME}_LEN``; the
    source includes ``header_name`` (default ``{name}.h``).

    Example:
        >>> h, cc = to_c_array(tflite, "g_digits_model")
    """
    if not _C_NAME.match(name):
        raise EdgeflowError(f"{name!r} is not a valid C identifier for the model array")
    guard = f"EDGEFLOW_{name.upper()}_H_"
    header = (
        f"// Generated by edgeflow: {len(tflite)} bytes of TFLite flatbuffer.\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"#define {name.upper()}_LEN {len(tflite)}u\n\n"
        f"extern const unsigned char {name}[];\n"
        f"extern const unsigned int {name}_len;\n\n"
        f"#endif  // {guard}\n"
    )
    rows = []
    for i in range(0, len(tflite), 12):
        rows.append("  " + ", ".join(f"0x{b:02x}" for b in tflite[i : i + 12]) + ",")
    source = (
        f'#include "{header_name or name + ".h"}"\n\n'
        f"alignas(16) const unsigned char {name}[] = {{\n" + "\n".join(rows) + "\n};\n"
        f"const unsigned int {name}_len = {len(tflite)};\n"
    )
    return header, source
