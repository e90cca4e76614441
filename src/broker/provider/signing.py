"""Response signatures (``provider-gateway.md`` B7; vector ``test-vectors.md`` C2).

The signed text is ``hex(sha256(request as forwarded)) + ":" + hex(sha256(raw response))``; the
signature is EIP-191 personal_sign by the TEE signer key. Signatures are stored in the database under
the lower-cased chat id (``ZG-Res-Key``) so that ``GET /v1/proxy/signature/{id}`` survives a restart.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from sqlalchemy import delete

from broker.provider.db import ChatSignature, Database
from broker.provider.errors import SignatureNotFoundError

__all__ = ["SignatureStore", "StoredSignature", "response_signature_text"]


def response_signature_text(request_body: bytes, response_body: bytes) -> str:
    """``sha256(request):sha256(response)`` in lowercase hex (B7)."""
    return (hashlib.sha256(request_body).hexdigest() + ":"
            + hashlib.sha256(response_body).hexdigest())


@dataclass(frozen=True)
class StoredSignature:
    """A stored signature: the text and its ``0x`` hex signature."""

    text: str
    signature: str


class SignatureStore:
    """Response signatures keyed by chat id, kept ``ttl`` seconds (default 20 min, B7)."""

    def __init__(self, db: Database, signer, ttl: float = 1200.0) -> None:
        self.db = db
        self.signer = signer
        self.ttl = ttl

    def sign_and_store(self, chat_id: str, request_body: bytes, response_body: bytes) -> StoredSignature:
        """Sign the B7 text for this exchange and store it (committed on return)."""
        text = response_signature_text(request_body, response_body)
        sig = StoredSignature(text, self.signer.sign_text(text))
        with self.db.session.begin() as s:
            s.merge(ChatSignature(chat_id=chat_id.lower(), text=sig.text, signature=sig.signature,
                                  expires_at=time.time() + self.ttl))
        return sig

    def get(self, chat_id: str) -> StoredSignature:
        """The signature for ``chat_id`` (case-insensitive).

        Raises:
            SignatureNotFoundError: unknown or expired (400 with the B7 text).
        """
        with self.db.session() as s:
            row = s.get(ChatSignature, chat_id.lower())
        if row is None or row.expires_at < time.time():
            raise SignatureNotFoundError()
        return StoredSignature(row.text, row.signature)

    def prune(self) -> int:
        """Delete expired signatures; returns how many."""
        with self.db.session.begin() as s:
            res = s.execute(delete(ChatSignature).where(ChatSignature.expires_at < time.time()))
        return res.rowcount or 0
