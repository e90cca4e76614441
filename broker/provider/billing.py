"""Fee accounting on the gateway (``provider-gateway.md`` B4.5–B4.6, B9).

:func:`compute_fee` turns a forwarded request and the backend response into counts and fees;
:class:`FeeLedger` records each billable request durably: a ``pending`` row before forwarding, its fee
(``unsettled``) before the response is released. Fees are ints in neuron (stored as decimal strings).

Speech-to-text (open question D12) follows the deployed provider that SDK 0.9.0 was tested against
(PR #523): duration usage bills ``max(round_half_up(seconds), 1) × inputPrice``; token usage bills
``input_tokens × inputPrice + output_tokens × outputPrice``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Numeric, bindparam, cast, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from broker.provider.db import Database, RequestRecord, RequestStatus
from broker.wire.n import request_n

__all__ = ["Fee", "FeeLedger", "compute_fee", "request_image_count", "sse_usage"]


@dataclass(frozen=True)
class Fee:
    """Counts and fees of one request; fees in neuron."""

    input_count: int
    output_count: int
    input_fee: int
    output_fee: int

    @property
    def fee(self) -> int:
        """``input_fee + output_fee`` (neuron)."""
        return self.input_fee + self.output_fee


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and math.isfinite(value):
        return max(int(value), 0)
    if isinstance(value, str):
        try:
            return max(int(value.strip()), 0)
        except ValueError:
            return 0
    return 0


def request_image_count(request_body: bytes, content_type: str | None = None) -> int:
    """``n`` of an image request (JSON, or a multipart form with ``content_type``), by the rule
    the worker and ``serve`` apply (:func:`broker.wire.n.request_n`); default 1.

    Raises:
        InvalidNError / InvalidJSONBodyError: the request breaks the rule (the gateway refuses
            such a request with 400 before forwarding it, so a billed request never does).
    """
    return request_n(request_body, content_type or "application/json")


def sse_usage(stream: bytes) -> tuple[dict | None, str]:
    """From a raw SSE byte stream: the last ``usage`` object seen and the generated text."""
    usage = None
    parts: list[str] = []
    for line in stream.splitlines():
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            continue
        try:
            chunk = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(chunk, dict):
            continue
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = (choice or {}).get("delta") or {}
            if isinstance(delta.get("content"), str):
                parts.append(delta["content"])
    return usage, "".join(parts)


def _chat_fee(response: bytes, streamed: bool, in_price: int, out_price: int) -> Fee:
    usage: dict | None = None
    text = ""
    if streamed:
        usage, text = sse_usage(response)
    else:
        try:
            body = json.loads(response)
        except (ValueError, UnicodeDecodeError):
            body = {}
        if isinstance(body, dict):
            if isinstance(body.get("usage"), dict):
                usage = body["usage"]
            for choice in body.get("choices") or []:
                msg = (choice or {}).get("message") or {}
                if isinstance(msg.get("content"), str):
                    text += msg["content"]
    if usage is not None:
        i, o = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        return Fee(i, o, i * in_price, o * out_price)
    words = len(text.split())
    return Fee(0, words, 0, words * out_price)


def _speech_fee(response: bytes, in_price: int, out_price: int) -> Fee:
    try:
        body = json.loads(response)
    except (ValueError, UnicodeDecodeError):
        body = {}
    usage = body.get("usage") if isinstance(body, dict) else None
    if isinstance(usage, dict):
        seconds = usage.get("seconds")
        kind = usage.get("type")
        if kind == "duration" or (
            kind != "tokens"
            and isinstance(seconds, (int, float))
            and not isinstance(seconds, bool)
            and seconds > 0
        ):
            secs = seconds if isinstance(seconds, (int, float)) else 0
            billable = 0 if secs <= 0 else max(math.floor(secs + 0.5), 1)
            return Fee(billable, 0, billable * in_price, 0)
        i, o = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
        return Fee(i, o, i * in_price, o * out_price)
    text = body.get("text", "") if isinstance(body, dict) else ""
    words = 2 * len(str(text).split()) or 100
    return Fee(0, words, 0, words * out_price)


def compute_fee(
    service_type: str,
    request_body: bytes,
    response_body: bytes,
    *,
    input_price: int,
    output_price: int,
    streamed: bool = False,
    image_count: int | None = None,
) -> Fee:
    """Bill one successful request (B9).

    Args:
        service_type: ``chatbot``, ``text-to-image``, ``image-editing`` or ``speech-to-text``.
        request_body: the body as forwarded (for images: JSON with ``n``).
        response_body: the raw backend body (an SSE stream when ``streamed``).
        input_price, output_price: on-chain prices in neuron.
        image_count: images billed for an image request, as checked when it arrived
            (default: :func:`request_image_count` of a JSON ``request_body``).

    Returns:
        :class:`Fee`. Images: ``n × outputPrice`` (B9, D11); chat: usage tokens, else words.
    """
    if service_type in ("text-to-image", "image-editing"):
        n = image_count if image_count is not None else request_image_count(request_body)
        return Fee(0, n, 0, n * output_price)
    if service_type == "speech-to-text":
        return _speech_fee(response_body, input_price, output_price)
    return _chat_fee(response_body, streamed, input_price, output_price)


_REQUESTS = RequestRecord.__table__
_OUTSTANDING = (
    _REQUESTS.c.user_address == bindparam("user"),
    _REQUESTS.c.status.in_(RequestStatus.OUTSTANDING),
)
_OPEN = insert(_REQUESTS)
_BILL = (
    update(_REQUESTS)
    .where(_REQUESTS.c.request_hash == bindparam("rid"))
    .values(status=RequestStatus.UNSETTLED)
)
_FAIL = (
    update(_REQUESTS)
    .where(_REQUESTS.c.request_hash == bindparam("rid"))
    .values(status=RequestStatus.FAILED)
)
# SQLite has 64-bit integers: sum the last 9 digits and the digits above them apart
_SQLITE_SUM = select(
    func.sum(cast(func.substr(_REQUESTS.c.fee, -9), Integer)),
    func.sum(cast(func.substr(_REQUESTS.c.fee, 1, func.length(_REQUESTS.c.fee) - 9), Integer)),
    func.max(func.length(_REQUESTS.c.fee)),
).where(*_OUTSTANDING)
_NUMERIC_SUM = select(func.sum(cast(_REQUESTS.c.fee, Numeric))).where(*_OUTSTANDING)
_FEES = select(_REQUESTS.c.fee).where(*_OUTSTANDING)


class FeeLedger:
    """Durable per-request fee records (B9) on a :class:`~broker.provider.db.Database`.

    The per-request methods use prebuilt SQLAlchemy Core statements on the engine (no ORM
    session): they run on every billed request.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._sqlite = db.engine.dialect.name == "sqlite"

    def open_request(self, request_hash: str, user: str, service_type: str, model: str) -> None:
        """Insert the ``pending`` zero-fee row before forwarding (B4.6); committed on return."""
        now = time.time()
        with self.db.engine.begin() as conn:
            conn.execute(
                _OPEN,
                {
                    "request_hash": request_hash,
                    "user_address": user,
                    "service_type": service_type,
                    "model": model,
                    "status": RequestStatus.PENDING,
                    "created_at": now,
                    "updated_at": now,
                },
            )

    def bill(self, request_hash: str, fee: Fee, *, conn: Connection | None = None) -> None:
        """Record the fee (status ``unsettled``); committed (durable) on return, before release.

        With ``conn`` (a connection inside an open transaction) the update joins it and the caller
        commits, so the fee and the response signature are written by one commit (see
        :mod:`broker.provider.app`).
        """
        params = {
            "rid": request_hash,
            "input_count": fee.input_count,
            "output_count": fee.output_count,
            "input_fee": str(fee.input_fee),
            "output_fee": str(fee.output_fee),
            "fee": str(fee.fee),
            "updated_at": time.time(),
        }
        if conn is not None:
            conn.execute(_BILL, params)
            return
        with self.db.engine.begin() as c:
            c.execute(_BILL, params)

    def fail(self, request_hash: str) -> None:
        """Mark a request that produced no billable output (never charged)."""
        with self.db.engine.begin() as conn:
            conn.execute(_FAIL, {"rid": request_hash, "updated_at": time.time()})

    def unsettled_fee(self, user: str) -> int:
        """Sum in neuron of the user's fees not yet settled (pending, unsettled, settling).

        Summed in the database (one aggregate over a covering index, no rows to Python), exactly:
        PostgreSQL sums the decimal strings as ``NUMERIC``; SQLite (64-bit integers) sums the last
        9 digits and the digits above them separately, and sums in Python when a fee has more than
        27 digits or the total overflows.
        """
        with self.db.engine.connect() as conn:
            if not self._sqlite:
                return int(conn.execute(_NUMERIC_SUM, {"user": user}).scalar() or 0)
            try:
                lo, hi, longest = conn.execute(_SQLITE_SUM, {"user": user}).one()
                # SQLite clamps a CAST beyond 64 bits: a fee of more than 27 digits is summed
                # in Python (as is a total that overflows SUM)
                if (longest or 0) <= 27:
                    return (hi or 0) * 10**9 + (lo or 0)
            except DBAPIError:  # "integer overflow" of SUM
                conn.rollback()
            fees = conn.execute(_FEES, {"user": user}).scalars().all()
            return sum(int(f) for f in fees)

    def users_with_unsettled(self) -> list[str]:
        """Users that have ``unsettled`` rows with a non-zero fee, oldest first."""
        with self.db.session() as s:
            rows = s.execute(
                select(RequestRecord.user_address, RequestRecord.fee)
                .where(RequestRecord.status == RequestStatus.UNSETTLED)
                .order_by(RequestRecord.created_at)
            ).all()
        seen: dict[str, None] = {}
        for user, fee in rows:
            if int(fee) > 0:
                seen.setdefault(user, None)
        return list(seen)
