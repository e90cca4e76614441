"""Intel collateral for TCB evaluation: loading (offline JSON), fetching from a PCCS/PCS with httpx,
an on-disk cache, and the TCB evaluation itself with dcap-qvl.

Sources: attestation.md §2.8 ("Needs collateral": endpoints, verbatim signed JSON, freshness
window), §3.1 (dcap-qvl 0.7: ``QuoteCollateralV3`` JSON form, ``verify`` / ``verify_with_root_ca``;
it raises on crypto/chain/CRL/expiry errors and on ``Revoked``, and returns other statuses such as
``OutOfDate`` for the caller to judge).

dcap-qvl is the TCB authority for real *and* synthetic collateral: ``verify_with_root_ca`` takes the
injected test root, so the synthetic collateral of the tests runs through the same code as Intel's
(see :mod:`broker.attestation.tcb` for why no second TCB matcher exists and how refusals are named).
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import dcap_qvl
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.attestation.errors import CollateralError, TcbEvaluationError
from broker.attestation.tcb import REVOKED, TcbFailure, classify_dcap_failure
from broker.config.settings import broker_home

__all__ = [
    "INTEL_PCS_URL",
    "CollateralCache",
    "CollateralSource",
    "PccsCollateralFetcher",
    "TcbEvaluation",
    "TcbEvaluationError",
    "collateral_expiry",
    "evaluate_tcb",
    "find_revoked_certificates",
    "load_collateral",
]

INTEL_PCS_URL = "https://api.trustedservices.intel.com"
"""Intel's Provisioning Certification Service (PCS v4, no API key needed for collateral)."""

_COLLATERAL_KEYS = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)


class CollateralSource(Protocol):
    """Anything that can supply collateral for a platform (e.g. :class:`PccsCollateralFetcher`)."""

    def get_collateral(
        self, fmspc: str, ca: str, *, now: datetime
    ) -> dcap_qvl.QuoteCollateralV3:  # pragma: no cover - protocol
        ...


@dataclass(frozen=True)
class TcbEvaluation:
    """dcap-qvl's verdict: ``status`` (``UpToDate``, ``SWHardeningNeeded``, ``OutOfDate``, ...),
    ``advisory_ids`` (``INTEL-SA-…``), ``collateral_expiry`` (earliest ``nextUpdate``) and the raw
    ``detail`` JSON from dcap-qvl."""

    status: str
    advisory_ids: tuple[str, ...]
    collateral_expiry: datetime | None
    detail: dict[str, Any] = field(default_factory=dict)


def load_collateral(value: Any) -> dcap_qvl.QuoteCollateralV3:
    """Load collateral in dcap-qvl's ``QuoteCollateralV3`` JSON form.

    Args:
        value: a ``QuoteCollateralV3``, a mapping, JSON text/bytes, or a ``Path`` to a JSON file.
    Returns:
        ``dcap_qvl.QuoteCollateralV3``.
    Raises:
        CollateralError: unreadable file, not JSON, or missing/invalid fields.
    """
    if isinstance(value, dcap_qvl.QuoteCollateralV3):
        return value
    if isinstance(value, Path):
        try:
            value = value.read_text()
        except OSError as exc:
            raise CollateralError(f"cannot read collateral file {value}: {exc}") from exc
    if isinstance(value, dict):
        value = json.dumps(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise CollateralError(f"unsupported collateral value of type {type(value).__name__}")
    try:
        return dcap_qvl.QuoteCollateralV3.from_json(value)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CollateralError(f"collateral is not valid QuoteCollateralV3 JSON: {exc}") from exc


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def collateral_expiry(collateral: dcap_qvl.QuoteCollateralV3) -> datetime | None:
    """The earliest ``nextUpdate`` of TCB Info, QE Identity and both CRLs (UTC), or ``None`` when
    none can be read."""
    times: list[datetime] = []
    for text, key in (
        (collateral.tcb_info, "tcbInfo"),
        (collateral.qe_identity, "enclaveIdentity"),
    ):
        try:
            doc = json.loads(text)
            doc = doc.get(key, doc)
            times.append(_parse_time(doc["nextUpdate"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    for der in (collateral.pck_crl, collateral.root_ca_crl):
        try:
            crl = x509.load_der_x509_crl(bytes(der))
            if crl.next_update_utc is not None:
                times.append(crl.next_update_utc)
        except ValueError:
            pass
    return min(times) if times else None


def _now_dt(now: datetime | float) -> datetime:
    if isinstance(now, datetime):
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return datetime.fromtimestamp(int(now), UTC)


class CollateralCache:
    """Collateral JSON files on disk, one per platform: ``<dir>/tdx-<FMSPC>-<ca>.json``.

    Args:
        directory: default ``$ZG_HOME/attestation/collateral/``.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = (
            Path(directory) if directory else broker_home() / "attestation" / "collateral"
        )

    def path(self, fmspc: str, ca: str) -> Path:
        """The cache file of (FMSPC, CA type)."""
        if not re.fullmatch(r"[0-9A-Fa-f]{12}", fmspc) or ca not in ("platform", "processor"):
            raise CollateralError(f"bad collateral key fmspc={fmspc!r} ca={ca!r}")
        return self.directory / f"tdx-{fmspc.upper()}-{ca}.json"

    def get(self, fmspc: str, ca: str, *, now: datetime | int) -> dcap_qvl.QuoteCollateralV3 | None:
        """The cached collateral if present and not expired at ``now``, else ``None``."""
        file = self.path(fmspc, ca)
        if not file.exists():
            return None
        try:
            col = load_collateral(file)
        except CollateralError:
            return None
        expiry = collateral_expiry(col)
        if expiry is None or _now_dt(now) >= expiry:
            return None
        return col

    def put(self, fmspc: str, ca: str, collateral: dcap_qvl.QuoteCollateralV3) -> Path:
        """Store ``collateral`` atomically; returns the file path."""
        file = self.path(fmspc, ca)
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp")
        tmp.write_text(collateral.to_json())
        os.replace(tmp, file)
        return file


def _verbatim_member(text: str, key: str) -> str:
    """The exact text of ``key``'s value in a JSON object text (the signed bytes; §2.8)."""
    decoder = json.JSONDecoder()
    match = re.search(rf'"{re.escape(key)}"\s*:\s*', text)
    if not match:
        raise CollateralError(f"collateral response has no {key!r}")
    try:
        _, end = decoder.raw_decode(text, match.end())
    except ValueError as exc:
        raise CollateralError(f"collateral response {key!r} is not JSON") from exc
    return text[match.end() : end]


def _crl_der(body: bytes) -> bytes:
    text = body.strip()
    if text.startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(text).public_bytes(serialization.Encoding.DER)
    if re.fullmatch(rb"[0-9a-fA-F]+", text or b"x"):
        return bytes.fromhex(text.decode())
    return bytes(body)


class PccsCollateralFetcher:
    """Fetches TDX collateral from a PCCS or Intel PCS (v4 API) with httpx, through a disk cache.

    Endpoints (attestation.md §2.8): ``/tdx/certification/v4/tcb?fmspc=``,
    ``/tdx/certification/v4/qe/identity?update=standard``,
    ``/sgx/certification/v4/pckcrl?ca=<ca>&encoding=der``, and the root CA CRL from
    ``/sgx/certification/v4/rootcacrl`` (PCCS, hex text) or else the root's CRL distribution point.

    Args:
        base_url: e.g. ``https://api.trustedservices.intel.com`` or a PCCS.
        cache: a :class:`CollateralCache`; default the one under ``$ZG_HOME``; ``False``
            disables it.
        client: an ``httpx.Client`` to use (not closed here).
        timeout: seconds per request.
    """

    def __init__(
        self,
        base_url: str = INTEL_PCS_URL,
        *,
        cache: CollateralCache | bool | None = None,
        client: httpx.Client | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.cache = CollateralCache() if cache in (None, True) else (cache or None)
        self._client = client
        self.timeout = timeout

    def _get(self, client: httpx.Client, url: str) -> httpx.Response:
        try:
            resp = client.get(url, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise CollateralError(f"collateral fetch {url} failed: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise CollateralError(f"collateral fetch {url} answered HTTP {resp.status_code}")
        return resp

    @staticmethod
    def _chain(resp: httpx.Response, *names: str) -> str:
        for name in names:
            if name in resp.headers:
                return urllib.parse.unquote(resp.headers[name])
        raise CollateralError(f"collateral response lacks header {names[0]}")

    def fetch(self, fmspc: str, ca: str) -> dcap_qvl.QuoteCollateralV3:
        """Fetch collateral for (FMSPC, CA type) from the network (no cache).

        Raises:
            CollateralError: a request failed, or a response is malformed.
        """
        client = self._client or httpx.Client(follow_redirects=True)
        try:
            base = self.base_url
            tcb = self._get(client, f"{base}/tdx/certification/v4/tcb?fmspc={fmspc.upper()}")
            qe = self._get(client, f"{base}/tdx/certification/v4/qe/identity?update=standard")
            crl = self._get(client, f"{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der")
            crl_chain = self._chain(crl, "SGX-PCK-CRL-Issuer-Chain")
            try:
                root_crl = _crl_der(
                    self._get(client, f"{base}/sgx/certification/v4/rootcacrl").content
                )
            except CollateralError:
                root_crl = _crl_der(self._get(client, self._root_crl_url(crl_chain)).content)
            tcb_text, qe_text = tcb.text, qe.text
            doc = {
                "pck_crl_issuer_chain": crl_chain,
                "root_ca_crl": root_crl.hex(),
                "pck_crl": _crl_der(crl.content).hex(),
                "tcb_info_issuer_chain": self._chain(
                    tcb, "TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"
                ),
                "tcb_info": _verbatim_member(tcb_text, "tcbInfo"),
                "tcb_info_signature": json.loads(tcb_text).get("signature", ""),
                "qe_identity_issuer_chain": self._chain(qe, "SGX-Enclave-Identity-Issuer-Chain"),
                "qe_identity": _verbatim_member(qe_text, "enclaveIdentity"),
                "qe_identity_signature": json.loads(qe_text).get("signature", ""),
            }
        except (ValueError, AttributeError) as exc:
            raise CollateralError(f"malformed collateral response: {exc}") from exc
        finally:
            if self._client is None:
                client.close()
        return load_collateral(doc)

    @staticmethod
    def _root_crl_url(chain_pem: str) -> str:
        from broker.attestation.quote import split_pem_chain

        for block in reversed(split_pem_chain(chain_pem)):
            cert = x509.load_pem_x509_certificate(block.encode())
            try:
                dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            except x509.ExtensionNotFound:
                continue
            for dp in dps:
                for name in dp.full_name or []:
                    if isinstance(name, x509.UniformResourceIdentifier):
                        return name.value
        raise CollateralError("cannot locate the root CA CRL (no rootcacrl endpoint, no CRL DP)")

    def get_collateral(
        self, fmspc: str, ca: str, *, now: datetime | int
    ) -> dcap_qvl.QuoteCollateralV3:
        """Collateral for (FMSPC, CA type): from the cache if still valid at ``now``, else fetched
        and cached.

        Raises:
            CollateralError: fetching failed.
        """
        if self.cache is not None:
            cached = self.cache.get(fmspc, ca, now=now)
            if cached is not None:
                return cached
        col = self.fetch(fmspc, ca)
        if self.cache is not None:
            self.cache.put(fmspc, ca, col)
        return col


def evaluate_tcb(
    raw_quote: bytes,
    collateral: dcap_qvl.QuoteCollateralV3,
    *,
    now: datetime | int,
    root_ca_der: bytes | None = None,
) -> TcbEvaluation:
    """Run dcap-qvl's full DCAP verification and TCB evaluation of ``raw_quote`` with
    ``collateral``.

    Args:
        raw_quote: the quote bytes.
        collateral: from :func:`load_collateral` or a fetcher.
        now: verification time (datetime or Unix seconds).
        root_ca_der: trust root override (DER); ``None`` = dcap-qvl's built-in Intel root.
    Returns:
        :class:`TcbEvaluation` (the status is returned, not judged: ``OutOfDate`` etc. are the
        caller's policy; ``detail`` has ``platform_status`` and ``qe_status`` with their
        advisories).
    Raises:
        TcbEvaluationError: dcap-qvl refused the quote; ``.code`` classifies why
            (:class:`~broker.attestation.tcb.TcbFailure`), ``.status`` is ``"Revoked"`` for a
            revoked TCB level or a CRL-listed certificate, and the message is the summary followed
            by dcap-qvl's own text on one line.
    """
    now_s = int(_now_dt(now).timestamp())
    try:
        if root_ca_der is None:
            verified = dcap_qvl.verify(raw_quote, collateral, now_s)
        else:
            verified = dcap_qvl.verify_with_root_ca(raw_quote, collateral, root_ca_der, now_s)
    except (ValueError, RuntimeError) as exc:
        message = " ".join(str(exc).split())
        code, summary = classify_dcap_failure(message)
        revoked = code in (TcbFailure.TCB_REVOKED, TcbFailure.CERTIFICATE_REVOKED)
        raise TcbEvaluationError(
            f"{summary}: {message}", code=str(code), status=REVOKED if revoked else None
        ) from exc
    try:
        detail = json.loads(verified.to_json())
    except ValueError:  # pragma: no cover - dcap-qvl always returns JSON
        detail = {}
    detail.pop("report", None)
    return TcbEvaluation(
        status=str(verified.status),
        advisory_ids=tuple(verified.advisory_ids),
        collateral_expiry=collateral_expiry(collateral),
        detail=detail,
    )


def find_revoked_certificates(
    collateral: dcap_qvl.QuoteCollateralV3, certificates: list[x509.Certificate]
) -> list[tuple[str, str]]:
    """Which of ``certificates`` the collateral's CRLs list, to name them in a report.

    Only CRLs whose issuer name equals the certificate's issuer are consulted (the PCK CRL for the
    PCK leaf, the root CA CRL for the PCK CA); signatures are not checked here (dcap-qvl does that),
    so use this only to *explain* a refusal, never to accept.

    Args:
        collateral: the collateral given to :func:`evaluate_tcb`.
        certificates: e.g. ``[PckChain.leaf, PckChain.intermediate]``.
    Returns:
        ``[(crl_name, serial_hex)]`` with ``crl_name`` ``"pck_crl"`` or ``"root_ca_crl"``; empty if
        none is listed or a CRL cannot be parsed.
    """
    found: list[tuple[str, str]] = []
    for name in ("pck_crl", "root_ca_crl"):
        try:
            crl = x509.load_der_x509_crl(bytes(getattr(collateral, name)))
        except ValueError:
            continue
        for cert in certificates:
            if cert.issuer != crl.issuer:
                continue
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                found.append((name, format(cert.serial_number, "x")))
    return found
