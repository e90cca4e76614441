"""Response signatures (``provider-gateway.md`` B7; vector ``test-vectors.md`` C2).

The signed text is ``hex(sha256(request as forwarded)) + ":" + hex(sha256(raw response))``; the
signature is EIP-191 personal_sign by the TEE signer key. Signatures are stored in the database
under the lower-cased chat id (``ZG-Res-Key``) so that ``GET /v1/proxy/signature/{id}`` survives a
restart, and also under the response's own ``id`` (the completion id of a chat answer or of its
stream's first chunk) so that the SDK's documented fallback ``processResponse(provider, data.id)``
(``user-broker.md`` §8.1) finds it as well (the ``ZG-Res-Key`` entry always stays).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from broker.provider.db import ChatSignature, Database
from broker.provider.errors import SignatureNotFoundError
from broker.sqlite_writer import WriteOp
from broker.wire.signed_text import signed_text

__all__ = ["MEMORY_SIGNATURES", "SignatureStore", "StoredSignature", "response_signature_text"]

#: How many recently stored signatures the gateway also keeps in memory (the signature endpoint
#: answers those without a database read or a thread hop).
MEMORY_SIGNATURES = 4096


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
# the upsert in SQLite's SQL, for the group-commit writer's plain sqlite3 connection
_SQL_UPSERT = (
    "INSERT INTO chat_signatures (chat_id, text, signature, expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (chat_id) DO UPDATE SET text = excluded.text, signature = excluded.signature, "
    "expires_at = excluded.expires_at"
)
_GET = select(_SIGNATURES.c.text, _SIGNATURES.c.signature, _SIGNATURES.c.expires_at).where(
    _SIGNATURES.c.chat_id == bindparam("chat_id")
)


class SignatureStore:
    """Response signatures keyed by chat id, kept ``ttl`` seconds (default 20 min, B7).

    Reads and writes use SQLAlchemy Core on the engine (one per billed request and one per
    signature lookup); the write is an upsert (SQLite, PostgreSQL; other databases: ORM merge).
    """

    def __init__(self, db: Database, signer, ttl: float = 1200.0) -> None:
        self.db = db
        self.signer = signer
        self.ttl = ttl
        self._memory: OrderedDict[str, tuple[StoredSignature, float]] = OrderedDict()
        self._memory_lock = threading.Lock()
        dialect = db.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            mod = sqlite if dialect == "sqlite" else postgresql
            stmt = mod.insert(_SIGNATURES)
            self._upsert = stmt.on_conflict_do_update(
                index_elements=[_SIGNATURES.c.chat_id],
                set_={
                    "text": stmt.excluded.text,
                    "signature": stmt.excluded.signature,
                    "expires_at": stmt.excluded.expires_at,
                },
            )
        else:
            self._upsert = None

    @staticmethod
    def keys_for(chat_id: str, aliases: tuple[str, ...] = ()) -> list[str]:
        """The lower-cased ids a signature is stored under: ``chat_id`` and each alias that is not
        empty, not longer than 128 characters (the key's size) and not a repeat."""
        keys = [chat_id.lower()]
        keys += [a.lower() for a in aliases if a and len(a) <= 128 and a.lower() not in keys]
        return keys

    def remember(self, keys: tuple[str, ...] | list[str], sig: StoredSignature) -> None:
        """Keep a **committed** signature in memory under ``keys`` (lower-cased chat ids) so that
        :meth:`cached` answers its lookup without the database (the newest
        :data:`MEMORY_SIGNATURES` are kept, each until it expires)."""
        expires = time.time() + self.ttl
        with self._memory_lock:
            for key in keys:
                self._memory[key.lower()] = (sig, expires)
                self._memory.move_to_end(key.lower())
            while len(self._memory) > MEMORY_SIGNATURES:
                self._memory.popitem(last=False)

    def cached(self, chat_id: str) -> StoredSignature | None:
        """The signature of ``chat_id`` if it is in memory and not expired, else ``None`` (then
        ask :meth:`get`). No I/O: safe on the event loop."""
        found = self._memory.get(chat_id.lower())
        if found is None or found[1] < time.time():
            return None
        return found[0]

    def _write(self, conn: Connection, row: dict) -> None:
        if self._upsert is not None:
            conn.execute(self._upsert, row)
        else:
            with Session(bind=conn) as s:
                s.merge(ChatSignature(**row))
                s.flush()

    def sign(
        self, chat_id: str, request_body: bytes, response_body: bytes, aliases: tuple[str, ...] = ()
    ) -> tuple[StoredSignature, list[str]]:
        """Sign the B7 text of one exchange (no I/O).

        Args:
            chat_id: the ``ZG-Res-Key`` of the response.
            request_body: the body as forwarded (B5). response_body: the raw backend bytes.
            aliases: further ids to store the same signature under (see :meth:`keys_for`).

        Returns:
            ``(signature, the lower-cased keys to store it under)``.
        """
        text = response_signature_text(request_body, response_body)
        return StoredSignature(text, self.signer.sign_text(text)), self.keys_for(chat_id, aliases)

    def store_op(self, keys: list[str], sig: StoredSignature) -> WriteOp[None]:
        """The write op storing ``sig`` under ``keys`` (upserts, expiring in ``ttl`` seconds);
        run it with :meth:`broker.provider.db.Database.write` or inside another op (the fee's:
        :meth:`broker.provider.billing.FeeLedger.bill`), then :meth:`remember` once committed."""
        expires = time.time() + self.ttl
        rows = [(key, sig.text, sig.signature, expires) for key in keys]

        def op(conn: Any) -> None:
            if isinstance(conn, sqlite3.Connection):
                conn.executemany(_SQL_UPSERT, rows)
                return
            for key, text, signature, exp in rows:
                self._write(
                    conn, {"chat_id": key, "text": text, "signature": signature, "expires_at": exp}
                )

        return op

    def sign_and_store(
        self,
        chat_id: str,
        request_body: bytes,
        response_body: bytes,
        *,
        conn: Connection | None = None,
        aliases: tuple[str, ...] = (),
    ) -> StoredSignature:
        """Sign the B7 text for this exchange and store it (committed on return; with ``conn``,
        a connection inside an open transaction, the write joins it and the caller commits).

        Args:
            chat_id: the ``ZG-Res-Key`` of the response.
            request_body: the body as forwarded (B5). response_body: the raw backend bytes.
            aliases: further ids to store the same signature under (the response's completion
                ``id``); empty, over-long (> 128 characters, the key's size) or ``chat_id``-equal
                ones are skipped.
        """
        sig, keys = self.sign(chat_id, request_body, response_body, aliases)
        op = self.store_op(keys, sig)
        if conn is not None:  # the caller commits, then calls remember(keys, sig)
            op(conn)
            return sig
        self.db.write(op)
        self.remember(keys, sig)
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
