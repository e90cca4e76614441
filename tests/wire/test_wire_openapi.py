"""The OpenAPI documents of serve and the gateway describe the real request bodies."""

from __future__ import annotations

import warnings

from fastapi import FastAPI

from broker.wire.openapi import GATEWAY_REQUEST_BODIES, SERVE_REQUEST_BODIES, add_openapi_route


def _doc(bodies) -> dict:
    app = FastAPI(openapi_url=None)

    @app.api_route("/v1/proxy/{path:path}", methods=["GET", "POST", "DELETE"])
    async def proxy(path: str) -> dict:
        return {}

    add_openapi_route(app, bodies)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return app.openapi()


def test_request_bodies_documented_and_ids_unique() -> None:
    for bodies in (SERVE_REQUEST_BODIES, GATEWAY_REQUEST_BODIES):
        doc = _doc(bodies)
        for (path, method), (media, _model) in bodies.items():
            body = doc["paths"][path][method]["requestBody"]["content"][media]["schema"]
            name = body["$ref"].rsplit("/", 1)[1]
            assert name in doc["components"]["schemas"]
        ids = [
            op["operationId"]
            for item in doc["paths"].values()
            for op in item.values()
            if "operationId" in op
        ]
        assert len(ids) == len(set(ids))
    image = _doc(SERVE_REQUEST_BODIES)["components"]["schemas"]["ImageGenerationRequest"]
    assert image["properties"]["n"]["type"] == "integer"
    assert image["properties"]["n"]["maximum"] == 16 and image["required"] == ["prompt"]
