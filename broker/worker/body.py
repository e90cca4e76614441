"""The worker's JSON request bodies go through the one safe parse of :mod:`broker.wire.json_body`.

FastAPI parses the JSON body of a typed route with ``Request.json()`` (the stdlib parser, which
accepts lone surrogates and recurses once per nesting level). :class:`SafeJSONRoute` hands the
route a :class:`SafeJSONRequest` whose ``json()`` is
:func:`~broker.wire.json_body.loads_request_json` instead; a refused body becomes FastAPI's
``json_invalid`` validation error (HTTP 400 ``invalid_request_error`` / ``invalid_json`` in
:mod:`broker.worker.app`), with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from broker.wire.json_body import InvalidJSONBodyError, loads_request_json

__all__ = ["SafeJSONRequest", "SafeJSONRoute"]


class SafeJSONRequest(Request):
    """A request whose ``json()`` refuses deep nesting, lone surrogates and invalid UTF-8.

    Raises (from ``json()``): ``json.JSONDecodeError`` whose ``msg`` is the one-line reason.
    """

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = loads_request_json(body)
            except InvalidJSONBodyError as exc:
                raise json.JSONDecodeError(str(exc), "", 0) from None
        return self._json


class SafeJSONRoute(APIRoute):
    """An ``APIRoute`` whose handler receives a :class:`SafeJSONRequest`
    (``APIRouter(route_class=SafeJSONRoute)``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def safe_handler(request: Request) -> Response:
            return await handler(SafeJSONRequest(request.scope, request.receive))

        return safe_handler
