"""Synthetic Intel-format DCAP collateral for the synthetic TDX quotes of ``attestation_synth``.

Built the way Intel's PCS serves it (attestation.md §2.8, §3.1; the field layout of the real
near/mpc sample): a "TCB Signing" end-entity certificate under the synthetic root signs TCB Info v3
(``id "TDX"``) and QE Identity v2 (``id "TD_QE"``) as raw ``r‖s`` ECDSA-P256 over the exact JSON
bytes; the root signs the root CA CRL and the PCK Platform CA signs the PCK CRL (DER, hex in the
``QuoteCollateralV3`` JSON). Every knob the TCB-state tests need is a parameter: the platform TCB
levels and their statuses/advisories, revoked PCK serials, the validity window, and the signing key.

The values mirror what :class:`attestation_synth.SyntheticTdx` puts in its quotes: FMSPC
``00906EA10000``, PCK CPUSVN ``00 01 … 0f``, PCESVN 11, TEE_TCB_SVN ``0b 01 04 00…`` (TDX module
``TDX_01`` at ISVSVN 11), QE MRSIGNER Intel's TD QE one, ISVPRODID 2, ISVSVN 6.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from attestation_synth import NOW, Pki, _cert, _pem, raw_sign
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from broker.attestation.quote import INTEL_TD_QE_MRSIGNER

__all__ = [
    "PCK_CPU_SVN",
    "PCK_PCE_SVN",
    "QE_ISVSVN",
    "QUOTE_TEE_TCB_SVN",
    "SyntheticCollateral",
    "platform_level",
    "simple_level",
]

PCK_CPU_SVN = list(range(16))
"""The synthetic PCK leaf's CPUSVN components (``der_sgx_extension`` default)."""
PCK_PCE_SVN = 11
QUOTE_TEE_TCB_SVN = [0x0B, 0x01, 0x04] + [0] * 13
"""The synthetic quote's TEE_TCB_SVN (``SyntheticTdx.body``)."""
QE_ISVSVN = 6
QE_MRSIGNER = INTEL_TD_QE_MRSIGNER.hex().upper()
ISSUE = NOW - timedelta(days=1)
NEXT_UPDATE = NOW + timedelta(days=29)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def platform_level(
    status: str,
    *,
    sgx: list[int] | None = None,
    pce_svn: int = PCK_PCE_SVN,
    tdx: list[int] | None = None,
    advisories: list[str] | None = None,
    date: str = "2025-08-13T00:00:00Z",
) -> dict:
    """One TDX ``tcbLevels`` entry; SVN lists default to exactly the synthetic quote's values."""
    level = {
        "tcb": {
            "sgxtcbcomponents": [{"svn": v} for v in (sgx or PCK_CPU_SVN)],
            "pcesvn": pce_svn,
            "tdxtcbcomponents": [{"svn": v} for v in (tdx or QUOTE_TEE_TCB_SVN)],
        },
        "tcbDate": date,
        "tcbStatus": status,
    }
    if advisories:
        level["advisoryIDs"] = advisories
    return level


def simple_level(status: str, isvsvn: int, *, advisories: list[str] | None = None) -> dict:
    """One TDX-module or QE ``tcbLevels`` entry (``{"tcb": {"isvsvn": n}}``)."""
    level = {"tcb": {"isvsvn": isvsvn}, "tcbDate": "2025-08-13T00:00:00Z", "tcbStatus": status}
    if advisories:
        level["advisoryIDs"] = advisories
    return level


@dataclass
class SyntheticCollateral:
    """Builds ``QuoteCollateralV3`` JSON dicts for one :class:`Pki` (root + PCK Platform CA).

    ``tcb_signer`` is a "Synthetic SGX TCB Signing" leaf under the root; :meth:`build` takes every
    variation the tests need and returns the dict ``load_collateral`` accepts.
    """

    pki: Pki
    tcb_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    tcb_cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.tcb_cert = self.issue_tcb_signer(self.tcb_key, self.pki.root_key)

    @staticmethod
    def issue_tcb_signer(
        key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey
    ) -> x509.Certificate:
        """A TCB Signing end-entity certificate for ``key`` signed by ``issuer_key``."""
        return _cert(
            "Synthetic SGX TCB Signing", key, "Synthetic SGX Root CA", issuer_key, ca=False
        )

    @staticmethod
    def _crl(
        issuer: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        revoked: list[int],
        this_update: datetime,
        next_update: datetime,
    ) -> str:
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(this_update)
            .next_update(next_update)
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                critical=False,
            )
        )
        for serial in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(this_update)
                .build()
            )
        return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER).hex()

    def tcb_info(
        self,
        levels: list[dict] | None = None,
        *,
        issue: datetime = ISSUE,
        next_update: datetime = NEXT_UPDATE,
        fmspc: str = "00906EA10000",
        module_levels: list[dict] | None = None,
    ) -> str:
        """TCB Info v3 (TDX) JSON text, compact as Intel serves it."""
        doc = {
            "id": "TDX",
            "version": 3,
            "issueDate": _iso(issue),
            "nextUpdate": _iso(next_update),
            "fmspc": fmspc,
            "pceId": "0000",
            "tcbType": 0,
            "tcbEvaluationDataNumber": 20,
            "tdxModule": {
                "mrsigner": "00" * 48,
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
            },
            "tdxModuleIdentities": [
                {
                    "id": "TDX_01",
                    "mrsigner": "00" * 48,
                    "attributes": "0000000000000000",
                    "attributesMask": "FFFFFFFFFFFFFFFF",
                    "tcbLevels": module_levels or [simple_level("UpToDate", QUOTE_TEE_TCB_SVN[0])],
                }
            ],
            "tcbLevels": levels if levels is not None else [platform_level("UpToDate")],
        }
        return json.dumps(doc, separators=(",", ":"))

    def qe_identity(
        self,
        *,
        issue: datetime = ISSUE,
        next_update: datetime = NEXT_UPDATE,
        qe_levels: list[dict] | None = None,
    ) -> str:
        """QE Identity v2 (TD_QE) JSON text matching the synthetic QE report."""
        doc = {
            "id": "TD_QE",
            "version": 2,
            "issueDate": _iso(issue),
            "nextUpdate": _iso(next_update),
            "tcbEvaluationDataNumber": 20,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": "00000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": QE_MRSIGNER,
            "isvprodid": 2,
            "tcbLevels": qe_levels or [simple_level("UpToDate", QE_ISVSVN)],
        }
        return json.dumps(doc, separators=(",", ":"))

    def build(
        self,
        levels: list[dict] | None = None,
        *,
        revoked_pck_serials: list[int] = (),
        issue: datetime = ISSUE,
        next_update: datetime = NEXT_UPDATE,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
        signing_cert: x509.Certificate | None = None,
        revoked_ca_serials: list[int] = (),
        fmspc: str = "00906EA10000",
        module_levels: list[dict] | None = None,
        qe_levels: list[dict] | None = None,
    ) -> dict:
        """The ``QuoteCollateralV3`` JSON dict.

        Args:
            levels: TDX platform ``tcbLevels`` (default: one ``UpToDate`` level at the quote's TCB).
            revoked_pck_serials: serials listed in the PCK CRL.
            issue, next_update: the window of TCB Info, QE Identity and both CRLs.
            signing_key, signing_cert: override the TCB signer (e.g. one not chained to the root).
            revoked_ca_serials: serials listed in the root CA CRL (e.g. the PCK Platform CA's).
            fmspc: the FMSPC the TCB Info is for.
            module_levels, qe_levels: ``tcbLevels`` of the ``TDX_01`` module identity / QE identity
                (default: one ``UpToDate`` level at the quote's ISVSVN).
        """
        key = signing_key or self.tcb_key
        cert = signing_cert or self.tcb_cert
        tcb_chain = _pem(cert) + _pem(self.pki.root)
        tcb_info = self.tcb_info(
            levels, issue=issue, next_update=next_update, fmspc=fmspc, module_levels=module_levels
        )
        qe_identity = self.qe_identity(issue=issue, next_update=next_update, qe_levels=qe_levels)
        return {
            "pck_crl_issuer_chain": _pem(self.pki.inter) + _pem(self.pki.root),
            "root_ca_crl": self._crl(
                self.pki.root, self.pki.root_key, list(revoked_ca_serials), issue, next_update
            ),
            "pck_crl": self._crl(
                self.pki.inter, self.pki.inter_key, list(revoked_pck_serials), issue, next_update
            ),
            "tcb_info_issuer_chain": tcb_chain,
            "tcb_info": tcb_info,
            "tcb_info_signature": raw_sign(key, tcb_info.encode()).hex(),
            "qe_identity_issuer_chain": tcb_chain,
            "qe_identity": qe_identity,
            "qe_identity_signature": raw_sign(key, qe_identity.encode()).hex(),
        }

    def replace_document(self, collateral: dict, name: str, text: str) -> dict:
        """A copy of ``collateral`` whose ``name`` (``tcb_info`` / ``qe_identity``) is ``text``,
        correctly re-signed by the TCB signer (to vary one document's window alone)."""
        out = dict(collateral)
        out[name] = text
        out[f"{name}_signature"] = raw_sign(self.tcb_key, text.encode()).hex()
        return out
