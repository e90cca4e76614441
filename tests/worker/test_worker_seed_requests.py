"""The seeds' image requests, unchanged, against a devnet provider stack running the tiny worker
(anvil + our contracts, the worker and the gateway on loopback): the 0g-image skill's curl
(``size 512x512``, ``response_format b64_json``, an ``app-sk-`` token) against the gateway, and the
Router's Python example (``1024x1024``) and a bare ``images.generate(prompt=...)`` (the SDK default
512x512) through ``serve`` with the ``openai`` client. The tiny model used to stop at 128 px."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from devnet_helpers import funded_user_broker, provider_stack

pytest.importorskip("torch")
pytest.importorskip("diffusers")
openai = pytest.importorskip("openai")

from PIL import Image

from broker.proxy import ServeSettings, create_app

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.timeout(300)]

API_KEY = "sk-local-seed-test"


@pytest.fixture(scope="module")
def stack(devnet, tmp_path_factory):
    with provider_stack(
        devnet, tmp_path_factory.mktemp("seed-stack"), model="tiny", raise_limits=True
    ) as st:
        yield st


@pytest.fixture(scope="module")
def user(devnet, stack):
    broker = funded_user_broker(devnet, ledger=10)
    broker.inference.acknowledge_provider_signer(stack.provider_address)
    broker.ledger.transfer_fund(stack.provider_address, "inference", "3")
    yield broker
    broker.inference.close()


@pytest.fixture(scope="module")
def client(stack, user, serve_app):
    # extra_routes: the edit test sends /v1/images/edits to this text-to-image provider
    settings = ServeSettings(
        provider=stack.provider_address, api_key=API_KEY, funding_interval=600, extra_routes=True
    )
    with serve_app(create_app(user, settings)) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=300)


def _png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    assert image.format == "PNG"
    return image


def test_0g_image_skill_curl_512_against_the_gateway(stack, user):
    # seeds/000 (0g-image skill), "Generate Image (Shell)": the body as written there.
    headers = user.inference.get_request_headers(stack.provider_address)
    assert headers["Authorization"].startswith("Bearer app-sk-")
    r = httpx.post(
        stack.gateway_url + "/v1/proxy/images/generations",
        headers={"Content-Type": "application/json", **headers},
        json={
            "model": "z-image",
            "prompt": "A cute robot waving hello",
            "n": 1,
            "size": "512x512",
            "response_format": "b64_json",
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert _png(r.json()["data"][0]["b64_json"]).size == (512, 512)
    assert user.inference.process_response(stack.provider_address, r.headers["ZG-Res-Key"]) is True


def test_router_example_1024_through_serve(client):
    # seeds/001 (Router, "Python (OpenAI SDK)"): the call as written there.
    result = client.images.generate(
        model="z-image",
        prompt="A serene mountain landscape at sunset",
        n=1,
        size="1024x1024",
        response_format="b64_json",
    )
    assert _png(result.data[0].b64_json).size == (1024, 1024)


def test_bare_generate_uses_the_sdk_default_512(client):
    # issue #10: `client.images.generate(prompt="a cat")` answered 400 (512x512 beyond 128 px).
    result = client.images.generate(prompt="a cat", response_format="b64_json")
    assert _png(result.data[0].b64_json).size == (512, 512)


def test_text_file_as_edit_image_through_serve(client):
    # issue #10: the answer named `<_io.BytesIO object at 0x...>` instead of the accepted formats.
    with pytest.raises(openai.BadRequestError) as info:
        client.images.edit(
            image=("notes.txt", b"just some text\n", "text/plain"),
            prompt="make it blue",
            response_format="b64_json",
        )
    message = str(info.value)
    assert "image is not a PNG/JPEG/WebP image" in message
    assert "BytesIO" not in message and "object at 0x" not in message
