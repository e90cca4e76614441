"""ECDSA P-256 checks of a TDX quote: the quote signature, the QE report binding to the attestation
key, and the QE report signature by the PCK leaf key (attestation.md §2.4, §2.5, §2.8 steps 2–4).

Each function returns ``None`` on success and raises :class:`SignatureCheckError` with a one-line
reason otherwise.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from broker.attestation.errors import SignatureCheckError
from broker.attestation.quote import Quote

__all__ = [
    "SignatureCheckError",
    "attestation_public_key",
    "verify_qe_report_binding",
    "verify_qe_report_signature",
    "verify_quote_signature",
    "verify_raw_p256_signature",
]


def _der(sig: bytes) -> bytes:
    if len(sig) != 64:
        raise SignatureCheckError(f"signature is {len(sig)} bytes, expected raw r||s (64)")
    return encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))


def verify_raw_p256_signature(
    public_key: ec.EllipticCurvePublicKey, sig: bytes, data: bytes
) -> None:
    """Verify a raw ``r‖s`` ECDSA-P256-SHA256 signature.

    Args:
        public_key: the P-256 public key.
        sig: 64 bytes ``r‖s`` (big-endian each).
        data: the signed bytes.
    Raises:
        SignatureCheckError: malformed or invalid signature.
    """
    try:
        public_key.verify(_der(sig), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SignatureCheckError("ECDSA signature does not verify") from exc


def attestation_public_key(quote: Quote) -> ec.EllipticCurvePublicKey:
    """The quote's attestation key (raw ``x‖y``) as a P-256 public key.

    Raises:
        SignatureCheckError: the 64 bytes are not a point on P-256.
    """
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + quote.attestation_key
        )
    except ValueError as exc:
        raise SignatureCheckError("attestation key is not a valid P-256 point") from exc


def verify_quote_signature(quote: Quote) -> None:
    """Check the attestation key's signature over the signed region (header ‖ [v5 type/size] ‖
    body).

    Raises:
        SignatureCheckError: the signature does not verify.
    """
    try:
        verify_raw_p256_signature(
            attestation_public_key(quote), quote.signature, quote.signed_region
        )
    except SignatureCheckError as exc:
        raise SignatureCheckError(f"quote signature by the attestation key: {exc}") from exc


def verify_qe_report_binding(quote: Quote) -> None:
    """Check QE REPORTDATA == SHA-256(attestation key ‖ QE auth data) ‖ 32 zero bytes (§2.5).

    Raises:
        SignatureCheckError: the QE report does not bind this attestation key.
    """
    expected = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest() + bytes(32)
    if quote.qe_report.report_data != expected:
        raise SignatureCheckError(
            "QE report_data is not sha256(attestation key || QE auth data): the attestation key "
            "is not bound to the quoting enclave"
        )


def verify_qe_report_signature(quote: Quote, pck_public_key: ec.EllipticCurvePublicKey) -> None:
    """Check the PCK leaf key's signature over the 384-byte QE report.

    Args:
        quote: the parsed quote.
        pck_public_key: the public key of the PCK leaf certificate (from the quote's chain).
    Raises:
        SignatureCheckError: the signature does not verify.
    """
    try:
        verify_raw_p256_signature(pck_public_key, quote.qe_report_signature, quote.qe_report.raw)
    except SignatureCheckError as exc:
        raise SignatureCheckError(f"QE report signature by the PCK key: {exc}") from exc
