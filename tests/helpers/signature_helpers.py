"""Helpers for signature attacks in tests."""

from __future__ import annotations

from broker.wire.eth_signature import SECP256K1_N


def malleate(signature: bytes | str) -> str:
    """The other valid encoding of a 65-byte ``r ‖ s ‖ v`` signature: ``(r, n - s)`` with the
    other recovery id (same message, same key), as ``0x`` hex with ``v`` kept in its form
    (27/28 or 0/1)."""
    sig = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else signature
    s = int.from_bytes(sig[32:64], "big")
    v = sig[64] ^ 1 if sig[64] in (0, 1) else 55 - sig[64]
    return "0x" + (sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([v])).hex()
