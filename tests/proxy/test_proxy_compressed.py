"""A backend that compresses its answers whatever it is asked (``Content-Encoding: gzip``): the
gateway signs the bytes as received (B7, "not decompressed"), so ``serve`` must hash the raw bytes
and decode them only for its client and for billing. Real devnet, gateway, ``serve`` and client."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
from devnet_helpers import funded_user_broker, provider_stack
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from proxy_helpers import USAGE, ThreadServer

from broker.proxy import ServeSettings, create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API_KEY = "sk-gzip-test"
ZG = 10**18


def _gzip_backend() -> FastAPI:
    app = FastAPI()

    @app.post("/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        if body.get("stream"):
            chunk = {
                "id": "chatcmpl-z",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body.get("model"),
                "choices": [],
                "usage": USAGE,
            }
            data = gzip.compress(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
            return StreamingResponse(
                iter([data]), media_type="text/event-stream", headers={"Content-Encoding": "gzip"}
            )
        answer = {
            "id": "chatcmpl-z",
            "object": "chat.completion",
            "created": 1,
            "model": body.get("model"),
            "usage": USAGE,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "squeezed"},
                }
            ],
        }
        return Response(
            gzip.compress(json.dumps(answer).encode()),
            media_type="application/json",
            headers={"Content-Encoding": "gzip"},
        )

    return app


@pytest.fixture(scope="module")
def gzip_serve(devnet, tmp_path_factory):
    with (
        ThreadServer(_gzip_backend()) as backend,
        provider_stack(
            devnet,
            tmp_path_factory.mktemp("gzip"),
            model="tiny",
            chat_backend_url=backend,
            raise_limits=True,
        ) as st,
    ):
        user = funded_user_broker(devnet, ledger=10, amount_neuron=100 * ZG)
        try:
            settings = ServeSettings(
                provider=st.provider_address,
                api_key=API_KEY,
                funding_interval=600,
                extra_routes=True,
            )
            with ThreadServer(create_app(user, settings)) as url:
                yield url
        finally:
            user.inference.close()


def test_compressed_answers_verify_against_the_raw_bytes(gzip_serve):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=gzip_serve, headers=auth, timeout=120) as c:
        r = c.post(
            "/v1/chat/completions",
            json={"model": "tiny", "messages": [{"role": "user", "content": "zip"}]},
        )
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "squeezed"  # decoded for us
        assert "content-encoding" not in {k.lower() for k in r.headers}
        assert r.headers["X-0G-Verified"] == "true"
        assert r.headers["X-0G-Verification-Reason"] == "verified; binding=full"
        assert int(r.headers["X-0G-Fee"]) > 0  # usage was read
        s = c.post(
            "/v1/chat/completions",
            json={
                "model": "tiny",
                "stream": True,
                "messages": [{"role": "user", "content": "zip"}],
            },
        )
        assert s.status_code == 200, s.text
        assert '"usage"' in s.text and s.text.rstrip().endswith("data: [DONE]")
        assert ": X-0G-Verified: true" in s.text
        assert ": X-0G-Verification-Reason: verified; binding=full" in s.text
