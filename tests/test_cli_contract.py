"""The contract every command keeps: exit codes, one JSON document valid against the packaged
schema, outputs that never destroy the user's work, umask modes, a fast quiet CLI."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _schema import document
from click.testing import CliRunner

from edgeflow import _io, _quiet
from edgeflow.cli import main
from edgeflow.cli._output import envelope
from edgeflow.report import arena_name

ROOT = Path(__file__).resolve().parents[1]


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def files(trained_cnn, int8_cnn, digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("contract")
    (x_tr, y_tr), _ = digits
    trained_cnn.save(folder / "cnn.keras")
    np.savez(folder / "data.npz", x=x_tr[:64], y=y_tr[:64])
    (folder / "cnn.tflite").write_bytes(int8_cnn)
    return folder


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# --------------------------------------------------------------------------- --json


def test_every_command_prints_one_document_valid_against_the_schema(files, tmp_path):
    """Commands that train or convert are validated where their tests run them already:
    export below, prune/quantize/distill in their CLI tests, run in test_pipeline, deploy
    rpi/coral in theirs."""
    tiny = tmp_path / "tiny-board.yaml"  # a copy of a shipped board with 1 KiB of RAM
    shipped = ROOT / "edgeflow" / "_data" / "devices" / "arduino-nano-33-ble.yaml"
    tiny.write_text(shipped.read_text().replace("name: arduino-nano-33-ble", "name: tiny-board")
                    .replace("\nram_bytes: 262144", "\nram_bytes: 1024", 1))
    tflite = files / "cnn.tflite"
    runs = {
        "devices": (["devices"], 0),
        "validate": (["validate", "quickstart"], 0),
        "inspect": (["inspect", tflite], 0),
        "check": (["check", tflite, "-d", "arduino-nano-33-ble", "-d", "raspberry-pi-4", "--no-measure"], 0),
        "check fail": (["check", tflite, "-d", tiny, "--no-measure"], 1),
        "deploy mcu": (["deploy", "mcu", tflite, "--board", "nucleo-h743zi", "-o", tmp_path / "fw",
                        "--arena-bytes", "5000"], 0),
        "deploy rpi": (["deploy", "rpi", tflite, "pi@board.invalid", "--dry-run"], 0),
    }
    docs = {}
    for name, (args, code) in runs.items():
        result = _invoke(*args, "--json")
        assert result.exit_code == code, (name, result.output)
        assert result.stdout.count("\n") == 1, name  # one document on one line
        docs[name] = document(result.stdout)
        assert docs[name]["command"] == name.replace(" fail", "") and docs[name]["exit_code"] == code
    assert [d["device"] for d in docs["check"]["devices"]] == ["arduino-nano-33-ble", "raspberry-pi-4"]
    assert docs["check"]["devices"][0]["arena_figure"] == arena_name("estimated", 4)
    assert docs["check"]["devices"][1]["arena_figure"] == arena_name("plan")
    assert docs["check fail"]["verdict"] == "fail" and not docs["check fail"]["devices"][0]["fits"]
    assert docs["check"]["model"]["path"] == str(tflite)
    ops = docs["inspect"]["result"]["ops"]
    assert {op["options"].get("fused_activation_function") for op in ops} >= {"RELU", "NONE"}
    assert docs["deploy mcu"]["result"]["arena_bytes"] == 7280  # ceil16(5000 * 1.25 + 1024)
    assert docs["deploy mcu"]["outputs"] == [str(tmp_path / "fw")]
    assert len(docs["devices"]["result"]["profiles"]) == 11


def test_errors_are_one_line_on_stderr_and_an_error_document(files, tmp_path):
    for args, message in [
        (["check", tmp_path / "missing.tflite", "-d", "all"], f"model file {tmp_path / 'missing.tflite'} does not exist"),
        (["inspect", files / "cnn.tflite", "--colour"], "No such option '--colour'. (see 'edgeflow inspect --help')"),
    ]:
        result = _invoke(*args, "--json")
        assert result.exit_code == 2
        assert result.stderr == f"error: {message}\n"
        doc = document(result.stdout)
        assert (doc["verdict"], doc["result"], doc["error"]) == ("bad_input", None, {"message": message})
    doc = envelope("search", None, exit_code=3, error="internal error ValueError: x")
    assert document(__import__("json").dumps(doc))["verdict"] == "internal_error"


def test_cli_mode_names_match_the_library():
    from edgeflow.cli import export, quantize
    from edgeflow.convert import MODES
    from edgeflow.quantize import QUANTIZE_MODES

    assert export.MODE_NAMES == tuple(MODES)
    assert quantize.MODE_NAMES == QUANTIZE_MODES


# --------------------------------------------------------------------------- outputs


def test_folder_outputs_never_replace_the_users_work(files, tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.c").write_text("int main(void) { return 0; }\n")
    shutil.copy(files / "cnn.tflite", project / "model.tflite")  # -o on the folder of the input
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    mcu = ["deploy", "mcu", "--board", "nucleo-h743zi", "--arena-bytes", "5000"]
    refused = ("is not empty and edgeflow did not create it: choose a new or empty folder "
               "(edgeflow never deletes or replaces files it did not write)")
    for extra in ([], ["--update"], ["--update", "--ignore-check"]):
        result = _invoke(*mcu, project / "model.tflite", "-o", project, *extra)
        assert result.exit_code == 2 and result.output == f"error: {project} {refused}\n"
    monkeypatch.chdir(project / "src")
    for target in (".", ".."):  # these crashed once
        result = _invoke(*mcu, project / "model.tflite", "-o", target)
        assert result.exit_code == 2 and result.output == f"error: {target} {refused}\n"
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before


def test_file_outputs_need_force_and_keep_their_mode(files, tmp_path, umask_022):
    out = tmp_path / "c" / "model"
    args = ["export", files / "cnn.tflite", "--format", "c", "-o", out]
    assert _invoke(*args).exit_code == 0
    header = out.with_suffix(".h")
    assert stat.S_IMODE(header.stat().st_mode) == 0o644  # not mkstemp's 0600
    header.write_text("// edited by hand\n")
    header.chmod(0o640)
    result = _invoke(*args)
    assert result.exit_code == 2 and result.output == f"error: {header} exists: pass --force to overwrite it, or choose another output\n"
    assert header.read_text() == "// edited by hand\n"
    assert _invoke(*args, "--force").exit_code == 0
    assert "g_model" in header.read_text() and stat.S_IMODE(header.stat().st_mode) == 0o640


def test_io_modes_follow_the_umask(tmp_path, umask_022):
    path = _io.write_text(tmp_path / "a.json", "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with _io.output_dir(tmp_path / "fw") as staging:
        (staging / "src").mkdir()
        (staging / "src" / "main.cpp").write_text("int main() {}\n")
    assert stat.S_IMODE((tmp_path / "fw").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "fw" / "src" / "main.cpp").stat().st_mode) == 0o644
    os.umask(0o077)
    assert stat.S_IMODE(_io.write_text(tmp_path / "b.json", "{}").stat().st_mode) == 0o600


# --------------------------------------------------------------------------- quiet and fast


def test_help_imports_no_tensorflow():
    code = (
        "import sys\nfrom edgeflow.cli import main\n"
        "for args in (['--help'], ['deploy', '--help'], *([c, '--help'] for c in main.list_commands(None))):\n"
        "    try:\n        main(args, standalone_mode=False)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'numpy')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"


def test_native_noise_on_fd2_is_dropped_and_the_rest_passes(capfd):
    lines = [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        b"I0000 00:00:1795998320.022851   23166 cudart_stub.cc:31] Could not find cuda drivers\n",
        b"E0000 00:00:1795998471.363048   24937 cuda_platform.cc:52] failed call to cuInit: UNKNOWN\n",
        b"fully_quantize: 0, inference_type: 6, input_inference_type: INT8, output_inference_type: INT8\n",
        b"a line from a tool the user should see\n",
    ]
    with _quiet.session():
        for line in lines:
            os.write(2, line)
    assert capfd.readouterr().err == "a line from a tool the user should see\n"
    with _quiet.session(debug=True):
        os.write(2, lines[1])
    assert capfd.readouterr().err == lines[1].decode()


def test_a_command_that_converts_prints_nothing_on_stderr(files, tmp_path):
    """A real run in a fresh process: TensorFlow's start-up lines and the converter's prints
    (seen on this machine without edgeflow's filter) stay off stderr, and stdout holds only
    the JSON document."""
    out = tmp_path / "m.tflite"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "EDGEFLOW_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "edgeflow", "export", str(files / "cnn.keras"), "-o", str(out),
         "--data", str(files / "data.npz"), "--json"],
        capture_output=True, text=True, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    doc = document(proc.stdout)
    assert doc["outputs"] == [str(out)] and doc["result"]["size_bytes"] == out.stat().st_size
    assert doc["summary"] == f"wrote {out} ({out.stat().st_size:,} bytes, int8)"
    assert doc["result"]["notes"] == []  # full int8 from the first conversion


# --------------------------------------------------------------------------- CI


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = readme.split("Run the tests:\n\n", 1)[1].splitlines()[0].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in [line.strip() for line in ci.splitlines()]
    assert "EDGEFLOW_PROGRESS" not in ci and "export " not in ci
