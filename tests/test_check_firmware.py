"""check with real figures: TFLM's outputs against LiteRT's, the firmware's flash/RAM/arena, and
LiteRT boards that must run the model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _schema import document
from test_firmware import _missing
from test_report_html import CHROMIUM, _page_text

from edgeflow._keras import keras
from edgeflow.cli._output import envelope
from edgeflow.devices import check
from edgeflow.report import render_check_html


@pytest.fixture(scope="module")
def dilated():
    """A dilated Conv1D converted with a dynamic batch by the plain converter: it becomes
    SPACE_TO_BATCH_ND + CONV_2D + BATCH_TO_SPACE_ND, which TFLM computes wrongly."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 3))
    h = keras.layers.Conv1D(8, 3, dilation_rate=2, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(h)))
    x = np.random.default_rng(0).normal(size=(64, 32, 3)).astype("float32")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(64))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def test_dilated_conv1d_mismatch_on_tflm_is_a_problem(dilated):
    report = check(dilated, ["arduino-nano-33-ble", "raspberry-pi-4"])
    mcu = report["arduino-nano-33-ble"]
    assert not mcu.fits
    [problem] = [p for p in mcu.problems if p.startswith("TFLM computes something else than LiteRT")]
    assert "quantization steps of the output" in problem and "on 4 fixed inputs" in problem
    assert report["raspberry-pi-4"].fits  # LiteRT computes it right


def test_int16x8_model_litert_cannot_run_does_not_fit_a_pi(tmp_path):
    """LayerNormalization in int16x8 aborts LiteRT (RSQRT/MEAN int16 kernels): a Pi must not fit.
    The check runs in its own process, as a user runs it."""
    from edgeflow.convert import convert
    from edgeflow.errors import RuntimeCrash
    from edgeflow.runtime import litert

    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), batch_size=1)
    model = keras.Model(inp, keras.layers.LayerNormalization()(keras.layers.Dense(8)(inp)))
    path = tmp_path / "ln16.tflite"
    data = convert(model, "int16x8", np.random.default_rng(0).normal(size=(32, 8)).astype("float32"))
    path.write_bytes(data)
    # right after convert, in this process: the probe still runs in a child (an abort here
    # would end pytest)
    report = check(data, ["raspberry-pi-4"])
    assert not report["raspberry-pi-4"].fits
    assert any(p.startswith("LiteRT crashed on the model") for p in report["raspberry-pi-4"].problems)
    with pytest.raises(RuntimeCrash):  # and predicting it runs in the child too
        litert.predict(data, np.zeros((1, 8), np.float32))
    proc = subprocess.run([sys.executable, "-m", "edgeflow", "check", str(path), "-d", "raspberry-pi-4", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    [device] = json.loads(proc.stdout)["devices"]
    assert not device["fits"]
    assert any(p.startswith("LiteRT crashed on the model") for p in device["problems"])


@pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
def test_check_takes_flash_ram_and_arena_from_the_firmware(int8_cnn, tmp_path, monkeypatch, capsys):
    from edgeflow.devices.profiles import get_device
    from edgeflow.firmware import build

    monkeypatch.setenv("EDGEFLOW_PROGRESS", "1")
    report = check(int8_cnn, ["arduino-nano-33-ble", "stm32f746g-disco", "sparkfun-edge", "esp32-s3-devkitc-1"],
                   firmware=True)
    progress = capsys.readouterr().err  # one core after the other, on stderr
    assert "firmware:   0%|          | 0/2 [00:00<?, ?core/s, cortex-m4f: build, run under QEMU]" in progress
    assert "| 1/2 [" in progress and "cortex-m7: build, run under QEMU]" in progress
    monkeypatch.setenv("EDGEFLOW_PROGRESS", "0")
    r = report["arduino-nano-33-ble"]
    fw = build(int8_cnn, "arduino-nano-33-ble")
    app = get_device("arduino-nano-33-ble").overhead.application
    assert r.ram_source == "firmware" and r.arena_figure == "arena (measured, firmware 32-bit)"
    assert r.arena_bytes == fw.arena_used
    assert r.flash_required_bytes == fw.firmware.flash + app.flash_bytes
    assert r.ram_required_bytes == fw.firmware.static_ram + app.ram_bytes
    assert r.figures["flash_required_bytes"]["source"].startswith("linked image (text + rodata + data")
    assert r.figures["arena_bytes"]["source"] == "emulated run on cortex-m4f (QEMU)"
    assert r.figures["instructions"]["value"] == fw.instructions
    assert "estimate" in r.figures["latency_ms"]["source"]
    esp = report["esp32-s3-devkitc-1"]
    assert esp.ram_source == "measured"
    assert any(n.startswith("flash and RAM are profile estimates: no firmware build (Xtensa LX7") for n in esp.notes)
    assert esp.figures["flash_required_bytes"]["source"] == "model + runtime and application shares (profile estimates)"
    # the breakdown of each core's image, as the firmware build reports it
    m7 = report["stm32f746g-disco"]
    assert r.figures["core"]["value"] == "cortex-m4f" and m7.figures["core"]["value"] == "cortex-m7"
    for name in ("operators", "flash_split", "arena_split"):
        assert r.figures[name] == fw.figures()[name]
    # --json: the document with these figures is valid against the schema
    doc = document(json.dumps(envelope("check", {"fits": report.fits, "measurement": report.measurement},
                                       exit_code=report.exit_code, model=report.model,
                                       devices=[d.to_dict() for d in report.results])))
    assert doc["devices"][0]["figures"]["arena_split"] == r.figures["arena_split"]
    # the text report: one latency line per built board, the CPI basis once as a footnote;
    # --json keeps each board's whole source
    from dataclasses import replace

    from edgeflow.firmware.targets import CPI_BASIS
    from edgeflow.report import check_table

    edge = report["sparkfun-edge"]
    assert edge.figures["core"]["value"] == "cortex-m4f"

    def board_line(d, formula, note):
        return (f"  {d.device}: {d.figures['instructions']['value']:,} instructions per inference, "
                f"{d.figures['latency_ms']['value']:.2f} ms ({formula}; CPI basis [{note}])")

    lines = check_table(report).splitlines()
    at = lines.index(board_line(r, "estimate: instructions x CPI 1.2 / 64 MHz", 1))
    assert lines[at:at + 4] == [board_line(r, "estimate: instructions x CPI 1.2 / 64 MHz", 1),
                                board_line(m7, "estimate: instructions x CPI 0.8 / 216 MHz", 1),
                                board_line(edge, "estimate: instructions x CPI 1.2 / 48 MHz", 1),
                                f"  [1] CPI basis: {CPI_BASIS}"]
    assert sum(CPI_BASIS in line for line in lines) == 1
    assert [d["figures"]["latency_ms"]["source"] for d in doc["devices"][:3]] == [
        f"estimate: instructions x CPI {c} / {f} MHz ({CPI_BASIS})" for c, f in ((1.2, 64), (0.8, 216), (1.2, 48))]
    # a board whose profile gives its own CPI basis gets a second footnote
    own = {**edge.figures, "latency_ms": {**edge.figures["latency_ms"],
                                          "source": "estimate: instructions x CPI 1.5 / 48 MHz (measured on my board)"}}
    mixed = replace(report, results=[r, replace(edge, figures=own), m7])
    lines = check_table(mixed).splitlines()
    at = lines.index(board_line(r, "estimate: instructions x CPI 1.2 / 64 MHz", 1))
    assert lines[at + 1:at + 5] == [board_line(edge, "estimate: instructions x CPI 1.5 / 48 MHz", 2),
                                    board_line(m7, "estimate: instructions x CPI 0.8 / 216 MHz", 1),
                                    f"  [1] CPI basis: {CPI_BASIS}", "  [2] CPI basis: measured on my board"]
    # the HTML page, as a browser shows it: latency per board, per core the operators with their
    # instructions and share of time (and a plot of it), the flash and arena splits (tables and bars)
    if CHROMIUM is None:
        return
    text = _page_text(render_check_html(report, int8_cnn), tmp_path)
    for d in (r, m7):
        f, core = d.figures, d.figures["core"]["value"]
        lat = f["latency_ms"]
        assert f"{d.device}\t{core}\t{f['instructions']['value']:,}\t{lat['value']:.2f}\t{lat['source']}" in text
        rows = f["operators"]["value"]
        for row in rows:
            assert (f"{row['index']}\t{row['op']}\t{row['output_shape']}\t{row['macs']:,}\t{row['instructions']:,}\t"
                    f"{row['share']:.1%}\t{row['weight_bytes']:,}\t{row['activation_bytes']:,}") in text
        outside = f["operators"]["outside_operators"]
        assert f"\toutside operators\t\t\t{outside:,}\t" in text
        assert f"Invoke() total\t\t{sum(x['macs'] for x in rows):,}\t{f['instructions']['value']:,}\t100.0%" in text
        assert f"Share of the Invoke() instructions on {core}" in text
        flash, arena = f["flash_split"]["value"], f["arena_split"]["value"]
        assert "\t".join([core, *(f"{v:,}" for v in flash.values()), f"{sum(flash.values()):,}"]) in text
        assert "\t".join([core, *(f"{v:,}" for v in arena.values()), f"{sum(arena.values()):,}"]) in text
    assert text.count("Flash split") == 2 and text.count("Arena split on the target") == 2  # heading + plot title


def test_lstm_arena_search_survives_crashes_and_finds_the_true_minimum():
    """TFLM's LSTM kernels crash (SIGSEGV) instead of failing cleanly with too small an arena
    (tflite-micro #2686): every crash below a size that ran counts as too small."""
    from edgeflow.convert import convert
    from edgeflow.runtime import tflm

    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 4), batch_size=1)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.LSTM(16)(inp)))
    data = convert(model, "int8", np.random.default_rng(0).normal(size=(64, 10, 4)).astype("float32"))
    m = tflm.measure_arena(data)
    assert m.status == "ok" and m.crashes
    assert m.message.startswith("TFLM crashes (SIGSEGV) instead of failing cleanly with a smaller arena")
    assert tflm.probe(data, m.arena_bytes).status == "ok"
    assert tflm.probe(data, m.arena_bytes - 16).status in ("aborted", "failed")  # the true minimum


def test_deploy_mcu_refuses_a_failing_model_and_a_folder_it_did_not_create(dilated, int8_cnn, tmp_path):
    from click.testing import CliRunner

    from edgeflow.cli import main

    model = tmp_path / "dilated.tflite"
    model.write_bytes(dilated)
    out = tmp_path / "fw"
    result = CliRunner().invoke(main, ["deploy", "mcu", str(model), "--board", "esp32-s3-devkitc-1", "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: esp32-s3-devkitc-1: the model fails its check (TFLM computes something "
                                    "else than LiteRT")
    assert result.stderr.endswith("; fix the model, or pass --ignore-check to write the project anyway\n")
    assert not out.exists()
    result = CliRunner().invoke(main, ["deploy", "mcu", str(model), "--board", "esp32-s3-devkitc-1", "-o", str(out),
                                       "--ignore-check"])
    assert result.exit_code == 0, result.output
    figures = json.loads((out / "edgeflow_figures.json").read_text())
    assert not figures["fits"] and figures["problems"][0].startswith("TFLM computes something else")

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my work")
    (tmp_path / "cnn.tflite").write_bytes(int8_cnn)
    for extra in ([], ["--update"], ["--update", "--ignore-check"]):
        result = CliRunner().invoke(main, ["deploy", "mcu", str(tmp_path / "cnn.tflite"), "--board",
                                           "nucleo-h743zi", "-o", str(mine), "--arena-bytes", "6000", *extra])
        assert result.exit_code == 2 and result.stderr.startswith("error: ")
        assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
        assert (mine / "notes.txt").read_text() == "my work"


def test_a_recipe_check_stage_builds_the_firmware_when_asked(tmp_path):
    """``{stage: check, firmware: true, timeout: 120}``: the run's verdict uses the linked image
    and the emulated run, like ``edgeflow check`` does by default."""
    if _missing():
        pytest.skip(_missing())
    from edgeflow.pipeline import run_recipe

    recipe = {
        "name": "fw", "model": {"builder": "digits_cnn"},
        "data": {"source": "digits", "test_fraction": 0.5, "validation_fraction": 0},
        "stages": [{"stage": "train", "epochs": 1}, {"stage": "convert", "mode": "int8"},
                   {"stage": "check", "devices": ["arduino-nano-33-ble"], "firmware": True, "timeout": 120}],
    }
    (tmp_path / "fw.yaml").write_text(json.dumps(recipe))
    result = run_recipe(tmp_path / "fw.yaml", output_dir=tmp_path / "run", verbose=0)
    [device] = result.check.results
    assert device.ram_source == "firmware"
