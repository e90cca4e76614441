"""Helpers for the proxy tests (and the benchmark): a fake OpenAI-compatible chat/audio backend that
streams SSE with usage and can be told to fail, and a uvicorn server in a thread."""

from __future__ import annotations

import asyncio
import json

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from server_helpers import UvicornThread, free_port

__all__ = ["ThreadServer", "fake_llm_app", "free_port", "register_image_service"]

USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


class ThreadServer(UvicornThread):
    """``with ThreadServer(app) as url:`` runs ``app`` with uvicorn on a free loopback port, its
    lifespan on (serve's start-up may take a while: up to 60 s; 15 s to stop)."""

    def __init__(self, app, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(app, self.port, start_polls=3000, stop_timeout=15, lifespan="on")

    def __enter__(self) -> str:  # type: ignore[override]
        return super().__enter__().url


def _failure(text: str):
    """``__status_<code>__`` in a message makes the backend answer that status."""
    if "__status_" not in text:
        return None
    code = int(text.split("__status_", 1)[1].split("__", 1)[0])
    headers = {"Retry-After": "7"} if code == 429 else None
    return JSONResponse(
        {"error": {"message": f"backend says {code}", "type": "test"}},
        status_code=code,
        headers=headers,
    )


def fake_llm_app(chunk_delay: float = 0.0) -> FastAPI:
    """``/chat/completions`` (JSON or SSE with ``usage`` in the last chunk when
    ``stream_options.include_usage``) and ``/audio/transcriptions`` (duration usage)."""
    app = FastAPI()

    @app.post("/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        text = json.dumps(body.get("messages"))
        failed = _failure(text)
        if failed is not None:
            return failed
        model = body.get("model")
        if not body.get("stream"):
            return {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "hello there"},
                    }
                ],
                "usage": USAGE,
            }

        async def events():
            for i, word in enumerate(["one", " two", " three"]):
                chunk = {
                    "id": "chatcmpl-s",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n".encode()
                await asyncio.sleep(chunk_delay)
            if (body.get("stream_options") or {}).get("include_usage"):
                last = {
                    "id": "chatcmpl-s",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [],
                    "usage": USAGE,
                }
                yield f"data: {json.dumps(last)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/audio/transcriptions")
    async def audio(request: Request):
        form = await request.form()
        return {
            "text": f"transcribed with {form.get('model')}",
            "usage": {"type": "duration", "seconds": 3.4},
        }

    return app


def register_image_service(devnet, url: str, *, model: str = "z-image", output_price: int = 10**15):
    """Register a ``text-to-image`` TeeML service at ``url`` (e.g. a fake provider on loopback)
    from a new provider funded with 200 0G (stake 100 0G); the devnet owner acknowledges its TEE
    signer (the provider's own address). Returns the provider's LocalAccount."""
    from devnet_helpers import register_teeml_service

    return register_teeml_service(
        devnet,
        url,
        service_type="text-to-image",
        model=model,
        input_price=0,
        output_price=output_price,
        owner_ack=True,
    )
