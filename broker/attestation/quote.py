"""Intel TDX quote parser (quote versions 4 and 5), by documented offsets and lengths.

Source: attestation.md §2.1 (header), §2.2 (TD report body 1.0), §2.3 (v5, TD 1.5), §2.4 (signature
data, certification data types 6 and 5), §2.5 (QE report). All integers are little-endian. The
parser checks structure only; no signature is checked here (see
:mod:`broker.attestation.signature`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from broker.attestation.errors import QuoteFormatError

__all__ = [
    "INTEL_QE_VENDOR_ID",
    "INTEL_TD_QE_ISVPRODID",
    "INTEL_TD_QE_MRSIGNER",
    "TEE_TYPE_TDX",
    "QeReport",
    "Quote",
    "QuoteHeader",
    "TdReport",
    "parse_quote",
    "split_pem_chain",
]

INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
"""QE vendor ID of Intel's quoting enclave (§2.1)."""
TEE_TYPE_TDX = 0x81
"""Header TEE type of a TDX quote (SGX is 0)."""
INTEL_TD_QE_MRSIGNER = bytes.fromhex(
    "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5"
)
"""MRSIGNER of Intel's TD quoting enclave (its ``TD_QE`` identity; §2.5, checked on real quotes)."""
INTEL_TD_QE_ISVPRODID = 2
"""ISVPRODID of Intel's TD quoting enclave (§2.5)."""

_HEADER_LEN = 48
_TD10_LEN = 584
_TD15_LEN = 648
_QE_REPORT_LEN = 384
_CERT_QE_REPORT = 6
_CERT_PCK_CHAIN = 5

# (name, size) of the TD 1.0 report body, in order (§2.2).
_TD10_FIELDS = (
    ("tee_tcb_svn", 16),
    ("mr_seam", 48),
    ("mr_signer_seam", 48),
    ("seam_attributes", 8),
    ("td_attributes", 8),
    ("xfam", 8),
    ("mr_td", 48),
    ("mr_config_id", 48),
    ("mr_owner", 48),
    ("mr_owner_config", 48),
    ("rt_mr0", 48),
    ("rt_mr1", 48),
    ("rt_mr2", 48),
    ("rt_mr3", 48),
    ("report_data", 64),
)


@dataclass(frozen=True)
class QuoteHeader:
    """The 48-byte quote header (§2.1).

    ``version`` 4 or 5; ``attestation_key_type`` 2 (ECDSA P-256); ``tee_type`` 0x81;
    ``qe_vendor_id`` 16 bytes; ``user_data`` 20 bytes.
    """

    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes


@dataclass(frozen=True)
class TdReport:
    """A TD report body, TD 1.0 (584 bytes) or TD 1.5 (648 bytes; adds ``tee_tcb_svn2`` and
    ``mr_service_td``). Every measurement is raw bytes (RTMRs and MRTD: 48 bytes; report_data: 64).
    """

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rt_mr0: bytes
    rt_mr1: bytes
    rt_mr2: bytes
    rt_mr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mr_service_td: bytes | None = None

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        """``(RTMR0, RTMR1, RTMR2, RTMR3)``, 48 bytes each."""
        return (self.rt_mr0, self.rt_mr1, self.rt_mr2, self.rt_mr3)

    @property
    def is_debug(self) -> bool:
        """TDATTRIBUTES byte 0 bit 0 (DEBUG)."""
        return bool(self.td_attributes[0] & 1)


@dataclass(frozen=True)
class QeReport:
    """The 384-byte SGX report of the quoting enclave (§2.5)."""

    raw: bytes

    @property
    def cpu_svn(self) -> bytes:
        return self.raw[0:16]

    @property
    def attributes(self) -> bytes:
        return self.raw[48:64]

    @property
    def mr_enclave(self) -> bytes:
        return self.raw[64:96]

    @property
    def mr_signer(self) -> bytes:
        return self.raw[128:160]

    @property
    def is_debug(self) -> bool:
        """ATTRIBUTES bit 1 (DEBUG): a debug enclave's memory is readable by the host."""
        return bool(self.raw[48] & 0x02)

    @property
    def isv_prod_id(self) -> int:
        return int.from_bytes(self.raw[256:258], "little")

    @property
    def isv_svn(self) -> int:
        return int.from_bytes(self.raw[258:260], "little")

    @property
    def report_data(self) -> bytes:
        return self.raw[320:384]


@dataclass(frozen=True)
class Quote:
    """A parsed TDX quote.

    Attributes:
        raw: the quote bytes without any zero tail.
        header, body: see :class:`QuoteHeader`, :class:`TdReport`.
        body_type: 2 (TD 1.0) or 3 (TD 1.5); v4 quotes are always 2.
        signed_region: the bytes the attestation key signs (v4: ``[0, 632)``; v5: ``[0, 54+size)``).
        signature: raw ``r‖s`` (64 bytes) by the attestation key.
        attestation_key: raw P-256 ``x‖y`` (64 bytes).
        qe_report: the QE report; ``qe_report_signature`` raw ``r‖s`` by the PCK leaf key.
        qe_auth_data: the QE authentication data (32 bytes in every real quote).
        pck_chain_pem: the PEM text of the certification data type 5 (leaf first), NUL stripped.
        tail_len: number of zero padding bytes that followed the signature data.
    """

    raw: bytes
    header: QuoteHeader
    body_type: int
    body: TdReport
    signed_region: bytes
    signature: bytes
    attestation_key: bytes
    qe_report: QeReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: str
    tail_len: int

    @property
    def version(self) -> int:
        return self.header.version


class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise QuoteFormatError(
                f"quote truncated: {what} needs {n} bytes at offset {self.pos}, "
                f"quote has {len(self.data)}"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]


def _parse_body(data: bytes, body_type: int) -> TdReport:
    values: dict[str, bytes] = {}
    pos = 0
    for name, size in _TD10_FIELDS:
        values[name] = data[pos : pos + size]
        pos += size
    if body_type == 3:
        values["tee_tcb_svn2"] = data[pos : pos + 16]
        values["mr_service_td"] = data[pos + 16 : pos + 64]
    return TdReport(**values)


def split_pem_chain(pem_text: str) -> list[str]:
    """Split a PEM text into its ``CERTIFICATE`` blocks, in order.

    Args:
        pem_text: concatenated PEM certificates (leaf first, as in a quote).
    Returns:
        one PEM string per certificate, each ending with a newline.
    """
    end = "-----END CERTIFICATE-----"
    out = []
    for part in pem_text.split(end):
        start = part.find("-----BEGIN CERTIFICATE-----")
        if start >= 0:
            out.append(part[start:].strip() + "\n" + end + "\n")
    return out


def parse_quote(raw: bytes) -> Quote:
    """Parse a raw TDX quote (v4 or v5) by lengths.

    Args:
        raw: the quote bytes, optionally followed by zero padding (dstack pads; §2.4).
    Returns:
        :class:`Quote`.
    Raises:
        QuoteFormatError: version not 4/5, attestation key type not 2, TEE type not 0x81, QE vendor
            not Intel, v5 body type not 2/3 (or its size wrong), certification data not type 6
            wrapping type 5, QE auth data not 32 bytes, truncation, or a non-zero tail.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise QuoteFormatError("a quote must be bytes")
    raw = bytes(raw)
    r = _Reader(raw)
    version = r.u16("version")
    key_type = r.u16("attestation key type")
    tee_type = r.u32("TEE type")
    qe_svn = r.u16("qe_svn")
    pce_svn = r.u16("pce_svn")
    vendor = r.take(16, "QE vendor ID")
    user_data = r.take(20, "user data")
    header = QuoteHeader(version, key_type, tee_type, qe_svn, pce_svn, vendor, user_data)
    if version not in (4, 5):
        raise QuoteFormatError(f"unsupported quote version {version} (expected 4 or 5)")
    if key_type != 2:
        raise QuoteFormatError(f"attestation key type {key_type} is not ECDSA-256-with-P-256 (2)")
    if tee_type != TEE_TYPE_TDX:
        raise QuoteFormatError(f"TEE type {tee_type:#x} is not TDX (0x81)")
    if vendor != INTEL_QE_VENDOR_ID:
        raise QuoteFormatError(f"QE vendor ID {vendor.hex()} is not Intel's")

    if version == 4:
        body_type, body_len = 2, _TD10_LEN
    else:
        body_type = r.u16("body type")
        body_len = r.u32("body size")
        expected = {2: _TD10_LEN, 3: _TD15_LEN}.get(body_type)
        if expected is None:
            raise QuoteFormatError(f"v5 body type {body_type} is not a TD report (2 or 3)")
        if body_len != expected:
            raise QuoteFormatError(f"v5 body size {body_len} does not match type {body_type}")
    body = _parse_body(r.take(body_len, "TD report body"), body_type)
    signed_region = raw[: r.pos]

    sig_len = r.u32("signature data length")
    sig_end = r.pos + sig_len
    if sig_end > len(raw):
        raise QuoteFormatError("quote truncated: signature data length exceeds the quote")
    s = _Reader(raw[:sig_end], r.pos)
    signature = s.take(64, "quote signature")
    attestation_key = s.take(64, "attestation key")
    cert_type = s.u16("certification data type")
    if cert_type != _CERT_QE_REPORT:
        raise QuoteFormatError(f"certification data type {cert_type} is not 6 (QE report)")
    cert_len = s.u32("certification data size")
    c = _Reader(s.take(cert_len, "certification data"))
    qe_report = QeReport(c.take(_QE_REPORT_LEN, "QE report"))
    qe_report_signature = c.take(64, "QE report signature")
    auth_len = c.u16("QE auth data size")
    if auth_len != 32:
        raise QuoteFormatError(f"QE auth data is {auth_len} bytes (expected 32)")
    qe_auth_data = c.take(auth_len, "QE auth data")
    inner_type = c.u16("inner certification data type")
    if inner_type != _CERT_PCK_CHAIN:
        raise QuoteFormatError(f"inner certification data type {inner_type} is not 5 (PCK chain)")
    inner_len = c.u32("PCK chain size")
    pem_bytes = c.take(inner_len, "PCK certificate chain")
    try:
        pem_text = pem_bytes.rstrip(b"\x00").decode("ascii")
    except UnicodeDecodeError as exc:
        raise QuoteFormatError("PCK certificate chain is not ASCII PEM text") from exc
    if s.pos != sig_end:
        raise QuoteFormatError("signature data length does not match its content")
    tail = raw[sig_end:]
    if tail.strip(b"\x00"):
        raise QuoteFormatError(f"quote has {len(tail)} trailing bytes that are not zero padding")
    return Quote(
        raw=raw[:sig_end],
        header=header,
        body_type=body_type,
        body=body,
        signed_region=signed_region,
        signature=signature,
        attestation_key=attestation_key,
        qe_report=qe_report,
        qe_report_signature=qe_report_signature,
        qe_auth_data=qe_auth_data,
        pck_chain_pem=pem_text,
        tail_len=len(tail),
    )
