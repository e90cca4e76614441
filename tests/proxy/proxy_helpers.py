"""Helpers for the proxy tests (and the benchmark): a fake OpenAI-compatible chat/audio backend that
streams SSE with usage and can be told to fail, and a uvicorn server in a thread."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

__all__ = ["ThreadServer", "fake_llm_app", "free_port", "register_image_service"]

USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """``with ThreadServer(app) as url:`` runs ``app`` with uvicorn on a free loopback port."""

    def __init__(self, app, port: int | None = None) -> None:
        self.port = port or free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.__exit__(None, None, None)  # a slow start-up (its lifespan may start
                raise RuntimeError("server did not start")  # auto-funding) ends with the test
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)


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
