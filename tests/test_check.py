"""check(): real models, real tflite-micro measurements, verdicts, exit codes and bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import edgeflow.runtime.tflm as tflm
from edgeflow import tflite
from edgeflow._keras import keras
from edgeflow.cli import main
from edgeflow.devices import DeviceResult, Report, check, load_devices
from edgeflow.errors import EdgeflowError
from edgeflow.report import check_table

MCUS = [n for n, d in load_devices().items() if d.runtime == "tflm"]
JSON_KEYS = {
    "device", "fits", "arena_bytes", "ram_required_bytes", "ram_available_bytes", "ram_source",
    "flash_required_bytes", "flash_available_bytes", "unsupported_ops", "problems",
}


@pytest.fixture(scope="module")
def float_cnn(trained_cnn):
    """The trained small CNN as a float32 .tflite (float ops everywhere)."""
    from edgeflow.convert import convert

    return convert(trained_cnn, "float32")


@pytest.fixture(scope="module")
def gelu_int8(digits):
    """A small int8 model with GELU, an op LiteRT has and TFLM and the Edge TPU lack."""
    from edgeflow.convert import convert

    (x_tr, _), _ = digits
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(16, activation="gelu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    return convert(model, "int8", x_tr[:100])


@pytest.fixture
def measure_calls(monkeypatch):
    """Count calls of the real measure_arena (it still runs tflite-micro)."""
    calls = []
    real = tflm.measure_arena

    def counting(model, **kwargs):
        calls.append(len(model))
        return real(model, **kwargs)

    monkeypatch.setattr(tflm, "measure_arena", counting)
    return calls


def _ram_comparison(name, data, report):
    """Print check's RAM figure beside TFLM's own measurement and the static estimate."""
    info = tflite.parse(data)
    est = {pb: tflite.estimate_arena(info, pointer_bytes=pb).total_bytes for pb in (4, 8)}
    est["plan"] = tflite.plan_memory(info).peak_bytes
    meas = report.measurement
    measured = meas["arena_bytes"] if meas and meas["status"] == "ok" else None
    for r in report.results:
        if r.runtime == "tflm":
            print(f"[ram] {name} {r.device}: check arena {r.arena_bytes} ({r.ram_source}, "
                  f"{r.pointer_bytes * 8}-bit), TFLM measured {measured}, static estimate "
                  f"32-bit {est[4]} / 64-bit {est[8]}, LiteRT plan peak {est['plan']}")
            break
    return measured, est


def test_int8_cnn_arena_is_measured_once_and_fits_every_board(int8_cnn, measure_calls):
    report = check(int8_cnn, "all")
    assert len(measure_calls) == 1  # once per model, not once per device
    assert report.measurement["status"] == "ok"
    measured, est = _ram_comparison("int8_cnn", int8_cnn, report)
    for r in report.results:
        assert r.fits, (r.device, r.problems, r.unsupported_ops)
        assert not r.unsupported_ops and not r.problems
        if r.runtime == "tflm":
            assert (r.ram_source, r.pointer_bytes, r.arena_bytes) == ("measured", 8, measured)
            assert any("(arena (estimated, 32-bit) " in n for n in r.notes)
            assert r.arena_figure == "arena (measured, host TFLM 64-bit)"
        else:
            assert r.ram_source == "estimated" and r.arena_bytes == est["plan"]
            assert r.arena_figure == "activation plan peak"
        dev = load_devices()[r.device]
        if dev.ram_bytes is not None:
            overhead = dev.overhead.runtime.ram_bytes + dev.overhead.application.ram_bytes
            model = len(int8_cnn) if r.runtime != "tflm" else 0
            assert r.ram_required_bytes == r.arena_bytes + overhead + model
    # the static plan agrees with what TFLM measured on this 64-bit host
    assert abs(est[8] - measured) <= 0.15 * measured
    assert est[4] < est[8]  # 32-bit bookkeeping is smaller
    assert report.fits and report.exit_code == 0


@pytest.mark.slow  # builds and converts MobileNetV2 (the shared fixture, ~40 s)
def test_tflm_abort_is_reported_and_the_arena_measured_on_a_copy(mobilenet_v2_int8):
    report = check(mobilenet_v2_int8, ["nucleo-h743zi", "raspberry-pi-4", "coral-dev-board"])
    measured, est = _ram_comparison("mobilenet_v2_int8", mobilenet_v2_int8, report)
    nucleo = report["nucleo-h743zi"]
    if report.measurement["status"] == "ok":  # a TFLM that runs it: then it is measured
        assert nucleo.ram_source == "measured" and nucleo.arena_bytes == measured
        pytest.skip("this tflite-micro runs the MobileNetV2 softmax head")
    assert report.measurement["status"] == "aborted"
    # The model aborts (so it does not fit), but the known softmax-scale cause lets TFLM
    # measure the arena on a copy with the scale raised: measured, within 1% of the estimate.
    copy = tflm.measure_arena(tflm.raise_softmax_scale(mobilenet_v2_int8))
    assert copy.ok and report.measurement["copy_arena_bytes"] == copy.arena_bytes
    assert not nucleo.fits and nucleo.ram_source == "measured"
    assert (nucleo.arena_bytes, nucleo.pointer_bytes) == (copy.arena_bytes, 8)
    assert abs(copy.arena_bytes - est[8]) / copy.arena_bytes < 0.01
    assert any("TFLM aborted" in p and "SOFTMAX" in p and "measured on a copy" in p
               for p in nucleo.problems)
    assert report["raspberry-pi-4"].fits  # LiteRT runs it
    assert report["coral-dev-board"].fits  # every op maps to the Edge TPU
    assert report.exit_code == 1


@pytest.mark.slow
def test_mobilenet_does_not_fit_the_smallest_boards_by_flash_or_ram(mobilenet_v2_int8):
    report = check(mobilenet_v2_int8, MCUS, measure=False)
    pico = report["raspberry-pi-pico"]
    assert pico.ram_required_bytes > pico.arena_bytes
    size = len(mobilenet_v2_int8)
    for r in report.results:
        assert r.flash_required_bytes >= size
        over_ram = r.ram_required_bytes > r.ram_available_bytes
        assert (any(p.startswith("RAM:") for p in r.problems)) == (
            over_ram or r.arena_bytes > (load_devices()[r.device].arena_max_bytes or 1 << 40)
        )


def test_float_model_is_a_dtype_problem_on_the_edge_tpu_only(float_cnn):
    report = check(float_cnn, ["coral-usb-accelerator", "arduino-nano-33-ble", "raspberry-pi-5"])
    _ram_comparison("float_cnn", float_cnn, report)
    coral = report["coral-usb-accelerator"]
    assert not coral.fits and any("float32" in p and "int8" in p for p in coral.problems)
    nano = report["arduino-nano-33-ble"]
    assert nano.fits and nano.ram_source == "measured"
    assert any("reference kernels" in n for n in nano.notes)
    assert report["raspberry-pi-5"].fits


def test_op_a_runtime_lacks_is_listed_with_its_version(gelu_int8):
    report = check(gelu_int8, ["sparkfun-edge", "coral-dev-board", "raspberry-pi-4"])
    _ram_comparison("gelu_int8", gelu_int8, report)
    version = next(op.version for op in tflite.parse(gelu_int8).ops if op.name == "GELU")
    for name in ("sparkfun-edge", "coral-dev-board"):
        r = report[name]
        assert not r.fits
        assert [(u["op"], u["version"]) for u in r.unsupported_ops] == [("GELU", version)]
    assert report["sparkfun-edge"].ram_source == "estimated"  # TFLM refused it
    assert report["raspberry-pi-4"].fits and not report["raspberry-pi-4"].unsupported_ops


def test_cli_exit_codes_and_json(int8_cnn, gelu_int8, tmp_path):
    runner = CliRunner()
    good, bad = tmp_path / "good.tflite", tmp_path / "gelu.tflite"
    good.write_bytes(int8_cnn)
    bad.write_bytes(gelu_int8)
    page = tmp_path / "check.html"
    result = runner.invoke(main, ["check", str(good), "-d", "raspberry-pi-pico",
                                  "-d", "raspberry-pi-4", "--json", "--no-firmware", "--html", str(page)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["outputs"] == [str(page)]
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<h2>Operators</h2>" in html and "<h2>Devices</h2>" in html
    assert "<h2>Firmware</h2>" not in html  # none built
    for target, expected in ((page, f"error: {page} exists: pass --force to overwrite it, or choose another output\n"),
                             (tmp_path, f"error: {tmp_path} is a folder: name the output file, e.g. "
                                        f"{tmp_path / 'check.html'}\n")):
        again = runner.invoke(main, ["check", str(good), "-d", "raspberry-pi-4", "--html", str(target)])
        assert again.exit_code == 2 and again.output == expected
    assert page.read_text() == html
    assert document["command"] == "check" and document["verdict"] == "pass"
    rows = document["devices"]
    assert [r["device"] for r in rows] == ["raspberry-pi-pico", "raspberry-pi-4"]
    assert all(JSON_KEYS <= set(r) for r in rows)
    assert rows[0]["ram_source"] == "measured" and rows[1]["ram_source"] == "estimated"
    assert rows[0]["arena_figure"] == "arena (measured, host TFLM 64-bit)"
    assert rows[1]["arena_figure"] == "activation plan peak"
    result = runner.invoke(main, ["check", str(bad), "--device", "all", "--no-measure"])
    assert result.exit_code == 1
    assert "GELU" in result.output and "does NOT fit" in result.output


@pytest.mark.parametrize(
    ("content", "device", "expected"),
    [
        (b"", "nucleo-h743zi", "empty"),
        (b"\x00" * 64 + b"random bytes, not a flatbuffer", "nucleo-h743zi", "not a TFLite flatbuffer"),
        (None, "nucleo-h743zi", "truncated"),
        ("int8", "nucleo-h7", "did you mean 'nucleo-h743zi'?"),
        ("int8", "pico", "did you mean 'raspberry-pi-pico'?"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(int8_cnn, tmp_path, content, device, expected):
    path = tmp_path / "model.tflite"
    if content is None:
        content = int8_cnn[: len(int8_cnn) // 3]
    elif content == "int8":
        content = int8_cnn
    path.write_bytes(content)
    result = CliRunner().invoke(main, ["check", str(path), "-d", device])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert expected in result.output


def test_non_tflite_inputs_get_a_clear_error(trained_cnn, tmp_path):
    with pytest.raises(EdgeflowError, match="needs .tflite bytes or a .tflite path"):
        check(trained_cnn, "nucleo-h743zi")
    keras_file = tmp_path / "model.keras"
    keras_file.write_bytes(b"PK\x03\x04")
    with pytest.raises(EdgeflowError, match="convert it first"):
        check(keras_file, "nucleo-h743zi")
    with pytest.raises(EdgeflowError, match="does not exist"):
        check(tmp_path / "missing.tflite", "nucleo-h743zi")
    result = CliRunner().invoke(main, ["check", str(tmp_path), "-d", "nucleo-h743zi"])
    assert result.exit_code == 2 and "is a directory" in result.output


SNAPSHOT = """\
model m.tflite: 27.2 KiB, 7 ops (0 in float32), weights 21.3 KiB
arena (measured, host TFLM 64-bit): 5.9 KiB (the smallest arena tflite-micro runs the model with)

device      runtime      arena  arena figure                        RAM need / avail            flash need / avail           ops        verdict
----------  -------  ---------  ----------------------------------  --------------------------  ---------------------------  ---------  ------------------------------
board-a     tflm       5.9 KiB  arena (measured, host TFLM 64-bit)  53.9 KiB / 256.0 KiB (21%)  171.2 KiB / 960.0 KiB (18%)  ok         fits (21% RAM)
board-b     litert   201.4 KiB  activation plan peak                184.8 MiB / 1.0 GiB (18%)   not checked                  ok         fits (18% RAM)
usb-coproc  edgetpu    1.8 KiB  activation plan peak                host                        not checked                  1 missing  does not fit: 1 unsupported op

problems:
  usb-coproc: unsupported op GELU v2: not in the table

RAM need = arena + runtime and application share (+ the model on Linux boards); flash need = model + runtime and application code. Shares are estimates from the profiles (edgeflow devices --json shows their sources).
verdict: does NOT fit every device"""


def test_check_table_layout_snapshot():
    """The terminal table's layout, from fixed figures (no model run)."""
    results = [
        DeviceResult("board-a", "tflm", True, 6042, 55194, 262144, "measured", 8, 175309, 983040,
                     verdict="fits (21% RAM)"),
        DeviceResult("board-b", "litert", True, 206234, 193784627, 1073741824, "estimated", 8,
                     None, None, verdict="fits (18% RAM)"),
        DeviceResult("usb-coproc", "edgetpu", False, 1843, None, None, "estimated", 8, None, None,
                     unsupported_ops=[{"op": "GELU", "version": 2, "reason": "not in the table"}],
                     verdict="does not fit: 1 unsupported op"),
    ]
    model = {"path": "m.tflite", "size_bytes": 27848, "ops": 7, "float_ops": 0,
             "weights_bytes": 21811}
    measurement = {"status": "ok", "arena_bytes": 6042, "pointer_bytes": 8, "message": ""}
    report = Report(model=model, results=results, measurement=measurement)
    assert check_table(report) == SNAPSHOT
    assert report.exit_code == 1 and not report.fits


def test_int8_model_with_float_interface_still_fits_the_edge_tpu(trained_cnn, digits):
    """QUANTIZE maps to the Edge TPU; the final DEQUANTIZE runs on the CPU, which is fine."""
    from edgeflow.convert import convert

    (x_tr, _), _ = digits
    data = convert(trained_cnn, "int8", x_tr[:100], input_type="float32", output_type="float32")
    names = [op.name for op in tflite.parse(data).ops]
    assert names[0] == "QUANTIZE" and names[-1] == "DEQUANTIZE"
    coral = check(data, "coral-usb-accelerator", measure=False)["coral-usb-accelerator"]
    assert coral.fits and not coral.unsupported_ops
    assert any("DEQUANTIZE" in n for n in coral.notes)


def test_a_bad_file_is_named_in_the_error(tmp_path, int8_cnn):
    bad = tmp_path / "half.tflite"
    bad.write_bytes(int8_cnn[: len(int8_cnn) // 2])
    with pytest.raises(EdgeflowError, match=r"half\.tflite is truncated or corrupt"):
        check(bad, "raspberry-pi-pico")


def test_a_tflm_only_slim_file_is_compared_with_litert_through_its_twin(int8_cnn):
    """The C array's file (slim tflm_only: one zero point per per-channel tensor) is one LiteRT
    refuses; check loads ``litert_twin`` of it in LiteRT and still compares TFLM with LiteRT."""
    from edgeflow.tflite import slim

    only = slim(int8_cnn, tflm_only=True)[0]
    r = check(only, "arduino-nano-33-ble").results[0]
    assert r.fits and not r.problems
    agreed = [n for n in r.notes if n.startswith("TFLM agrees with LiteRT: max |TFLM - LiteRT| = ")]
    assert len(agreed) == 1 and not [n for n in r.notes if "LiteRT cannot load" in n]
