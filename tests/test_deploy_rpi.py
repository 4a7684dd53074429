"""Raspberry Pi deployment over SSH, end to end against a real sshd that the test starts.

The "board" is this machine: an OpenSSH server on 127.0.0.1 and a free high port, with
its own config, a temporary host key and client key pair, logging in as the current
user; the board's Python is this test's interpreter (it has ai-edge-litert). CI installs
Debian's openssh-server before pytest; where /usr/sbin/sshd is missing the tests skip.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _schema import document

from edgeflow.deploy.rpi import deploy_rpi
from edgeflow.deploy.ssh import SSHTarget
from edgeflow.errors import EdgeflowError

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A running sshd on 127.0.0.1:PORT accepting a fresh key for the current user."""
    if not Path(SSHD).exists() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server not installed (apt-get install -y openssh-server)")
    d = tmp_path_factory.mktemp("sshd")
    os.chmod(d, 0o700)
    host_pub = _keygen(d / "host_key")
    client_pub = _keygen(d / "id_test")
    (d / "authorized_keys").write_text(client_pub + "\n")
    port = _free_port()
    sftp = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                             "/usr/libexec/sftp-server") if Path(p).exists()), "internal-sftp")
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPubkeyAuthentication yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        f"StrictModes no\nUsePAM no\nSubsystem sftp {sftp}\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config"), "-p", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited at start: {proc.stdout.read()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("sshd did not listen within 10 s")
                time.sleep(0.1)
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
        yield {"port": port, "key": str(d / "id_test"), "known_hosts": str(d / "known_hosts"),
               "user": pwd.getpwuid(os.geteuid()).pw_name, "dir": d, "host_pub": host_pub}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _target(sshd, **kw) -> SSHTarget:
    args = dict(user=sshd["user"], port=sshd["port"], identity=sshd["key"], known_hosts=sshd["known_hosts"])
    args.update(kw)
    return SSHTarget("127.0.0.1", **args)


def test_deploy_benchmarks_on_the_board_and_matches_host(sshd, int8_cnn, digits, tmp_path):
    _, (x_te, _) = digits
    model = tmp_path / "digits_int8.tflite"
    model.write_bytes(int8_cnn)
    board_dir = tmp_path / "board"
    lines: list[str] = []
    r = deploy_rpi(model, _target(sshd), runs=20, warmup=3, threads=1, install=False,
                   remote_python=sys.executable, remote_dir=str(board_dir), sample=x_te[0], log=lines.append)
    # the files really went over SSH to the "board"
    assert (board_dir / "digits_int8.tflite").read_bytes() == int8_cnn
    assert (board_dir / "board_bench.py").is_file() and (board_dir / "input.npy").is_file()
    assert r.runtime["module"] == "ai_edge_litert"
    lat = r.latency
    assert lat["runs"] == 20 and lat["warmup"] == 3 and lat["threads"] == 1
    assert 0 < lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"] <= lat["max_ms"]
    # same runtime, same input: the board's output equals the host's exactly
    assert r.correctness["match"] and r.correctness["top1_agree"]
    assert r.correctness["max_abs_diff"] == 0.0
    rec = json.loads(json.dumps(r.to_dict()))
    assert rec["latency"]["median_ms"] == lat["median_ms"] and rec["dry_run"] is False
    assert any("benchmark on the board" in ln for ln in lines)


def test_unknown_host_key_is_refused_and_accept_new_records_it(sshd, int8_cnn, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    board_dir = tmp_path / "board"
    with pytest.raises(EdgeflowError, match="host key of 127.0.0.1 is not in"):
        deploy_rpi(int8_cnn, _target(sshd, known_hosts=str(empty)), install=False,
                   remote_python=sys.executable, remote_dir=str(board_dir), runs=1, warmup=0)
    assert not board_dir.exists()  # refused before anything was written
    # explicit trust on first use: the key is recorded and the deployment goes through
    r = deploy_rpi(int8_cnn, _target(sshd, known_hosts=str(empty), accept_new_host_key=True), install=False,
                   remote_python=sys.executable, remote_dir=str(board_dir), runs=2, warmup=0)
    assert r.correctness["match"]
    assert sshd["host_pub"].split()[1] in empty.read_text()
    assert any("accept-new" in s for s in r.steps)


def test_changed_host_key_is_refused(sshd, int8_cnn, tmp_path):
    other = tmp_path / "other"
    other_pub = _keygen(other)
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd['port']} {other_pub}\n")
    with pytest.raises(EdgeflowError, match="CHANGED"):
        deploy_rpi(int8_cnn, _target(sshd, known_hosts=str(kh), accept_new_host_key=True), install=False,
                   remote_python=sys.executable, remote_dir=str(tmp_path / "board"), runs=1, warmup=0)


def test_skip_install_without_runtime_fails_clearly(sshd, int8_cnn, tmp_path):
    # a "board" Python without site-packages: this interpreter with -S cannot import ai_edge_litert
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    lines: list[str] = []
    with pytest.raises(EdgeflowError, match="no LiteRT runtime on 127.0.0.1"):
        deploy_rpi(int8_cnn, _target(sshd), install=False, remote_python=str(bare),
                   remote_dir=str(tmp_path / "board"), runs=1, warmup=0, log=lines.append)
    assert any("check the LiteRT runtime" in ln for ln in lines)
    assert not (tmp_path / "board" / "input.npy").exists()  # stopped before copying the model


def test_wrong_remote_python_is_named(sshd, int8_cnn, tmp_path):
    with pytest.raises(EdgeflowError, match="was not found on 127.0.0.1: pass --remote-python"):
        deploy_rpi(int8_cnn, _target(sshd), install=False, remote_python="/nonexistent/python9",
                   remote_dir=str(tmp_path / "board"), runs=1, warmup=0)


def test_dry_run_prints_every_step_and_runs_nothing(int8_cnn, tmp_path):
    lines: list[str] = []
    target = SSHTarget("pi@board.invalid", port=2222, known_hosts=str(tmp_path / "kh"))
    r = deploy_rpi(int8_cnn, target, dry_run=True, log=lines.append, threads=4, runs=7)
    text = "\n".join(lines)
    assert r.dry_run and r.latency is None and r.correctness is None
    assert "StrictHostKeyChecking=yes" in text and "BatchMode=yes" in text
    assert f"UserKnownHostsFile={tmp_path / 'kh'}" in text
    assert "scp -q" in text and "-P 2222" in text and "-p 2222" in text
    assert "pip install --quiet --upgrade pip ai-edge-litert" in text
    assert "--runs 7 --warmup 5 --threads 4" in text
    assert not (tmp_path / "kh").exists()


def test_cli_end_to_end_json(sshd, int8_cnn, tmp_path):
    from click.testing import CliRunner

    from edgeflow.cli import main

    model = tmp_path / "m.tflite"
    model.write_bytes(int8_cnn)
    res = CliRunner().invoke(main, [
        "deploy", "rpi", str(model), "127.0.0.1", "--user", sshd["user"], "--port", str(sshd["port"]),
        "-i", sshd["key"], "--known-hosts", sshd["known_hosts"], "--remote-python", sys.executable,
        "--remote-dir", str(tmp_path / "board"), "--skip-install", "--runs", "5", "--warmup", "1",
        "--json"])
    assert res.exit_code == 0, res.output
    doc = document(res.stdout)
    rec = doc["result"]
    assert doc["devices"][0]["fits"] and doc["verdict"] == "pass"
    assert rec["correctness"]["match"] and rec["latency"]["runs"] == 5
    assert np.isfinite(rec["latency"]["p90_ms"])


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    from click.testing import CliRunner

    from edgeflow.cli import main

    res = CliRunner().invoke(main, ["deploy", "rpi", str(tmp_path / "missing.tflite"), "pi@board", "--dry-run"])
    assert res.exit_code == 2
    assert res.output.startswith("error: ") and "Traceback" not in res.output
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all")
    res = CliRunner().invoke(main, ["deploy", "rpi", str(bad), "pi@board", "--dry-run"])
    assert res.exit_code == 2 and res.output.startswith("error: ")


def test_ssh_config_alias_and_strict_checking_cannot_be_turned_off_there(sshd, int8_cnn, tmp_path):
    cfg = tmp_path / "ssh_config"
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    cfg.write_text(
        f"Host pi-test\n  HostName 127.0.0.1\n  Port {sshd['port']}\n  User {sshd['user']}\n"
        f"  IdentityFile {sshd['key']}\n  UserKnownHostsFile {sshd['known_hosts']}\n"
        f"Host pi-lax\n  HostName 127.0.0.1\n  Port {sshd['port']}\n  User {sshd['user']}\n"
        f"  IdentityFile {sshd['key']}\n  UserKnownHostsFile {empty}\n  StrictHostKeyChecking no\n"
    )
    # user, port, key and known_hosts all come from the config's alias
    r = deploy_rpi(int8_cnn, SSHTarget("pi-test", ssh_config=str(cfg)), install=False,
                   remote_python=sys.executable, remote_dir=str(tmp_path / "board"), runs=2, warmup=0)
    assert r.correctness["match"] and r.latency["runs"] == 2
    # a config that disables host-key checking is overridden: the unknown key is refused
    with pytest.raises(EdgeflowError, match="host key of pi-lax is not in"):
        deploy_rpi(int8_cnn, SSHTarget("pi-lax", ssh_config=str(cfg)), install=False,
                   remote_python=sys.executable, remote_dir=str(tmp_path / "board2"), runs=1, warmup=0)
    assert empty.read_text() == "" and not (tmp_path / "board2").exists()


def test_a_model_file_name_with_shell_syntax_reaches_the_board_as_a_plain_name(sshd, int8_cnn, tmp_path,
                                                                              monkeypatch):
    """Neither scp's remote path nor the benchmark command can run what a file name says. scp
    runs with its legacy protocol (``-O``, the only one of OpenSSH before 9.0), which hands the
    remote path to the board's shell."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scp").write_text(f'#!/bin/sh\nexec {shutil.which("scp")} -O "$@"\n')
    (bin_dir / "scp").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    home_marks = [Path.home() / "PWNED", Path.home() / "PWNED2"]
    model = tmp_path / "m;touch PWNED;$(touch PWNED2).tflite"
    model.write_bytes(int8_cnn)
    board = tmp_path / "board"
    r = deploy_rpi(model, _target(sshd), install=False, remote_python=sys.executable, remote_dir=str(board),
                   runs=1, warmup=0)
    assert sorted(p.name for p in board.iterdir() if p.suffix == ".tflite") == ["m_touch_PWNED___touch_PWNED2_.tflite"]
    assert (board / "m_touch_PWNED___touch_PWNED2_.tflite").read_bytes() == int8_cnn
    assert r.correctness["match"] and r.model == model.name
    assert not any(p.exists() for p in home_marks)
    assert not list(tmp_path.rglob("PWNED*"))


def test_a_remote_dir_with_shell_syntax_is_refused(int8_cnn, tmp_path):
    from click.testing import CliRunner

    from edgeflow.cli import main

    model = tmp_path / "m.tflite"
    model.write_bytes(int8_cnn)
    res = CliRunner().invoke(main, ["deploy", "rpi", str(model), "pi@board.invalid", "--remote-dir", "x;touch y",
                                    "--dry-run"])
    assert res.exit_code == 2
    assert res.stderr == ("error: remote directory 'x;touch y' may hold only letters, digits and . _ - + /: "
                          "the board's shell reads it (e.g. edgeflow-deploy)\n")
    with pytest.raises(EdgeflowError, match="may hold only letters"):
        SSHTarget("board").scp_argv(model, "dir/$(reboot).tflite")


def test_dry_run_evaluates_no_ssh_config(int8_cnn, tmp_path):
    """``Match exec`` in the SSH config runs a command whenever ssh reads the config (ssh -G
    too): a dry run must not read it."""
    mark = tmp_path / "match-exec-ran"
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f'Match exec "touch {mark}"\n  Port 2222\n')
    subprocess.run(["ssh", "-G", "-F", str(cfg), "board.invalid"], capture_output=True, check=False)
    assert mark.exists()  # the config is live: reading it runs the command
    mark.unlink()
    lines: list[str] = []
    r = deploy_rpi(int8_cnn, SSHTarget("board.invalid", ssh_config=str(cfg)), dry_run=True, log=lines.append)
    assert r.dry_run and len(lines) > 5
    assert not mark.exists()
