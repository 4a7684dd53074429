"""A ready firmware project for a microcontroller: model array, exact op resolver, arena, main loop.

``generate_mcu_project(model, board, out_dir)`` writes, atomically (all or nothing), into a
new or empty folder (with ``update``, into a folder it generated before: its own files are
replaced, every other file is kept; see :func:`edgeflow._io.output_dir`):

* Arduino boards (:data:`BOARDS` ``kind="arduino"``): a sketch folder ``<dir>/<dir>.ino``
  with the files beside it, as the Arduino IDE / ``arduino-cli`` expect;
* every other board: a PlatformIO project (``platformio.ini``, ``src/``, ``include/``).

The files: ``model_data.h/.cc`` (the model as a 16-byte aligned C array,
:func:`edgeflow.convert.to_c_array`), ``op_resolver.h`` (a function that registers exactly
the operators the model uses on a ``tflite::MicroMutableOpResolver<N>``, method names from
TFLM's ``micro_mutable_op_resolver.h``; not the all-ops resolver, so unused kernels stay out
of flash), ``edgeflow_config.h`` (arena size, input/output facts) and the main program,
which runs one inference per second and prints the result and the time in microseconds.

Arena size: ``ceil16(arena_bytes * (1 + margin) + 1024)``, where ``arena_bytes`` is the
minimal tensor arena ``edgeflow.devices.check`` measured with tflite-micro on this host
(or its estimate where TFLM cannot run the model). The default margin, 25 % plus 1 KiB,
covers what the host measurement does not see: the optimized kernels on the board
(CMSIS-NN, ESP-NN) request scratch buffers the host's reference kernels do not, and
allocation alignment differs; the host's 64-bit bookkeeping structs, larger than on a
32-bit MCU, only err on the safe side. ``AllocateTensors`` failing on the board means the
margin was too small: raise ``EDGEFLOW_ARENA_SIZE``; the program prints the arena it used.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeflow.errors import EdgeflowError, closest

DEFAULT_MARGIN = 0.25
MARGIN_FIXED_BYTES = 1024
#: The command-line options behind ``update`` and ``ignore_check`` (named in error lines).
UPDATE_FLAG = "--update"
IGNORE_CHECK_FLAG = "--ignore-check"
MODEL_ARRAY = "g_model"

#: edgeflow's own DECODE kernel (lookup tables only; ``edgeflow/_data/firmware/edgeflow_decode.cc``),
#: registered for the custom operator TFLM_DECODE in place of TFLM's ``AddDecode()``.
DECODE_CALL = 'AddCustom("TFLM_DECODE", edgeflow_decode::Register())'
#: Resolver calls whose kernel edgeflow ships (its C++ sources beside the program), with those files.
OWN_KERNELS: dict[str, tuple[str, ...]] = {DECODE_CALL: ("edgeflow_decode.h", "edgeflow_decode.cc")}

# TFLite builtin operator -> MicroMutableOpResolver method (tflite-micro,
# tensorflow/lite/micro/micro_mutable_op_resolver.h), or a whole call with its arguments
# (:func:`cxx_call`). Custom operators are keyed by their custom name.
RESOLVER_METHODS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin", "ASSIGN_VARIABLE": "AddAssignVariable",
    "TFLM_DECODE": DECODE_CALL,  # custom: table-compressed weights (edgeflow.tflite.lut)
    "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce", "CAST": "AddCast",
    "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "ELU": "AddElu", "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "EQUAL": "AddEqual",
    "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather", "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D", "MIRROR_PAD": "AddMirrorPad",
    "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MUL": "AddMul", "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2",
    "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu",
    "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound", "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape",
    "SIN": "AddSin", "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQUEEZE": "AddSqueeze", "SQRT": "AddSqrt",
    "SQUARE": "AddSquare", "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf",
    "TANH": "AddTanh", "TRANSPOSE_CONV": "AddTransposeConv", "TRANSPOSE": "AddTranspose",
    "UNPACK": "AddUnpack", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
    # custom operators
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
}


@dataclass(frozen=True)
class Board:
    """How a board's project is built: an Arduino sketch or a PlatformIO environment.

    ``library_header`` is the TFLM Arduino library's umbrella header (included first);
    ``lib_deps`` are PlatformIO library specs. ``verified`` says whether the identifiers
    were checked against the vendor's board list (see :data:`BOARDS`).
    """

    kind: str  # "arduino" or "platformio"
    fqbn: str = ""  # Arduino fully qualified board name
    platform: str = ""  # PlatformIO platform
    pio_board: str = ""  # PlatformIO board id
    framework: str = "arduino"
    library_header: str = "TensorFlowLite.h"
    lib_deps: tuple[str, ...] = ()
    note: str = ""


_TFLM_ARDUINO = "https://github.com/tensorflow/tflite-micro-arduino-examples"

# Board build data (a data table; add a board by adding a row). Sources: Arduino boards.txt
# of ArduinoCore-mbed (FQBNs), PlatformIO board ids from the platform-ststm32,
# platform-espressif32 and platform-raspberrypi board lists.
BOARDS: dict[str, Board] = {
    "arduino-nano-33-ble": Board("arduino", fqbn="arduino:mbed_nano:nano33ble",
                                 note=f"install the TFLM Arduino library: {_TFLM_ARDUINO}"),
    "arduino-portenta-h7": Board("arduino", fqbn="arduino:mbed_portenta:envie_m7",
                                 note=f"install the TFLM Arduino library: {_TFLM_ARDUINO}"),
    "stm32f746g-disco": Board("platformio", platform="ststm32", pio_board="disco_f746ng",
                              lib_deps=(_TFLM_ARDUINO,)),
    "nucleo-h743zi": Board("platformio", platform="ststm32", pio_board="nucleo_h743zi",
                           lib_deps=(_TFLM_ARDUINO,)),
    "esp32-s3-devkitc-1": Board("platformio", platform="espressif32", pio_board="esp32-s3-devkitc-1",
                                library_header="TensorFlowLite_ESP32.h",
                                lib_deps=("tanakamasayuki/TensorFlowLite_ESP32",),
                                note="ESP-NN kernels come with the ESP32 TFLM port"),
    "raspberry-pi-pico": Board("platformio", platform="raspberrypi", pio_board="pico",
                               lib_deps=(_TFLM_ARDUINO,)),
    "sparkfun-edge": Board("platformio", platform="https://github.com/nigelb/platform-apollo3blue.git",
                           pio_board="SparkFun_Edge", lib_deps=(_TFLM_ARDUINO,),
                           note="community PlatformIO platform for Apollo3 (not verified here)"),
}


@dataclass
class MCUProject:
    """What :func:`generate_mcu_project` wrote (or would write, in a dry run)."""

    board: str
    kind: str
    out_dir: str
    files: list[str]
    ops: list[str]
    resolver_calls: list[str]
    arena_measured_bytes: int | None
    arena_source: str
    margin: float
    arena_bytes: int
    model_bytes: int
    dry_run: bool
    steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def arena_with_margin(measured: int, margin: float = DEFAULT_MARGIN) -> int:
    """``ceil16(measured * (1 + margin) + 1024)``: the arena the firmware allocates.

    Example:
        >>> arena_with_margin(10000)
        13536
    """
    if margin < 0:
        raise EdgeflowError(f"arena margin must be >= 0 (got {margin})")
    raw = measured * (1.0 + margin) + MARGIN_FIXED_BYTES
    return int(math.ceil(raw / 16.0) * 16)


def cxx_call(method: str) -> str:
    """The C++ call on the resolver for an entry of :data:`RESOLVER_METHODS`: ``AddConv2D()``,
    or the entry itself when it carries its arguments (``AddCustom(...)``)."""
    return method if method.endswith(")") else method + "()"


def own_kernel_sources(calls) -> dict[str, str]:
    """The kernel sources edgeflow ships that ``calls`` need: ``{file name: C++ text}``
    (from ``edgeflow/_data/firmware/``); empty when the model needs none."""
    from importlib.resources import files

    folder = files("edgeflow").joinpath("_data/firmware")
    return {name: folder.joinpath(name).read_text("utf-8") for c in calls for name in OWN_KERNELS.get(c, ())}


def resolver_calls(op_names) -> list[str]:
    """The resolver method for each distinct operator, in first-use order.

    Raises:
        EdgeflowError: an operator TFLM has no kernel for (with the closest known name).
    """
    calls: list[str] = []
    for name in op_names:
        if name not in RESOLVER_METHODS:
            raise EdgeflowError(f"operator {name} has no TFLM kernel (MicroMutableOpResolver has no Add method for it)"
                                f"{closest(name, RESOLVER_METHODS)}; it cannot run on a microcontroller")
        method = RESOLVER_METHODS[name]
        if method not in calls:
            calls.append(method)
    return calls


def generate_mcu_project(
    model,
    board: str,
    out_dir: str | Path,
    *,
    margin: float = DEFAULT_MARGIN,
    arena_bytes: int | None = None,
    dry_run: bool = False,
    update: bool = False,
    ignore_check: bool = False,
    log: Callable[[str], None] | None = None,
) -> MCUProject:
    """Generate a firmware project that runs ``model`` on ``board`` with TFLM.

    Args:
        model: ``.tflite`` path or bytes.
        board: a TFLM device profile name (``edgeflow devices``) listed in :data:`BOARDS`.
        out_dir: the project folder: new or empty, or (with ``update``) generated by edgeflow
            before; a folder edgeflow did not create is never written into.
        margin: arena margin as a fraction of the measured arena (plus 1 KiB), see module doc.
        arena_bytes: use this measured arena instead of running ``check`` (e.g. from a report).
        dry_run: print every step; measure and write nothing.
        update: replace the files of a project edgeflow generated in ``out_dir`` before
            (``--update``; every other file there is kept).
        ignore_check: write the project even when the model does not fit or fails its
            check on the board (``--ignore-check``); the check's problems still go into
            ``edgeflow_figures.json``.
        log: called with one line per step.

    Returns:
        :class:`MCUProject`. Side effect: writes ``out_dir`` (unless ``dry_run``).

    Without ``arena_bytes`` the model is checked on the board first (with its firmware
    built and run under QEMU when arm-none-eabi-gcc and qemu-system-arm are installed); the
    check's figures and their sources go into ``edgeflow_figures.json`` in the project.

    Raises:
        EdgeflowError: before any work, for an unknown board or an ``out_dir`` that may not
            be written (:func:`edgeflow._io.check_dir`).
        CheckFailed: the model does not fit or fails its check on the board and
            ``ignore_check`` is False (exit status 1).

    Example:
        >>> p = generate_mcu_project("digits_int8.tflite", "arduino-nano-33-ble", "fw/digits")
        >>> p.resolver_calls, p.arena_bytes
    """
    from edgeflow import _io
    from edgeflow import tflite as tfl
    from edgeflow.convert import to_c_array
    from edgeflow.devices import get_device
    from edgeflow.report import arena_name

    device = get_device(board)
    if device.runtime != "tflm":
        raise EdgeflowError(f"{board} runs {device.runtime}, not TensorFlow Lite Micro: use "
                            f"'edgeflow deploy {'coral' if device.runtime == 'edgetpu' else 'rpi'}' for it")
    if board not in BOARDS:
        raise EdgeflowError(f"no firmware template for {board}{closest(board, BOARDS)}; boards with one: "
                            + ", ".join(BOARDS))
    spec = BOARDS[board]
    if not dry_run:
        _io.check_dir(out_dir, force=update, flag=UPDATE_FLAG)
    data = tfl.read_bytes(model)
    data, slimmed = tfl.slim(data, tflm_only=True)  # names, metadata, bias scales, zero points: TFLM reads none
    info = tfl.parse(data)
    ops = info.ops_used()  # every subgraph's; a custom operator's name is its custom code
    calls = resolver_calls(ops)
    out_dir = Path(out_dir)
    steps: list[str] = []
    figures: dict = {}

    def step(msg: str) -> None:
        line = f"[{len(steps) + 1}] {msg}"
        steps.append(line)
        if log:
            log(line)

    step(f"model: {len(data):,} bytes (slim; {slimmed.size_before:,} as given), {len(info.ops)} operators "
         f"of {len(ops)} kinds: {', '.join(ops)}")
    step(f"op resolver: MicroMutableOpResolver<{len(calls)}> with {', '.join(cxx_call(c) for c in calls)}")
    if arena_bytes is not None:
        measured, source = int(arena_bytes), "given"
        step(f"arena: {measured:,} bytes as given (--arena-bytes)")
    elif dry_run:
        measured, source = None, "not measured (dry run)"
        step(f"arena: would measure the minimal TFLM arena with edgeflow.devices.check(model, devices=[{board!r}]) "
             f"and add a {margin:.0%} + {MARGIN_FIXED_BYTES} B margin")
    else:
        measured, source, figures = _checked_arena(data, board, ignore_check)
        step(f"{source}: {measured:,} bytes + {margin:.0%} + {MARGIN_FIXED_BYTES} B margin")
    arena = arena_with_margin(measured, margin) if measured is not None else 0
    if measured is not None:
        step(f"{arena_name('configured')}: {arena:,} bytes")

    header, source_cc = to_c_array(data, MODEL_ARRAY, header_name="model_data.h")
    sketch = Path(os.path.abspath(out_dir)).name  # "-o ." names the sketch after the folder
    files = _render(spec, board, device, info, calls, arena, measured, source, margin, header, source_cc, sketch)
    if figures:
        import json

        files["edgeflow_figures.json"] = json.dumps(figures, indent=2) + "\n"
    if spec.kind == "arduino":
        step(f"write an Arduino sketch {out_dir}/{sketch}.ino for {spec.fqbn} "
             f"(build: arduino-cli compile --fqbn {spec.fqbn} {out_dir})")
    else:
        step(f"write a PlatformIO project in {out_dir} (env {spec.pio_board}; build: pio run -d {out_dir})")
    for rel in files:
        step(f"  {rel}")
    if not dry_run:
        with _io.output_dir(out_dir, force=update, flag=UPDATE_FLAG) as tmp:
            for rel, text in files.items():
                path = tmp / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
        step(f"wrote {len(files)} files to {out_dir}")
    return MCUProject(board=board, kind=spec.kind, out_dir=str(out_dir), files=sorted(files), ops=ops,
                      resolver_calls=calls, arena_measured_bytes=measured, arena_source=source, margin=margin,
                      arena_bytes=arena, model_bytes=len(data), dry_run=dry_run, steps=steps)


class CheckFailed(EdgeflowError):
    """``deploy mcu`` refuses a model whose check does not pass on the board (exit status 1)."""

    exit_code = 1


def _checked_arena(data: bytes, board: str, ignore_check: bool) -> tuple[int, str, dict]:
    """The arena to configure, its name (``report.ARENA_FIGURES``) and the check's figures.

    Runs ``edgeflow.devices.check`` on the board, with its firmware built and emulated when
    the toolchain is installed (the arena is then the target's own). A model that does not
    fit or has a problem is refused unless ``ignore_check``; an arena is never taken from a failed
    measurement: then it is the estimate, named so.

    Raises:
        CheckFailed: the check fails and ``ignore_check`` is False (exit status 1).
        EdgeflowError: the check gave no arena size.
    """
    from edgeflow import firmware
    from edgeflow.devices import check
    from edgeflow.report import device_arena_name

    res = check(data, devices=[board], firmware=firmware.available()).results[0]
    if not res.fits and not ignore_check:
        why = (res.problems or [res.verdict])[0]
        raise CheckFailed(f"{board}: the model fails its check ({why}); fix the model, or pass {IGNORE_CHECK_FLAG} "
                          "to write the project anyway")
    if not res.arena_bytes:
        raise EdgeflowError(f"check gave no arena size for {board}; pass --arena-bytes N")
    figures = {"device": board, "verdict": res.verdict, "fits": res.fits, "arena_figure": device_arena_name(res),
               "figures": res.figures, "problems": res.problems}
    return int(res.arena_bytes), device_arena_name(res), figures


# -- rendering -----------------------------------------------------------------------
def _c_dtype(dtype: str) -> str:
    return {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t",
            "float32": "float"}.get(dtype, "")


def _tensor_facts(info, which: str):
    import numpy as np

    items = list(getattr(info, which))
    t = items[0] if not isinstance(items[0], int) else info.tensors[items[0]]
    dtype = np.dtype(t.dtype).name
    shape = [int(d) for d in t.shape]
    scale = float(t.scale[0]) if t.scale else 0.0
    zp = int(t.zero_point[0]) if t.zero_point else 0
    return dtype, shape, scale, zp


def _render(spec: Board, board: str, device, info, calls, arena, measured, source, margin,
            model_h: str, model_cc: str, project: str) -> dict[str, str]:
    from edgeflow.report import arena_name

    in_dt, in_shape, in_scale, in_zp = _tensor_facts(info, "inputs")
    out_dt, out_shape, out_scale, out_zp = _tensor_facts(info, "outputs")
    for what, dt in (("input", in_dt), ("output", out_dt)):
        if not _c_dtype(dt):
            raise EdgeflowError(f"the model's {what} type {dt} is not supported by the generated main loop")
    n_out = 1
    for d in out_shape:
        n_out *= d
    config = f"""// Generated by edgeflow for {board} ({device.display_name}). Edit EDGEFLOW_ARENA_SIZE if
// AllocateTensors() fails on the board: the program prints the arena it actually used.
#ifndef EDGEFLOW_CONFIG_H_
#define EDGEFLOW_CONFIG_H_

// {arena_name('configured')} = ceil16(measured * (1 + {margin:g}) + {MARGIN_FIXED_BYTES}).
// measured: {measured if measured is not None else 'n/a'} bytes ({source}). The margin covers
// scratch buffers of the board's optimized kernels ({device.kernels}) that the host's
// reference kernels do not request.
#define EDGEFLOW_ARENA_SIZE {arena}
#define EDGEFLOW_ARENA_MEASURED {measured if measured is not None else 0}

// Model input 0: {in_dt} {in_shape}, scale {in_scale!r}, zero point {in_zp}
#define EDGEFLOW_INPUT_TYPE {_c_dtype(in_dt)}
#define EDGEFLOW_INPUT_SCALE {in_scale!r}f
#define EDGEFLOW_INPUT_ZERO_POINT ({in_zp})
// Model output 0: {out_dt} {out_shape}, scale {out_scale!r}, zero point {out_zp}
#define EDGEFLOW_OUTPUT_TYPE {_c_dtype(out_dt)}
#define EDGEFLOW_OUTPUT_SIZE {n_out}
#define EDGEFLOW_OUTPUT_SCALE {out_scale!r}f
#define EDGEFLOW_OUTPUT_ZERO_POINT ({out_zp})

#endif  // EDGEFLOW_CONFIG_H_
"""
    kernels = own_kernel_sources(calls)
    resolver = "\n".join(
        [
            "// Generated by edgeflow: registers exactly the operators the model uses, so the",
            "// linker keeps only their kernels (the all-ops resolver would pull in every kernel).",
            "#ifndef EDGEFLOW_OP_RESOLVER_H_",
            "#define EDGEFLOW_OP_RESOLVER_H_",
            "",
            '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
            *[f'#include "{name}"' for name in kernels if name.endswith(".h")],
            "",
            f"constexpr unsigned int kEdgeflowOpCount = {len(calls)};",
            "using EdgeflowOpResolver = tflite::MicroMutableOpResolver<kEdgeflowOpCount>;",
            "",
            "// Returns kTfLiteOk when every operator was registered.",
            "inline TfLiteStatus EdgeflowRegisterOps(EdgeflowOpResolver& resolver) {",
            *[f"  if (resolver.{cxx_call(c)} != kTfLiteOk) return kTfLiteError;" for c in calls],
            "  return kTfLiteOk;",
            "}",
            "",
            "#endif  // EDGEFLOW_OP_RESOLVER_H_",
            "",
        ]
    )
    main = _main_program(spec)
    readme = _readme(spec, board, device, calls, arena, measured, margin, project)
    if spec.kind == "arduino":
        return {
            f"{project}.ino": main,
            "model_data.h": model_h,
            "model_data.cc": model_cc,
            "edgeflow_config.h": config,
            "op_resolver.h": resolver,
            "README.md": readme,
            **kernels,
        }
    ini = "\n".join(
        [
            "; Generated by edgeflow. Build: pio run; flash: pio run -t upload; output: pio device monitor",
            f"[env:{spec.pio_board.lower()}]",
            f"platform = {spec.platform}",
            f"board = {spec.pio_board}",
            f"framework = {spec.framework}",
            "monitor_speed = 115200",
            "build_flags = -O2",
            "lib_deps =",
            *[f"    {d}" for d in spec.lib_deps],
            "",
        ]
    )
    return {
        "platformio.ini": ini,
        "src/main.cpp": main,
        "src/model_data.cc": model_cc,
        "include/model_data.h": model_h,
        "include/edgeflow_config.h": config,
        "include/op_resolver.h": resolver,
        "README.md": readme,
        **{("include/" if name.endswith(".h") else "src/") + name: text for name, text in kernels.items()},
    }


def _main_program(spec: Board) -> str:
    arduino_h = "" if spec.kind == "arduino" else "#include <Arduino.h>\n"
    return f"""// Generated by edgeflow: runs the model once per second with TensorFlow Lite Micro and
// prints the output and the inference time. Replace fill_input() with your sensor data.
{arduino_h}#include <{spec.library_header}>

#include "edgeflow_config.h"
#include "model_data.h"
#include "op_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {{
alignas(16) uint8_t tensor_arena[EDGEFLOW_ARENA_SIZE];
EdgeflowOpResolver resolver;
tflite::MicroInterpreter* interpreter = nullptr;
bool ready = false;

// The input for this demo: every element at the zero point, i.e. the real value 0.0.
void fill_input(TfLiteTensor* input) {{
  EDGEFLOW_INPUT_TYPE* data = reinterpret_cast<EDGEFLOW_INPUT_TYPE*>(input->data.raw);
  const size_t n = input->bytes / sizeof(EDGEFLOW_INPUT_TYPE);
  for (size_t i = 0; i < n; ++i) data[i] = (EDGEFLOW_INPUT_TYPE)EDGEFLOW_INPUT_ZERO_POINT;
}}
}}  // namespace

void setup() {{
  Serial.begin(115200);
  while (!Serial && millis() < 3000) {{
  }}
  const tflite::Model* model = tflite::GetModel({MODEL_ARRAY});
  if (model->version() != TFLITE_SCHEMA_VERSION) {{
    Serial.println("model schema version does not match this TFLM library");
    return;
  }}
  if (EdgeflowRegisterOps(resolver) != kTfLiteOk) {{
    Serial.println("registering the model's operators failed");
    return;
  }}
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena, EDGEFLOW_ARENA_SIZE);
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) {{
    Serial.println("AllocateTensors failed: raise EDGEFLOW_ARENA_SIZE in edgeflow_config.h");
    return;
  }}
  Serial.print("arena used: ");
  Serial.print((unsigned long)interpreter->arena_used_bytes());
  Serial.print(" of ");
  Serial.println((unsigned long)EDGEFLOW_ARENA_SIZE);
  ready = true;
}}

void loop() {{
  if (!ready) {{
    delay(1000);
    return;
  }}
  fill_input(interpreter->input(0));
  const unsigned long t0 = micros();
  const TfLiteStatus status = interpreter->Invoke();
  const unsigned long dt = micros() - t0;
  if (status != kTfLiteOk) {{
    Serial.println("Invoke failed");
    delay(1000);
    return;
  }}
  const TfLiteTensor* output = interpreter->output(0);
  const EDGEFLOW_OUTPUT_TYPE* y = reinterpret_cast<const EDGEFLOW_OUTPUT_TYPE*>(output->data.raw);
  int best = 0;
  Serial.print("output:");
  for (int i = 0; i < EDGEFLOW_OUTPUT_SIZE; ++i) {{
    const float value = EDGEFLOW_OUTPUT_SCALE > 0.0f
        ? EDGEFLOW_OUTPUT_SCALE * ((float)y[i] - EDGEFLOW_OUTPUT_ZERO_POINT) : (float)y[i];
    Serial.print(' ');
    Serial.print(value, 4);
    if (y[i] > y[best]) best = i;
  }}
  Serial.println();
  Serial.print("top-1: ");
  Serial.print(best);
  Serial.print("  inference: ");
  Serial.print(dt);
  Serial.println(" us");
  delay(1000);
}}
"""


def _readme(spec: Board, board: str, device, calls, arena, measured, margin, project) -> str:
    if spec.kind == "arduino":
        build = (f"    arduino-cli compile --fqbn {spec.fqbn} .\n"
                 f"    arduino-cli upload -p PORT --fqbn {spec.fqbn} .\n"
                 f"    arduino-cli monitor -p PORT -c baudrate=115200\n")
    else:
        build = "    pio run\n    pio run -t upload\n    pio device monitor\n"
    return (
        f"# {project}: generated by edgeflow for {device.display_name} ({board})\n\n"
        f"Runs the model with TensorFlow Lite Micro once per second and prints the output and\n"
        f"the inference time.\n\n"
        + (f"{spec.note}.\n\n" if spec.note else "")
        + f"Build, flash and watch the serial output:\n\n{build}\n"
        f"- Operators registered ({len(calls)}): {', '.join(calls)}\n"
        f"- Tensor arena: {arena} bytes = ceil16({measured} x (1 + {margin:g}) + {MARGIN_FIXED_BYTES}),\n"
        f"  from the minimal arena tflite-micro needed on the host. If `AllocateTensors failed`\n"
        f"  is printed, raise `EDGEFLOW_ARENA_SIZE` in `edgeflow_config.h`.\n"
    )
