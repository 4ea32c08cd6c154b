"""A throwaway OpenSSH server for tests.

``start_sshd(directory)`` generates a host key, a user key (authorised) and a
wrong key (not authorised) with ``ssh-keygen``, writes an ``sshd_config``
(127.0.0.1 on a free port, ``UsePAM no``, ``StrictModes no``,
``PermitRootLogin yes``, keys only, ``AuthorizedKeysFile`` and ``PidFile`` in
``directory``) and runs ``sshd -D -e`` as the current user, who is the one
that logs in.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


def sshd_available() -> bool:
    return os.access(SSHD, os.X_OK) and os.access(SSH_KEYGEN, os.X_OK)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SshServer:
    port: int
    user: str
    key: Path
    wrong_key: Path
    log: Path
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _keygen(path: Path) -> None:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "autoserv-test", "-f", str(path)],
                   check=True, capture_output=True)


def start_sshd(directory: Path) -> SshServer:
    """Start sshd in ``directory``; returns once it answers with an SSH banner."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "user_key", "wrong_key"):
        _keygen(directory / name)
    (directory / "authorized_keys").write_text((directory / "user_key.pub").read_text())
    os.chmod(directory / "authorized_keys", 0o600)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    port = free_port()
    config = directory / "sshd_config"
    config.write_text(f"""\
ListenAddress 127.0.0.1:{port}
HostKey {directory / "host_key"}
PidFile {directory / "sshd.pid"}
AuthorizedKeysFile {directory / "authorized_keys"}
UsePAM no
StrictModes no
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxSessions 100
MaxStartups 100
LogLevel VERBOSE
""")
    log = directory / "sshd.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log_file)
    server = SshServer(port, getpass.getuser(), directory / "user_key", directory / "wrong_key", log, process)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"sshd did not answer on port {port}: {log.read_text()}")
