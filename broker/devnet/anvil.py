"""Start and stop a local anvil node (the devnet's chain).

anvil 1.7.1 comes from npm (``tools/node_modules``). The node always binds ``127.0.0.1``, uses chain
id 31337 and the well-known "test test ... junk" mnemonic, so its first account is the hardhat
deployer ``0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266`` (contracts.md A4).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from broker.devnet.errors import AnvilNotFoundError, DevnetError, PortInUseError
from broker.ports import free_port, port_available

__all__ = [
    "DEFAULT_ACCOUNTS",
    "DEFAULT_BALANCE_0G",
    "DEVNET_CHAIN_ID",
    "AnvilProcess",
    "find_anvil",
    "pid_alive",
    "port_in_use",
    "rpc_ready",
    "start_anvil",
    "stop_pid",
    "terminate_pid",
]

DEVNET_CHAIN_ID = 31337
DEFAULT_ACCOUNTS = 20
#: Balance of every dev account, in whole 0G (enough to fund thousands of test accounts).
DEFAULT_BALANCE_0G = 1_000_000
HOST = "127.0.0.1"

_REPO = Path(__file__).resolve().parents[2]
_NPM_CANDIDATES = (
    _REPO / "tools" / "node_modules" / ".bin" / "anvil",
    _REPO / "tools" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil",
    _REPO / "tools" / "node_modules" / "@foundry-rs" / "anvil-linux-arm64" / "bin" / "anvil",
    _REPO / "tools" / "node_modules" / "@foundry-rs" / "anvil-darwin-arm64" / "bin" / "anvil",
    _REPO / "tools" / "node_modules" / "@foundry-rs" / "anvil-darwin-amd64" / "bin" / "anvil",
)


def find_anvil() -> Path:
    """Locate the anvil binary.

    Order: ``$ZG_ANVIL_BIN``; ``<repo>/tools/node_modules/.bin/anvil`` (or the platform package's
    binary under ``tools/node_modules/@foundry-rs``); ``anvil`` on ``PATH``.

    Raises:
        AnvilNotFoundError: ``ZG_ANVIL_BIN`` names a missing file, or nothing is found.
    """
    env = os.environ.get("ZG_ANVIL_BIN")
    if env:
        path = Path(env).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise AnvilNotFoundError(f"ZG_ANVIL_BIN={env} is not an executable file")
    for candidate in _NPM_CANDIDATES:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise AnvilNotFoundError(
        "anvil not found: set ZG_ANVIL_BIN, run scripts/setup (installs it in tools/node_modules), "
        "or put anvil on PATH"
    )


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something already listens on ``host:port`` (TCP). Checked with ``SO_REUSEADDR``,
    as anvil binds (:func:`broker.ports.port_available`), so connections of a stopped devnet left
    in ``TIME_WAIT`` do not count."""
    return not port_available(host, port)


def rpc_ready(rpc_url: str, timeout: float = 1.0) -> int | None:
    """Ask ``eth_chainId``; return the chain id, or ``None`` when the node does not answer."""
    try:
        resp = httpx.post(
            rpc_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            timeout=timeout,
        )
        return int(resp.json()["result"], 16)
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists and is not a zombie (reaps it if it is our exited child)."""
    if pid <= 0:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_anvil(pid: int) -> bool:
    try:
        return b"anvil" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid_alive(pid)  # no /proc (macOS): trust the recorded pid


def stop_pid(pid: int, timeout: float = 5.0) -> bool:
    """Stop an anvil process by pid: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL.

    Returns True when a live anvil process was stopped, False when there was none (or the pid now
    belongs to something that is not anvil, which is left alone).
    """
    if not pid_alive(pid) or not _is_anvil(pid):
        return False
    return terminate_pid(pid, timeout, f"anvil (pid {pid})")


def terminate_pid(pid: int, timeout: float, what: str) -> bool:
    """SIGTERM ``pid``, wait up to ``timeout`` seconds, then SIGKILL and wait up to 5 s more.

    The caller has already checked that ``pid`` is the process it means to stop. ``what`` names it
    in the error. Returns True (the process is gone).

    Raises:
        DevnetError: ``<what> did not stop`` (it survived SIGKILL).
    """
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.05)
    raise DevnetError(f"{what} did not stop")


@dataclass
class AnvilProcess:
    """A running anvil node.

    Attributes: ``pid``; ``port``; ``rpc_url`` (``http://127.0.0.1:<port>``); ``log_file`` (its
    stdout/stderr); ``accounts`` and ``private_keys`` (the funded dev accounts, checksummed
    addresses and ``0x`` hex keys, public well-known anvil keys); ``detached`` (own session,
    outlives this Python process).
    """

    pid: int
    port: int
    rpc_url: str
    log_file: Path
    accounts: list[str]
    private_keys: list[str] = field(repr=False)
    detached: bool = False
    _popen: subprocess.Popen | None = field(default=None, repr=False)

    def alive(self) -> bool:
        """True while the process runs."""
        if self._popen is not None:
            return self._popen.poll() is None
        return pid_alive(self.pid)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate, wait up to ``timeout`` s, then kill; leaves no process (or zombie) behind."""
        if self._popen is not None:
            if self._popen.poll() is None:
                self._popen.terminate()
                try:
                    self._popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._popen.kill()
                    self._popen.wait(5)
            return
        stop_pid(self.pid, timeout)


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def start_anvil(
    *,
    port: int = 8545,
    accounts: int = DEFAULT_ACCOUNTS,
    balance_0g: int = DEFAULT_BALANCE_0G,
    chain_id: int = DEVNET_CHAIN_ID,
    detach: bool = False,
    log_file: Path | None = None,
    startup_timeout: float = 20.0,
) -> AnvilProcess:
    """Start anvil on ``127.0.0.1:port`` and wait until its RPC answers.

    Args:
        port: TCP port; 0 picks a free one.
        accounts: number of funded dev accounts (mnemonic "test ... junk").
        balance_0g: balance of each dev account, in whole 0G.
        chain_id: chain id (31337 for the hardhat-compatible devnet).
        detach: run in a new session so that the node outlives this process (``devnet up``).
        log_file: where anvil's output goes; default a temporary file.
        startup_timeout: seconds to wait for the RPC.

    Returns:
        The :class:`AnvilProcess`.

    Raises:
        AnvilNotFoundError: no anvil binary.
        PortInUseError: the port is already taken (checked before spawning, and detected if anvil
            exits early complaining about it).
        DevnetError: anvil exited early or did not answer within ``startup_timeout``.
    """
    binary = find_anvil()
    if accounts < 1:
        raise DevnetError("anvil needs at least one dev account")
    explicit_port = port != 0
    if explicit_port and port_in_use(port):
        raise PortInUseError(f"port {port} on {HOST} is already in use; choose another with --port")
    chosen = port if explicit_port else free_port(HOST)
    if log_file is None:
        fd, name = tempfile.mkstemp(prefix="anvil-", suffix=".log")
        os.close(fd)
        log_file = Path(name)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    config_fd, config_name = tempfile.mkstemp(
        prefix="anvil-config-", suffix=".json", dir=log_file.parent
    )
    os.close(config_fd)
    config_out = Path(config_name)
    config_out.unlink()
    cmd = [
        str(binary),
        "--host", HOST,
        "--port", str(chosen),
        "--chain-id", str(chain_id),
        "--accounts", str(accounts),
        "--balance", str(balance_0g),
        "--config-out", str(config_out),
    ]  # fmt: skip
    with open(log_file, "ab") as log:
        popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
            close_fds=True,
        )
    rpc_url = f"http://{HOST}:{chosen}"
    proc = AnvilProcess(
        pid=popen.pid,
        port=chosen,
        rpc_url=rpc_url,
        log_file=log_file,
        accounts=[],
        private_keys=[],
        detached=detach,
        _popen=popen,
    )
    deadline = time.monotonic() + startup_timeout
    try:
        while True:
            code = popen.poll()
            if code is not None:
                tail = _log_tail(log_file)
                if "in use" in tail.lower() or "address already" in tail.lower():
                    raise PortInUseError(f"port {chosen} on {HOST} is already in use ({tail})")
                raise DevnetError(f"anvil exited with status {code} at start-up: {tail}")
            if config_out.is_file() and rpc_ready(rpc_url, timeout=0.5) == chain_id:
                break
            if time.monotonic() > deadline:
                raise DevnetError(
                    f"anvil did not answer on {rpc_url} within {startup_timeout:.0f} s"
                )
            time.sleep(0.05)
        config = json.loads(config_out.read_text())
    except BaseException:
        proc.stop()
        config_out.unlink(missing_ok=True)
        raise
    config_out.unlink(missing_ok=True)
    from eth_utils import to_checksum_address

    proc.accounts = [to_checksum_address(a) for a in config["available_accounts"]]
    proc.private_keys = list(config["private_keys"])
    return proc
