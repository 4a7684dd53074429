"""SSH transport for board deployment, on the system ``ssh`` and ``scp`` binaries.

Why the system binaries and not paramiko: they read ``~/.ssh/config`` (host aliases,
``ProxyJump``, ``IdentityFile``, the agent) exactly as the user's own shell does, check
host keys against the same ``known_hosts`` files, and add no dependency.

Host keys are always checked: every command carries ``-o StrictHostKeyChecking=yes``
(which overrides a ``no`` in the user's config). The only relaxation is the explicit
``accept_new_host_key=True`` (``--accept-new-host-key``), which maps to OpenSSH's
``accept-new`` (trust on first use: a *new* host is recorded, a *changed* key is still
refused) and is announced in the step log. ``BatchMode=yes`` makes a missing key fail
at once instead of waiting for a password prompt.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgeflow.errors import EdgeflowError

Log = Callable[[str], None]

#: What a path on the board may hold: the remote shell reads nothing special in it.
SAFE_REMOTE_PATH = re.compile(r"[A-Za-z0-9._+/-]+")


def _quiet(_: str) -> None:
    pass


@dataclass
class SSHTarget:
    """Where and how to reach a board over SSH.

    Anything left ``None`` comes from ``~/.ssh/config`` (or ``ssh_config``) and the
    OpenSSH defaults, as with a plain ``ssh HOST``.

    Args:
        host: host name, ``user@host`` or a ``Host`` alias from the SSH config.
        user: remote user (overrides the config).
        port: remote port (overrides the config).
        identity: private key file (``-i``).
        known_hosts: a known_hosts file to check the host key against
            (``UserKnownHostsFile``), instead of ``~/.ssh/known_hosts``.
        ssh_config: an SSH config file used instead of ``~/.ssh/config`` (``-F``).
        accept_new_host_key: record the key of a host seen for the first time
            (``StrictHostKeyChecking=accept-new``); a changed key is still refused.
        connect_timeout: seconds to wait for the TCP connection.

    Example:
        >>> t = SSHTarget("pi@raspberrypi.local", identity="~/.ssh/id_ed25519")
        >>> t.ssh_argv("uname -m")[:2]
        ['ssh', '-o']
    """

    host: str
    user: str | None = None
    port: int | None = None
    identity: str | None = None
    known_hosts: str | None = None
    ssh_config: str | None = None
    accept_new_host_key: bool = False
    connect_timeout: int = 10
    extra_options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.host or self.host.startswith("-") or any(c.isspace() for c in self.host):
            raise EdgeflowError(f"invalid SSH host {self.host!r}: give a host name, user@host or an ~/.ssh/config alias")
        if self.port is not None and not 0 < int(self.port) < 65536:
            raise EdgeflowError(f"invalid SSH port {self.port}: use 1-65535")
        for name in ("identity", "known_hosts", "ssh_config"):
            value = getattr(self, name)
            if value is not None:
                path = Path(value).expanduser()
                if name != "known_hosts" and not path.is_file():
                    raise EdgeflowError(f"{name.replace('_', ' ')} file {value} not found")
                setattr(self, name, str(path))

    # -- command lines ---------------------------------------------------------
    def _options(self) -> list[str]:
        checking = "accept-new" if self.accept_new_host_key else "yes"
        opts = [
            "-o", f"StrictHostKeyChecking={checking}",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={int(self.connect_timeout)}",
        ]
        if self.ssh_config:
            opts = ["-F", self.ssh_config, *opts]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.identity:
            opts += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        if self.user:
            opts += ["-o", f"User={self.user}"]
        for key, value in self.extra_options.items():
            opts += ["-o", f"{key}={value}"]
        return opts

    def ssh_argv(self, remote_command: str) -> list[str]:
        """The ``ssh`` command line that runs ``remote_command`` (a shell string) on the board."""
        port = ["-p", str(self.port)] if self.port else []
        return ["ssh", *self._options(), *port, self.host, "--", remote_command]

    def scp_argv(self, local: str | Path, remote_path: str) -> list[str]:
        """The ``scp`` command line that copies ``local`` to ``remote_path`` on the board.

        ``remote_path`` may hold only letters, digits and ``._-+/`` (:data:`SAFE_REMOTE_PATH`):
        scp's legacy protocol (the default before OpenSSH 9.0, ``-O`` after) hands it to the
        board's shell, its SFTP protocol does not, so no quoting works for both; a plain name
        needs none.

        Raises:
            EdgeflowError: ``remote_path`` holds another character.
        """
        if not SAFE_REMOTE_PATH.fullmatch(remote_path):
            raise EdgeflowError(f"remote path {remote_path!r} may hold only letters, digits and . _ - + /")
        port = ["-P", str(self.port)] if self.port else []
        host = self.host
        if ":" in host and not host.startswith("["):  # an IPv6 literal needs brackets for scp
            host = f"[{host}]"
        return ["scp", "-q", *self._options(), *port, str(local), f"{host}:{remote_path}"]

    def resolved(self) -> dict[str, str]:
        """The effective settings ``ssh -G`` computes from the options and the SSH config.

        Reads the configuration only; opens no connection. Returns ``{}`` when ``ssh``
        is not installed.
        """
        if shutil.which("ssh") is None:
            return {}
        port = ["-p", str(self.port)] if self.port else []
        proc = subprocess.run(
            ["ssh", "-G", *self._options(), *port, self.host],
            capture_output=True, text=True, timeout=10, check=False,
        )
        keys = ("user", "hostname", "port", "identityfile", "stricthostkeychecking", "userknownhostsfile")
        out: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key in keys and key not in out:
                out[key] = value
        return out

    # -- running ---------------------------------------------------------------
    def run(self, remote_command: str, *, timeout: float = 600, what: str = "remote command") -> str:
        """Run ``remote_command`` on the board and return its stdout.

        Raises:
            EdgeflowError: the connection failed (with the reason: unknown or changed
                host key, refused key, unreachable host) or the command exited non-zero.
        """
        return _call(self.ssh_argv(remote_command), self, timeout, what)

    def copy(self, local: str | Path, remote_path: str, *, timeout: float = 600) -> None:
        """Copy a local file to ``remote_path`` on the board (``scp``)."""
        _call(self.scp_argv(local, remote_path), self, timeout, f"copying {Path(local).name}")


def _call(argv: list[str], target: SSHTarget, timeout: float, what: str) -> str:
    if shutil.which(argv[0]) is None:
        raise EdgeflowError(f"{argv[0]} is not installed: install the OpenSSH client (apt-get install openssh-client)")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise EdgeflowError(f"{what} on {target.host} timed out after {timeout:.0f} s") from err
    if proc.returncode == 0:
        return proc.stdout
    raise EdgeflowError(_explain(proc.returncode, proc.stderr, target, what))


def _explain(code: int, stderr: str, target: SSHTarget, what: str) -> str:
    """One line from an ssh/scp failure: the cause and what to do."""
    err = stderr or ""
    known = f" {target.known_hosts}" if target.known_hosts else " your known_hosts (~/.ssh/known_hosts or the SSH config's)"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
        return (f"the host key of {target.host} has CHANGED since it was recorded in{known}: "
                "this may be an attack; verify the board's new key, then remove the old line with ssh-keygen -R")
    if "Host key verification failed" in err or "No ED25519 host key is known" in err or "host key is known" in err:
        return (f"the host key of {target.host} is not in{known}: verify the fingerprint on the board and add it "
                f"(ssh-keyscan HOST >> known_hosts), pass --known-hosts FILE, or --accept-new-host-key to trust it on first use")
    if "Permission denied" in err:
        return (f"{target.host} refused the SSH login: pass --identity KEY (or add the key to ssh-agent) "
                "and make sure its public key is in the board's ~/.ssh/authorized_keys")
    if "Connection refused" in err or "Could not resolve hostname" in err or "timed out" in err \
            or "No route to host" in err:
        line = next((ln for ln in err.splitlines() if ln.strip()), "").strip()
        return f"cannot reach {target.host}: {line} (check the host name, --port and that sshd runs on the board)"
    tail = " | ".join(ln.strip() for ln in err.strip().splitlines()[-3:] if ln.strip())
    return f"{what} on {target.host} failed (exit {code}): {tail or 'no error output'}"


def quote(text: str) -> str:
    """Quote one word for the remote POSIX shell."""
    return shlex.quote(text)


def show(argv: list[str]) -> str:
    """A command line as a user would type it."""
    return shlex.join(argv)
