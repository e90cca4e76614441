"""The PCK certificate chain of a TDX quote, verified up to the pinned Intel SGX Root CA, and the
Intel SGX extension of the PCK leaf (FMSPC, CPUSVN, PCESVN, ...).

Sources: attestation.md §2.6 (SGX extension, OID 1.2.840.113741.1.13.1), §2.7 (the root: pinned
here, never taken from the quote), §2.8 step 5 (the ``cryptography`` verifier policy that works for
Intel's chain: WebPKI CA rules, permissive end-entity rules since the leaf has no SAN).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from broker.attestation.errors import PckChainError
from broker.attestation.quote import split_pem_chain

__all__ = [
    "INTEL_SGX_ROOT_CA_PEM",
    "INTEL_SGX_ROOT_CA_SHA256",
    "SGX_EXTENSION_OID",
    "PckChain",
    "PckChainError",
    "SgxExtension",
    "intel_sgx_root_ca",
    "load_root_ca",
    "verify_pck_chain",
]

SGX_EXTENSION_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
"""Intel's SGX extension in PCK certificates (§2.6)."""

INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
"""SHA-256 of the DER of the Intel SGX Root CA (§2.7)."""

INTEL_SGX_ROOT_CA_PEM = """-----BEGIN CERTIFICATE-----
MIICjzCCAjSgAwIBAgIUImUM1lqdNInzg7SVUr9QGzknBqwwCgYIKoZIzj0EAwIw
aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
BgNVBAYTAlVTMB4XDTE4MDUyMTEwNDUxMFoXDTQ5MTIzMTIzNTk1OVowaDEaMBgG
A1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENvcnBvcmF0
aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNVBAYT
AlVTMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC6nEwMDIYZOj/iPWsCzaEKi7
1OiOSLRFhWGjbnBVJfVnkY4u3IjkDYYL0MxO4mqsyYjlBalTVYxFP2sJBK5zlKOB
uzCBuDAfBgNVHSMEGDAWgBQiZQzWWp00ifODtJVSv1AbOScGrDBSBgNVHR8ESzBJ
MEegRaBDhkFodHRwczovL2NlcnRpZmljYXRlcy50cnVzdGVkc2VydmljZXMuaW50
ZWwuY29tL0ludGVsU0dYUm9vdENBLmRlcjAdBgNVHQ4EFgQUImUM1lqdNInzg7SV
Ur9QGzknBqwwDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8CAQEwCgYI
KoZIzj0EAwIDSQAwRgIhAOW/5QkR+S9CiSDcNoowLuPRLsWGf/Yi7GSX94BgwTwg
AiEA4J0lrHoMs+Xo5o/sX6O9QWxHRAvZUGOdRQ7cvqRXaqI=
-----END CERTIFICATE-----
"""
"""The public Intel SGX Root CA (CN=Intel SGX Root CA, serial 22650cd6…06ac, valid to 2049)."""


@dataclass(frozen=True)
class SgxExtension:
    """Fields of the PCK leaf's SGX extension (§2.6).

    ``fmspc`` is 12 upper-case hex digits; ``ppid``, ``cpu_svn`` (16 bytes), ``pce_id`` (2 bytes)
    are hex strings; ``pce_svn`` and ``sgx_type`` integers.
    """

    fmspc: str
    ppid: str
    cpu_svn: str
    pce_svn: int
    pce_id: str
    sgx_type: int


@dataclass(frozen=True)
class PckChain:
    """A verified PCK chain: ``leaf`` ← ``intermediate`` ← ``root`` (the trusted root).

    ``ca_type`` is ``"platform"`` or ``"processor"`` (from the intermediate's common name);
    ``sgx`` the leaf's SGX extension.
    """

    leaf: x509.Certificate
    intermediate: x509.Certificate
    root: x509.Certificate
    ca_type: str
    sgx: SgxExtension

    @property
    def leaf_public_key(self) -> ec.EllipticCurvePublicKey:
        key = self.leaf.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):  # pragma: no cover - rejected earlier
            raise PckChainError("PCK leaf key is not an EC key")
        return key


def intel_sgx_root_ca() -> x509.Certificate:
    """The pinned Intel SGX Root CA certificate (checked against
    :data:`INTEL_SGX_ROOT_CA_SHA256`)."""
    cert = x509.load_pem_x509_certificate(INTEL_SGX_ROOT_CA_PEM.encode())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    if digest != INTEL_SGX_ROOT_CA_SHA256:  # pragma: no cover - guards the constant
        raise PckChainError("embedded Intel SGX Root CA does not match its pinned hash")
    return cert


def load_root_ca(root_ca: x509.Certificate | bytes | str | None) -> x509.Certificate:
    """Normalise a trust root: ``None`` → the pinned Intel root; a certificate; DER or PEM
    bytes/str.

    Raises:
        PckChainError: the value is not a certificate.
    """
    if root_ca is None:
        return intel_sgx_root_ca()
    if isinstance(root_ca, x509.Certificate):
        return root_ca
    data = root_ca.encode() if isinstance(root_ca, str) else bytes(root_ca)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise PckChainError("root CA is not a PEM or DER certificate") from exc


def _to_utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _sgx_extension(leaf: x509.Certificate) -> SgxExtension:
    try:
        leaf.extensions.get_extension_for_oid(SGX_EXTENSION_OID)
    except x509.ExtensionNotFound as exc:
        raise PckChainError("PCK leaf has no Intel SGX extension (1.2.840.113741.1.13.1)") from exc
    try:
        ext = dcap_qvl.parse_pck_extension_from_pem(leaf.public_bytes(serialization.Encoding.PEM))
    except (ValueError, RuntimeError) as exc:
        raise PckChainError(f"PCK leaf SGX extension is malformed: {exc}") from exc
    return SgxExtension(
        fmspc=bytes(ext.fmspc).hex().upper(),
        ppid=bytes(ext.ppid).hex(),
        cpu_svn=bytes(ext.cpu_svn).hex(),
        pce_svn=int(ext.pce_svn),
        pce_id=bytes(ext.pce_id).hex(),
        sgx_type=int(ext.sgx_type),
    )


def verify_pck_chain(
    pem_chain: str,
    *,
    now: datetime,
    root_ca: x509.Certificate | bytes | str | None = None,
) -> PckChain:
    """Verify the quote's PEM chain (leaf, PCK Platform/Processor CA[, root]) up to the trust root.

    The root in the quote, if any, is ignored: the trust anchor is ``root_ca`` (default: the pinned
    Intel SGX Root CA). Signatures, validity at ``now``, CA basicConstraints and keyUsage are
    checked by ``cryptography.x509.verification``. Revocation needs collateral (the CRLs) and is
    left to the TCB step (dcap-qvl).

    Args:
        pem_chain: PEM text, leaf first (``Quote.pck_chain_pem``).
        now: the verification time (timezone-aware, or naive UTC).
        root_ca: trust root override (tests only), as a certificate or DER/PEM.
    Returns:
        :class:`PckChain`.
    Raises:
        PckChainError: fewer than two certificates, unparsable PEM, a non-P-256 leaf, no SGX
            extension, or the chain does not verify (reason included).
    """
    root = load_root_ca(root_ca)
    blocks = split_pem_chain(pem_chain)
    if len(blocks) < 2:
        raise PckChainError(f"PCK chain has {len(blocks)} certificate(s); need leaf and CA")
    try:
        certs = [x509.load_pem_x509_certificate(b.encode()) for b in blocks]
    except ValueError as exc:
        raise PckChainError(f"PCK chain has an unparsable certificate: {exc}") from exc
    leaf, intermediates = certs[0], [c for c in certs[1:] if c != root]
    if not intermediates:
        raise PckChainError("PCK chain has no intermediate CA")
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise PckChainError("PCK leaf key is not ECDSA P-256")
    builder = (
        PolicyBuilder()
        .store(Store([root]))
        .time(_to_utc(now))
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
    )
    try:
        verified = builder.build_client_verifier().verify(leaf, intermediates)
    except VerificationError as exc:
        raise PckChainError(f"PCK chain does not verify up to the trusted root: {exc}") from exc
    chain = verified.chain
    intermediate = chain[1] if len(chain) > 2 else intermediates[0]
    cn = intermediate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(cn[0].value) if cn else ""
    ca_type = "processor" if "processor" in name.lower() else "platform"
    return PckChain(
        leaf=leaf,
        intermediate=intermediate,
        root=chain[-1],
        ca_type=ca_type,
        sgx=_sgx_extension(leaf),
    )
