"""OpenAPI descriptions of the OpenAI-compatible request bodies that ``serve`` and the gateway
accept, and the ``/openapi.json`` route both publish.

The routes of ``serve`` and the gateway read their bodies themselves (raw bytes are forwarded and
signed), so FastAPI cannot infer the request bodies; :func:`add_openapi_route` adds them to the
generated document from the models here, so that clients and fuzzers (schemathesis) see the real
shapes. The models only describe (``extra`` fields are allowed, as OpenAI allows them); the
servers' checks stay where they are (:mod:`broker.wire.json_body`, :mod:`broker.wire.n`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

from fastapi import FastAPI, params
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from broker.wire.n import MAX_N

__all__ = [
    "GATEWAY_REQUEST_BODIES",
    "SERVE_REQUEST_BODIES",
    "ChatCompletionRequest",
    "ChatMessage",
    "ImageEditForm",
    "ImageGenerationRequest",
    "RequestBodies",
    "TranscriptionForm",
    "VerifyRequestBody",
    "add_openapi_route",
]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(_Open):
    """One chat message (``content`` text; parts arrays are passed through as well)."""

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | None = None


class ChatCompletionRequest(_Open):
    """``POST /v1/chat/completions`` (OpenAI shape)."""

    model: str | None = Field(None, description="Model; default: the provider's on-chain model.")
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    user: str | None = None


class ImageGenerationRequest(_Open):
    """``POST /v1/images/generations`` and ``/v1/async/images/generations`` (OpenAI shape plus
    the Z-Image fields)."""

    prompt: str = Field(..., min_length=1, max_length=32_000)
    model: str | None = None
    n: int = Field(1, ge=1, le=MAX_N, description="Images (a JSON integer; billed n × price).")
    size: str | None = Field(None, pattern=r"^([0-9]{1,4}x[0-9]{1,4}|auto)$")
    response_format: Literal["b64_json", "url"] = "b64_json"
    negative_prompt: str | None = None
    user: str | None = None


class ImageEditForm(BaseModel):
    """``POST /v1/images/edits`` (``multipart/form-data``)."""

    image: bytes = Field(..., json_schema_extra={"format": "binary"})
    prompt: str = Field(..., min_length=1)
    model: str | None = None
    n: str | None = Field(None, pattern=r"^[0-9]{1,2}$", description="Images (decimal digits).")
    size: str | None = None
    response_format: Literal["b64_json", "url"] | None = None


class TranscriptionForm(BaseModel):
    """``POST /v1/audio/transcriptions`` (``multipart/form-data``)."""

    file: bytes = Field(..., json_schema_extra={"format": "binary"})
    model: str | None = None
    language: str | None = None
    response_format: Literal["json", "text", "verbose_json"] | None = None


class VerifyRequestBody(BaseModel):
    """``POST /v1/verify`` (serve): the chat ID to verify."""

    id: str = Field(..., min_length=1, max_length=512)


#: ``{(path, method): (media type, model)}``: the request bodies to document.
RequestBodies = dict[tuple[str, str], tuple[str, type[BaseModel]]]


def _schema_of(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _document(app: FastAPI, bodies: RequestBodies) -> dict[str, Any]:
    with warnings.catch_warnings():  # routes with several methods share one operation id ...
        warnings.simplefilter("ignore", UserWarning)
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    seen: set[str] = set()
    for path_item in schema.get("paths", {}).values():  # ... made unique here, per method
        for method, operation in path_item.items():
            op_id = operation.get("operationId")
            if op_id is not None and op_id in seen:
                operation["operationId"] = op_id = f"{op_id}_{method}"
            if op_id is not None:
                seen.add(op_id)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    paths = schema.setdefault("paths", {})
    for (path, method), (media, model) in bodies.items():
        operation = paths.setdefault(path, {}).setdefault(
            method,
            {
                "summary": (model.__doc__ or path).splitlines()[0].replace("``", ""),
                "responses": {"200": {"description": "Successful Response"}},
            },
        )
        operation["requestBody"] = {
            "required": True,
            "content": {media: {"schema": _schema_of(model, components)}},
        }
    return schema


def add_openapi_route(
    app: FastAPI, bodies: RequestBodies, *, dependencies: Sequence[params.Depends] = ()
) -> None:
    """Serve the app's OpenAPI document at ``GET /openapi.json`` with ``bodies`` documented.

    Args:
        app: a FastAPI app built with ``openapi_url=None``.
        bodies: the request bodies to add (paths missing from the app, such as the gateway's
            billable routes under its catch-all ``/v1/proxy/{path}``, are added).
        dependencies: route dependencies (``serve``: its API key check).
    """
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if "doc" not in cache:
            cache["doc"] = _document(app, bodies)
        return cache["doc"]

    app.openapi = openapi  # type: ignore[method-assign]

    async def openapi_json() -> JSONResponse:
        return JSONResponse(openapi())

    app.add_api_route(
        "/openapi.json",
        openapi_json,
        methods=["GET"],
        include_in_schema=False,
        dependencies=list(dependencies),
    )


_JSON, _FORM = "application/json", "multipart/form-data"

#: The request bodies of ``serve`` (``broker.proxy``).
SERVE_REQUEST_BODIES: RequestBodies = {
    ("/v1/chat/completions", "post"): (_JSON, ChatCompletionRequest),
    ("/v1/images/generations", "post"): (_JSON, ImageGenerationRequest),
    ("/v1/async/images/generations", "post"): (_JSON, ImageGenerationRequest),
    ("/v1/images/edits", "post"): (_FORM, ImageEditForm),
    ("/v1/audio/transcriptions", "post"): (_FORM, TranscriptionForm),
    ("/v1/verify", "post"): (_JSON, VerifyRequestBody),
}

#: The request bodies of the provider gateway (``broker.provider``), billable routes included.
GATEWAY_REQUEST_BODIES: RequestBodies = {
    ("/v1/proxy/chat/completions", "post"): (_JSON, ChatCompletionRequest),
    ("/v1/proxy/images/generations", "post"): (_JSON, ImageGenerationRequest),
    ("/v1/proxy/async/images/generations", "post"): (_JSON, ImageGenerationRequest),
    ("/v1/async/images/generations", "post"): (_JSON, ImageGenerationRequest),
    ("/v1/proxy/images/edits", "post"): (_FORM, ImageEditForm),
    ("/v1/proxy/audio/transcriptions", "post"): (_FORM, TranscriptionForm),
}
