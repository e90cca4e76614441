"""What every request handler of the proxy shares (:class:`ProxyContext`), body reading with a cap,
and the common "complete response" path: read, bill, verify, answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from broker.asgi.body import read_capped_body
from broker.asgi.errors import RequestBodyTooLargeError
from broker.inference.chat_id import extract_chat_id
from broker.inference.response_signature import RESPONSE_SIGNATURE_HEADER, ResponseBinding
from broker.proxy.errors import ProxyHTTPError
from broker.proxy.upstream import decode_body, passthrough_headers
from broker.proxy.verification import REASON_HEADER, VERIFIED_HEADER, header_value, reason_value
from broker.wire.forwarded_request import ForwardedRequestError, canonical_json
from broker.wire.json_body import InvalidJSONBodyError, loads_request_json

if TYPE_CHECKING:
    from broker.inference.broker import InferenceBroker
    from broker.inference.models import Service
    from broker.proxy.billing import Billing
    from broker.proxy.metrics import ProxyMetrics
    from broker.proxy.settings import ServeSettings
    from broker.proxy.upstream import Upstream, UpstreamResponse
    from broker.proxy.verification import Verifier

__all__ = [
    "FEE_HEADER",
    "ProxyContext",
    "complete_response",
    "forwarded_body",
    "read_body",
    "read_json",
    "read_multipart",
]

#: Response header with the fee accounted for the request, in neuron.
FEE_HEADER = "X-0G-Fee"


@dataclass
class ProxyContext:
    """The parts of a running proxy (``app.state.proxy``).

    Attributes:
        settings: serve settings. inference: the user's inference broker. provider: checksummed
        provider address. service: its on-chain service (as resolved at start-up). upstream,
        verifier, billing, metrics: the per-request machinery. broker: the whole
        :class:`broker.broker.Broker` (ledger reads for ``/v1/account``), may be ``None``.
    """

    settings: ServeSettings
    inference: InferenceBroker
    provider: str
    service: Service
    upstream: Upstream
    verifier: Verifier
    billing: Billing
    metrics: ProxyMetrics
    broker: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def default_model(self) -> str:
        """The provider's on-chain default model."""
        return self.service.model


async def read_body(request: Request, cap: int) -> bytes:
    """The request body, refusing more than ``cap`` bytes with 413
    (:func:`broker.asgi.body.read_capped_body`).

    Raises:
        ProxyHTTPError: 413 ``invalid_request_error`` / ``body_too_large``.
    """
    try:
        return await read_capped_body(request, cap)
    except RequestBodyTooLargeError as exc:
        raise ProxyHTTPError(
            f"request body larger than {exc.cap} bytes",
            status_code=413,
            type="invalid_request_error",
            code="body_too_large",
        ) from None


async def read_multipart(request: Request, cap: int, route: str) -> tuple[bytes, str]:
    """A ``multipart/form-data`` request body (forwarded as it is) and its content type.

    Args:
        request: the request. cap: body limit in bytes. route: the route's name for the message
            (``"images/edits"``).

    Raises:
        ProxyHTTPError: 400 ``invalid_content_type`` for another content type; 413 over ``cap``.
    """
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ProxyHTTPError(
            f"{route} expects multipart/form-data",
            status_code=400,
            type="invalid_request_error",
            code="invalid_content_type",
        )
    return await read_body(request, cap), ctype


async def read_json(request: Request, cap: int) -> dict[str, Any]:
    """The request body as a JSON object, by the servers' one safe parse
    (:func:`broker.wire.json_body.loads_request_json`).

    Raises:
        ProxyHTTPError: 400 ``invalid_json`` when the body is not a JSON object, is not UTF-8 or
            holds a lone surrogate escape; 400 ``json_too_deep`` when it nests deeper than 64
            levels; 413 when too large.
    """
    body = await read_body(request, cap)
    try:
        data = loads_request_json(body)
    except InvalidJSONBodyError as exc:
        raise ProxyHTTPError(
            str(exc), status_code=400, type="invalid_request_error", code=exc.code
        ) from None
    if not isinstance(data, dict):
        raise ProxyHTTPError(
            "request body must be a JSON object",
            status_code=400,
            type="invalid_request_error",
            code="invalid_json",
        )
    return data


def forwarded_body(data: dict[str, Any]) -> bytes:
    """``data`` in the form a gateway forwards a JSON body (Go ``json.Marshal``,
    :func:`broker.wire.forwarded_request.canonical_json`): what ``serve`` sends and hashes.

    Raises:
        ProxyHTTPError: 400 ``invalid_number`` for a number that cannot be forwarded exactly.
    """
    try:
        return canonical_json(data)
    except ForwardedRequestError as exc:
        raise ProxyHTTPError(
            str(exc), status_code=400, type="invalid_request_error", code="invalid_number"
        ) from None


async def complete_response(
    ctx: ProxyContext,
    response: UpstreamResponse,
    bill: Callable[[bytes], Any] | None,
    on_body: Callable[[int, bytes], Awaitable[None]] | None = None,
    *,
    request_body: bytes | None = None,
    refused_bill: Callable[[bytes], Any] | None = None,
) -> Response:
    """Finish a non-streamed upstream response: map errors, read it, verify its signature bound to
    the bytes (``enforce`` may refuse), account the fee, and answer with the provider's status and
    headers (including ``ZG-Res-Key``) plus ``X-0G-Verified``, ``X-0G-Verification-Reason`` and
    ``X-0G-Fee``.

    A refused response's fee is recorded as *disputed* (the provider billed it; the local books
    keep matching) and nothing of it reaches the client.

    Args:
        ctx: the proxy context. response: the upstream response (body unread).
        bill: ``raw_response -> content for the fee extractor`` (``None``: bill nothing).
        on_body: awaited with ``(status, raw_response)`` of a successful response that is not
            refused, before it is answered (e.g. to record an async job); optional.
        request_body: the bytes sent upstream, in the form the gateway forwards them (their
            sha256 must be the signed request hash); ``None``: only the response is bound.
        refused_bill: what to bill as disputed when ``enforce`` refuses (default ``bill``), e.g.
            an async submission's request, which the provider bills when the job completes.

    Raises:
        ProxyHTTPError: mapped upstream errors; VerificationRefusedError in ``enforce`` mode.
    """
    await ctx.upstream.raise_for_status(response)
    received = await ctx.upstream.read_raw(response)
    raw = decode_body(received, response.headers)
    chat_id = extract_chat_id(response.headers, raw)
    mode = ctx.verifier.mode
    # off: nothing is checked, so nothing is hashed either
    binding = (
        None
        if mode == "off"
        else ResponseBinding.of(request_body=request_body, response_body=received)
    )
    header_signature = response.headers.get(RESPONSE_SIGNATURE_HEADER)
    if mode == "enforce":
        # the outcome decides what is billed (accepted or disputed) and whether on_body runs
        result = await ctx.verifier.verify(
            chat_id, binding=binding, header_signature=header_signature
        )
        refused = ctx.verifier.refuses(result)
        if on_body is not None and not refused:
            await on_body(response.status_code, raw)
        charge = refused_bill if refused and refused_bill is not None else bill
        fee = await ctx.billing.record(
            charge(raw) if charge is not None else None,
            disputed=result if refused else None,
            chat_id=chat_id,
        )
        ctx.verifier.enforce(result)
    else:
        # off / warn never refuse: the signature check (no fetch when the gateway sent
        # ZG-Res-Signature) runs alongside on_body; the fee and the verification result are then
        # committed together, in one transaction, before the answer is sent
        async def content() -> Any:
            if on_body is not None:
                await on_body(response.status_code, raw)
            return bill(raw) if bill is not None else None

        if mode == "off":  # nothing to run alongside: no tasks to make
            result, billed = None, await content()
        else:
            result, billed = await asyncio.gather(
                ctx.verifier.verify(
                    chat_id, binding=binding, header_signature=header_signature, record=False
                ),
                content(),
            )
        fee = await ctx.billing.record(
            billed, chat_id=chat_id, verification=result if chat_id else None
        )
    headers = passthrough_headers(response.headers)
    headers[VERIFIED_HEADER] = header_value(result)
    headers[REASON_HEADER] = reason_value(result)
    headers[FEE_HEADER] = str(fee)
    return Response(
        raw,
        status_code=response.status_code,
        headers=headers,
        media_type=response.headers.get("content-type", "application/json"),
    )
