"""Run folders (runs/<name>/<run id>, latest), --output-dir, --resume [RUN], verified artifacts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml
from click.testing import CliRunner

from edgeflow import _io
from edgeflow.cli import main

TINY = {
    "name": "tiny",
    "model": {"builder": "digits_cnn"},
    "data": {"source": "digits", "test_fraction": 0.5, "validation_fraction": 0},
    "stages": [
        {"stage": "train", "epochs": 1},
        {"stage": "train", "epochs": 1},
        {"stage": "convert", "mode": "float32"},
    ],
}
ARTIFACTS = ["01-train.keras", "02-train.keras", "03-tiny-float32.tflite"]
RUN_ID = re.compile(r"^\d{8}-\d{6}(-\d+)?$")


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A current folder holding recipes/tiny.yaml; runs go to runs/tiny/ in it."""
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run folder of TINY (copied by the tests that resume it)."""
    from edgeflow.pipeline import run_recipe

    out = tmp_path_factory.mktemp("finished") / "run"
    run_recipe(_recipe_file(tmp_path_factory), output_dir=out, verbose=0)
    return out


def _recipe_file(factory):
    path = factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture
def out(here, finished):
    """``here/out``: a copy of the finished run, moved away from where it was made."""
    shutil.copytree(finished, here / "out", symlinks=True)
    return here / "out"


def _run(*args: str):
    result = CliRunner().invoke(main, ["run", "recipes/tiny.yaml", *args])
    return result


def _report(folder) -> dict:
    return json.loads((folder / "report.json").read_text())


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_runs_are_kept_apart_and_resume_picks_the_run(here):
    first = _run("--set", "seed=1", "-q")
    assert first.exit_code == 0, first.output
    second = _run("-q")
    assert second.exit_code == 0, second.output
    runs = here / "runs" / "tiny"
    ids = sorted(p.name for p in runs.iterdir() if not p.is_symlink())
    assert len(ids) == 2 and all(RUN_ID.match(i) for i in ids)
    assert os.readlink(runs / "latest") == ids[1]  # relative link to the newest
    assert (runs / ids[0] / "01-train.keras").read_bytes() != (runs / ids[1] / "01-train.keras").read_bytes()

    # --resume: the latest run, in its own folder; --resume RUN: that run.
    latest = CliRunner().invoke(main, ["run", "recipes/tiny.yaml", "--resume", "--json"])
    assert latest.exit_code == 0, latest.output
    doc = json.loads(latest.stdout)
    assert doc["result"]["output_dir"] == str((runs / ids[1]).resolve())
    assert [s["resumed"] for s in doc["result"]["stages"]] == [True, True, True]
    older = CliRunner().invoke(main, ["run", "recipes/tiny.yaml", "--set", "seed=1",
                                      "--resume", ids[0], "--json"])
    assert older.exit_code == 0, older.output
    stages = json.loads(older.stdout)["result"]["stages"]
    assert [s["resumed"] for s in stages] == [True, True, True]
    assert stages == _report(runs / ids[0])["stages"]
    assert sorted(p.name for p in runs.iterdir()) == sorted([*ids, "latest"])  # no new run

    missing = _run("--resume", "2026")
    assert missing.exit_code == 2
    assert missing.output.strip() == (f"error: no run '2026' to resume in runs/tiny; runs: {', '.join(ids)}")


def test_output_dir_names_the_run_folder_and_is_never_taken_over(here):
    mine = here / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    refused = _run("-o", "mine")
    assert refused.exit_code == 2
    assert refused.output.strip() == (
        "error: mine is not empty and edgeflow did not create it: choose a new or empty folder "
        "(edgeflow never deletes or replaces files it did not write)")
    assert _run("-o", "out", "-q").exit_code == 0
    assert not (here / "runs").exists()  # no run folder, no latest link
    again = _run("-o", "out")
    assert again.exit_code == 2
    assert again.output.strip() == ("error: out holds an earlier run: pass --resume to continue it, "
                                    "--force to run again over its files, or choose another folder")
    forced = _run("-o", "out", "--force", "--json")
    assert forced.exit_code == 0 and not any(s["resumed"] for s in json.loads(forced.stdout)["result"]["stages"])
    both = _run("-o", "out", "--resume", "20260101-000000")
    assert both.exit_code == 2 and "not both" in both.output


def test_resume_from_another_folder_uses_the_run_folders_files(out, finished, tmp_path_factory, monkeypatch):
    made = _report(finished)["stages"]
    assert [s["artifact"] for s in made] == ARTIFACTS  # names inside the run folder
    manifest = json.loads((out / "stages.json").read_text())
    assert [manifest[k]["record"]["sha256"] for k in "123"] == [_sha256(out / a) for a in ARTIFACTS]

    # The run folder was copied away from where it was made, and the current folder holds
    # files of the same names (another run's): neither may change what is used.
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    for name in ARTIFACTS:
        (elsewhere / name).write_bytes(b"another run's file")
    monkeypatch.chdir(elsewhere)
    tflite = (out / ARTIFACTS[2]).read_bytes()
    resumed = CliRunner().invoke(main, ["run", str(out.parent / "recipes" / "tiny.yaml"), "-o", str(out),
                                        "--resume", "--json"])
    assert resumed.exit_code == 0, resumed.output
    doc = json.loads(resumed.stdout)
    assert [s["resumed"] for s in doc["result"]["stages"]] == [True, True, True]
    assert [s["tflite_accuracy"] for s in doc["result"]["stages"]] == [s["tflite_accuracy"] for s in made]
    assert doc["model"]["path"] == str(out / ARTIFACTS[2])
    assert (out / ARTIFACTS[2]).read_bytes() == tflite


def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_replaced_truncated_or_missing_artifact_reruns_its_stage_and_says_so(out):
    # replaced: another valid model file in place of the second stage's
    (out / "02-train.keras").write_bytes((out / "01-train.keras").read_bytes())
    result = _run("-o", "out", "--resume")
    assert result.exit_code == 0, result.output
    assert ("      not resumed: 02-train.keras changed since it was written (SHA-256 differs); "
            "running the stage again") in result.output.splitlines()
    stages = _report(out)["stages"]
    assert [s["resumed"] for s in stages] == [True, False, False]
    assert stages[1]["extra"]["not_resumed"] == "02-train.keras changed since it was written (SHA-256 differs)"
    assert json.loads((out / "stages.json").read_text())["2"]["record"]["sha256"] == _sha256(
        out / "02-train.keras")

    # truncated (a kill while copying it back), then missing
    data = (out / "01-train.keras").read_bytes()
    (out / "01-train.keras").write_bytes(data[: len(data) // 2])
    result = _run("-o", "out", "--resume", "--json")
    assert json.loads(result.stdout)["result"]["stages"][0]["extra"]["not_resumed"] == (
        "01-train.keras changed since it was written (SHA-256 differs)")
    (out / ARTIFACTS[2]).unlink()
    result = _run("-o", "out", "--resume", "--json")
    stages = json.loads(result.stdout)["result"]["stages"]
    assert [s["resumed"] for s in stages] == [True, True, False]
    assert stages[2]["extra"]["not_resumed"] == "03-tiny-float32.tflite is missing"


def test_temporaries_of_killed_runs_are_cleaned_on_the_next_start(here, out, monkeypatch):
    dead, live = _dead_pid(), os.getpid()
    stale = out / f".02-train.edgeflow-tmp-{dead}-x1y2.tmp.keras"
    stale.write_bytes(b"half a model")
    kept = [out / f".02-train.edgeflow-tmp-{live}-a1b2.tmp.keras", out / ".mine.tmp.keras"]
    for path in kept:
        path.write_bytes(b"not ours to remove")
    system = here / "systemtmp"
    system.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system))
    child = system / f"edgeflow-tflm-edgeflow-tmp-{dead}-q9"
    child.mkdir()
    (child / "request.json").write_text("{}")
    other = system / "someone-elses-dir"
    other.mkdir()

    result = _run("-o", "out", "--resume")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"edgeflow: removed out/{stale.name}, left by an interrupted run" in lines
    assert f"edgeflow: removed {child}, left by an interrupted run" in lines
    assert not stale.exists() and not child.exists()
    assert all(p.exists() for p in kept) and other.exists()
    # every temporary edgeflow makes carries the tag and its process id; making one (a
    # TFLM or LiteRT child's folder, say) first removes those killed processes left
    child.mkdir()
    with _io.temporary_dir("edgeflow-tflm-") as tmp:
        assert os.path.basename(tmp).startswith(f"edgeflow-tflm-edgeflow-tmp-{live}-")
        assert not child.exists() and other.exists()
    with _io.atomic_path(out / "x.keras") as tmp:
        assert tmp.name.startswith(f".x.edgeflow-tmp-{live}-")


def test_a_killed_run_resumes_where_it_stopped(here):
    """SIGKILL after the first stage's artifact is recorded; --resume reuses it and ends the run."""
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "edgeflow", "run", "recipes/tiny.yaml", "-q"],
                            cwd=here, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = here / "runs" / "tiny"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        manifest = next(runs.glob("*/stages.json"), None) if runs.is_dir() else None
        if manifest is not None and '"1"' in manifest.read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    folder = (runs / "latest").resolve()
    assert "1" in json.loads((folder / "stages.json").read_text())  # it stopped after stage 1

    result = _run("--resume", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["result"]["output_dir"] == str(folder)
    assert doc["result"]["stages"][0]["resumed"] is True
    assert [s["artifact"] for s in doc["result"]["stages"]] == ARTIFACTS
    assert not [p for p in folder.iterdir() if f"edgeflow-tmp-{proc.pid}-" in p.name]


def test_resume_before_the_recipe_names_the_slip(tmp_path, monkeypatch):
    """``--resume`` takes an optional RUN, so ``run --resume quickstart`` reads the recipe as the
    run: the error says so and how to write it, and nothing is made."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", "--resume", "quickstart"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "error: Missing argument 'RECIPE': --resume took 'quickstart' as the run to continue; put "
        "the recipe first, edgeflow run quickstart --resume. (see 'edgeflow run --help')"]
    assert list(tmp_path.iterdir()) == []
