"""A synthetic, Intel-like TDX attestation built in the test process (attestation.md §5.3 item 2).

Root CA → "PCK Platform CA" → PCK leaf (with a hand-encoded SGX extension), a QE report signed by
the PCK key that binds a fresh attestation key, a TD report body whose report_data names a chosen
signer and whose RTMRs are the replay of a dstack-like event log with a compose-hash event, and the
0G-shaped ``/v1/quote`` JSON body around it. Every piece can be tampered with by the tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from broker.attestation.quote import INTEL_TD_QE_MRSIGNER

__all__ = ["NOW", "SAMPLE_NOW", "Pki", "SyntheticTdx", "der_sgx_extension", "raw_sign"]

NOW = datetime(2026, 6, 1, tzinfo=UTC)
"""The pinned verification time of the synthetic tests."""
SAMPLE_NOW = 1786622400
"""2026-08-13T12:00:00Z: inside the near/mpc collateral's validity window (samples README)."""
NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2030, 1, 1, tzinfo=UTC)
RUNTIME = 0x08000001
INTEL_VENDOR = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
FMSPC = bytes.fromhex("00906EA10000")


# --- minimal DER for the SGX extension (§2.6) ---------------------------------------------------
def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _len(len(value)) + value


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytes([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, out)


def _int(v: int) -> bytes:
    b = v.to_bytes((v.bit_length() + 8) // 8 or 1, "big")
    return _tlv(0x02, b)


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def der_sgx_extension(
    *, fmspc: bytes = FMSPC, cpu_svn: bytes = bytes(range(16)), pce_svn: int = 11
) -> bytes:
    """DER of Intel's SGX extension value (OID 1.2.840.113741.1.13.1): PPID, TCB, PCE-ID, FMSPC,
    SGX type, platform instance ID, configuration."""
    arc = "1.2.840.113741.1.13.1"
    tcb = [_seq(_oid(f"{arc}.2.{i}"), _int(cpu_svn[i - 1])) for i in range(1, 17)]
    tcb.append(_seq(_oid(f"{arc}.2.17"), _int(pce_svn)))
    tcb.append(_seq(_oid(f"{arc}.2.18"), _tlv(0x04, cpu_svn)))
    config = _seq(
        _seq(_oid(f"{arc}.7.1"), _tlv(0x01, b"\xff")),
        _seq(_oid(f"{arc}.7.2"), _tlv(0x01, b"\xff")),
        _seq(_oid(f"{arc}.7.3"), _tlv(0x01, b"\xff")),
    )
    return _seq(
        _seq(_oid(f"{arc}.1"), _tlv(0x04, bytes(range(16, 32)))),
        _seq(_oid(f"{arc}.2"), _seq(*tcb)),
        _seq(_oid(f"{arc}.3"), _tlv(0x04, b"\x00\x00")),
        _seq(_oid(f"{arc}.4"), _tlv(0x04, fmspc)),
        _seq(_oid(f"{arc}.5"), _tlv(0x0A, b"\x01")),
        _seq(_oid(f"{arc}.6"), _tlv(0x04, bytes(16))),
        _seq(_oid(f"{arc}.7"), config),
    )


# --- PKI ----------------------------------------------------------------------------------------
def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Synthetic Test Corporation"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    path_length: int | None = None,
    extra: list[x509.UnrecognizedExtension] | None = None,
    not_before: datetime = NOT_BEFORE,
    not_after: datetime = NOT_AFTER,
) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        b = b.add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
    for ext in extra or []:
        b = b.add_extension(ext, critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Pki:
    """Root → PCK Platform CA → PCK leaf, all P-256. ``root_der`` is what tests inject."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    inter_key: ec.EllipticCurvePrivateKey
    inter: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate

    @classmethod
    def create(cls, **leaf_kwargs) -> Pki:
        root_key = ec.generate_private_key(ec.SECP256R1())
        inter_key = ec.generate_private_key(ec.SECP256R1())
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        root = _cert(
            "Synthetic SGX Root CA",
            root_key,
            "Synthetic SGX Root CA",
            root_key,
            ca=True,
            path_length=1,
        )
        inter = _cert(
            "Synthetic SGX PCK Platform CA",
            inter_key,
            "Synthetic SGX Root CA",
            root_key,
            ca=True,
            path_length=0,
        )
        leaf = cls.issue_leaf(leaf_key, inter_key, **leaf_kwargs)
        return cls(root_key, root, inter_key, inter, leaf_key, leaf)

    @staticmethod
    def issue_leaf(
        leaf_key: ec.EllipticCurvePrivateKey, inter_key: ec.EllipticCurvePrivateKey, **kwargs
    ) -> x509.Certificate:
        sgx = x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.2.840.113741.1.13.1"), der_sgx_extension()
        )
        return _cert(
            "Synthetic SGX PCK Certificate",
            leaf_key,
            "Synthetic SGX PCK Platform CA",
            inter_key,
            ca=False,
            extra=[sgx],
            **kwargs,
        )

    @property
    def root_der(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.DER)

    def chain_pem(self) -> str:
        return _pem(self.leaf) + _pem(self.inter) + _pem(self.root)


def raw_sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-P256-SHA256 signature as raw ``r‖s``."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _raw_pub(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )[1:]


# --- event log ----------------------------------------------------------------------------------
def runtime_event(name: str, payload: bytes, *, with_digest: bool = True) -> dict:
    digest = hashlib.sha384(
        RUNTIME.to_bytes(4, "little") + b":" + name.encode() + b":" + payload
    ).digest()
    return {
        "imr": 3,
        "event_type": RUNTIME,
        "digest": digest.hex() if with_digest else "",
        "event": name,
        "event_payload": payload.hex(),
    }


def replay(events: list[dict]) -> list[bytes]:
    """Independent RTMR replay of a dict event log (test oracle)."""
    mrs = [bytes(48)] * 4
    for ev in events:
        if ev["event_type"] == RUNTIME:
            d = hashlib.sha384(
                RUNTIME.to_bytes(4, "little")
                + b":"
                + ev["event"].encode()
                + b":"
                + bytes.fromhex(ev["event_payload"])
            ).digest()
        else:
            d = bytes.fromhex(ev["digest"])
        mrs[ev["imr"]] = hashlib.sha384(mrs[ev["imr"]] + d).digest()
    return mrs


IMAGE_DIGEST = "sha256:" + "ab" * 32


def default_app_compose(image: str = f"0gfoundation/0g-serving-broker@{IMAGE_DIGEST}") -> str:
    compose = f"services:\n  broker:\n    image: {image}\n    ports:\n      - '8080:8080'\n"
    return json.dumps(
        {
            "manifest_version": 2,
            "name": "zg-broker",
            "runner": "docker-compose",
            "docker_compose_file": compose,
        },
        indent=4,
    )


def default_event_log(
    compose_hash: bytes, *, app_events: list[tuple[str, bytes]] = ()
) -> list[dict]:
    boot = []
    for imr, n in ((0, 3), (1, 2), (2, 1)):
        for i in range(n):
            boot.append(
                {
                    "imr": imr,
                    "event_type": 0x80000001,
                    "digest": hashlib.sha384(f"boot-{imr}-{i}".encode()).hexdigest(),
                    "event": "",
                    "event_payload": "",
                }
            )
    runtime = [
        runtime_event("system-preparing", b""),
        runtime_event("app-id", compose_hash[:20]),
        runtime_event("compose-hash", compose_hash),
        runtime_event("instance-id", b""),
        runtime_event("boot-mr-done", b""),
        runtime_event("key-provider", b'{"name":"local-sgx","id":"00"}'),
        runtime_event("storage-fs", b"zfs"),
        runtime_event("system-ready", b""),
    ]
    runtime += [runtime_event(n, p) for n, p in app_events]
    return boot + runtime


# --- quote --------------------------------------------------------------------------------------
def legacy_report_data(address: str) -> bytes:
    return address.encode().ljust(64, b"\x00")


def v1_report_data(address: str, enc_pub: bytes = b"\x07" * 32) -> bytes:
    return enc_pub + bytes.fromhex(address[2:]) + struct.pack(">I", 1) + bytes(8)


@dataclass
class SyntheticTdx:
    """Builds quotes and 0G ``/v1/quote`` bodies with one PKI and one attestation key."""

    signer: str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    pki: Pki = field(default_factory=Pki.create)
    ak: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def body(
        self,
        *,
        report_data: bytes,
        rtmrs: list[bytes],
        mr_config_id: bytes = bytes(48),
        td15: bool = False,
        debug: bool = False,
        td_attributes: bytes | None = None,
    ) -> bytes:
        td_attr = bytearray(td_attributes or bytes.fromhex("0000001000000000"))
        if debug:
            td_attr[0] |= 1
        out = (
            bytes.fromhex("0b010400000000000000000000000000")  # TEE_TCB_SVN
            + hashlib.sha384(b"mrseam").digest()
            + bytes(48)  # MRSIGNERSEAM
            + bytes(8)  # SEAMATTRIBUTES
            + bytes(td_attr)
            + bytes.fromhex("e702060000000000")  # XFAM
            + hashlib.sha384(b"mrtd").digest()
            + mr_config_id
            + bytes(48)
            + bytes(48)
            + b"".join(rtmrs)
            + report_data
        )
        if td15:
            out += bytes(16) + bytes(48)
        return out

    def quote(
        self,
        *,
        report_data: bytes | None = None,
        rtmrs: list[bytes] | None = None,
        mr_config_id: bytes = bytes(48),
        version: int = 4,
        debug: bool = False,
        td_attributes: bytes | None = None,
        chain_pem: str | None = None,
        qe_mr_signer: bytes = INTEL_TD_QE_MRSIGNER,
        qe_isv_prod_id: int = 2,
        qe_attributes: bytes = bytes(16),
        qe_report_data: bytes | None = None,
    ) -> bytes:
        report_data = report_data if report_data is not None else legacy_report_data(self.signer)
        rtmrs = rtmrs or [bytes(48)] * 4
        header = (
            struct.pack("<HHIHH", version, 2, 0x81, 0, 0) + INTEL_VENDOR + b"\x01" * 16 + bytes(4)
        )
        if version == 4:
            signed = header + self.body(
                report_data=report_data,
                rtmrs=rtmrs,
                mr_config_id=mr_config_id,
                debug=debug,
                td_attributes=td_attributes,
            )
        else:
            body = self.body(
                report_data=report_data,
                rtmrs=rtmrs,
                mr_config_id=mr_config_id,
                td15=True,
                debug=debug,
                td_attributes=td_attributes,
            )
            signed = header + struct.pack("<HI", 3, len(body)) + body
        ak_raw = _raw_pub(self.ak)
        auth = bytes(range(32))
        qe = bytearray(384)
        qe[0:16] = b"\x04" * 16
        qe[48:64] = qe_attributes
        qe[128:160] = qe_mr_signer
        qe[256:258] = qe_isv_prod_id.to_bytes(2, "little")
        qe[258:260] = (6).to_bytes(2, "little")
        qe[320:384] = (
            qe_report_data
            if qe_report_data is not None
            else hashlib.sha256(ak_raw + auth).digest() + bytes(32)
        )
        pem = (chain_pem or self.pki.chain_pem()).encode() + b"\x00"
        cert = bytes(qe) + raw_sign(self.pki.leaf_key, bytes(qe)) + struct.pack("<H", 32) + auth
        cert += struct.pack("<HI", 5, len(pem)) + pem
        sig_data = raw_sign(self.ak, signed) + ak_raw + struct.pack("<HI", 6, len(cert)) + cert
        return signed + struct.pack("<I", len(sig_data)) + sig_data

    def report(
        self,
        *,
        app_compose: str | None = None,
        event_log: list[dict] | None = None,
        measured_log: list[dict] | None = None,
        report_data: bytes | None = None,
        json_report_data: bytes | None = None,
        quote: bytes | None = None,
        mr_config_v1: bool = True,
        **quote_kwargs,
    ) -> dict:
        """A 0G ``/v1/quote`` body (dict). ``measured_log`` is what the quote's RTMRs replay;
        ``event_log`` what the body shows (default: the same)."""
        app_compose = app_compose if app_compose is not None else default_app_compose()
        chash = hashlib.sha256(app_compose.encode()).digest()
        measured = measured_log if measured_log is not None else default_event_log(chash)
        shown = event_log if event_log is not None else measured
        rd = report_data if report_data is not None else legacy_report_data(self.signer)
        cfg = (b"\x01" + chash + bytes(15)) if mr_config_v1 else bytes(48)
        if quote is None:
            quote = self.quote(
                report_data=rd, rtmrs=replay(measured), mr_config_id=cfg, **quote_kwargs
            )
        mrs = replay(measured)
        tcb_info = {
            "mrtd": hashlib.sha384(b"mrtd").hexdigest(),
            **{f"rtmr{i}": mrs[i].hex() for i in range(4)},
            "compose_hash": chash.hex(),
            "app_compose": app_compose,
            "event_log": shown,
        }
        return {
            "quote": quote.hex(),
            "event_log": json.dumps(shown),
            "report_data": base64.b64encode(
                json_report_data if json_report_data is not None else rd
            ).decode(),
            "vm_config": json.dumps({"spec_version": 1, "cpu_count": 4}),
            "tcb_info": json.dumps(tcb_info, indent=2),
        }
