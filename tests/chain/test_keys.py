"""broker.chain.keys: validation, keystore round trip, resolution order, no key leaks."""

import os
import stat

import pytest

from broker._exceptions import KeyStoreError
from broker.chain.keys import (
    Wallet,
    create_keystore,
    key_source,
    load_keystore,
    load_wallet,
    validate_private_key,
    wallet_from_key,
)
from broker.config.settings import Settings

# anvil's public dev key 0 and its address
KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ADDR = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
KEY2 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def test_validate_and_wallet_repr_never_shows_key():
    assert validate_private_key(KEY[2:].upper()) == KEY
    w = wallet_from_key(KEY)
    assert isinstance(w, Wallet) and w.address == ADDR
    for text in (repr(w), str(w), f"{w}"):
        assert KEY[2:] not in text.lower() and ADDR in text


@pytest.mark.parametrize(
    "bad", ["0x1234", KEY + "00", "0x" + "g" * 64, "0x" + "0" * 64, "0x" + "f" * 64, 123]
)
def test_invalid_keys_rejected_without_echo(bad):
    with pytest.raises(KeyStoreError) as info:
        validate_private_key(bad)
    if isinstance(bad, str) and len(bad) > 10:
        assert bad[2:12] not in str(info.value)


def test_keystore_round_trip_and_wrong_password(tmp_path):
    path = create_keystore(KEY, "pw-123", tmp_path / "sub" / "ks.json", iterations=2**4)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert KEY[2:] not in path.read_text()
    assert "pw-123" not in path.read_text()
    assert load_keystore(path, "pw-123").address == ADDR
    with pytest.raises(KeyStoreError) as info:
        load_keystore(path, "nope")
    assert "wrong password" in str(info.value) and KEY[2:] not in str(info.value)
    # replaced atomically, no temp files left behind
    create_keystore(KEY2, "pw", path, iterations=2**4)
    assert load_keystore(path, "pw").address != ADDR
    assert sorted(p.name for p in path.parent.iterdir()) == ["ks.json"]


def test_missing_and_corrupt_keystore(tmp_path):
    with pytest.raises(KeyStoreError, match="does not exist"):
        load_keystore(tmp_path / "none.json", "x")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(KeyStoreError, match="unreadable"):
        load_keystore(bad, "x")
    with pytest.raises(KeyStoreError):
        create_keystore(KEY, "", tmp_path / "k.json")


def test_resolution_order(tmp_path, monkeypatch):
    ks = tmp_path / "ks.json"
    monkeypatch.setenv("ZG_KEYSTORE", str(ks))
    monkeypatch.delenv("ZG_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("ZG_KEYSTORE_PASSWORD", raising=False)
    assert key_source(settings=Settings()) is None
    with pytest.raises(KeyStoreError, match="no private key configured"):
        load_wallet(settings=Settings())
    create_keystore(KEY2, "pw", ks, iterations=2**4)
    assert key_source(settings=Settings()) == "keystore"
    with pytest.raises(KeyStoreError, match="ZG_KEYSTORE_PASSWORD"):
        load_wallet(settings=Settings(), interactive=False)
    monkeypatch.setenv("ZG_KEYSTORE_PASSWORD", "pw")
    addr2 = load_wallet(settings=Settings()).address
    assert addr2 != ADDR
    monkeypatch.setenv("ZG_PRIVATE_KEY", KEY)
    assert key_source(settings=Settings()) == "environment"
    assert load_wallet(settings=Settings()).address == ADDR
    assert load_wallet(KEY2, settings=Settings()).address == addr2
    assert KEY[2:] not in repr(Settings())
