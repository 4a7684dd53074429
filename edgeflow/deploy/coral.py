"""Coral Edge TPU: a pre-check before compiling, the compiler run and its log, Dev Board deploy.

The pre-check applies the model requirements Coral documents ("TensorFlow models on the
Edge TPU", coral.ai/docs/edgetpu/models-intro):

* every tensor the TPU computes is 8-bit quantized (int8/uint8; int32 only for biases);
* tensor sizes are constant at compile time (no dynamic dimensions);
* tensors have at most 3 dimensions larger than 1, the innermost ones;
* only the operations in the ``edgetpu`` operator list of the device profiles (Coral's
  table, shared with ``edgeflow check``), within their documented limitations;
* the compiler maps ONE contiguous part of the graph: the first operation it cannot map
  (after any leading input conversions) goes to the CPU together with every operation
  after it, supported or not ("More than one subgraph is not supported" in its log).

Then :func:`compile_model` runs ``edgetpu_compiler`` when it is installed and
:func:`parse_compiler_output` reads what it printed and its ``.log`` file (the formats
shown in Coral's compiler docs and issue tracker): operations mapped to the Edge TPU vs
the CPU, on-chip memory used for caching parameters, off-chip memory for streaming the
parameters that do not fit (cached vs streamed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeflow.errors import EdgeflowError

COMPILER = "edgetpu_compiler"

SOURCE = "coral.ai/docs/edgetpu/models-intro (Supported operations), via the device profiles' op list 'edgetpu'"
_EIGHT_BIT = {"int8", "uint8"}


@dataclass
class OpVerdict:
    """Where one operator is predicted to run, and why."""

    index: int
    op: str
    device: str  # "tpu" or "cpu"
    reason: str = ""
    limits: str = ""  # Coral's documented limits for this op (not all are checkable before compiling)


@dataclass
class Precheck:
    """The Edge TPU pre-check of one model (what the compiler is expected to do)."""

    full_int8: bool
    static_shapes: bool
    problems: list[str]
    ops: list[OpVerdict]
    first_unsupported: OpVerdict | None
    ops_on_tpu: int
    ops_on_cpu: int
    compatible: bool
    source: str = SOURCE

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def precheck(model) -> Precheck:
    """Check a ``.tflite`` against the Edge TPU requirements before compiling.

    Operators are visited in execution order. Leading ``QUANTIZE`` ops that convert a float
    model input, and trailing ``DEQUANTIZE`` ops, run on the CPU without ending the TPU
    part. Every other operator is mapped until the first one that breaks a rule; that
    one and all operators after it are predicted on the CPU.

    Args:
        model: ``.tflite`` path or bytes.

    Returns:
        :class:`Precheck`; ``compatible`` is true when every operator is predicted on the
        TPU apart from the input/output conversions.

    Example:
        >>> pc = precheck("model_int8.tflite")
        >>> pc.ops_on_tpu, pc.first_unsupported
    """
    from edgeflow import tflite as tfl

    data = tfl.read_bytes(model)
    info = tfl.parse(data)
    consts = _Constants(data, info)
    problems: list[str] = []
    # unknown (-1) dimensions other than the batch
    dynamic = [t.name or "?" for t in info.tensors if any(d < 0 for d in t.shape_signature[1:])]
    if dynamic:
        problems.append(f"dynamic tensor sizes (the Edge TPU needs static shapes): {', '.join(dynamic[:5])}")

    ops = list(info.ops)
    names = [op.name for op in ops]
    verdicts: list[OpVerdict] = []
    first: OpVerdict | None = None
    started = False
    for i, op in enumerate(ops):
        ins = [info.tensors[t] if t >= 0 else None for t in op.inputs]
        outs = [info.tensors[t] for t in op.outputs]
        reason = _rule_violation(op.name, ins, outs, op.options, consts)
        if first is None:
            if reason and not started and op.name == "QUANTIZE" and _is_float(ins[0]):
                verdicts.append(OpVerdict(i, op.name, "cpu", "converts the float model input (use int8/uint8 input)"))
                continue
            if reason and op.name == "DEQUANTIZE" and all(n == "DEQUANTIZE" for n in names[i:]):
                verdicts.append(OpVerdict(i, op.name, "cpu", "converts the model output to float (use int8/uint8 output)"))
                continue
            if reason:
                first = OpVerdict(i, op.name, "cpu", reason)
                verdicts.append(first)
                continue
            started = True
            entry = edgetpu_ops().get(op.name)
            verdicts.append(OpVerdict(i, op.name, "tpu", limits=(entry.limits or "") if entry else ""))
        else:
            verdicts.append(OpVerdict(i, op.name, "cpu", reason or "after the first unsupported op (one TPU subgraph only)"))
    float_ops = info.float_ops()
    full_int8 = not float_ops
    if not full_int8:
        problems.append(f"not fully 8-bit quantized: {len(float_ops)} of {len(ops)} operators compute in float "
                        "(convert with mode int8 and a representative dataset, or QAT)")
    if first is not None:
        problems.append(f"op #{first.index} {first.op} cannot be mapped ({first.reason}); it and the "
                        f"{len(ops) - first.index - 1} operators after it run on the CPU")
    on_tpu = sum(v.device == "tpu" for v in verdicts)
    compatible = not dynamic and first is None and on_tpu > 0
    return Precheck(full_int8=full_int8, static_shapes=not dynamic, problems=problems, ops=verdicts,
                    first_unsupported=first, ops_on_tpu=on_tpu, ops_on_cpu=len(verdicts) - on_tpu,
                    compatible=compatible)


def precheck_table(pc: Precheck | dict) -> str:
    """The per-operator prediction (a :class:`Precheck` or its dict) as a plain-text table."""
    from edgeflow.report import table

    ops = [asdict(v) if isinstance(v, OpVerdict) else v for v in (pc.ops if isinstance(pc, Precheck) else pc["ops"])]
    rows = [[str(v["index"]), v["op"], "Edge TPU" if v["device"] == "tpu" else "CPU",
             v["reason"] or (f"limit: {v['limits']}" if v.get("limits") else "")] for v in ops]
    return table(["#", "operator", "predicted on", "why (or Coral's documented limit)"], rows, "rlll")


def edgetpu_ops() -> dict:
    """The operations the Edge TPU compiler maps, with Coral's documented limits.

    The table is data shared with ``edgeflow check``: the ``edgetpu`` operator list of the
    device profiles (``edgeflow/_data/devices/_ops.yaml``), name -> entry with ``limits``.
    """
    from edgeflow.devices import load_op_lists

    return load_op_lists()["edgetpu"].entries


class _Constants:
    """Values of the main subgraph's small constant int tensors (axes, paddings, strides)."""

    def __init__(self, data: bytes, info):
        self.data = data

    def ints(self, tensor) -> list[int] | None:
        """The values of a constant int32/int64 tensor (a TensorInfo), or None."""
        from edgeflow.tflite import constant_values

        if tensor is None or tensor.dtype not in ("int32", "int64"):
            return None
        values = constant_values(self.data, tensor)
        return None if values is None else [int(v) for v in values]


def _dtype(t) -> str:
    return str(getattr(t, "dtype", "")).lower()


def _is_float(t) -> bool:
    return t is not None and _dtype(t).startswith(("float", "bfloat"))


def _big_dims(t) -> list[int]:
    return [int(d) for d in t.shape if int(d) > 1]


def _touches_batch(axes: list[int] | None, rank: int) -> bool:
    return axes is not None and any(a % max(rank, 1) == 0 for a in axes)


def _rule_violation(name: str, ins: list, outs: list, options: dict, consts: _Constants) -> str:
    """The first documented Edge TPU rule this operator breaks, or ''."""
    if name not in edgetpu_ops():
        return f"{name} is not an Edge TPU operation"
    # Activations must be 8-bit; int32 is allowed for biases and shape/axis operands.
    acts = [t for t in (ins[:1] + outs) if t is not None]
    bad = sorted({_dtype(t) for t in acts if _dtype(t) not in _EIGHT_BIT})
    if name == "QUANTIZE" and not any(_is_float(t) for t in acts):
        bad = []  # requantization (int8 <-> uint8) runs on the TPU
    if bad:
        what = "float" if any(b.startswith(("float", "bfloat")) for b in bad) else "unsupported"
        return f"works on {what} data ({', '.join(bad)}); the Edge TPU computes 8-bit integers only"
    for t in acts:
        shape = [int(d) for d in t.shape]
        big = [i for i, d in enumerate(shape) if d > 1]
        if big and big[0] < len(shape) - 3:
            return f"tensor {shape} has a dimension > 1 outside the 3 innermost ones (Edge TPU tensors are at most 3-D)"
    rank = len(ins[0].shape) if ins and ins[0] is not None else 0
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION"):
        if options.get("fused_activation_function", 0) != 0:
            return f"{name} has a fused activation function"
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        dh, dw = options.get("dilation_h_factor", 1), options.get("dilation_w_factor", 1)
        if dh != dw:
            return f"{name} dilation {dh}x{dw} differs in x and y"
    if name in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN") and len(ins) > 1:
        axes = consts.ints(ins[1])
        if _touches_batch(axes, rank):
            return f"{name} reduces over the batch dimension (axes {axes})"
        if name == "MEAN" and axes and any(a % rank == rank - 1 for a in axes) and int(ins[0].shape[-1]) % 4:
            return f"MEAN reduces over a depth of {ins[0].shape[-1]}, not a multiple of 4"
    if name == "PAD" and len(ins) > 1 and ins[1] is not None:
        pads = consts.ints(ins[1])
        if pads and any(pads[:2]):
            return "PAD pads the batch dimension"
    if name == "SPLIT" and ins and ins[0] is not None:
        axis = consts.ints(ins[0])
        if _touches_batch(axis, len(ins[1].shape) if len(ins) > 1 and ins[1] is not None else rank):
            return "SPLIT splits the batch dimension"
    if name == "PACK" and options and options.get("axis", 0) == 0:
        return "PACK packs along the batch dimension"
    if name == "STRIDED_SLICE":
        strides = consts.ints(ins[3]) if len(ins) > 3 else None
        if strides is None or any(s != 1 for s in strides):
            return f"STRIDED_SLICE strides {strides} are not all 1"
        if options.get("ellipsis_mask") or options.get("new_axis_mask"):
            return "STRIDED_SLICE uses an ellipsis or new-axis mask"
    if name == "SOFTMAX":
        n = 1
        for d in _big_dims(ins[0]):
            n *= d
        if len(_big_dims(ins[0])) > 1 or n > 16000:
            return f"SOFTMAX input {list(ins[0].shape)} is not 1-D with at most 16,000 elements"
    if name == "FULLY_CONNECTED" and outs and len(_big_dims(outs[0])) > 1:
        return f"FULLY_CONNECTED output {list(outs[0].shape)} is not one-dimensional"
    if name in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR") and ins and int(ins[0].shape[0]) > 1:
        return f"{name} input {list(ins[0].shape)} is not 3-dimensional (batch must be 1)"
    return ""


# -- the compiler --------------------------------------------------------------------
_SIZE = re.compile(r"^\s*([0-9.]+)\s*(B|KiB|MiB|GiB)\s*$")
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_ROW = re.compile(r"^(?P<op>[A-Z][A-Z0-9_]*)\s+(?P<count>\d+)\s+(?P<status>\S.*?)\s*$")
MAPPED = "Mapped to Edge TPU"


@dataclass
class CompilerLog:
    """What ``edgetpu_compiler`` reported for one model."""

    version: str | None = None
    input_model: str | None = None
    output_model: str | None = None
    on_chip_used_bytes: int | None = None
    on_chip_remaining_bytes: int | None = None
    off_chip_streamed_bytes: int | None = None
    subgraphs: int | None = None
    total_ops: int | None = None
    ops_on_tpu: int | None = None
    ops_on_cpu: int | None = None
    operators: list[dict] = field(default_factory=list)
    succeeded: bool | None = None

    @property
    def parameters(self) -> str:
        """'cached' (all parameters fit in the on-chip memory), 'streamed' (some are read
        from off-chip memory at every inference) or 'unknown'."""
        if self.off_chip_streamed_bytes is None:
            return "unknown"
        return "cached" if self.off_chip_streamed_bytes == 0 else "streamed"

    def to_dict(self) -> dict:
        """A JSON-serialisable dict, with ``parameters``."""
        return {**asdict(self), "parameters": self.parameters}


def parse_size(text: str) -> int:
    """Bytes in a compiler size such as ``3.42MiB``, ``1.75KiB`` or ``0.00B`` (binary units)."""
    m = _SIZE.match(text)
    if not m:
        raise EdgeflowError(f"cannot read the size {text!r} in the Edge TPU compiler output")
    return int(round(float(m.group(1)) * _UNITS[m.group(2)]))


def parse_compiler_output(text: str, log_text: str | None = None) -> CompilerLog:
    """Read what ``edgetpu_compiler`` printed and, optionally, its ``*_edgetpu.log`` file.

    Understands the lines ``Edge TPU Compiler version``, ``Input model:``/``Input:``,
    ``Output model:``/``Output:``, ``On-chip memory used for caching model parameters``,
    ``On-chip memory remaining for caching model parameters``, ``Off-chip memory used for
    streaming uncached model parameters``, ``Number of Edge TPU subgraphs``, ``Total number
    of operations``, ``Number of operations that will run on Edge TPU`` / ``on CPU`` and
    the ``Operator  Count  Status`` table. Where the counts are not printed (without
    ``-s``) they are summed from the table: rows with status ``Mapped to Edge TPU`` run
    on the TPU, every other status on the CPU.

    Example:
        >>> log = parse_compiler_output(stdout, Path("m_edgetpu.log").read_text())
        >>> log.ops_on_tpu, log.on_chip_used_bytes, log.parameters
    """
    out = CompilerLog()
    rows: list[dict] = []
    for source in (text, log_text or ""):
        in_table = False
        table_rows: list[dict] = []
        for raw in source.splitlines():
            line = raw.strip()
            key, sep, value = line.partition(":")
            value = value.strip()
            if line.startswith("Edge TPU Compiler version"):
                out.version = line.rsplit(" ", 1)[-1]
            elif sep and key in ("Input model", "Input"):
                out.input_model = out.input_model or value
            elif sep and key in ("Output model", "Output"):
                out.output_model = out.output_model or value
            elif sep and key == "On-chip memory used for caching model parameters":
                out.on_chip_used_bytes = parse_size(value)
            elif sep and key in ("On-chip memory remaining for caching model parameters",):
                out.on_chip_remaining_bytes = parse_size(value)
            elif sep and key == "On-chip memory available for caching model parameters":  # compiler 2.x
                if out.on_chip_remaining_bytes is None:
                    out.on_chip_remaining_bytes = parse_size(value)
            elif sep and key == "Off-chip memory used for streaming uncached model parameters":
                out.off_chip_streamed_bytes = parse_size(value)
            elif sep and key == "Number of Edge TPU subgraphs":
                out.subgraphs = int(value)
            elif sep and key == "Total number of operations":
                out.total_ops = int(value)
            elif sep and key == "Number of operations that will run on Edge TPU":
                out.ops_on_tpu = int(value)
            elif sep and key == "Number of operations that will run on CPU":
                out.ops_on_cpu = int(value)
            elif line.startswith("Compilation succeeded") or line.startswith("Model compiled successfully") \
                    or line.startswith("Models compiled successfully"):
                out.succeeded = True
            elif "Compilation failed" in line or line.startswith("ERROR:"):
                out.succeeded = False
            elif re.match(r"^Operator\s+Count\s+Status$", line):
                in_table = True
            elif in_table:
                m = _ROW.match(line)
                if m:
                    table_rows.append({"op": m["op"], "count": int(m["count"]), "status": m["status"],
                                       "on_tpu": m["status"] == MAPPED})
                elif line:
                    in_table = False
        if table_rows and not rows:
            rows = table_rows
    out.operators = rows
    if rows:
        tpu = sum(r["count"] for r in rows if r["on_tpu"])
        cpu = sum(r["count"] for r in rows if not r["on_tpu"])
        out.ops_on_tpu = tpu if out.ops_on_tpu is None else out.ops_on_tpu
        out.ops_on_cpu = cpu if out.ops_on_cpu is None else out.ops_on_cpu
        out.total_ops = out.total_ops if out.total_ops is not None else tpu + cpu
    elif out.total_ops is not None and out.ops_on_tpu is None and out.succeeded:
        pass  # counts unknown without the table
    return out


def compiler_path() -> str | None:
    """The ``edgetpu_compiler`` executable on PATH, or None."""
    return shutil.which(COMPILER)


def compiled_names(model) -> tuple[str, str]:
    """The files the compiler writes for ``model`` (a path or bytes): ``<stem>_edgetpu.tflite/.log``."""
    stem = "model" if isinstance(model, bytes | bytearray) else Path(model).stem
    return f"{stem}_edgetpu.tflite", f"{stem}_edgetpu.log"


def compile_model(model, out_dir: str | Path, *, timeout: float = 600, dry_run: bool = False,
                  force: bool = False,
                  log: Callable[[str], None] | None = None) -> tuple[Path | None, CompilerLog | None, str]:
    """Run ``edgetpu_compiler -s -o OUT_DIR MODEL`` when it is installed and parse its output.

    The compiler writes into a temporary folder; its two files are then moved into
    ``out_dir`` atomically (:mod:`edgeflow._io`), so a failed compile leaves nothing there.

    Returns:
        ``(compiled_path, CompilerLog, note)``: ``(None, None, note)`` when the compiler is
        not installed or in a dry run (the note says so). The compiled model is written
        into ``out_dir`` as ``<name>_edgetpu.tflite`` with its ``.log``.

    Raises:
        EdgeflowError: the compiler ran and failed (its last lines are in the message), or
            (before it runs) an output file exists and ``force`` is False.
    """
    from edgeflow import _io
    from edgeflow import tflite as tfl

    say = log or (lambda _m: None)
    out_dir = Path(out_dir)
    exe = compiler_path()
    if isinstance(model, bytes | bytearray):
        src_name, data = "model.tflite", bytes(model)
    else:
        src_name, data = Path(model).name, tfl.read_bytes(model)
    argv = [exe or COMPILER, "-s", "-o", str(out_dir), src_name]
    if exe is None:
        note = (f"compile step skipped: {COMPILER} is not installed (x86-64 Debian/Ubuntu: "
                "apt-get install edgetpu-compiler from Coral's package repository)")
        say(f"{note}\n      would run: $ {' '.join(argv)}")
        return None, None, note
    say(f"compile for the Edge TPU\n      $ {' '.join(argv)}")
    if dry_run:
        return None, None, "dry run: not compiled"
    names = compiled_names(src_name)
    for name in names:
        _io.check_file(out_dir / name, force=force)
    with _io.temporary_dir("edgetpu-") as tmp:
        src, built = Path(tmp) / src_name, Path(tmp) / "out"
        src.write_bytes(data)
        built.mkdir()
        argv[argv.index("-o") + 1], argv[-1] = str(built), str(src)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as err:
            raise EdgeflowError(f"{COMPILER} did not finish within {timeout:.0f} s") from err
        compiled_tmp, log_tmp = (built / name for name in names)
        parsed = parse_compiler_output(proc.stdout, log_tmp.read_text() if log_tmp.is_file() else None)
        if proc.returncode != 0 or not compiled_tmp.is_file():
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
            raise EdgeflowError(f"{COMPILER} failed on {src_name} (exit {proc.returncode}): {tail}")
        compiled = _io.write_bytes(out_dir / names[0], compiled_tmp.read_bytes())
        if log_tmp.is_file():
            _io.write_bytes(out_dir / names[1], log_tmp.read_bytes())
    return compiled, parsed, f"compiled with {COMPILER} {parsed.version or ''}".strip()


@dataclass
class CoralResult:
    """The Coral deployment record: pre-check, compiler log (or why it was skipped), board run."""

    model: str
    precheck: dict
    compiled_model: str | None
    compiler: dict | None
    compile_note: str
    board: dict | None = None
    steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def deploy_coral(model, *, out_dir: str | Path | None = None, target=None, dry_run: bool = False,
                 force: bool = False, log: Callable[[str], None] | None = None,
                 **board_kwargs) -> CoralResult:
    """Pre-check a model for the Edge TPU, compile it when the compiler is installed, and
    optionally benchmark it on a Coral Dev Board over SSH.

    On the board the compiled model runs with the Edge TPU delegate (``libedgetpu.so.1``);
    the host checks its output against the uncompiled model on LiteRT. Without a compiled
    model the board run uses the CPU only, and the record says so.

    Args:
        model: ``.tflite`` path or bytes (full int8).
        out_dir: where the compiled model and its log go (default: beside the model).
        target: an :class:`~edgeflow.deploy.ssh.SSHTarget` for the Dev Board, or None.
        dry_run: print every step, run nothing.
        force: overwrite the compiled model and its log when they exist.
        log: called with one line per step.
        **board_kwargs: passed to :func:`edgeflow.deploy.rpi.deploy_board`.

    Returns:
        :class:`CoralResult`. Side effects: writes ``<name>_edgetpu.tflite`` and its
        ``.log`` into ``out_dir`` when the compiler runs.

    Raises:
        EdgeflowError: before any work, when the compiled model could not be written
            (``out_dir`` given or the compiler installed; :func:`edgeflow._io.check_file`).

    Example:
        >>> r = deploy_coral("m_int8.tflite")
        >>> r.precheck["compatible"], r.compile_note
    """
    from edgeflow import tflite as tfl
    from edgeflow.deploy.rpi import deploy_board

    steps: list[str] = []

    def say(msg: str) -> None:
        line = msg if msg.startswith("[") else f"[coral] {msg}"
        steps.append(line)
        if log:
            log(line)

    from edgeflow import _io

    data = tfl.read_bytes(model)
    name = Path(model).name if not isinstance(model, bytes | bytearray) else "model.tflite"
    if not dry_run and (out_dir is not None or compiler_path() is not None):  # before any work
        where = Path(model).parent if out_dir is None else Path(out_dir)
        for output in compiled_names(name):
            _io.check_file(where / output, force=force)
    pc = precheck(data)
    say(f"pre-check {name}: {pc.ops_on_tpu} ops predicted on the Edge TPU, {pc.ops_on_cpu} on the CPU"
        + (f"; first unsupported: #{pc.first_unsupported.index} {pc.first_unsupported.op} "
           f"({pc.first_unsupported.reason})" if pc.first_unsupported else ""))
    for p in pc.problems:
        say(f"  problem: {p}")
    if out_dir is None:
        out_dir = Path(model).parent if not isinstance(model, bytes | bytearray) else Path.cwd()
    compiled, clog, note = compile_model(data if isinstance(model, bytes | bytearray) else model, out_dir,
                                         dry_run=dry_run, force=force, log=say)
    if clog is not None:
        say(f"compiler: {clog.ops_on_tpu} ops on the Edge TPU, {clog.ops_on_cpu} on the CPU; parameters "
            f"{clog.parameters} ({clog.on_chip_used_bytes} B on-chip, {clog.off_chip_streamed_bytes} B streamed)")
    result = CoralResult(model=name, precheck=pc.to_dict(), compiled_model=str(compiled) if compiled else None,
                         compiler=clog.to_dict() if clog else None, compile_note=note)
    if target is not None:
        board_kwargs.setdefault("target_name", "coral-dev-board")
        if compiled is not None:
            board = deploy_board(compiled, target, delegate="libedgetpu.so.1", reference_model=data,
                                 dry_run=dry_run, log=log, **board_kwargs)
        elif dry_run and compiler_path() is not None:
            say(f"the board would run {Path(name).stem}_edgetpu.tflite (shown below as {name}) "
                "with the Edge TPU delegate")
            board = deploy_board(data, target, delegate="libedgetpu.so.1", dry_run=True, log=log, **board_kwargs)
        else:
            say("no compiled model: the Dev Board runs the model on its CPU only (no Edge TPU)")
            board = deploy_board(model, target, dry_run=dry_run, log=log, **board_kwargs)
            board.notes.append("Edge TPU not used: the model was not compiled (" + note + ")")
        steps.extend(board.steps)
        result.board = board.to_dict()
    result.steps = steps
    return result
