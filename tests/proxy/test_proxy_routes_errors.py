"""``serve``'s request-time errors on a real devnet stack (text-to-image provider, tiny worker):
unknown paths and methods in OpenAI's shape, routes the provider's service type does not serve
(refused before anything is sent, naming the type and the provider), ``model_not_found`` for a model
the provider does not serve (nothing billed), and ``/v1/account`` scoped to the serving user when
two wallets share one fee store."""

from __future__ import annotations

import io

import httpx
import openai
import pytest
from devnet_helpers import funded_user_broker
from PIL import Image
from proxy_helpers import ThreadServer

from broker.proxy import ServeSettings, create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API_KEY = "sk-local-routes"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SMALL = {"size": "32x32", "num_inference_steps": 1, "response_format": "b64_json"}


def _settings(st) -> ServeSettings:
    return ServeSettings(provider=st.provider_address, api_key=API_KEY, auto_funding=False)


@pytest.fixture(scope="module")
def serve(stack, user_broker):
    st, _ = stack
    with ThreadServer(create_app(user_broker, _settings(st))) as url:
        yield url


def _fees(stack, broker) -> tuple[int, int]:
    st, _ = stack
    local = broker.inference.fee_store.get_totals(broker.address, st.provider_address).total_fee
    return local, st.gateway.ledger.unsettled_fee(broker.address)


def _is_openai_error(response: httpx.Response, status: int, code: str | None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["code"] == code
    return body["error"]


def test_unknown_path_and_method_in_openai_shape(serve):
    with httpx.Client(base_url=serve, headers=AUTH, timeout=30) as c:
        err = _is_openai_error(c.post("/v1/nope", json={}), 404, "unknown_url")
        assert err["message"] == "Invalid URL (POST /v1/nope)"
        assert err["type"] == "invalid_request_error"
        _is_openai_error(c.get("/"), 404, "unknown_url")
        wrong = c.get("/v1/chat/completions")
        err = _is_openai_error(wrong, 405, "method_not_allowed")
        assert "GET" in err["message"] and wrong.headers["allow"] == "POST"
        # without the API key an unknown path is still an OpenAI-shaped 404, never a traceback
        _is_openai_error(httpx.delete(serve + "/v1/models/x"), 404, "unknown_url")


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v1/chat/completions", "json"),
        ("/v1/audio/transcriptions", "audio"),
        ("/v1/images/edits", "edit"),
    ],
)
def test_route_outside_service_type_refused_unbilled(serve, stack, user_broker, path, kind):
    st, _ = stack
    before = _fees(stack, user_broker)
    with httpx.Client(base_url=serve, headers=AUTH, timeout=60) as c:
        if kind == "json":
            r = c.post(path, json={"model": "tiny", "messages": [{"role": "user", "content": "x"}]})
        elif kind == "audio":
            r = c.post(path, files={"file": ("a.wav", b"RIFF....WAVE", "audio/wav")})
        else:
            buf = io.BytesIO()
            Image.new("RGB", (32, 32), "white").save(buf, format="PNG")
            r = c.post(
                path,
                files={"image": ("i.png", buf.getvalue(), "image/png")},
                data={"prompt": "blue"},
            )
    err = _is_openai_error(r, 404, "unsupported_route")
    assert path in err["message"] and "'text-to-image'" in err["message"]
    assert st.provider_address in err["message"]
    assert "/v1/images/generations" in err["message"]  # what it does serve
    assert _fees(stack, user_broker) == before


def test_openai_client_sees_not_found_for_chat_on_image_provider(serve):
    client = openai.OpenAI(base_url=f"{serve}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "unsupported_route"


def test_unknown_model_refused_and_not_billed(serve, stack, user_broker):
    before = _fees(stack, user_broker)
    client = openai.OpenAI(base_url=f"{serve}/v1", api_key=API_KEY, max_retries=0, timeout=300)
    with pytest.raises(openai.NotFoundError) as info:
        client.images.generate(
            model="dall-e-3", prompt="a fox", size="32x32", response_format="b64_json"
        )
    assert info.value.body["code"] == "model_not_found"
    assert info.value.body["param"] == "model"
    assert "dall-e-3" in info.value.body["message"] and "z-image" in info.value.body["message"]
    with pytest.raises(openai.NotFoundError):  # the model id is case-sensitive
        client.images.generate(
            model="TINY", prompt="a fox", size="32x32", response_format="b64_json"
        )
    async_job = httpx.post(
        serve + "/v1/async/images/generations",
        headers=AUTH,
        timeout=60,
        json={**SMALL, "model": "dall-e-3", "prompt": "a fox"},
    )
    _is_openai_error(async_job, 404, "model_not_found")
    not_a_string = httpx.post(
        serve + "/v1/images/generations",
        headers=AUTH,
        timeout=60,
        json={**SMALL, "model": ["z-image"], "prompt": "a fox"},
    )
    _is_openai_error(not_a_string, 400, "invalid_model")
    assert _fees(stack, user_broker) == before
    # the served model, or none at all, is fine (and billed)
    named = httpx.post(
        serve + "/v1/images/generations",
        headers=AUTH,
        timeout=300,
        json={**SMALL, "model": "z-image", "prompt": "a fox"},
    )
    omitted = httpx.post(
        serve + "/v1/images/generations",
        headers=AUTH,
        timeout=300,
        json={**SMALL, "prompt": "a fox"},
    )
    assert named.status_code == 200 and omitted.status_code == 200, (named.text, omitted.text)
    price = stack[0].service.output_price
    after = _fees(stack, user_broker)
    assert (after[0] - before[0], after[1] - before[1]) == (2 * price, 2 * price)


_FORM = b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nfox\r\n'
MALFORMED_FORMS = [
    ("no boundary", "multipart/form-data", _FORM + b"--b--\r\n"),
    ("empty boundary", 'multipart/form-data; boundary=""', _FORM + b"--b--\r\n"),
    ("not a form", "multipart/form-data; boundary=b", b"\x00" * 1000),
    ("no closing boundary", "multipart/form-data; boundary=b", _FORM),
    ("another boundary", "multipart/form-data; boundary=other", _FORM + b"--b--\r\n"),
]


@pytest.mark.parametrize(
    ("name", "ctype", "body"), MALFORMED_FORMS, ids=[m[0] for m in MALFORMED_FORMS]
)
def test_malformed_form_refused_before_it_is_forwarded(stack, user_broker, name, ctype, body):
    """The attack: a multipart body the worker's form parser cannot read (or reads differently
    from serve's own field lookup) is forwarded as it is, to be refused, or worse accepted, by the
    provider. serve parses the form with the worker's parser first and refuses it with 400
    ``invalid_multipart`` (a code only serve gives: nothing reached the provider), unbilled."""
    st, _ = stack
    settings = _settings(st).model_copy(update={"extra_routes": True})
    before = _fees(stack, user_broker)
    with ThreadServer(create_app(user_broker, settings, run_startup=False)) as url:
        for path in ("/v1/images/edits", "/v1/audio/transcriptions"):
            r = httpx.post(url + path, content=body, headers={**AUTH, "Content-Type": ctype})
            err = _is_openai_error(r, 400, "invalid_multipart")
            assert err["type"] == "invalid_request_error" and "multipart" in err["message"]
    assert _fees(stack, user_broker) == before


def test_account_views_scoped_to_the_serving_user(devnet, stack, user_broker, serve):
    """Two wallets share one fee store (the default one of ``ZG_HOME``): each ``serve`` shows only
    its own user's verification records, fees and sub-account."""
    st, _ = stack
    other = funded_user_broker(devnet, ledger=10)
    try:
        assert other.inference.fee_store.url == user_broker.inference.fee_store.url
        with ThreadServer(create_app(other, _settings(st))) as other_url:
            mine = httpx.post(
                serve + "/v1/images/generations",
                headers=AUTH,
                timeout=300,
                json={**SMALL, "prompt": "mine"},
            )
            theirs = httpx.post(
                other_url + "/v1/images/generations",
                headers=AUTH,
                timeout=300,
                json={**SMALL, "prompt": "theirs"},
            )
            assert mine.status_code == 200 and theirs.status_code == 200
            acc_mine = httpx.get(serve + "/v1/account", headers=AUTH).json()
            acc_theirs = httpx.get(other_url + "/v1/account", headers=AUTH).json()
    finally:
        other.inference.close()
    ids_mine = {r["chat_id"] for r in acc_mine["recent_verifications"]}
    ids_theirs = {r["chat_id"] for r in acc_theirs["recent_verifications"]}
    assert mine.headers["ZG-Res-Key"] in ids_mine
    assert theirs.headers["ZG-Res-Key"] in ids_theirs
    assert not ids_mine & ids_theirs
    assert acc_mine["user"] == user_broker.address and acc_theirs["user"] == other.address
    assert acc_theirs["fees"]["request_count"] == 1
    assert acc_theirs["fees"]["total_fee"] == str(st.service.output_price)
