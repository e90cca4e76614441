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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from broker.provider.db import Database, RequestRecord, RequestStatus

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


def request_image_count(request_body: bytes) -> int:
    """``n`` of an image request (JSON or multipart form already parsed to JSON); default 1."""
    try:
        data = json.loads(request_body)
    except (ValueError, UnicodeDecodeError):
        return 1
    if isinstance(data, dict) and "n" in data:
        n = _int(data["n"])
        return n if n > 0 else 1
    return 1


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
        if kind == "duration" or (kind != "tokens" and isinstance(seconds, (int, float))
                                  and not isinstance(seconds, bool) and seconds > 0):
            secs = seconds if isinstance(seconds, (int, float)) else 0
            billable = 0 if secs <= 0 else max(math.floor(secs + 0.5), 1)
            return Fee(billable, 0, billable * in_price, 0)
        i, o = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
        return Fee(i, o, i * in_price, o * out_price)
    text = body.get("text", "") if isinstance(body, dict) else ""
    words = 2 * len(str(text).split()) or 100
    return Fee(0, words, 0, words * out_price)


def compute_fee(service_type: str, request_body: bytes, response_body: bytes, *,
                input_price: int, output_price: int, streamed: bool = False) -> Fee:
    """Bill one successful request (B9).

    Args:
        service_type: ``chatbot``, ``text-to-image``, ``image-editing`` or ``speech-to-text``.
        request_body: the body as forwarded (for images: JSON with ``n``).
        response_body: the raw backend body (an SSE stream when ``streamed``).
        input_price, output_price: on-chain prices in neuron.

    Returns:
        :class:`Fee`. Images: ``n × outputPrice`` (B9, D11); chat: usage tokens, else words.
    """
    if service_type in ("text-to-image", "image-editing"):
        n = request_image_count(request_body)
        return Fee(0, n, 0, n * output_price)
    if service_type == "speech-to-text":
        return _speech_fee(response_body, input_price, output_price)
    return _chat_fee(response_body, streamed, input_price, output_price)


class FeeLedger:
    """Durable per-request fee records (B9) on a :class:`~broker.provider.db.Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def open_request(self, request_hash: str, user: str, service_type: str, model: str) -> None:
        """Insert the ``pending`` zero-fee row before forwarding (B4.6); committed on return."""
        with self.db.session.begin() as s:
            s.add(RequestRecord(request_hash=request_hash, user_address=user,
                                service_type=service_type, model=model,
                                status=RequestStatus.PENDING))

    def bill(self, request_hash: str, fee: Fee) -> None:
        """Record the fee (status ``unsettled``); committed (durable) on return, before release."""
        with self.db.session.begin() as s:
            s.execute(update(RequestRecord)
                      .where(RequestRecord.request_hash == request_hash)
                      .values(input_count=fee.input_count, output_count=fee.output_count,
                              input_fee=str(fee.input_fee), output_fee=str(fee.output_fee),
                              fee=str(fee.fee), status=RequestStatus.UNSETTLED))

    def fail(self, request_hash: str) -> None:
        """Mark a request that produced no billable output (never charged)."""
        with self.db.session.begin() as s:
            s.execute(update(RequestRecord).where(RequestRecord.request_hash == request_hash)
                      .values(status=RequestStatus.FAILED))

    def unsettled_fee(self, user: str) -> int:
        """Sum in neuron of the user's fees not yet settled (pending, unsettled, settling)."""
        with self.db.session() as s:
            fees = s.scalars(select(RequestRecord.fee).where(
                RequestRecord.user_address == user,
                RequestRecord.status.in_(RequestStatus.OUTSTANDING))).all()
        return sum(int(f) for f in fees)

    def users_with_unsettled(self) -> list[str]:
        """Users that have ``unsettled`` rows with a non-zero fee, oldest first."""
        with self.db.session() as s:
            rows = s.execute(select(RequestRecord.user_address, RequestRecord.fee).where(
                RequestRecord.status == RequestStatus.UNSETTLED)
                .order_by(RequestRecord.created_at)).all()
        seen: dict[str, None] = {}
        for user, fee in rows:
            if int(fee) > 0:
                seen.setdefault(user, None)
        return list(seen)
