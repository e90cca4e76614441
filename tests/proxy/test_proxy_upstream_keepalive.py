"""serve's upstream pool never sends a billed POST on a connection the provider is closing: idle
connections are dropped after ``upstream_keepalive`` seconds, before the provider's own idle
timeout (uvicorn's is 5 s). With aiohttp's default (15 s) a burst that reuses the pool just as the
provider closes idle connections fails with ``ClientOSError`` (502s seen at 50 clients in the
benchmark, on answers that cannot be retried)."""

from __future__ import annotations

import asyncio

from server_helpers import UvicornThread, free_port, ok_app, posts_near_idle_close

from broker.proxy.settings import ServeSettings
from broker.proxy.upstream import Upstream


def test_the_pool_drops_idle_connections_before_the_provider_closes_them():
    settings = ServeSettings(upstream_keepalive=0.15)
    with UvicornThread(ok_app, free_port(), timeout_keep_alive=0.3) as server:

        async def main() -> int:
            upstream = Upstream(None, "0x" + "1" * 40, server.url, settings)  # type: ignore[arg-type]

            async def post() -> None:
                async with upstream.session.post(server.url + "/chat", data=b"{}") as r:
                    assert r.status == 200
                    await r.read()

            try:
                return await posts_near_idle_close(post, 0.3)
            finally:
                await upstream.session.close()

        assert asyncio.run(main()) == 0


def test_the_default_keepalive_is_below_uvicorns_idle_timeout():
    assert ServeSettings().upstream_keepalive < 5
