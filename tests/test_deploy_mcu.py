"""MCU project generation: files per board, the arena from check + margin, and the
generated C/C++ compiled with the host's g++ (the model array, the config header, and the
op resolver function against a small stub of TFLM's MicroMutableOpResolver API)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edgeflow._io import MARKER
from edgeflow.deploy.mcu import arena_with_margin, generate_mcu_project, resolver_calls
from edgeflow.errors import EdgeflowError
from edgeflow.tflite import slim

GXX = shutil.which("g++")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ not installed")

# Method names copied by hand from tflite-micro's micro_mutable_op_resolver.h for the
# operators our test models use; the stub below has exactly these methods, so a wrong
# name in edgeflow's table fails to compile.
STUB_METHODS = ["AddConv2D", "AddDepthwiseConv2D", "AddMaxPool2D", "AddAveragePool2D", "AddReshape",
                "AddFullyConnected", "AddSoftmax", "AddQuantize", "AddDequantize", "AddMean", "AddAdd",
                "AddRelu", "AddRelu6", "AddLeakyRelu", "AddPad", "AddMul"]
OP_TO_METHOD = {"CONV_2D": "AddConv2D", "MAX_POOL_2D": "AddMaxPool2D", "RESHAPE": "AddReshape",
                "FULLY_CONNECTED": "AddFullyConnected", "SOFTMAX": "AddSoftmax", "QUANTIZE": "AddQuantize",
                "DEQUANTIZE": "AddDequantize"}

RESOLVER_STUB = """// Test stub of tflite-micro's MicroMutableOpResolver: same template, same Add* names,
// same refusal of a duplicate op or of more ops than the template argument.
#pragma once
#include <cstring>
#include "tensorflow/lite/c/common.h"
namespace tflite {
class MicroOpResolver {};
template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
  const char* calls[tOpCount + 1] = {};
  unsigned int n = 0;
@METHODS@
 private:
  TfLiteStatus Add(const char* name) {
    if (n >= tOpCount) return kTfLiteError;
    for (unsigned int i = 0; i < n; ++i) if (std::strcmp(calls[i], name) == 0) return kTfLiteError;
    calls[n++] = name;
    return kTfLiteOk;
  }
};
}  // namespace tflite
""".replace("@METHODS@", "\n".join(f'  TfLiteStatus {m}() {{ return Add("{m}"); }}' for m in STUB_METHODS))

# Stubs of the rest of the API the main program uses (TFLM's MicroInterpreter, GetModel,
# TfLiteTensor; Arduino's Serial, millis, micros, delay), with the signatures of
# tflite-micro and the Arduino core, so the generated main program is compiled too.
API_STUBS = {
    "tensorflow/lite/c/common.h": """#pragma once
#include <cstddef>
#include <cstdint>
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef union { int32_t* i32; float* f; void* raw; const void* raw_const; uint8_t* uint8; int8_t* int8; } TfLitePtrUnion;
typedef struct { TfLitePtrUnion data; size_t bytes; } TfLiteTensor;
""",
    "tensorflow/lite/schema/schema_generated.h": """#pragma once
#include <cstdint>
#define TFLITE_SCHEMA_VERSION (3)
namespace tflite {
struct Model { uint32_t version() const { return 3; } };
inline const Model* GetModel(const void* buf) { return static_cast<const Model*>(buf); }
}  // namespace tflite
""",
    "tensorflow/lite/micro/micro_interpreter.h": """#pragma once
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
namespace tflite {
class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& op_resolver, uint8_t* tensor_arena,
                   size_t tensor_arena_size) : arena_(tensor_arena), size_(tensor_arena_size) {}
  TfLiteStatus AllocateTensors() {
    t_.data.raw = arena_; t_.bytes = size_ / 2; return kTfLiteOk;
  }
  TfLiteStatus Invoke() { ++invokes; return kTfLiteOk; }
  TfLiteTensor* input(size_t index) { return &t_; }
  TfLiteTensor* output(size_t index) { return &t_; }
  size_t arena_used_bytes() const { return size_ / 2; }
  int invokes = 0;
 private:
  uint8_t* arena_; size_t size_; TfLiteTensor t_{};
};
}  // namespace tflite
""",
    "Arduino.h": """#pragma once
#include <cstdio>
struct SerialStub {
  void begin(unsigned long) {}
  explicit operator bool() const { return true; }
  void print(const char* s) { std::printf("%s", s); }
  void print(char c) { std::printf("%c", c); }
  void print(int v) { std::printf("%d", v); }
  void print(unsigned long v) { std::printf("%lu", v); }
  void print(double v, int digits) { std::printf("%.*f", digits, v); }
  void println() { std::printf("\\n"); }
  template <class T> void println(T v) { print(v); println(); }
};
extern SerialStub Serial;
unsigned long millis();
unsigned long micros();
void delay(unsigned long);
""",
    "TensorFlowLite.h": "#pragma once\n",
    "TensorFlowLite_ESP32.h": "#pragma once\n",
}

MAIN_DRIVER = r"""
#include "Arduino.h"
SerialStub Serial;
unsigned long millis() { return 0; }
unsigned long micros() { static unsigned long t = 0; return t += 7; }
void delay(unsigned long) {}
void setup();
void loop();
int main() { setup(); loop(); return 0; }
"""

DRIVER = r"""
#include <cstdint>
#include <cstdio>
#include "edgeflow_config.h"
#include "model_data.h"
#include "op_resolver.h"

static_assert(EDGEFLOW_ARENA_SIZE % 16 == 0, "arena is a multiple of 16");
static_assert(EDGEFLOW_ARENA_SIZE > EDGEFLOW_ARENA_MEASURED, "margin added");

int main(int argc, char** argv) {
  EdgeflowOpResolver resolver;
  if (EdgeflowRegisterOps(resolver) != kTfLiteOk) { std::puts("register failed"); return 1; }
  for (unsigned int i = 0; i < resolver.n; ++i) std::printf("op %s\n", resolver.calls[i]);
  std::printf("count %u\n", kEdgeflowOpCount);
  std::printf("align %u\n", (unsigned)(reinterpret_cast<std::uintptr_t>(g_model) % 16));
  std::printf("len %u %u\n", g_model_len, (unsigned)G_MODEL_LEN);
  std::printf("arena %d\n", EDGEFLOW_ARENA_SIZE);
  FILE* f = std::fopen(argv[1], "wb");
  std::fwrite(g_model, 1, g_model_len, f);
  std::fclose(f);
  return 0;
}
"""


def _write_stubs(tmp: Path) -> None:
    for rel, text in {**API_STUBS, "tensorflow/lite/micro/micro_mutable_op_resolver.h": RESOLVER_STUB}.items():
        (tmp / "stub" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "stub" / rel).write_text(text)


def _compile_main(main_file: Path, src: Path, include: Path, tmp: Path) -> str:
    """Compile the generated main program (and model array) against the stubs; run setup()+loop()."""
    unit = tmp / "main_unit.cc"
    unit.write_text(f'#include "Arduino.h"\n#include "{main_file}"\n')
    (tmp / "main_driver.cc").write_text(MAIN_DRIVER)
    exe = tmp / "main_check"
    cmd = [GXX, "-std=c++17", "-Wall", "-Werror", "-Wno-unused-parameter", "-I", str(include),
           "-I", str(tmp / "stub"), str(unit), str(tmp / "main_driver.cc"), str(src / "model_data.cc"), "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _compile_and_run(project: Path, src: Path, include: Path, tmp: Path) -> tuple[str, bytes]:
    _write_stubs(tmp)
    (tmp / "driver.cc").write_text(DRIVER)
    exe = tmp / "check_project"
    cmd = [GXX, "-std=c++17", "-Wall", "-Werror", "-I", str(include), "-I", str(tmp / "stub"),
           str(tmp / "driver.cc"), str(src / "model_data.cc"), "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = tmp / "model_back.bin"
    run = subprocess.run([str(exe), str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout, out.read_bytes()


def _expected_methods(int8_bytes: bytes) -> list[str]:
    from edgeflow.tflite import parse

    names: list[str] = []
    for op in parse(int8_bytes).ops:
        if OP_TO_METHOD[op.name] not in names:
            names.append(OP_TO_METHOD[op.name])
    return names


@needs_gxx
@pytest.mark.parametrize("board", ["arduino-nano-33-ble", "stm32f746g-disco"])
def test_project_for_board_compiles_and_registers_exactly_the_models_ops(board, int8_cnn, tmp_path):
    from edgeflow import firmware
    from edgeflow.devices import check

    out = tmp_path / "digits_fw"
    lines: list[str] = []
    p = generate_mcu_project(int8_cnn, board, out, log=lines.append)
    measured = check(int8_cnn, devices=[board], firmware=firmware.available()).results[0].arena_bytes
    assert p.arena_measured_bytes == measured
    assert p.arena_bytes == arena_with_margin(measured) and p.arena_bytes >= measured * 1.25 + 1024

    if board.startswith("arduino"):
        assert p.kind == "arduino"
        assert sorted(x.name for x in out.iterdir()) == sorted(
            ["digits_fw.ino", "model_data.h", "model_data.cc", "edgeflow_config.h", "op_resolver.h", "README.md",
             "edgeflow_figures.json", MARKER])
        figures = json.loads((out / "edgeflow_figures.json").read_text())
        assert figures["fits"] and figures["figures"]["arena_bytes"]["value"] == measured
        src = include = out
        main = (out / "digits_fw.ino").read_text()
    else:
        assert p.kind == "platformio"
        ini = (out / "platformio.ini").read_text()
        assert "board = disco_f746ng" in ini and "platform = ststm32" in ini
        src, include = out / "src", out / "include"
        main = (src / "main.cpp").read_text()
    assert "micros()" in main and "Invoke()" in main and "AllocateTensors()" in main
    assert "AllOpsResolver" not in main

    stdout, back = _compile_and_run(out, src, include, tmp_path)
    registered = [ln.split()[1] for ln in stdout.splitlines() if ln.startswith("op ")]
    assert registered == _expected_methods(int8_cnn) == p.resolver_calls
    assert f"count {len(registered)}" in stdout
    assert "align 0" in stdout
    shipped = slim(int8_cnn, tflm_only=True)[0]  # the slim file: what TFLM reads, nothing else
    assert f"len {len(shipped)} {len(shipped)}" in stdout
    assert f"arena {p.arena_bytes}" in stdout
    assert back == shipped  # the C array holds the slim model byte for byte

    main_file = out / "digits_fw.ino" if p.kind == "arduino" else src / "main.cpp"
    serial = _compile_main(main_file, src, include, tmp_path)
    assert f"arena used: {p.arena_bytes // 2} of {p.arena_bytes}" in serial
    assert "top-1: " in serial and "inference: 7 us" in serial
    assert serial.count("output:") == 1 and len(serial.split("output:")[1].split("\n")[0].split()) == 10


@needs_gxx
def test_decode_model_ships_edgeflows_decode_kernel_and_compiles_against_tflm(trained_cnn, digits, tmp_path):
    """A table-compressed model's project carries edgeflow's DECODE kernel (the package's
    own files) and registers it with AddCustom; op_resolver.h and the kernel compile with
    the host's g++ against the real TFLM headers (the pinned sources; syntax only)."""
    from importlib.resources import files

    from _models import table_compressed

    from edgeflow.deploy.mcu import DECODE_CALL
    from edgeflow.firmware import sources

    try:
        tflm = sources.locate(online=False)
    except EdgeflowError as err:
        pytest.skip(str(err))
    _, packed, _ = table_compressed(trained_cnn, digits)
    out = tmp_path / "fw"
    p = generate_mcu_project(packed, "nucleo-h743zi", out, arena_bytes=20000)
    assert DECODE_CALL in p.resolver_calls and "AddDecode" not in p.resolver_calls
    shipped = files("edgeflow").joinpath("_data/firmware")
    for rel in ("include/edgeflow_decode.h", "src/edgeflow_decode.cc"):
        assert (out / rel).read_text() == shipped.joinpath(Path(rel).name).read_text()
    resolver = (out / "include/op_resolver.h").read_text()
    assert '#include "edgeflow_decode.h"' in resolver
    assert f"  if (resolver.{DECODE_CALL} != kTfLiteOk) return kTfLiteError;" in resolver
    (tmp_path / "register.cc").write_text('#include "op_resolver.h"\nint main() { EdgeflowOpResolver r; '
                                          "return EdgeflowRegisterOps(r) != kTfLiteOk; }\n")
    d = tflm.downloads
    cmd = [GXX, "-std=c++17", "-fsyntax-only", "-Wall", "-DTF_LITE_STATIC_MEMORY", f"-I{out / 'include'}",
           f"-I{tflm.root}", f"-I{d / 'flatbuffers/include'}", f"-I{d / 'gemmlowp'}", f"-I{d / 'ruy'}",
           str(tmp_path / "register.cc"), str(out / "src/edgeflow_decode.cc")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_dry_run_writes_nothing_and_names_every_file(int8_cnn, tmp_path):
    lines: list[str] = []
    p = generate_mcu_project(int8_cnn, "raspberry-pi-pico", tmp_path / "fw", dry_run=True, log=lines.append)
    assert not (tmp_path / "fw").exists()
    text = "\n".join(lines)
    for f in ("platformio.ini", "src/main.cpp", "src/model_data.cc", "include/op_resolver.h"):
        assert f in text
    assert "would measure" in text and p.arena_measured_bytes is None


def test_bad_inputs_are_clear_errors(int8_cnn, tmp_path):
    with pytest.raises(EdgeflowError, match="did you mean 'arduino-nano-33-ble'"):
        generate_mcu_project(int8_cnn, "arduino-nano-33", tmp_path / "a")
    with pytest.raises(EdgeflowError, match="runs litert, not TensorFlow Lite Micro"):
        generate_mcu_project(int8_cnn, "raspberry-pi-4", tmp_path / "b")
    with pytest.raises(EdgeflowError, match="has no TFLM kernel"):
        resolver_calls(["CONV_2D", "NOT_AN_OP"])
    with pytest.raises(EdgeflowError, match="margin must be >= 0"):
        arena_with_margin(100, -0.5)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_arena_margin_formula():
    # ceil16(m * (1 + margin) + 1024)
    assert arena_with_margin(10000) == 13536
    assert arena_with_margin(10000, 0.0) == 11024
    assert arena_with_margin(1, 0.0) == 1040


def test_existing_project_is_updated_only_with_update_and_keeps_other_files(int8_cnn, tmp_path):
    out = tmp_path / "fw"
    generate_mcu_project(int8_cnn, "nucleo-h743zi", out, arena_bytes=5000)
    (out / "notes.txt").write_text("mine")
    config = out / "include" / "edgeflow_config.h"
    before = config.read_text()
    for kwargs in ({}, {"ignore_check": True}):  # ignoring the check never overwrites a project
        with pytest.raises(EdgeflowError) as err:
            generate_mcu_project(int8_cnn, "nucleo-h743zi", out, arena_bytes=6000, **kwargs)
        assert str(err.value) == (f"{out} holds files edgeflow wrote before: pass --update to replace them "
                                  "(other files in it are kept), or choose a new folder")
    assert config.read_text() == before
    p = generate_mcu_project(int8_cnn, "nucleo-h743zi", out, arena_bytes=6000, update=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert f"#define EDGEFLOW_ARENA_SIZE {p.arena_bytes}" in config.read_text()
    assert p.arena_source == "given"


def test_cli_mcu(int8_cnn, tmp_path):
    import json

    from click.testing import CliRunner

    from edgeflow.cli import main

    model = tmp_path / "m.tflite"
    model.write_bytes(int8_cnn)
    res = CliRunner().invoke(main, ["deploy", "mcu", str(model), "--board", "esp32-s3-devkitc-1", "-o",
                                    str(tmp_path / "fw"), "--arena-bytes", "4000", "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)["result"]
    assert rec["kind"] == "platformio" and rec["arena_bytes"] == arena_with_margin(4000)
    assert "TensorFlowLite_ESP32.h" in (tmp_path / "fw" / "src" / "main.cpp").read_text()
    res = CliRunner().invoke(main, ["deploy", "mcu", str(tmp_path / "missing.tflite"), "--board", "nucleo-h743zi",
                                    "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and res.output.startswith("error: ")


def test_cli_mcu_update_and_ignore_check_are_separate_and_force_is_gone(int8_cnn, tmp_path):
    from click.testing import CliRunner

    from edgeflow.cli import main

    model = tmp_path / "m.tflite"
    model.write_bytes(int8_cnn)
    out = tmp_path / "fw"
    base = ["deploy", "mcu", str(model), "--board", "nucleo-h743zi", "-o", str(out)]
    assert CliRunner().invoke(main, [*base, "--arena-bytes", "4000"]).exit_code == 0
    config = out / "include" / "edgeflow_config.h"
    before = config.read_text()
    res = CliRunner().invoke(main, [*base, "--arena-bytes", "5000", "--force"])
    assert res.exit_code == 2
    assert res.output == ("error: deploy mcu has no --force: pass --update to replace the files of a project edgeflow "
                          "generated in -o, --ignore-check to write a project whose model fails its check "
                          "(see 'edgeflow deploy mcu --help')\n")
    res = CliRunner().invoke(main, [*base, "--arena-bytes", "5000", "--ignore-check"])
    assert res.exit_code == 2
    assert res.output == (f"error: {out} holds files edgeflow wrote before: pass --update to replace them "
                          "(other files in it are kept), or choose a new folder\n")
    assert config.read_text() == before
    res = CliRunner().invoke(main, [*base, "--arena-bytes", "5000", "--update"])
    assert res.exit_code == 0, res.output
    assert f"#define EDGEFLOW_ARENA_SIZE {arena_with_margin(5000)}" in config.read_text()
