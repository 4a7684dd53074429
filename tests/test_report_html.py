"""The HTML report of a run, rendered by a real headless Chromium and read back as text."""

from __future__ import annotations

import datetime
import html
import re
import shutil
import subprocess
from importlib.metadata import version

import pytest

from edgeflow import tflite
from edgeflow.devices.results import DeviceResult, Report
from edgeflow.pipeline import RunResult, StageRecord
from edgeflow.report import render_run_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Writes what the page shows (innerText: rendered text only, SVG labels included) into one <pre>.
_READ_TEXT = ("<script>const t=document.body.innerText;document.body.textContent='';"
              "const p=document.createElement('pre');p.id='edgeflow-text';p.textContent=t;"
              "document.body.appendChild(p);</script>")

LONG_ERROR = ("TFLM aborted (the process crashed) on this model: SIGABRT in SOFTMAX Prepare "
              "(input scale too small); the firmware runs the same kernels, so expect the same; RAM is "
              "the static 32-bit estimate")


def _page_text(page: str, tmp_path) -> str:
    path = tmp_path / "report.html"
    path.write_text(page.replace("</body>", _READ_TEXT + "</body>"), encoding="utf-8")
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="edgeflow-text">(.*)</pre>', proc.stdout, re.S)
    assert found, proc.stdout[:2000]
    return html.unescape(found.group(1))


@pytest.fixture
def run_result(int8_cnn, tmp_path):
    model = tmp_path / "03-digits-int8.tflite"
    model.write_bytes(int8_cnn)
    results = [
        DeviceResult("arduino-nano-33-ble", "tflm", True, 6032, 58320, 262144, "measured", 8, 185104, 983040,
                     notes=["arena note shared by the microcontrollers"], verdict="fits (22% RAM)"),
        DeviceResult("sparkfun-edge", "tflm", False, 5286, 57574, 393216, "estimated", 4, 185104, 1048576,
                     problems=[LONG_ERROR], notes=["arena note shared by the microcontrollers"],
                     verdict="does not fit: TFLM fails"),
        DeviceResult("raspberry-pi-pico", "tflm", False, 5286, 57574, 270336, "estimated", 4, 185104,
                     2097152, problems=[LONG_ERROR], verdict="does not fit: TFLM fails"),
        DeviceResult("coral-usb-accelerator", "edgetpu", True, 3072, None, None, "estimated", 8, None, None,
                     notes=["compile the model with edgetpu_compiler before deploying"], verdict="fits"),
    ]
    measurement = {"status": "ok", "arena_bytes": 6032, "pointer_bytes": 8, "message": "",
                   "breakdown": {"total": 6032, "non_persistent": 3088, "persistent": 2944}}
    report = Report(model={"path": str(model)}, results=results, measurement=measurement)
    records = [
        StageRecord(1, "train", "train (8 epochs)", keras_accuracy=0.9711, size_bytes=86952,
                    gzip_bytes=80321, sparsity=0.0, seconds=4.2, artifact=str(tmp_path / "01-train.keras")),
        StageRecord(2, "prune", "prune (magnitude 80%, polynomial)", keras_accuracy=0.9644, size_bytes=86952,
                    gzip_bytes=31020, sparsity=0.78, seconds=6.0),
        StageRecord(3, "convert", "convert (int8)", keras_accuracy=0.9644, tflite_accuracy=0.9622,
                    size_bytes=len(int8_cnn), gzip_bytes=12000, sparsity=0.78, seconds=2.5,
                    artifact=str(model), extra={"int8": "full int8 (input int8, output int8)"}),
        StageRecord(4, "check", "check (4 boards)", extra={"fits": "2/4 devices"}),
    ]
    return RunResult("digits", str(tmp_path), records, report)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_report_reads_right_in_a_browser(run_result, int8_cnn, tmp_path):
    days = {f"Made {datetime.date.today():%Y-%m-%d}"}
    page = render_run_html(run_result)
    days.add(f"Made {datetime.date.today():%Y-%m-%d}")  # in case midnight passed
    text = _page_text(page, tmp_path)
    info = tflite.parse(int8_cnn)

    # versions and the date
    assert f"edgeflow {__import__('edgeflow').__version__}" in text
    assert f"TensorFlow {version('tensorflow')}" in text
    assert f"TFLM (tflite-micro) {version('tflite-micro')}" in text
    assert any(day in text for day in days)
    # stages, with the accuracy-vs-size plot labelled by stage
    assert "prune (magnitude 80%, polynomial)\t0.9644\t\t86,952\t31,020\t78.0%" in text
    assert "full int8 (input int8, output int8)" in text and "fits 2/4 devices" in text
    assert "Accuracy vs size over the stages" in text and "accuracy (test split)" in text
    # one row per operator: type, output shape, MACs, weight and activation bytes, where it runs
    conv = info.ops[0]
    weights = sum(info.tensors[i].nbytes for i in conv.inputs if info.tensors[i].is_constant)
    out = info.tensors[conv.outputs[0]]
    assert (f"0\tCONV_2D v{conv.version}\tint8\t{'x'.join(map(str, out.shape))}\t{conv.macs:,}\t"
            f"{weights:,}\t{out.nbytes:,}\tTFLM; Edge TPU") in text
    assert f"total\t\t\t{info.total_macs:,}\t" in text
    # the arena split: every figure by its one name
    for line in ("activation plan peak\t3,072\t0\t3,072",
                 "arena (measured, host TFLM 64-bit)\t3,088\t2,944\t6,032"):
        assert line in text
    assert "arena (estimated, 32-bit)\t3,072\t" in text and "arena (estimated, 64-bit)\t3,072\t" in text
    # devices: arena figure names, and the limit lines of the plots are labelled
    assert "arduino-nano-33-ble\tfits (22% RAM)\t5.9 KiB\tarena (measured, host TFLM 64-bit)" in text
    assert "sparkfun-edge\tdoes not fit: TFLM fails\t5.2 KiB\tarena (estimated, 32-bit)" in text
    assert "board RAM (100%)" in text and "board flash (100%)" in text
    # every note and problem, each long error once with the boards it concerns
    assert text.count(LONG_ERROR) == 1
    assert f"problem {LONG_ERROR} (sparkfun-edge, raspberry-pi-pico)" in text
    assert "note arena note shared by the microcontrollers (arduino-nano-33-ble, sparkfun-edge)" in text
    assert "note compile the model with edgetpu_compiler before deploying (coral-usb-accelerator)" in text
