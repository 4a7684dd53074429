"""Fit-to-device search on Optuna: real training, conversion and TFLM checks, real SQLite and
PostgreSQL studies (a server started here), worker processes."""

from __future__ import annotations

import glob
import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from _schema import document
from click.testing import CliRunner

from edgeflow.cli import main
from edgeflow.pipeline import run_recipe
from edgeflow.recipe import parse_recipe
from edgeflow.search import default_space, search

BOARD = "arduino-nano-33-ble"
# The board's RAM need is arena + 54,384 B of runtime and application share: the default CNN
# (width 1.0) needs about 60.4 KB, width 0.5 about 58.3 KB. A cap between them.
RAM_CAP = 59_000


def _recipe(epochs: int = 12, widths=(0.5, 0.75, 1.0), **search) -> dict:
    return {
        "name": "fit", "seed": 0, "model": {"builder": "digits_cnn"},
        "data": {"source": "digits", "validation_fraction": 0},
        "stages": [
            {"stage": "train", "epochs": epochs, "learning_rate": 0.003},
            {"stage": "convert", "mode": "int8"},
            {"stage": "check", "devices": [BOARD]},
        ],
        "search": {"space": {"model.kwargs.width": list(widths)}, "sampler": "grid",
                   "objectives": ["accuracy", "ram"], **search},
    }


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    """The unconstrained run of the default CNN, and a capped search run twice (2, then 3 trials)."""
    root = tmp_path_factory.mktemp("search")
    raw = _recipe(constraints={"fits": True, "ram": {"max": RAM_CAP}})
    full = run_recipe(parse_recipe({k: v for k, v in raw.items() if k != "search"}), output_dir=root / "full",
                      verbose=0)
    lines: list[str] = []
    first = search(parse_recipe(raw), BOARD, trials=2, output_dir=root / "s", echo=lines.append)
    stamps = {t.number: os.stat(t.folder).st_mtime_ns for t in first.trials}
    second = search(parse_recipe(raw), BOARD, trials=3, output_dir=root / "s", echo=lines.append)
    return full, first, stamps, second, lines, root


def test_capped_search_finds_a_model_that_fits_within_two_points(capped):
    full, _, _, result, lines, _ = capped
    full_ram = full.check[BOARD].ram_required_bytes
    full_acc = full.records[1].tflite_accuracy
    assert full_ram > RAM_CAP  # the default CNN does not fit under the cap
    by_width = {t.values["model.kwargs.width"]: t for t in result.trials}
    assert by_width[1.0].state == "dropped"  # known before training: it cannot fit
    assert by_width[1.0].note.startswith("ram ") and by_width[1.0].note.endswith(f" B > {RAM_CAP:,} B")
    assert result.dropped >= 1
    best = result.trial(result.best)
    assert best.feasible and best.fits and best.figures["ram"] <= RAM_CAP
    assert best.figures["accuracy"] >= full_acc - 0.02
    assert result.best in result.front
    assert all(result.trial(n).feasible for n in result.front)
    # one progress line per trial, with its figures and the best so far
    assert sum(line.startswith("trial ") for line in lines) == 3
    assert any("dropped before training: ram" in line for line in lines)
    assert any(f"best #{result.best} accuracy" in line for line in lines)


def test_second_run_resumes_the_study(capped):
    _, first, stamps, second, _, root = capped
    assert [t.number for t in first.trials] == [0, 1]
    assert [t.number for t in second.trials] == [0, 1, 2]
    for t in first.trials:  # the first two trials were not run again
        assert second.trial(t.number).figures == t.figures
        assert os.stat(t.folder).st_mtime_ns == stamps[t.number]
    assert sorted(t.values["model.kwargs.width"] for t in second.trials) == [0.5, 0.75, 1.0]
    assert (root / "s" / "study.db").exists()


def test_outputs_front_html_json_and_best_artifacts(capped):
    _, _, _, result, _, root = capped
    out = root / "s"
    best = result.trial(result.best)
    assert (out / "best" / "model_data.cc").exists() and (out / "best" / "model_data.h").exists()
    tflites = list((out / "best").glob("*.tflite"))
    assert len(tflites) == 1 and tflites[0].read_bytes() == next(Path(best.folder).glob("*.tflite")).read_bytes()
    recipe = yaml.safe_load((out / "best" / "recipe.yaml").read_text())
    assert recipe["model"]["kwargs"]["width"] == best.values["model.kwargs.width"]
    for t in result.trials:  # every trial's recipe
        assert yaml.safe_load((Path(t.folder) / "recipe.yaml").read_text())["model"]["kwargs"] == {
            "width": t.values["model.kwargs.width"]}
    page = (out / "search.html").read_text()
    assert "Accuracy vs RAM needed" in page and f"ram cap {_kib(RAM_CAP)}" in page
    assert "Accuracy vs flash needed" in page and f"{BOARD} flash" in page


def test_cli_json_of_a_finished_study(capped):
    _, _, _, result, _, root = capped
    (root / "fit.yaml").write_text(yaml.safe_dump(_recipe(constraints={"fits": True, "ram": {"max": RAM_CAP}})))
    run = CliRunner().invoke(main, ["search", str(root / "fit.yaml"), "--device", BOARD, "--trials", "3",
                                    "-o", str(root / "s"), "--json"])
    assert run.exit_code == 0, run.output
    doc = document(run.stdout)
    assert doc["command"] == "search" and doc["verdict"] == "pass"
    assert doc["result"]["best"] == result.best and doc["result"]["front"] == result.front
    assert doc["result"]["dropped"] == result.dropped
    assert doc["devices"][0]["device"] == BOARD and doc["devices"][0]["fits"] is True
    assert doc["model"]["path"].endswith(".tflite")


def test_bad_search_key_is_refused_before_any_work(tmp_path):
    raw = _recipe()
    raw["search"]["space"] = {"stages.0.epochz": [1, 2]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    run = CliRunner().invoke(main, ["search", str(tmp_path / "bad.yaml"), "--device", BOARD,
                                    "-o", str(tmp_path / "out")])
    assert run.exit_code == 2
    assert run.stderr.strip() == ("error: fit: search key 'stages.0.epochz' = 1: "
                                  "unknown key 'stages.0.epochz' (did you mean 'epochs'?)")
    assert not (tmp_path / "out").exists()


def test_edgeflow_search_is_the_function_also_once_the_module_is_imported():
    import edgeflow

    assert importlib.import_module("edgeflow.search").search is search
    assert callable(edgeflow.search)


def test_default_space_from_the_recipes_stages():
    from edgeflow.recipe import load_recipe

    space = default_space(load_recipe("recipes/quickstart.yaml"))
    assert list(space) == ["model.kwargs.width", "stages.1.target_sparsity"]  # QAT: int8 only
    space = default_space(load_recipe("recipes/prune_distill_qat.yaml"))
    assert list(space) == ["model.kwargs.width", "stages.1.ratio"]


# --------------------------------------------------------------------------- workers


def _two_workers(tmp_path, storage=None):
    raw = _recipe(epochs=1, widths=(0.25, 0.5), constraints={"fits": False})  # nothing to check early
    result = search(parse_recipe(raw), BOARD, trials=2, workers=2, output_dir=tmp_path / "w",
                    storage=storage, verbose=0)
    assert sorted(t.state for t in result.trials) == ["complete", "complete"]
    assert len({t.worker for t in result.trials}) == 2  # one trial in each process
    return result


def test_two_workers_share_a_sqlite_study(tmp_path):
    _two_workers(tmp_path)


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 (a free port), in a temporary folder: its URL."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (initdb not found; .ci/run installs postgresql)")
    root = Path(tempfile.mkdtemp(prefix="edgeflow-pg-"))  # pytest's tmp folders are root-only
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "edgeflow", "--auth=trust"],
                   check=True, capture_output=True)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"),
                    "-w", "start"], check=True, capture_output=True)
    try:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "edgeflow",
                        "search"], check=True, capture_output=True)
        yield f"postgresql+psycopg2://edgeflow@127.0.0.1:{port}/search"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(tmp_path, postgres):
    result = _two_workers(tmp_path, storage=postgres)
    assert result.storage == postgres


def _kib(n: int) -> str:
    from edgeflow.report import format_bytes

    return format_bytes(n)


def test_a_killed_trial_is_failed_not_counted(tmp_path, monkeypatch):
    """A worker killed mid-trial: its trial becomes FAIL once its heartbeat is stale."""
    import optuna

    search_mod = importlib.import_module("edgeflow.search")
    monkeypatch.setattr(search_mod, "_HEARTBEAT_SECONDS", 1)
    raw = _recipe(epochs=2, widths=(0.25,))
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "k"
    code = ("import importlib; s = importlib.import_module('edgeflow.search'); s._HEARTBEAT_SECONDS = 1; "
            f"s.search({str(tmp_path / 'fit.yaml')!r}, {BOARD!r}, trials=1, output_dir={str(out)!r}, verbose=0)")
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 120
        while not (out / "trials" / "0000" / "recipe.yaml").exists():
            assert time.time() < deadline and child.poll() is None
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        child.kill()
        child.wait()
    study = optuna.load_study(study_name="fit", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state for t in study.get_trials()] == [optuna.trial.TrialState.RUNNING]
    time.sleep(2.5)  # past the grace period (2 heartbeats)
    result = search(str(tmp_path / "fit.yaml"), BOARD, trials=1, output_dir=out, verbose=0)
    assert [t.state for t in result.trials] == ["failed", "complete"]
    assert result.trials[0].note == "its worker stopped"
