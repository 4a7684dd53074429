"""Firmware built with the real arm-none-eabi toolchain and TFLM, run under the real qemu-system-arm.

The first run compiles the TFLM objects the digits CNN needs for each core into the user
cache (about two CPU-minutes per core); later runs reuse them.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from _models import table_compressed
from _schema import document
from click.testing import CliRunner

from edgeflow.cli import main
from edgeflow.errors import EdgeflowError


def _missing() -> str | None:
    from edgeflow import firmware
    from edgeflow.firmware import sources

    if not firmware.available():
        return "arm-none-eabi-gcc or qemu-system-arm not installed (apt-get install gcc-arm-none-eabi " \
               "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm)"
    try:
        sources.locate(online=False)
    except EdgeflowError as err:
        return str(err)
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


@pytest.fixture(scope="module")
def samples(int8_cnn, digits):
    from edgeflow.firmware import encode_inputs
    from edgeflow.tflite import reader

    _, (x_te, _) = digits
    return encode_inputs(reader.parse(int8_cnn), x_te[:4], limit=4)


@pytest.fixture(scope="module")
def built(int8_cnn, samples):
    from edgeflow.firmware import build

    return {board: build(int8_cnn, board, inputs=samples) for board in ("arduino-nano-33-ble", "stm32f746g-disco")}


def _host_tflm(model: bytes, samples: bytes) -> bytes:
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model, arena_size=1 << 20)
    d = it.get_input_details(0)
    per = int(np.prod(d["shape"]))
    out = b""
    for i in range(len(samples) // per):
        it.set_input(np.frombuffer(samples, np.int8, per, i * per).reshape(d["shape"]), 0)
        it.invoke()
        out += it.get_output(0).tobytes()
    return out


@pytest.mark.parametrize("board,cpu,machine", [("arduino-nano-33-ble", "cortex-m4f", "mps2-an386"),
                                               ("stm32f746g-disco", "cortex-m7", "mps2-an500")])
def test_firmware_runs_bit_identical_to_host_tflm(built, int8_cnn, samples, board, cpu, machine):
    fw = built[board]
    assert (fw.target.cpu, fw.target.machine) == (cpu, machine)
    assert fw.emulated and not fw.problems
    assert fw.run.samples == 4
    assert fw.run.outputs == _host_tflm(int8_cnn, samples)


def test_tflm_only_slim_file_runs_bit_identical_in_firmware(built, int8_cnn, samples):
    """The C-array level of slim (one zero point per per-channel tensor, no bias scales) on
    the target: the outputs of the converter's file on host TFLM, a smaller model array."""
    from edgeflow.firmware import build
    from edgeflow.tflite import slim

    only, result = slim(int8_cnn, tflm_only=True)
    assert result.zero_points_shortened > 0
    fw = build(only, "arduino-nano-33-ble", inputs=samples)
    assert fw.emulated and not fw.problems
    assert fw.run.outputs == _host_tflm(int8_cnn, samples)
    assert fw.firmware.image.symbols["g_model"][1] == len(only) < len(int8_cnn)
    assert fw.firmware.flash < built["arduino-nano-33-ble"].firmware.flash


@pytest.fixture(scope="module")
def per_channel_tables(trained_cnn, digits):
    return table_compressed(trained_cnn, digits)


def test_table_compressed_model_runs_bit_identical_in_firmware(built, per_channel_tables, digits):
    """A DECODE (table-compressed) model on the target, decoded by edgeflow's own kernel
    (edgeflow_decode.cc), on the core the other tests build: the same outputs as host TFLM
    (which decodes with TFLM's kernel) and as the uncompressed model; per-channel tables of
    2- and 4-bit indices. Its arena holds the decoded weights."""
    from edgeflow.deploy.mcu import DECODE_CALL
    from edgeflow.firmware import build, encode_inputs
    from edgeflow.tflite import reader
    from edgeflow.tflite.lut import DECODE_OP

    _, (x_te, _) = digits
    plain, packed, tables = per_channel_tables
    assert {c.bits for c in tables} == {2, 4} and all(c.per_channel for c in tables)
    info = reader.parse(packed)
    assert DECODE_OP in info.op_names() and len(packed) < len(plain)
    samples = encode_inputs(info, x_te[:4], limit=4)
    fw = build(packed, "arduino-nano-33-ble", inputs=samples)
    assert fw.emulated and not fw.problems
    assert f"resolver.{DECODE_CALL};" in (fw.firmware.workdir / "main.cc").read_text()
    linked = fw.firmware.image.symbols
    assert any("edgeflow_decode" in name for name in linked) and not any("DecodeState" in name for name in linked)
    assert fw.run.outputs == _host_tflm(packed, samples) == _host_tflm(plain, samples)
    assert fw.arena_used > built["arduino-nano-33-ble"].arena_used


def test_per_tensor_tables_run_bit_identical_in_firmware(trained_cnn, digits):
    """Per-tensor tables (an int8 model quantized per tensor) with 2-, 4- and 5-bit indices:
    edgeflow's DECODE kernel gives host TFLM's outputs."""
    from edgeflow.firmware import build, encode_inputs
    from edgeflow.tflite import reader

    _, (x_te, _) = digits
    plain, packed, tables = table_compressed(trained_cnn, digits, per_channel=False)
    # 2 and 4 bits: the kernel's whole-byte path; 5 bits: its one-index-at-a-time loop
    assert {2, 4, 5} <= {c.bits for c in tables} and not any(c.per_channel for c in tables)
    samples = encode_inputs(reader.parse(packed), x_te[:4], limit=4)
    fw = build(packed, "arduino-nano-33-ble", inputs=samples)
    assert fw.emulated and not fw.problems
    assert fw.run.outputs == _host_tflm(packed, samples) == _host_tflm(plain, samples)


def test_unsupported_decode_type_fails_in_prepare_with_its_line(per_channel_tables, tmp_path):
    """A DECODE whose metadata names Huffman (type 1) stops AllocateTensors in the kernel's
    Prepare; the problem line names the operator and what its kernel does not decode."""
    from edgeflow.firmware import build
    from edgeflow.tflite import reader

    _, packed, _ = per_channel_tables
    info = reader.parse(packed)
    decode = next(op for op in info.ops if op.name == "TFLM_DECODE")
    ancillary = reader.constant_values(packed, info.tensors[decode.inputs[1]]).tobytes()
    assert ancillary[:2] == b"\x00\x01" and packed.count(ancillary) == 1  # LUT, DCM version 1
    huffman = bytearray(packed)
    huffman[packed.index(ancillary)] = 1
    fw = build(bytes(huffman), cpu="cortex-m4f", timeout=60)
    arena = fw.firmware.arena_size  # the probe's: all the RAM the image leaves
    assert fw.problems == [f"TFLM on cortex-m4f under QEMU: AllocateTensors failed with an arena of {arena} bytes, "
                           f"in Prepare of TFLM_DECODE (operator {decode.index}): unsupported DECODE type 1 "
                           "(Huffman): edgeflow's DECODE kernel decodes lookup tables (type 0) only"]
    assert fw.run.exit_status == 3 and fw.arena_used is None and not fw.fits


@pytest.mark.parametrize("board", ["arduino-nano-33-ble", "stm32f746g-disco"])
def test_arena_from_the_run_and_flash_from_the_elf(built, int8_cnn, board):
    fw = built[board]
    image = fw.firmware.image
    assert fw.arena_source == "emulated run" and fw.run.arena_used == fw.arena_used
    assert fw.firmware.arena_size == (fw.arena_used + 15) // 16 * 16
    assert image.symbols["g_arena"][1] == fw.firmware.arena_size
    assert image.symbols["g_model"][1] == len(int8_cnn)
    # arm-none-eabi-size reads the same sections: flash = text + rodata + data
    size = subprocess.run(["arm-none-eabi-size", "-A", str(fw.firmware.elf)], capture_output=True, text=True,
                          check=True).stdout
    rows = {ln.split()[0]: int(ln.split()[1]) for ln in size.splitlines()[2:] if len(ln.split()) == 3}
    flash = sum(v for k, v in rows.items() if k in (".isr_vector", ".text", ".ARM.exidx", ".init_array",
                                                      ".rodata", ".data", ".ARM.extab"))
    assert fw.firmware.flash == flash == fw.figures()["flash_bytes"]["value"]
    assert fw.firmware.static_ram == rows[".data"] + rows[".bss"]
    assert fw.figures()["static_ram_bytes"]["value"] == fw.firmware.static_ram


def test_instruction_count_is_repeatable(built, samples):
    from edgeflow.firmware import emulator

    fw = built["arduino-nano-33-ble"]
    again = emulator.run(fw.firmware.elf, fw.target.machine, samples)
    once_more = emulator.run(fw.firmware.elf, fw.target.machine, samples)
    assert again.ok and again.instructions == once_more.instructions == fw.run.instructions
    assert len(again.instructions) == 4 and min(again.instructions) > 100_000
    assert again.operators == once_more.operators
    assert [op for op, _ in again.operators] == ["CONV_2D", "CONV_2D", "MAX_POOL_2D", "RESHAPE",
                                                 "FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"]
    assert sum(n for _, n in again.operators) < again.instructions[0]
    assert fw.latency_ms == pytest.approx(fw.instructions * fw.target.cpi / (64 * 1e3))


def test_cli_json_and_errors(built, tmp_path, int8_cnn):
    from edgeflow.tflite import reader

    model = tmp_path / "cnn.tflite"
    model.write_bytes(int8_cnn)
    result = CliRunner().invoke(main, ["firmware", str(model), "--board", "arduino-nano-33-ble",
                                       "-o", str(tmp_path / "fw.elf"), "--json"])
    assert result.exit_code == 0, result.output
    doc = document(result.stdout)
    fw = built["arduino-nano-33-ble"]
    assert doc["result"]["figures"]["flash_bytes"] == {"value": fw.firmware.flash,
                                                       "source": "linked image: text + rodata + data"}
    assert doc["result"]["figures"]["arena_bytes"] == {"value": fw.arena_used, "source": "emulated run"}
    # the breakdown, valid against the schema; instructions depend on the inputs (here the default ones)
    figures = doc["result"]["figures"]
    for name in ("flash_split", "arena_split"):
        assert figures[name] == fw.figures()[name]
    ops = figures["operators"]
    assert [{k: v for k, v in r.items() if k not in ("instructions", "share")} for r in ops["value"]] == \
        reader.parse(int8_cnn).op_table()
    assert sum(r["instructions"] for r in ops["value"]) + ops["outside_operators"] == \
        figures["instructions"]["value"] == doc["result"]["run"]["instructions"][0]
    assert doc["outputs"] == [str(tmp_path / "fw.elf")]
    assert (tmp_path / "fw.elf").read_bytes()[:4] == b"\x7fELF"
    result = CliRunner().invoke(main, ["firmware", str(model), "--board", "esp32-s3-devkitc-1"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: esp32-s3-devkitc-1: no firmware build (Xtensa LX7: ")
    result = CliRunner().invoke(main, ["firmware", str(model), "--board", "raspberry-pi-4"])
    assert result.exit_code == 2 and "runs litert, not TensorFlow Lite Micro" in result.stderr


def test_tflm_abort_ends_the_run_at_once_with_the_operator(tmp_path, digits):
    """TFLM's abort is an endless loop on the target (AbortImpl); the image stops QEMU instead
    and names the operator. The softmax-scale check of an int8 SOFTMAX trips it."""
    import time

    from test_runtime_tflm import softmax_head

    from edgeflow.convert import convert
    from edgeflow.firmware import build

    (x_tr, _), _ = digits
    model = tmp_path / "collapsed.tflite"
    model.write_bytes(convert(softmax_head(10, 1e-6), "int8", x_tr[:64]))
    t0 = time.monotonic()
    fw = build(model, cpu="cortex-m4f", timeout=60)
    assert time.monotonic() - t0 < 60 and fw.run.exit_status is not None  # QEMU ended, not killed
    line = ("TFLM on cortex-m4f under QEMU: TFLM aborted (TFLITE_ABORT) in Prepare of SOFTMAX (operator 3): "
            "int8 input scale 1.07e-08 gives beta·scale·2^26 = 0.72 ≤ 1, which TFLM's softmax Prepare rejects "
            "with abort() (QuantizeMultiplierGreaterThanOne); the logits span less than 3.8e-06 on the "
            "calibration data (typical of untrained weights=None networks): calibrate a trained model with "
            "real data or export the logits without softmax")
    assert fw.problems == [line]
    assert (fw.run.exit_status, fw.run.aborted) == (6, ("Prepare", "SOFTMAX", 3))
    assert not fw.fits and fw.arena_used is None
    assert fw.to_dict()["problems"] == [line]


def test_an_endless_loop_is_a_timeout_problem(tmp_path):
    """A WHILE whose condition stays true runs forever: ``--timeout`` ends it with a problem
    naming the timeout (exit 1), no exception. The default the help names is emulator.TIMEOUT."""
    from _models import endless_while

    from edgeflow.cli.firmware import firmware
    from edgeflow.firmware import emulator

    model = tmp_path / "endless.tflite"
    model.write_bytes(endless_while())
    result = CliRunner().invoke(main, ["firmware", str(model), "--cpu", "cortex-m4f", "--timeout", "1.5", "--json"])
    assert result.exit_code == 1, result.output
    fw = document(result.stdout)["result"]
    reason = "timed out after 1.5 s: the firmware neither finished nor stopped (an endless loop?)"
    assert fw["problems"] == [f"TFLM on cortex-m4f under QEMU: {reason}"]
    assert fw["run"] == {"ok": False, "reason": reason, "arena_used": None, "arena_head": None, "arena_tail": None,
                         "samples": 0, "instructions": [], "operators": []}
    assert not fw["fits"]
    option = next(p for p in firmware.params if p.name == "timeout")
    assert option.default is None  # None: not given (refused with --no-emulate), the API's TIMEOUT
    assert f"(default {emulator.TIMEOUT:g})" in option.help


def test_a_fault_stops_qemu_with_the_stacked_pc(tmp_path):
    """The image's fault handler prints the faulting PC and CFSR and ends QEMU (exit status 8):
    an undefined instruction (__builtin_trap) in main, on the Cortex-M4 machine."""
    from importlib.resources import files

    from edgeflow.firmware import elf, emulator, image, targets, toolchain

    target = targets.target("cortex-m4f")
    (tmp_path / "link.ld").write_text(image.link_script(target))
    (tmp_path / "trap.c").write_text("int main(int argc, char **argv) { __builtin_trap(); }\n")
    startup = files("edgeflow").joinpath("_data/firmware/startup.c")
    out = tmp_path / "trap.elf"
    subprocess.run([toolchain.find().gcc, *target.flags(), "-DEF_HAS_FPU", "-O2", "-nostartfiles",
                    "--specs=rdimon.specs", f"-T{tmp_path / 'link.ld'}", "-o", str(out), str(startup),
                    str(tmp_path / "trap.c")], check=True)
    pc = elf.read(out).address("main") & ~1
    run = emulator.run(out, target.machine, count=False, timeout=60)
    assert (run.ok, run.exit_status) == (False, 8)
    assert run.reason == f"the firmware faulted (HardFault) at pc 0x{pc:08x} in main (CFSR 0x00010000: UNDEFINSTR)"


@pytest.mark.parametrize("board", ["arduino-nano-33-ble", "stm32f746g-disco"])
def test_breakdown_per_operator_flash_and_arena(built, int8_cnn, board):
    from edgeflow.report import firmware_table
    from edgeflow.runtime import tflm
    from edgeflow.tflite import plan_memory, reader

    fw = built[board]
    info = reader.parse(int8_cnn)
    figures = fw.figures()
    # per operator: the model's rows, with the instructions between the operator's profiler events;
    # with what Invoke() runs outside them (TFLM's loop, the hooks) they sum to the Invoke() total
    ops = figures["operators"]
    rows = ops["value"]
    assert [{k: r[k] for k in r if k not in ("instructions", "share")} for r in rows] == info.op_table()
    assert [(r["op"], r["instructions"]) for r in rows] == fw.run.operators
    assert sum(r["instructions"] for r in rows) + ops["outside_operators"] == fw.instructions == fw.run.instructions[0]
    assert 0 < ops["outside_operators"] < min(r["instructions"] for r in rows if r["op"] == "CONV_2D")
    assert [r["share"] for r in rows] == [round(r["instructions"] / fw.instructions, 6) for r in rows]
    assert sum(r["macs"] for r in rows) == info.total_macs
    # flash by origin (linker map) sums to the ELF's text + rodata + data; the model part is the
    # .tflite (its 16-byte alignment falls into padding, with the linker's other fill)
    image = fw.firmware.image
    split = figures["flash_split"]["value"]
    assert sum(split.values()) == image.text + image.rodata + image.data == fw.firmware.flash
    assert split["model"] == len(int8_cnn) == image.symbols["g_model"][1]
    assert 0 <= split["padding"] < 256  # the linker's alignment fill
    assert split["tflm"] > split["libraries"] > split["application"] > 0
    # the arena by use sums to the arena the run used; its activations are the tensors' plan,
    # which is also what host TFLM (reference kernels, no scratch) plans as its head
    arena = figures["arena_split"]["value"]
    assert sum(arena.values()) == fw.arena_used == fw.run.arena_head + fw.run.arena_tail
    assert arena["activations"] == plan_memory(info, scratch=False).peak_bytes
    assert arena["activations"] == tflm.measure_arena(int8_cnn).breakdown["non_persistent"]
    # scratch: CMSIS-NN's im2col of the second 3x3 conv, two int16 columns of 3*3*16
    # (arm_convolve_s8_get_buffer_size); the first conv's 48 B fit a gap of the plan
    assert arena["scratch"] == fw.run.arena_head - arena["activations"] == 2 * (3 * 3 * 16) * 2
    text = firmware_table(fw)
    assert "Invoke() total" in text and f"{fw.instructions:,}" in text
    assert (f"flash split: model {split['model']:,} + tflm {split['tflm']:,} + application "
            f"{split['application']:,} + libraries {split['libraries']:,} + padding {split['padding']:,} = "
            f"{fw.firmware.flash:,} B") in text
    assert (f"arena split: activations {arena['activations']:,} + scratch {arena['scratch']:,} + persistent "
            f"{arena['persistent']:,} = {fw.arena_used:,} B") in text


def test_compiling_tflm_shows_progress_on_stderr(monkeypatch, tmp_path, capsys):
    """Which core, and how many TFLM sources of how many are compiled; EDGEFLOW_PROGRESS=0 silences it."""
    from edgeflow.firmware import sources, targets, toolchain
    from edgeflow.firmware.library import Library

    src, tc = sources.locate(online=False), toolchain.find()
    files = ["tensorflow/lite/micro/micro_log.cc", "tensorflow/lite/micro/debug_log.cc"]
    for setting, cache in (("1", "on"), ("0", "off")):
        monkeypatch.setenv("EDGEFLOW_PROGRESS", setting)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / cache))  # an empty cache: both compile
        library = Library(src, targets.target("cortex-m3"), tc, jobs=1)
        assert [p.exists() for p in library.compile(files)] == [True, True]
        assert library.compiled == files
        err = capsys.readouterr().err
        if setting == "1":
            assert "\rcompiling TFLM for cortex-m3:   0%|          | 0/2 [" in err  # redrawn as they finish
        else:
            assert err == ""


def test_the_application_object_is_cached_per_operator_set():
    """main.cc of a model with the same operators compiles once per core: a later build copies
    the object from the library's cache into its own folder (the application in the flash
    split); other operators write another main.cc, with its own object."""
    from edgeflow.firmware import image, sources, targets, toolchain

    src, tc, target = sources.locate(online=False), toolchain.find(), targets.target("cortex-m4f")
    calls = ["AddConv2D", "AddFullyConnected", "AddReshape", "AddSoftmax"]
    first, again = (image.prepare(b"\0" * 16, calls, target, src, tc) for _ in range(2))
    cached = image._cached_object(first.library, [tc.gxx, *first.library.cflags("main.cc"), "-DEF_HAS_FPU", "-c"],
                                  first.workdir / "main.cc")
    main_o = [(b.workdir / "main.cc.o") for b in (first, again)]
    assert main_o[0].read_bytes() == main_o[1].read_bytes() == cached.read_bytes()
    assert all(p in b.objects for p, b in zip(main_o, (first, again), strict=True))
    other = image.prepare(b"\0" * 16, calls[:3], target, src, tc)
    other_cached = image._cached_object(other.library, [tc.gxx, *other.library.cflags("main.cc"), "-DEF_HAS_FPU",
                                                        "-c"], other.workdir / "main.cc")
    assert other_cached != cached and other_cached.read_bytes() == (other.workdir / "main.cc.o").read_bytes()


def test_a_while_bodys_operators_are_registered(tmp_path):
    """The op resolver registers every subgraph's operators: a WHILE whose body multiplies runs
    on the target (MUL, ADD and LESS live only in the body and condition subgraphs)."""
    import tensorflow as tf

    from edgeflow.firmware import build
    from edgeflow.tflite import parse

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def doubling(x):
        return tf.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, v * 2.0), [tf.constant(0), x])[1]

    model = tf.lite.TFLiteConverter.from_concrete_functions([doubling.get_concrete_function()], doubling).convert()
    info = parse(model)
    assert [op.name for op in info.ops] == ["WHILE"]
    assert set(info.ops_used()) == {"WHILE", "LESS", "ADD", "MUL"}
    x = np.array([[1.0, -2.0, 0.5, 3.0]], np.float32)
    fw = build(model, cpu="cortex-m4f", inputs=x.tobytes())
    assert fw.emulated and not fw.problems
    assert np.frombuffer(fw.run.outputs, np.float32).tolist() == (x * 8).ravel().tolist()
    # TFLM's arena_used_bytes() falls short with a WHILE (800 B here): the image relinked with
    # it fails AllocateTensors, so the smallest arena that runs is searched on the target
    assert fw.arena_source == "emulated runs (smallest arena that runs)"
    assert fw.firmware.arena_size == fw.arena_used > fw.run.arena_used
    # the failing Prepare is named, with what TFLM logged (its check's file without folders)
    assert fw.notes == [f"TFLM reported {fw.run.arena_used:,} B of arena used, but fails with it "
                        f"(AllocateTensors failed with an arena of {fw.run.arena_used} bytes, in Prepare of LESS "
                        "(operator 0, subgraph 1): comparisons.cc:560 input2 != nullptr was not true.); the "
                        f"smallest arena that runs, searched on the target, is {fw.arena_used:,} B"]
