"""In-memory activity the dashboard shows and no JSON endpoint kept before: the recent requests
through ``serve`` (:class:`RequestLog`, filled by :class:`RequestLogMiddleware` from each response's
``X-0G-Fee`` / ``X-0G-Verified`` headers) and the recent auto-funding events (:class:`FundingLog`).

Both are bounded ring buffers (oldest dropped), thread-safe, and hold no secrets (no bodies, no
headers other than the two above).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from broker.units import format_0g

__all__ = ["FundingLog", "RequestLog", "RequestLogMiddleware", "RequestRecord"]

#: Routes recorded (the billable and verification routes of ``serve``).
LOGGED_PREFIXES = ("/v1/chat/", "/v1/images/", "/v1/async/", "/v1/audio/", "/v1/verify")
_MODEL_PEEK_BYTES = 64 << 10
#: Most characters of a client-sent route kept in a record (a longer one ends with ``…``).
_ROUTE_CHARS = 200


@dataclass(frozen=True)
class RequestRecord:
    """One request through ``serve``.

    Attributes:
        at: Unix seconds when it arrived. route (its first 200 characters), method, status: as
        answered. model: the request's
        ``model`` field (JSON bodies) or ``""``. fee: neuron (``X-0G-Fee``; 0 when absent).
        verified: ``X-0G-Verified`` (``true``/``false``/``none``/``off``) or ``""`` when the
        response had none (errors). latency_ms: to the response start. reason: the error or
        verification reason in words (``""`` when none). chat_id: the response's ``ZG-Res-Key``
        (``""`` when none), to find the stored verification result.
    """

    at: float
    method: str
    route: str
    status: int
    model: str
    fee: int
    verified: str
    latency_ms: float
    reason: str = ""
    chat_id: str = ""

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (fee as neuron string plus ``fee_0g``)."""
        data = asdict(self)
        data["fee"] = str(self.fee)
        data["fee_0g"] = format_0g(self.fee)
        return data


class RequestLog:
    """The last ``size`` requests (oldest dropped)."""

    def __init__(self, size: int = 500) -> None:
        self._items: deque[RequestRecord] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, record: RequestRecord) -> None:
        """Append one record."""
        with self._lock:
            self._items.append(record)

    def recent(self, limit: int = 200, verified: str | None = None) -> list[RequestRecord]:
        """Newest first; ``verified`` keeps only that ``X-0G-Verified`` outcome (``error``: the
        responses without one)."""
        with self._lock:
            items = list(self._items)
        items.reverse()
        if verified == "error":
            items = [r for r in items if not r.verified]
        elif verified:
            items = [r for r in items if r.verified == verified]
        return items[: max(0, limit)]


def _model_of(body: bytes) -> str:
    try:  # orjson: on every request, several times faster than json (and never recursive)
        data = orjson.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    model = data.get("model") if isinstance(data, dict) else None
    return model[:200] if isinstance(model, str) else ""


def _error_reason(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return err["message"][:300]
    return err[:300] if isinstance(err, str) else ""


_LOGGED_HEADERS = (b"x-0g-fee", b"x-0g-verified", b"zg-res-key")


def _logged_headers(raw: Any) -> dict[str, str]:
    """The response headers a record keeps, from the ASGI ``(name, value)`` byte pairs (the
    first of a repeated name)."""
    found: dict[str, str] = {}
    for name, value in raw:
        name = name.lower()
        if name in _LOGGED_HEADERS:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


class RequestLogMiddleware:
    """Pure ASGI middleware: records every request to :data:`LOGGED_PREFIXES` in a
    :class:`RequestLog` (the JSON request body is peeked for ``model``, at most 64 KiB; error
    bodies for their message). Nothing about the request is changed."""

    def __init__(self, app: Any, log: RequestLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(LOGGED_PREFIXES):
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        at = time.time()
        peek = bytearray()
        state: dict[str, Any] = {"status": 0, "headers": {}, "latency": 0.0, "err": bytearray()}

        async def receive_wrapper():
            message = await receive()
            if message.get("type") == "http.request" and len(peek) < _MODEL_PEEK_BYTES:
                peek.extend(message.get("body", b"")[: _MODEL_PEEK_BYTES - len(peek)])
            return message

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["latency"] = (time.perf_counter() - start) * 1000
                state["headers"] = message.get("headers", ())  # read once the answer is out
            elif (
                message["type"] == "http.response.body"
                and state["status"] >= 400
                and len(state["err"]) < 8192
            ):
                state["err"].extend(message.get("body", b"")[:8192])
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            headers = _logged_headers(state["headers"])
            fee = headers.get("x-0g-fee", "0")
            verified = headers.get("x-0g-verified", "")
            reason = _error_reason(bytes(state["err"])) if state["status"] >= 400 else ""
            if not reason and verified == "false":
                reason = "the provider's TEE signature did not verify"
            elif not reason and verified == "none":
                reason = "the response carried no chat ID to verify"
            self.log.add(
                RequestRecord(
                    at=at,
                    method=scope.get("method", ""),
                    route=path if len(path) <= _ROUTE_CHARS else path[:_ROUTE_CHARS] + "…",
                    status=state["status"] or 500,
                    model=_model_of(bytes(peek)),
                    fee=int(fee) if fee.isdigit() else 0,
                    verified=verified,
                    latency_ms=round(state["latency"], 1),
                    reason=reason,
                    chat_id=headers.get("zg-res-key", "")[:200],
                )
            )


class FundingLog:
    """The last ``size`` auto-funding events that matter to a person (transfers and errors),
    fed by ``InferenceBroker.add_funding_listener``."""

    def __init__(self, size: int = 100) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> None:
        """The listener: keep ``transfer`` and ``error`` events (``check`` is too chatty)."""
        if getattr(event, "kind", None) not in ("transfer", "error"):
            return
        at = event.at.timestamp() if hasattr(event.at, "timestamp") else float(event.at)
        with self._lock:
            self._items.append(
                {
                    "kind": event.kind,
                    "provider": event.provider,
                    "at": at,
                    "amount": str(event.amount),
                    "amount_0g": format_0g(event.amount),
                    "detail": event.detail,
                }
            )

    def recent(self) -> list[dict[str, Any]]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._items))
