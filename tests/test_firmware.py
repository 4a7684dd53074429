"""Firmware built with the real arm-none-eabi toolchain and TFLM, run under the real qemu-system-arm.

The first run compiles the TFLM objects the digits CNN needs for each core into the user
cache (about two CPU-minutes per core); later runs reuse them.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
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
    assert doc["outputs"] == [str(tmp_path / "fw.elf")]
    assert (tmp_path / "fw.elf").read_bytes()[:4] == b"\x7fELF"
    result = CliRunner().invoke(main, ["firmware", str(model), "--board", "esp32-s3-devkitc-1"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: esp32-s3-devkitc-1: no firmware build (Xtensa LX7: ")
    result = CliRunner().invoke(main, ["firmware", str(model), "--board", "raspberry-pi-4"])
    assert result.exit_code == 2 and "runs litert, not TensorFlow Lite Micro" in result.stderr
