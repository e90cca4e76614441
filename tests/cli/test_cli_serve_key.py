"""``0g-broker serve`` takes its API key from ``ZG_SERVE_API_KEY`` or ``--api-key-file`` so that the
key is not in ``/proc/<pid>/cmdline`` (issue #9 §2), warns when it is given with ``--api-key``, and
refuses an unreadable or empty key file, or two keys, in one line. Real ``serve`` processes on the
devnet provider stack; the key is checked over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from devnet_helpers import devnet_user_broker, key_hex, provider_stack
from server_helpers import free_port

from broker.devnet import fund_new_account

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

OG = 10**18
KEY = "sk-from-a-file-0123456789"


@pytest.fixture(scope="module")
def stack_and_user(devnet, tmp_path_factory):
    """A provider stack and the private key of a user with a 10 0G ledger."""
    user = fund_new_account(devnet, amount_neuron=100 * OG)
    broker = devnet_user_broker(devnet, user)
    broker.ledger.add_ledger(10)
    broker.inference.close()
    with provider_stack(devnet, tmp_path_factory.mktemp("stack"), model="tiny") as st:
        yield st, key_hex(user)


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker.cli.main",
            "serve",
            "--port",
            str(port),
            "--no-auto-funding",
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("serve did not start")


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        _out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
    return err


def _env(cli_home: Path, user_key: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZG_SERVE_")}
    return {
        **env,
        "ZG_HOME": str(cli_home),
        "ZG_NETWORK": "devnet",
        "ZG_PRIVATE_KEY": user_key,
        **extra,
    }


def _check_key_required(url: str, key: str) -> None:
    assert httpx.get(url + "/v1/models").status_code == 401
    assert (
        httpx.get(url + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    r = httpx.get(url + "/v1/models", headers={"Authorization": f"bearer {key}"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("source", ["file", "env"])
def test_key_from_file_or_env_stays_out_of_the_command_line(
    stack_and_user, cli_home, tmp_path, source
):
    st, user_key = stack_and_user
    env = _env(cli_home, user_key)
    args = ["--provider", st.provider_address]
    if source == "file":
        key_file = tmp_path / "serve.key"
        key_file.write_text(f"\n{KEY}\n")
        key_file.chmod(0o600)
        args += ["--api-key-file", str(key_file)]
    else:
        env["ZG_SERVE_API_KEY"] = KEY
    proc, url = _start(args, env)
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert KEY.encode() not in cmdline
        _check_key_required(url, KEY)
    finally:
        err = _stop(proc)
    assert KEY not in err and "visible to other local users" not in err


def test_key_on_the_command_line_warns(stack_and_user, cli_home):
    st, user_key = stack_and_user
    proc, url = _start(
        ["--provider", st.provider_address, "--api-key", KEY], _env(cli_home, user_key)
    )
    try:
        _check_key_required(url, KEY)
    finally:
        err = _stop(proc)
    assert "--api-key is visible to other local users" in " ".join(err.split())
    assert KEY not in err


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", "cannot read the API key file"),
        ("empty", "is empty"),
        ("both", "not both"),
    ],
)
def test_bad_key_sources_are_one_line_errors(cli, cli_home, tmp_path, setup, expected):
    key_file = tmp_path / "serve.key"
    env = {"ZG_NETWORK": "devnet"}
    if setup == "empty":
        key_file.write_text("\n  \n")
    elif setup == "both":
        key_file.write_text(KEY)
        env["ZG_SERVE_API_KEY"] = "sk-other-key"
    if key_file.exists():
        key_file.chmod(0o600)
    result = cli("serve", "--provider", "0x" + "1" * 40, "--api-key-file", str(key_file), env=env)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert KEY not in result.stderr and "sk-other-key" not in result.stderr
    assert "Traceback" not in result.stderr


def test_group_readable_key_file_warns(cli, cli_home, tmp_path):
    key_file = tmp_path / "serve.key"
    key_file.write_text(KEY)
    key_file.chmod(0o644)
    # an empty ZG_SERVE_API_KEY is an error, so the warning is the first line and we stop there
    result = cli(
        "serve",
        "--provider",
        "0x" + "1" * 40,
        "--api-key-file",
        str(key_file),
        env={"ZG_NETWORK": "devnet", "ZG_SERVE_API_KEY": "x"},
    )
    assert "readable by other users" in " ".join(result.stderr.split())
    assert result.exit_code == 1 and KEY not in result.stderr
