"""Response signatures (``provider-gateway.md`` B7; vector ``test-vectors.md`` C2).

The signed text is ``hex(sha256(request as forwarded)) + ":" + hex(sha256(raw response))``; the
signature is EIP-191 personal_sign by the TEE signer key. Signatures are stored in the database under
the lower-cased chat id (``ZG-Res-Key``) so that ``GET /v1/proxy/signature/{id}`` survives a restart,
and also under the response's own ``id`` (the completion id of a chat answer or of its stream's first
chunk) so that the SDK's documented fallback ``processResponse(provider, data.id)``
(``user-broker.md`` §8.1) finds it as well (the ``ZG-Res-Key`` entry always stays).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from broker.provider.db import ChatSignature, Database
from broker.provider.errors import SignatureNotFoundError
from broker.wire.signed_text import signed_text

__all__ = ["SignatureStore", "StoredSignature", "response_signature_text"]


def response_signature_text(request_body: bytes, response_body: bytes) -> str:
    """``sha256(request):sha256(response)`` in lowercase hex (B7); see
    :func:`broker.wire.signed_text.signed_text`."""
    return signed_text(request_body, response_body)


@dataclass(frozen=True)
class StoredSignature:
    """A stored signature: the text and its ``0x`` hex signature."""

    text: str
    signature: str


_SIGNATURES = ChatSignature.__table__
_GET = select(_SIGNATURES.c.text, _SIGNATURES.c.signature, _SIGNATURES.c.expires_at).where(
    _SIGNATURES.c.chat_id == bindparam("chat_id"))


class SignatureStore:
    """Response signatures keyed by chat id, kept ``ttl`` seconds (default 20 min, B7).

    Reads and writes use SQLAlchemy Core on the engine (one per billed request and one per
    signature lookup); the write is an upsert (SQLite, PostgreSQL; other databases: ORM merge).
    """

    def __init__(self, db: Database, signer, ttl: float = 1200.0) -> None:
        self.db = db
        self.signer = signer
        self.ttl = ttl
        dialect = db.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            mod = sqlite if dialect == "sqlite" else postgresql
            stmt = mod.insert(_SIGNATURES)
            self._upsert = stmt.on_conflict_do_update(
                index_elements=[_SIGNATURES.c.chat_id],
                set_={"text": stmt.excluded.text, "signature": stmt.excluded.signature,
                      "expires_at": stmt.excluded.expires_at})
        else:
            self._upsert = None

    def _write(self, conn: Connection, row: dict) -> None:
        if self._upsert is not None:
            conn.execute(self._upsert, row)
        else:
            with Session(bind=conn) as s:
                s.merge(ChatSignature(**row))
                s.flush()

    def sign_and_store(self, chat_id: str, request_body: bytes, response_body: bytes, *,
                       conn: Connection | None = None,
                       aliases: tuple[str, ...] = ()) -> StoredSignature:
        """Sign the B7 text for this exchange and store it (committed on return; with ``conn``,
        a connection inside an open transaction, the write joins it and the caller commits).

        Args:
            chat_id: the ``ZG-Res-Key`` of the response.
            request_body: the body as forwarded (B5). response_body: the raw backend bytes.
            aliases: further ids to store the same signature under (the response's completion
                ``id``); empty, over-long (> 128 characters, the key's size) or ``chat_id``-equal ones are skipped.
        """
        text = response_signature_text(request_body, response_body)
        sig = StoredSignature(text, self.signer.sign_text(text))
        expires = time.time() + self.ttl
        keys = [chat_id.lower()]
        keys += [a.lower() for a in aliases if a and len(a) <= 128 and a.lower() not in keys]
        rows = [{"chat_id": key, "text": sig.text, "signature": sig.signature,
                 "expires_at": expires} for key in keys]
        if conn is not None:
            for row in rows:
                self._write(conn, row)
            return sig
        with self.db.engine.begin() as c:
            for row in rows:
                self._write(c, row)
        return sig

    def get(self, chat_id: str) -> StoredSignature:
        """The signature for ``chat_id`` (case-insensitive).

        Raises:
            SignatureNotFoundError: unknown or expired (400 with the B7 text).
        """
        with self.db.engine.connect() as conn:
            row = conn.execute(_GET, {"chat_id": chat_id.lower()}).first()
        if row is None or row.expires_at < time.time():
            raise SignatureNotFoundError()
        return StoredSignature(row.text, row.signature)

    def prune(self) -> int:
        """Delete expired signatures; returns how many."""
        with self.db.session.begin() as s:
            res = s.execute(delete(ChatSignature).where(ChatSignature.expires_at < time.time()))
        return res.rowcount or 0
