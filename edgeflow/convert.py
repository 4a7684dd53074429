"""Keras → ``.tflite`` bytes in every mode the TFLite converter offers, and C arrays for firmware."""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeflow import _progress
from edgeflow.errors import EdgeflowError, RuntimeCrash, closest, first_line

__all__ = ["INT8_RETRIES", "MODES", "Mode", "convert", "get_mode", "make_converter",
           "quantizer_misses", "to_c_array", "until_int8"]


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
    batch_size: int | None = 1,
    input_shape=None,
    unroll: bool = True,
    timeout: float = 3600,
    notes: list[str] | None = None,
) -> bytes:
    """Convert a Keras model to ``.tflite`` flatbuffer bytes, with static shapes for devices.

    The model is traced on fixed input shapes: batch ``batch_size`` (1, what boards run)
    and every other ``None`` dimension from ``input_shape`` or else from the calibration
    data. A variable batch makes the converter write shape arithmetic (SHAPE,
    STRIDED_SLICE, PACK) that the Edge TPU does not map and TFLM cannot resize, and keeps
    Keras LSTM/GRU from converting at all. GRU and SimpleRNN layers (which the converter
    would turn into a WHILE loop that TFLM cannot run and the calibrator can crash on) are
    unrolled over their fixed number of time steps in the converted copy; LSTM layers
    become the fused ``UNIDIRECTIONAL_SEQUENCE_LSTM``.

    The converter and its calibrator run in a child process: a native crash becomes an
    :class:`~edgeflow.errors.RuntimeCrash` naming the signal and, when known, the fix. The
    child is kept for the next conversions (it imports TensorFlow once; a crash or a
    timeout ends it; :mod:`edgeflow.runtime._child`).

    ``int8`` with calibration data promises a full-int8 file. TF 2.21's quantizer does not
    always give the same file for the same input (measured: an unrolled GRU's first SPLIT,
    before :func:`_static_rnns` removed it, left in float in 9 of 40 quantizations of one
    calibrated file; the outcome follows the process's memory layout). When the file comes
    back with a float op of a type that the same file computes in int8 elsewhere (so the
    quantizer can quantize it),
    it is converted again, at most :data:`INT8_RETRIES` more times, and the first full-int8
    file is kept; otherwise (also when a later conversion crashes, times out or fails) the
    first file is returned as it is, float ops and all. No
    extra conversion happens when the first file is full int8 or its float ops have no
    int8 counterpart (an op without an int8 kernel, like SIN).

    Args:
        model: a Keras 2 model, a ``.keras``/``.h5`` file or a SavedModel directory.
        mode: ``int8`` (default), ``int16x8``, ``float16``, ``dynamic`` or ``float32``.
        data: calibration samples for ``int8``/``int16x8`` (any source
            :func:`edgeflow.data.calibration` reads: an array, a ``.npy``/``.npz`` path, an
            image folder, a ``tf.data.Dataset``; for several inputs a list/tuple in input
            order, a dict by input name, or a ``.npz`` with ``x:<input name>`` keys). A
            QAT model carries its own ranges and needs none; other modes use ``data`` only
            for the shape of ``None`` dimensions. Checked before any work (shapes, numbers,
            finite).
        input_type, output_type: the model interface type; for ``int8`` one of ``int8``
            (default), ``uint8`` or ``float32``.
        num_samples: at most this many calibration samples are used.
        safe_mode: refuse files holding ``Lambda`` layers (Python bytecode).
        converter_options: extra attributes set on the ``TFLiteConverter`` as they are.
        batch_size: the fixed batch of the converted model; ``None`` keeps it variable
            (and other ``None`` dimensions too, unless given), for hosts only.
        input_shape: the full shape of each input with its batch, e.g. ``(1, 50, 8)``, or a
            list of shapes / a dict by input name for several inputs; fills ``None``
            dimensions.
        unroll: unroll GRU/SimpleRNN layers over their fixed time steps (with a fixed batch);
            ``False`` keeps their loop (a WHILE op, which TFLM cannot run).
        timeout: seconds before the converter's child process is killed.
        notes: a list that receives one line when the file was converted more than once
            (``int8: ...``, see above), for a report; nothing is added otherwise.

    Returns:
        The flatbuffer bytes. The input model is not modified.

    Raises:
        EdgeflowError: bad mode, data, shapes, or the converter refused the model.
        RuntimeCrash: the converter or its calibrator crashed (or ran past ``timeout``).

    Example:
        >>> tflite = convert(model, "int8", data=x_train[:200])
    """
    from edgeflow.runtime import _child

    mode = get_mode(mode)
    prep = _prepare(model, mode, data, input_type=input_type, output_type=output_type,
                    num_samples=num_samples, safe_mode=safe_mode, custom_objects=custom_objects,
                    batch_size=batch_size, input_shape=input_shape, unroll=unroll)
    with _child.Workdir("edgeflow-convert-", "converter") as work:
        saved = prep.saved_model or _export_signature(prep, work.path / "saved_model")
        request = {"command": "convert", "saved_model": str(saved),
                   "model_out": str(work.path / "model.tflite"), "log": str(work.path / "log.txt")}
        if prep.calibration is not None:
            np.savez(work.path / "calibration.npz", **prep.calibration)
            request["calibration"] = str(work.path / "calibration.npz")
        with open(work.path / "options.pickle", "wb") as f:
            pickle.dump({"mode": mode.name, "input_type": prep.input_type,
                         "output_type": prep.output_type, "qat": prep.qat,
                         "converter_options": converter_options or {}}, f)
        request["options"] = str(work.path / "options.pickle")

        def attempt() -> bytes:
            result, proc = work.run("edgeflow._convert_child", request, timeout, keep=True)
            if proc is None:
                raise RuntimeCrash(f"the TFLite converter did not finish within {timeout:g} s (killed)")
            if result is None:
                raise RuntimeCrash(_crash_message(prep, proc.returncode, work))
            if result["status"] != "ok":
                raise EdgeflowError(f"the TFLite converter failed ({mode.name}): "
                                    + _advice(result["message"]))
            return _io_in_model_order((work.path / "model.tflite").read_bytes(),
                                      [name for name, _ in prep.inputs])

        if mode.name == "int8" and prep.calibration is not None:  # full int8 promised
            tflite, said = until_int8(attempt)
            if notes is not None:
                notes.extend(said)
        else:
            tflite = attempt()
    from edgeflow.runtime.litert import made_here

    return made_here(tflite)  # LiteRT may run what edgeflow made in-process


#: More conversions at most when a promised full-int8 file comes back with float ops the
#: quantizer could have quantized (see :func:`convert`). The one such case measured, the
#: unrolled GRU's SPLIT (:func:`_static_rnns`; 1 to 6 conversions in 10 of
#: bench/bench_models.py's Keras 2 GRU(16), bench/bench_convert_repeat.py), is avoided
#: before conversion; this guards against others, at no cost when the file is full int8.
INT8_RETRIES = 2


def quantizer_misses(tflite) -> list[str]:
    """Float ops of a ``.tflite`` whose op type the same file also computes in int8.

    Such an op has an int8 kernel and the quantizer quantized it elsewhere in the graph, so
    its float copy is the quantizer's miss on this run, not a limit of the model (an op with
    no int8 kernel, like SIN, is float everywhere and is not listed).

    Returns:
        ``"#index OP"`` per such op, in graph order; empty for a full-int8 file.
    """
    from edgeflow.tflite import parse

    info = parse(tflite)
    floats = info.float_ops()
    int8_types = {op.name for op in info.ops if op.dtype == "int8"}
    return [f"#{op.index} {op.name}" for op in floats if op.name in int8_types]


def until_int8(attempt, retries: int = INT8_RETRIES) -> tuple[bytes, list[str]]:
    """Run ``attempt()`` (one int8 conversion, returning ``.tflite`` bytes) until its file
    is full int8, when the first file's float ops are :func:`quantizer_misses`.

    Returns:
        ``(tflite, notes)``: the first full-int8 file, or the first file when no retry gave
        one; ``notes`` holds one line when more than one conversion ran, else nothing.

    Raises what the first ``attempt()`` raises. A later one that raises
    :class:`~edgeflow.errors.EdgeflowError` (a converter crash, timeout or failure) ends
    the retries: the first file is kept and the note says so.
    """
    from edgeflow.quantize.verify import verify_int8

    first = attempt()
    missed = quantizer_misses(first)
    if not missed:
        return first, []
    for done in range(2, retries + 2):
        try:
            tflite = attempt()
        except EdgeflowError as err:  # RuntimeCrash too: the usable first file stands
            return first, [f"int8: conversion {done} failed ({first_line(err)}); kept the first "
                           f"file, which keeps float op(s) {', '.join(missed)}"]
        if verify_int8(tflite).ok:
            return tflite, [f"int8: converted {done} times: conversion 1 left {', '.join(missed)} "
                            f"in float (TFLite's quantizer varies between runs); conversion "
                            f"{done} is full int8"]
    return first, [f"int8: converted {retries + 1} times: {', '.join(missed)} stayed in float; "
                   "the first file is kept"]


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
    batch_size: int | None = 1,
    input_shape=None,
    unroll: bool = True,
):
    """The ``tf.lite.TFLiteConverter`` that :func:`convert` runs, configured but not run.

    For tools that drive the converter themselves in this process (the quantization
    debugger of ``edgeflow.quantize.layer_errors``). Arguments as for :func:`convert`.

    Example:
        >>> converter = make_converter(model, "int8", x_train[:200])
    """
    from edgeflow._keras import tf

    mode = get_mode(mode)
    prep = _prepare(model, mode, data, input_type=input_type, output_type=output_type,
                    num_samples=num_samples, safe_mode=safe_mode, custom_objects=custom_objects,
                    batch_size=batch_size, input_shape=input_shape, unroll=unroll)
    if prep.saved_model is not None:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(prep.saved_model))
    else:
        concrete = _signature(prep).get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], prep.keras_model)
    calibration = prep.calibration
    names = [name for name, _ in prep.inputs]
    representative = None
    if calibration is not None:
        def representative():
            for sample in _progress.bar(range(len(calibration[names[0]])), desc="calibrating",
                                        unit="sample"):
                yield [calibration[name][sample : sample + 1] for name in names]
    _configure(converter, mode.name, prep.input_type, prep.output_type, qat=prep.qat,
              representative=representative, options=converter_options)
    return converter


def _configure(converter, mode: str, input_type: str, output_type: str, *, qat: bool,
              representative=None, options: dict | None = None) -> None:
    """Set a ``TFLiteConverter`` up for ``mode`` (optimizations, op sets, interface types)."""
    from edgeflow._keras import tf

    mode = get_mode(mode)
    if mode.name != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode.name == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode.needs_data:
        if representative is not None:
            converter.representative_dataset = representative
        if mode.name == "int8":
            # A QAT model carries its ranges in fake-quant ops. TF 2.21's converter refuses
            # TFLITE_BUILTINS_INT8 without a representative dataset (it validates before it
            # looks at the graph), so QAT converts with the default op set; ops left in float
            # are found by edgeflow.quantize.verify_int8.
            if not (qat and representative is None):
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
        converter.inference_input_type = getattr(tf, input_type)
        converter.inference_output_type = getattr(tf, output_type)
    for key, value in (options or {}).items():
        setattr(converter, key, value)


@dataclass
class _Prepared:
    """A model ready for the converter: static input shapes, checked calibration data."""

    keras_model: object | None
    saved_model: Path | None
    inputs: list[tuple[str, tuple]]  # (name, full shape with batch) in the model's order
    calibration: dict | None
    qat: bool
    input_type: str
    output_type: str
    loops: list[str]  # RNN layers left as loops (a WHILE in the converted graph)


def _prepare(model, mode: Mode, data, *, input_type, output_type, num_samples, safe_mode,
             custom_objects, batch_size, input_shape, unroll) -> _Prepared:
    """Everything checked and decided before the converter starts (no converter work)."""
    from edgeflow.data import calibration
    from edgeflow.models import load_model
    from edgeflow.ranges import check

    check("num_samples", num_samples)  # 0 would silently calibrate nothing
    input_type = _io_type(mode, input_type, "input_type")
    output_type = _io_type(mode, output_type, "output_type")
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
        raise EdgeflowError(f"batch_size must be a whole number >= 1 or None, got {batch_size!r}")
    saved_model = _plain_saved_model(model)
    if saved_model is not None:
        keras_model, qat = None, False
        specs = _saved_model_inputs(saved_model)
    else:
        keras_model = load_model(model, safe_mode=safe_mode, custom_objects=custom_objects)
        qat = is_quantization_aware(keras_model)
        specs = [(_input_name(t, i), tuple(t.shape)) for i, t in enumerate(keras_model.inputs)]
    given = _given_shapes(input_shape, specs)
    specs = [(name, _merge(name, shape, given.get(name))) for name, shape in specs]
    calib = None
    wants_calibration = mode.needs_data and not (qat and data is None)
    if wants_calibration and data is None:
        raise EdgeflowError(
            f"{mode.name} conversion needs calibration data (--data): a .npy/.npz file, "
            "an image folder, or about 100-500 representative input samples"
        )
    if data is not None:
        calib = calibration(data, [(n, s[1:]) for n, s in specs],
                            num_samples if wants_calibration else 1)
        specs = [(n, (s[0], *calib[n].shape[1:])) for n, s in specs]
        if not wants_calibration:
            calib = None
    if batch_size is not None:
        specs = [(n, (int(batch_size), *s[1:])) for n, s in specs]
        for name, shape in specs:
            if None in shape[1:]:
                free = [i for i, d in enumerate(shape) if d is None]
                raise EdgeflowError(
                    f"input {name!r} has shape {_shape_text(shape)} with free dimension(s) "
                    f"{', '.join(map(str, free))}: give its size with --input-shape "
                    f"(input_shape=) like {_shape_text(tuple(d or 8 for d in shape), ',')}, or "
                    "calibration data (--data); a device needs fixed shapes"
                )
    loops: list[str] = []
    if keras_model is not None:
        keras_model, loops = _static_rnns(keras_model, specs) if batch_size is not None and unroll \
            else (keras_model, _loop_layers(keras_model))
    return _Prepared(keras_model, saved_model, specs, calib, qat, input_type, output_type, loops)


def _input_name(tensor, index: int) -> str:
    name = getattr(tensor, "name", "") or ""
    name = name.split(":")[0]
    return name if re.match(r"^[A-Za-z][A-Za-z0-9_.\-]*$", name) else f"input_{index}"


def _shape_text(shape, sep: str = ", ") -> str:
    return "(" + sep.join("?" if d is None else str(d) for d in shape) + ")"


def _given_shapes(input_shape, specs) -> dict:
    """``input_shape`` (one shape, a list in input order or a dict by name) by input name."""
    if input_shape is None:
        return {}
    names = [n for n, _ in specs]
    if isinstance(input_shape, dict):
        unknown = [k for k in input_shape if k not in names]
        if unknown:
            raise EdgeflowError(f"input_shape names {', '.join(unknown)} but the model's inputs "
                                f"are {', '.join(names)}")
        return {k: tuple(v) for k, v in input_shape.items()}
    shapes = list(input_shape)
    if shapes and all(isinstance(d, (int, type(None))) for d in shapes):
        shapes = [tuple(shapes)]
    if len(shapes) != len(names):
        raise EdgeflowError(f"input_shape gives {len(shapes)} shape(s) but the model has "
                            f"{len(names)} inputs ({', '.join(names)})")
    return {n: tuple(s) for n, s in zip(names, shapes, strict=True)}


def _merge(name: str, model_shape: tuple, given: tuple | None) -> tuple:
    if given is None:
        return tuple(model_shape)
    given = tuple(None if d is None or int(d) < 0 else int(d) for d in given)
    if len(given) != len(model_shape) or any(
        m is not None and g is not None and m != g for m, g in zip(model_shape, given, strict=True)
    ):
        raise EdgeflowError(
            f"input shape {_shape_text(given)} does not fit input {name!r} of shape "
            f"{_shape_text(model_shape)} (the batch first): give every dimension, in order"
        )
    if any(g is not None and g < 1 for g in given):
        raise EdgeflowError(f"input shape {_shape_text(given)} for {name!r} has a size below 1")
    return tuple(g if g is not None else m for m, g in zip(model_shape, given, strict=True))


_RECURRENT = ("GRU", "SimpleRNN", "LSTM")


def _loop_layers(model) -> list[str]:
    """Recurrent layers to unroll: each would become a WHILE loop, or a fused int8 LSTM
    that computes wrong results.

    The converter fuses a Keras LSTM into ``UNIDIRECTIONAL_SEQUENCE_LSTM``; in int8 that
    kernel agrees with Keras only for a single LSTM returning its last output (measured:
    fed by another LSTM, or returning sequences, its LiteRT output is off by 50-250
    output steps). GRU and SimpleRNN always become a WHILE loop.
    """
    rnn = [(layer, getattr(layer, "layer", layer)) for layer in model.layers]  # Bidirectional
    rnn = [(outer, inner) for outer, inner in rnn if type(inner).__name__ in _RECURRENT]
    names = []
    for outer, inner in rnn:
        cfg = inner.get_config()
        if cfg.get("unroll"):
            continue
        fused = (type(inner).__name__ == "LSTM" and outer is inner and len(rnn) == 1
                 and not cfg.get("return_sequences"))
        if not fused:
            names.append(outer.name)
    return names


def _static_rnns(model, specs):
    """The model rebuilt on fixed-shape inputs with GRU/SimpleRNN unrolled (same weights).

    Unrolled GRU/LSTM cells compute each gate with its own matmul (Keras
    ``implementation=1``) instead of one matmul whose result a SPLIT cuts into gates
    (``implementation=2``). At the first step the state is zero, so a gate that only
    multiplies the state (GRU's reset gate, LSTM's forget gate) is dead: with one SPLIT
    that SPLIT has an unused output, and TF 2.21's quantizer left it in float in some
    runs and not others (bench/bench_convert_repeat.py: bench_models' GRU(16) gave a float
    SPLIT in 1 to 6 conversions of 10; in the float runs the unused output is float, in the
    others int8, and the quantize pattern gives up on an op with a float result that feeds
    no QUANTIZE: tensorflow/compiler/mlir/lite/quantization/common/quantization_lib/
    quantization_utils.h, QuantizationPattern). Per-gate matmuls leave no SPLIT (the dead
    gate's matmul is removed): 30 of 30 conversions gave the same full-int8 file. Same
    MACs; the float results differ from Keras's by float rounding only.

    Returns ``(model, loops)``: the model itself when it has nothing to unroll, and the
    recurrent layers that still become a loop (none when unrolling worked).
    """
    from edgeflow._keras import keras

    loops = _loop_layers(model)
    if not loops:
        return model, []

    def clone(layer):
        if layer.name not in loops:
            return type(layer).from_config(layer.get_config())
        config = layer.get_config()
        nested = [config.get(key) for key in ("layer", "backward_layer")]
        for name, cfg in [(type(layer).__name__, config)] + [
                (n["class_name"], n["config"]) for n in nested if isinstance(n, dict)]:
            if name in _RECURRENT:
                cfg["unroll"] = True
                if "implementation" in cfg:  # one matmul per gate: no SPLIT (see above)
                    cfg["implementation"] = 1
        return type(layer).from_config(config)

    try:
        inputs = [keras.Input(batch_shape=shape, name=name, dtype=t.dtype)
                  for (name, shape), t in zip(specs, model.inputs, strict=True)]
        copy = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone)
        copy.set_weights(model.get_weights())
    except Exception:  # an odd model: convert it as it is; the loop may then fail or crash
        return model, loops
    return copy, []


def _signature(prep: _Prepared):
    """The model's inference as a ``tf.function`` on fixed ``TensorSpec``s named by input."""
    from edgeflow._keras import tf

    model = prep.keras_model
    specs = [tf.TensorSpec(shape, t.dtype, name=name)
             for (name, shape), t in zip(prep.inputs, model.inputs, strict=True)]

    @tf.function(input_signature=specs)
    def serve(*xs):
        outs = model(list(xs) if len(xs) > 1 else xs[0], training=False)
        return tuple(outs) if isinstance(outs, (list, tuple)) else outs

    return serve


def _export_signature(prep: _Prepared, path: Path) -> Path:
    """Save the traced inference function as a SavedModel the child converts.

    The SavedModel holds the signature and the model's variables only. Saving the Keras
    model object itself would also trace and save every layer's own call functions, which
    the converter never reads: for a QAT MobileNetV3Small (64x64) that is about 1,800
    functions, 77 s to save and 68 s more for the child to load them back, against 8 s
    and 15 s for the signature alone, with the same ``.tflite`` bytes (measured, 2 cores).
    A model holding resources that are not variables (a lookup table) cannot be saved
    that way and is saved with the model object.
    """
    from edgeflow._keras import tf

    try:
        serve = _signature(prep).get_concrete_function()
        module = tf.Module()
        module.weights = list(prep.keras_model.variables)
        try:
            tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
        except Exception:
            module = tf.Module()
            module.model = prep.keras_model
            tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
    except Exception as err:
        raise EdgeflowError(f"cannot trace the model on input shapes "
                            f"{', '.join(_shape_text(s) for _, s in prep.inputs)}: "
                            f"{first_line(err)}") from err
    return path


def _io_in_model_order(tflite: bytes, names: list[str]) -> bytes:
    """The flatbuffer with its subgraph inputs and outputs in the Keras model's order.

    The converter may order a model's inputs its own way (seen on QAT models: the second
    Keras input first), and its outputs too (seen on a model with outputs ``zz_cls``,
    ``aa_reg``: ``aa_reg`` first), while runtimes feed and read lists of arrays by position.
    The signature (``serving_default``) says which tensor is which: inputs keyed by input
    name, outputs keyed ``output_<i>`` with ``i`` the Keras output's position (the traced
    function returns a tuple). The input and output lists are rewritten in the model's
    order; nothing else changes.
    """
    import flatbuffers

    from edgeflow.tflite._schema import schema

    obj = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite, 0))
    if not obj.signatureDefs:
        return tflite
    sig = obj.signatureDefs[0]
    graph = obj.subgraphs[sig.subgraphIndex or 0]
    listed = {a: [int(i) for i in getattr(graph, a)] if getattr(graph, a) is not None else []
              for a in ("inputs", "outputs")}
    changed = False
    for attr, maps, wanted_names in (("inputs", sig.inputs, names),
                                     ("outputs", sig.outputs, [f"output_{i}" for i in range(len(listed["outputs"]))])):
        current = listed[attr]
        by_name = {(m.name.decode() if isinstance(m.name, bytes) else m.name): m.tensorIndex
                   for m in maps or []}
        if len(wanted_names) < 2 or set(by_name) != set(wanted_names) \
                or sorted(by_name.values()) != sorted(current):
            continue
        wanted = [by_name[n] for n in wanted_names]
        if current != wanted:
            setattr(graph, attr, np.array(wanted, dtype=np.int32))
            changed = True
    if not changed:
        return tflite
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _crash_message(prep: _Prepared, returncode: int, work) -> str:
    from edgeflow.runtime._child import signal_name

    log = (work.path / "log.txt")
    stage = log.read_text().splitlines()[-1] if log.exists() and log.read_text().strip() else ""
    where = {"convert": "while converting", "calibrate": "while calibrating"}.get(
        stage.split(" ")[0], "while starting")
    if stage.startswith("calibrate"):
        where += f" (sample {stage.split()[-1]})"
    text = f"the TFLite converter crashed ({signal_name(returncode)}) {where}"
    if prep.loops:
        return (text + f": WHILE loop from an RNN (layer {prep.loops[0]!r}): rebuild it with "
                "unroll=True (edgeflow unrolls it with a fixed batch and unroll=True)")
    tail = [ln.strip() for ln in work.captured().splitlines() if ln.strip()][-1:]
    return text + (f"; last converter output: {tail[0]}" if tail else ", cause unknown")


_FLEX_HINT = re.compile(r"(select tf ops|select_tf_ops|tf select|flex)", re.I)


def _advice(message: str) -> str:
    """The converter's message, with its SELECT_TF_OPS advice replaced by one for a device."""
    if not _FLEX_HINT.search(message):
        return message
    ops = sorted(set(re.findall(r"\btf\.([A-Z][A-Za-z0-9_]*)", message)))
    named = f" ({', '.join(ops)})" if ops else ""
    return (
        f"the model uses TensorFlow ops with no TFLite builtin kernel{named}; microcontrollers and "
        "the Edge TPU run builtin ops only (Select TF ops need the full TensorFlow runtime): "
        "replace those layers with builtin equivalents (e.g. unroll=True for RNNs, Reshape for "
        "tf.reshape tricks), or keep them out of the exported model"
    )


def _first_error(err: Exception) -> str:
    for line in str(err).splitlines():
        if "error:" in line.lower():
            return line.split("error:", 1)[-1].strip()
    return first_line(err)


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


def _saved_model_inputs(path: Path) -> list[tuple[str, tuple]]:
    from edgeflow._keras import tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    return [(name, tuple(spec.shape)) for name, spec in fn.structured_input_signature[1].items()]


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
