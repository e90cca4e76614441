"""The gateway's backend pool never forwards a billed request on a connection the backend is
closing: idle connections are dropped after ``keepalive`` seconds (default
:data:`~broker.provider.forward.BACKEND_KEEPALIVE`, below uvicorn's and vLLM's 5 s)."""

from __future__ import annotations

import asyncio

from server_helpers import UvicornThread, free_port, ok_app, posts_near_idle_close

from broker.provider.forward import BACKEND_KEEPALIVE, Forwarder


def test_the_backend_pool_drops_idle_connections_before_the_backend_closes_them():
    with UvicornThread(ok_app, free_port(), timeout_keep_alive=0.3) as server:

        async def main() -> int:
            forwarder = Forwarder(timeout=10, keepalive=0.15)

            async def post() -> None:
                response = await forwarder.send("POST", server.url + "/chat/completions", {}, b"{}")
                try:
                    assert response.status_code == 200
                    async for _chunk in response.aiter_raw():
                        pass
                finally:
                    await response.aclose()

            try:
                return await posts_near_idle_close(post, 0.3)
            finally:
                await forwarder.aclose()

        assert asyncio.run(main()) == 0


def test_the_default_keepalive_is_below_uvicorns_idle_timeout():
    assert BACKEND_KEEPALIVE < 5
    assert Forwarder().keepalive == BACKEND_KEEPALIVE
