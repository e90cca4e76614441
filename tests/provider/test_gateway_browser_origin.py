"""The gateway is meant for browsers (B2 CORS: any origin on ``/v1/proxy/*``), while the worker
behind it refuses web pages (:class:`broker.asgi.guard.LocalGuard`). A browser request through the
gateway must still be served: the gateway does not pass the browser's ``Origin`` / ``Sec-Fetch-*`` /
``Referer`` to its backend. Real devnet stack (gateway + tiny worker), real user session."""

from __future__ import annotations

import json

import httpx
import pytest
from devnet_helpers import funded_user_broker, provider_stack

from broker.proxy import ServeSettings
from broker.proxy.startup import prepare_provider

pytestmark = [pytest.mark.slow, pytest.mark.worker, pytest.mark.timeout(300)]

BROWSER = {
    "Origin": "https://app.example",
    "Referer": "https://app.example/page",
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Dest": "empty",
}


def test_browser_request_through_the_gateway_reaches_the_guarded_worker(devnet, tmp_path):
    with provider_stack(devnet, tmp_path / "stack", model="tiny") as st:
        user = funded_user_broker(devnet, ledger=10)
        try:
            prepare_provider(
                user.inference,
                st.provider_address,
                ServeSettings(provider=st.provider_address, auto_funding=False),
            )
            body = json.dumps(
                {
                    "model": "tiny",
                    "prompt": "a fox",
                    "n": 1,
                    "size": "32x32",
                    "response_format": "b64_json",
                }
            ).encode()
            headers = {
                **user.inference.get_request_headers(st.provider_address),
                "Content-Type": "application/json",
                **BROWSER,
            }
            r = httpx.post(
                f"{st.gateway_url}/v1/proxy/images/generations",
                content=body,
                headers=headers,
                timeout=120,
            )
            assert r.status_code == 200, r.text
            assert r.json()["data"][0]["b64_json"]
            assert r.headers["access-control-allow-origin"] == "https://app.example"  # B2
            # the same browser request straight to the worker is refused
            direct = httpx.post(
                f"{st.worker_url}/v1/images/generations",
                content=body,
                headers={"Content-Type": "application/json", **BROWSER},
            )
            assert direct.status_code == 403
            assert direct.json()["error"]["code"] == "origin_not_allowed"
        finally:
            user.inference.close()
