"""setup-network / show-network / login / status: config file and encrypted keystore."""

from __future__ import annotations

import json
import os
import stat

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ADDR = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_setup_and_show_network(cli, cli_home):
    keystore = cli_home / "keystore.json"
    keystore.write_text("{}")  # setup-network must never delete the keystore
    r = cli("setup-network", "--network", "testnet")
    assert r.exit_code == 0, r.stderr
    assert json.loads((cli_home / "config.json").read_text())["network"] == "testnet"
    assert keystore.exists()
    r = cli("--json", "show-network")
    data = json.loads(r.stdout)
    assert data["network"] == "testnet" and data["chain_id"] == 16602
    assert data["ledger_address"] == "0xE70830508dAc0A97e6c087c75f402f9Be669E406"
    r = cli("--network", "devnet", "show-network", "--json")
    assert json.loads(r.stdout)["chain_id"] == 31337
    r = cli("setup-network", "--network", "nowhere")
    assert r.exit_code == 1 and "unknown network" in r.stderr


def test_login_writes_encrypted_keystore(cli, cli_home, devnet):
    env = {"MY_KEY": KEY, "ZG_KEYSTORE_PASSWORD": "s3cret"}
    r = cli("login", "--private-key-env", "MY_KEY", env=env)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == ADDR
    path = cli_home / "keystore.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert KEY[2:] not in text and "s3cret" not in text and KEY[2:] not in r.stdout + r.stderr
    r = cli("--json", "status", env={"ZG_KEYSTORE_PASSWORD": "s3cret"})
    assert json.loads(r.stdout)["key_source"] == "keystore"
    assert json.loads(r.stdout)["address"].lower() == ADDR.lower()
    # a second login needs --force
    r = cli("login", "--private-key-env", "MY_KEY", env=env)
    assert r.exit_code == 1 and "--force" in r.stderr
    # the keystore is used by ledger commands (no devnet fallback to account 0)
    r = cli("--network", "devnet", "--json", "get-account", env={"ZG_KEYSTORE_PASSWORD": "bad"})
    assert r.exit_code == 1 and "wrong password" in r.stderr
    # key from stdin, replacing; a bad key is refused without echo
    r = cli("login", "--stdin", "--force", input="0x1234\n", env={"ZG_KEYSTORE_PASSWORD": "x"})
    assert r.exit_code == 1 and "invalid private key" in r.stderr and "0x1234" not in r.stderr
