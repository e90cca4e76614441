"""The TEE signer: the key that signs response signatures (B7) and settlements (B10), and the
``/v1/quote`` report (B8).

Two implementations:

* :class:`DstackTeeSigner` inside a dstack CVM (Intel TDX): the key is ``GetKey("/")`` and the
  report is a real quote whose report data is the signer address (``attestation.md`` 1.2–1.3,
  legacy layout).
* :class:`LocalTeeSigner` everywhere else (devnet, CI, a machine without TDX): a local key, and a
  report that says plainly that there is **no TEE** — never a fake claim of a genuine quote.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

from coincurve import PrivateKey
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from broker.provider.errors import ProviderConfigError

__all__ = [
    "NO_TEE_MESSAGE",
    "DstackTeeSigner",
    "LocalTeeSigner",
    "TeeSigner",
    "load_tee_signer",
    "report_data_for",
]

NO_TEE_MESSAGE = (
    "No TEE: this gateway does not run inside Intel TDX (or any TEE). There is no hardware quote; "
    "report_data only names the signer key and proves nothing about the software running it."
)


def report_data_for(address: str) -> bytes:
    """The 64-byte legacy report data: the ASCII checksummed address, zero-padded (B8)."""
    text = address.encode("ascii")
    return text + b"\x00" * (64 - len(text))


class TeeSigner(Protocol):
    """What the gateway needs from a TEE signer."""

    address: str

    def sign_text(self, text: str) -> str:
        """EIP-191 personal_sign of the UTF-8 text; ``0x`` + 130 hex, v = 27/28."""

    def sign_typed_data(self, typed_data: dict[str, Any]) -> bytes:
        """EIP-712 signature (65 bytes, v = 27/28) of a full typed-data message."""

    def quote(self) -> dict[str, Any]:
        """The ``/v1/quote`` JSON body."""


class _KeySigner:
    """Signing with an in-process secp256k1 key (shared by both implementations)."""

    def __init__(self, private_key: bytes) -> None:
        self._account = Account.from_key(private_key)
        self._key = PrivateKey(bytes(self._account.key))
        self.address: str = self._account.address

    def __repr__(self) -> str:
        return f"{type(self).__name__}(address={self.address})"

    def sign_text(self, text: str) -> str:
        """EIP-191 personal_sign of ``text`` (B7); returns ``0x`` hex with v = 27/28.

        Signed with libsecp256k1 (coincurve) directly: RFC 6979 nonces and low-s, so the bytes
        equal ``eth_account``'s ``sign_message(encode_defunct(text=text))`` at a tenth of the cost
        (one is made per billed request).
        """
        message = text.encode("utf-8")
        digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode() + message)
        sig = self._key.sign_recoverable(digest, hasher=None)  # r ‖ s ‖ recovery id
        return "0x" + sig[:64].hex() + f"{sig[64] + 27:02x}"

    def sign_typed_data(self, typed_data: dict[str, Any]) -> bytes:
        """EIP-712 signature of ``typed_data`` (``contracts.md`` A3.5); 65 bytes, v = 27/28."""
        return bytes(
            self._account.sign_message(encode_typed_data(full_message=typed_data)).signature
        )


class LocalTeeSigner(_KeySigner):
    """A signer with a local key and **no TEE** behind it (devnet, tests, machines without TDX)."""

    def quote(self) -> dict[str, Any]:
        """A report that says there is no TEE.

        Returns ``{"tee": "none", "attested": false, "message": ..., "signing_address": ...,
        "report_data": base64(address padded to 64 bytes)}``; it has no ``quote`` field, so no
        verifier can mistake it for a hardware attestation. ``report_data`` lets the SDK's
        signer-address check match ``teeSignerAddress`` (like the Go broker's mock mode), nothing
        more.
        """
        return {
            "tee": "none",
            "attested": False,
            "message": NO_TEE_MESSAGE,
            "signing_address": self.address,
            "report_data": base64.b64encode(report_data_for(self.address)).decode(),
        }


class DstackTeeSigner(_KeySigner):
    """The key derived by dstack (``GetKey("/")``) and a real TDX quote naming it.

    Talks to the dstack guest socket over HTTP (``attestation.md`` 1.2). Not exercised by the test
    suite (no TDX machine); :func:`load_tee_signer` only picks it when the socket exists.
    """

    def __init__(self, socket_path: Path) -> None:
        import httpx

        self._client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket_path)),
            base_url="http://dstack",
            timeout=30.0,
        )
        resp = self._client.post("/GetKey", json={"path": "/", "purpose": ""})
        resp.raise_for_status()
        key_hex = resp.json()["key"]
        super().__init__(bytes.fromhex(key_hex.removeprefix("0x"))[:32])
        self._report: dict[str, Any] | None = None

    def quote(self) -> dict[str, Any]:
        """The current-era body of ``attestation.md`` 1.2 (fetched once, then cached)."""
        if self._report is None:
            rd = report_data_for(self.address)
            q = self._client.post("/GetQuote", json={"report_data": rd.hex()})
            q.raise_for_status()
            body = q.json()
            info = self._client.post("/Info", json={})
            tcb_info = ""
            if info.status_code == 200:
                tcb_info = info.json().get("tcb_info", "")
            report: dict[str, Any] = {
                "quote": body["quote"],
                "event_log": body.get("event_log", "[]"),
                "report_data": base64.b64encode(rd).decode(),
                "vm_config": body.get("vm_config", ""),
            }
            if tcb_info:
                report["tcb_info"] = tcb_info if isinstance(tcb_info, str) else json.dumps(tcb_info)
            self._report = report
        return self._report


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def load_tee_signer(settings) -> TeeSigner:
    """The signer for these settings.

    Order: dstack when ``settings.dstack_socket`` exists; else ``settings.tee_signer_key`` (hex,
    e.g. from ``ZG_PROVIDER_TEE_SIGNER_KEY``); else the encrypted key file
    ``settings.tee_key_path()`` (keystore v3, mode 0600), decrypted with ``tee_key_password`` —
    generated once when absent. The key is never written in plain text.

    Raises:
        ProviderConfigError: no key source (neither a key nor a password for the key file), the key
            file is unreadable or not a keystore, or the password is wrong.
    """
    if settings.dstack_socket.exists():
        return DstackTeeSigner(settings.dstack_socket)
    if settings.tee_signer_key is not None:
        return LocalTeeSigner(
            bytes.fromhex(settings.tee_signer_key.get_secret_value().removeprefix("0x"))
        )
    path = settings.tee_key_path()
    if settings.tee_key_password is None:
        raise ProviderConfigError(
            "no TEE signer key: set ZG_PROVIDER_TEE_SIGNER_KEY, or ZG_PROVIDER_TEE_KEY_PASSWORD to "
            f"use (or create) the encrypted key file {path}"
        )
    password = settings.tee_key_password.get_secret_value()
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ProviderConfigError(f"cannot read the TEE signer key file {path}") from exc
        if not isinstance(data, dict) or "crypto" not in data:
            raise ProviderConfigError(f"{path} is not an encrypted keystore (v3)")
        try:
            return LocalTeeSigner(bytes(Account.decrypt(data, password)))
        except ValueError:
            raise ProviderConfigError(f"wrong password for {path}") from None
    key = secrets.token_bytes(32)
    _write_private(path, json.dumps(Account.encrypt(key, password)))
    return LocalTeeSigner(key)
