"""The canonical form of a 65-byte Ethereum signature ``r ‖ s ‖ v``, shared by every check of one.

ECDSA signatures are malleable: for a valid ``(r, s)`` the pair ``(r, n - s)`` (with the other
recovery id) is valid for the same message and key. EIP-2 and libsecp256k1's signer (which the
0G Go broker, ethers, eth-account and our gateway all use) produce only the low form
``s ≤ n/2``; a high ``s`` therefore comes from no honest signer, only from someone re-encoding a
signature they saw. The session-token check (provider-gateway.md B3 check 10), the response
signature (B7) and the ``ZG-Quote-Signature`` header refuse it. Pure, no I/O.
"""

from __future__ import annotations

__all__ = ["SECP256K1_HALF_N", "SECP256K1_N", "is_low_s"]

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""The order of the secp256k1 group."""
SECP256K1_HALF_N = SECP256K1_N // 2
"""The largest ``s`` of a canonical (EIP-2) signature."""


def is_low_s(signature: bytes) -> bool:
    """Whether a 65-byte ``r ‖ s ‖ v`` signature has the canonical ``1 ≤ s ≤ n/2``.

    Args:
        signature: the raw signature (at least 64 bytes; ``s`` is bytes 32–63, big-endian).
    Returns:
        ``True`` for a canonical ``s``; ``False`` for ``s = 0`` or ``s > n/2`` (malleated).
    """
    s = int.from_bytes(signature[32:64], "big")
    return 0 < s <= SECP256K1_HALF_N
