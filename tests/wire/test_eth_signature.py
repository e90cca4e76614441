"""The canonical (low-s) form of Ethereum signatures (broker.wire.eth_signature)."""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_defunct
from signature_helpers import malleate

from broker.wire.eth_signature import SECP256K1_HALF_N, is_low_s


def test_signers_make_low_s_and_the_malleated_twin_is_high_s():
    for i in range(1, 9):
        sig = bytes(Account.sign_message(encode_defunct(text=f"m{i}"), bytes([i]) * 32).signature)
        assert is_low_s(sig)
        assert not is_low_s(bytes.fromhex(malleate(sig)[2:]))


def test_bounds():
    r, v = b"\x01" * 32, b"\x1b"
    assert is_low_s(r + SECP256K1_HALF_N.to_bytes(32, "big") + v)
    assert not is_low_s(r + (SECP256K1_HALF_N + 1).to_bytes(32, "big") + v)
    assert not is_low_s(r + bytes(32) + v)
