"""Hostile request bodies and paths against the real servers on loopback: ``serve`` (thread), the
provider gateway (thread) and the Z-Image worker (its own process). Each must answer 400/404 in its
own error shape, bill nothing and stay up (issue #9 §4)."""

from __future__ import annotations

import httpx
import pytest
from fuzz_helpers import API_KEY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DEEP_ARRAYS = b'{"prompt":"x","extra":' + b"[" * 100_000 + b"]" * 100_000 + b"}"  # ~200 KB
DEEP_OBJECTS = b'{"prompt":' * 50_000 + b'"x"' + b"}" * 50_000
JUST_TOO_DEEP = b'{"prompt":"x","extra":' + b"[" * 64 + b"]" * 64 + b"}"
LONE_SURROGATES = [
    rb'{"prompt":"\ud800"}',
    rb'{"prompt":"\udfff x"}',
    rb'{"prompt":"a","messages":[{"role":"user","content":"\ud800"}]}',
    b'{"prompt":"\xed\xa0\x80"}',
    b'{"prompt":"\xff"}',
]
HOSTILE_BODIES = [
    DEEP_ARRAYS,
    DEEP_OBJECTS,
    JUST_TOO_DEEP,
    *LONE_SURROGATES,
    b'{"prompt":"x","n":NaN}',
]
BAD_N = ["4.00", "2.0", "2", 2.0, True, 0, -1, 17, 2**70, [2], {"n": 2}]
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)
BAD_JOB_IDS = [
    "a%0Ab",
    "a%0Db",
    "a%00b",
    "..%2F..%2Fetc",
    "a%20b",
    "%F0%9F%98%80",
    "x" * 129,
    "a.b",
    "a%2Fb",
]


def _serve_targets(serve: str) -> list[tuple[str, dict]]:
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    return [
        (serve + path, auth)
        for path in (
            "/v1/images/generations",
            "/v1/chat/completions",
            "/v1/async/images/generations",
        )
    ]


def _gateway_targets(stack, user) -> list[tuple[str, dict]]:
    headers = {
        **user.inference.get_request_headers(stack.provider_address),
        "Content-Type": "application/json",
    }
    return [
        (stack.gateway_url + path, headers)
        for path in (
            "/v1/proxy/images/generations",
            "/v1/proxy/chat/completions",
            "/v1/async/images/generations",
        )
    ]


def _worker_targets(worker_url: str) -> list[tuple[str, dict]]:
    headers = {"Content-Type": "application/json"}
    return [
        (worker_url + path, headers)
        for path in ("/v1/images/generations", "/v1/async/images/generations")
    ]


def _fees(stack, user) -> tuple[int, int]:
    local = user.inference.fee_store.get_totals(user.address, stack.provider_address).total_fee
    return local, stack.gateway.ledger.unsettled_fee(user.address)


def _assert_error_shape(response: httpx.Response, server: str) -> None:
    body = response.json()
    if server == "gateway":
        assert isinstance(body.get("error"), str) and body["error"], body
    else:  # OpenAI shape
        assert body["error"]["type"] == "invalid_request_error", body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.fixture(scope="module")
def servers(fuzz_serve, fuzz_stack, fuzz_user, worker_process):
    st, _ = fuzz_stack
    return {
        "serve": _serve_targets(fuzz_serve),
        "gateway": _gateway_targets(st, fuzz_user),
        "worker": _worker_targets(worker_process[1]),
    }


def _alive(fuzz_serve, fuzz_stack, worker_process) -> None:
    st, _ = fuzz_stack
    proc, worker_url = worker_process
    assert proc.poll() is None, "the worker process died"
    for url in (fuzz_serve, st.gateway_url, st.worker_url, worker_url):
        assert httpx.get(url + "/health", timeout=10).status_code == 200


@pytest.mark.parametrize("server", ["serve", "gateway", "worker"])
def test_hostile_bodies_refused_and_nothing_billed(
    server, servers, fuzz_serve, fuzz_stack, fuzz_user, worker_process, tally
):
    """Deep nesting (100 000 levels, the body that segfaulted serve and the worker), nesting one
    level past the limit, lone surrogates, invalid UTF-8 and NaN: 400, no fee, still up."""
    st, _ = fuzz_stack
    before = _fees(st, fuzz_user)
    with httpx.Client(timeout=60) as client:
        for url, headers in servers[server]:
            for body in HOSTILE_BODIES:
                r = client.post(url, content=body, headers=headers)
                tally.record(r.status_code)
                assert r.status_code == 400, (url, body[:40], r.status_code, r.text[:300])
                _assert_error_shape(r, server)
    assert _fees(st, fuzz_user) == before
    _alive(fuzz_serve, fuzz_stack, worker_process)


def test_deep_body_through_the_gateway_never_reaches_the_worker(fuzz_stack, fuzz_user, tally):
    st, _ = fuzz_stack
    headers = {
        **fuzz_user.inference.get_request_headers(st.provider_address),
        "Content-Type": "application/json",
    }
    r = httpx.post(
        st.gateway_url + "/v1/proxy/images/generations",
        content=DEEP_ARRAYS,
        headers=headers,
        timeout=60,
    )
    tally.record(r.status_code)
    assert r.status_code == 400 and "deeper than 64" in r.json()["error"]
    assert httpx.get(st.worker_url + "/health", timeout=10).status_code == 200


@pytest.mark.parametrize("server", ["serve", "gateway", "worker"])
def test_n_one_rule_everywhere(server, servers, fuzz_stack, fuzz_user, tally):
    """``n`` that is not an integer from 1 to 16 (``"4.00"``, ``"2.0"``, ``2.0``, ``true``...) is
    refused with 400 by each server: nothing made, nothing billed."""
    st, _ = fuzz_stack
    before = _fees(st, fuzz_user)
    url, headers = servers[server][0]  # images/generations
    with httpx.Client(timeout=60) as client:
        for n in BAD_N:
            r = client.post(url, json={"prompt": "x", "n": n, "size": "32x32"}, headers=headers)
            tally.record(r.status_code)
            assert r.status_code == 400, (server, n, r.status_code, r.text[:300])
            _assert_error_shape(r, server)
            message = r.json()["error"] if server == "gateway" else r.json()["error"]["message"]
            assert "n must be an integer between 1 and 16" in message
    assert _fees(st, fuzz_user) == before


def _edit_form(n_values: list[str]) -> list:
    fields = [("prompt", (None, "edit")), ("size", (None, "32x32"))]
    fields += [("n", (None, v)) for v in n_values]
    return fields + [("image", ("a.png", PNG_1PX, "image/png"))]


@pytest.mark.parametrize("n_values", [["4.00"], ["2.0"], [" 2"], ["1", "4"]], ids=str)
def test_edit_form_n_refused_everywhere(
    n_values, fuzz_serve, fuzz_stack, fuzz_user, worker_process, tally
):
    """Multipart edits: a non-digit ``n`` or two ``n`` fields (serve read the first, the worker the
    last) are refused by all three."""
    st, _ = fuzz_stack
    before = _fees(st, fuzz_user)
    files = _edit_form(n_values)
    targets = [
        (fuzz_serve + "/v1/images/edits", {"Authorization": f"Bearer {API_KEY}"}),
        (
            st.gateway_url + "/v1/proxy/images/edits",
            fuzz_user.inference.get_request_headers(st.provider_address),
        ),
        (worker_process[1] + "/v1/images/edits", {}),
    ]
    for url, headers in targets:
        r = httpx.post(url, files=files, headers=headers, timeout=60)
        tally.record(r.status_code)
        assert r.status_code == 400, (url, r.status_code, r.text[:300])
    assert _fees(st, fuzz_user) == before


def test_valid_n_made_and_billed_alike(fuzz_serve, fuzz_stack, fuzz_user, tally):
    """``n: 2`` through serve: the worker makes 2 images, the gateway and serve both bill 2 ×
    price."""
    st, _ = fuzz_stack
    local0, gateway0 = _fees(st, fuzz_user)
    r = httpx.post(
        fuzz_serve + "/v1/images/generations",
        json={"prompt": "two", "n": 2, "size": "32x32", "num_inference_steps": 1},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=240,
    )
    tally.record(r.status_code, expect_refusal=False)
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["data"]) == 2
    local1, gateway1 = _fees(st, fuzz_user)
    price = st.service.output_price
    assert local1 - local0 == 2 * price == gateway1 - gateway0
    assert int(r.headers["X-0G-Fee"]) == 2 * price


def test_bad_job_ids_are_404_everywhere(fuzz_serve, fuzz_stack, fuzz_user, worker_process, tally):
    st, _ = fuzz_stack
    targets = [
        (fuzz_serve + "/v1/async/jobs/", {"Authorization": f"Bearer {API_KEY}"}, "serve"),
        (
            st.gateway_url + "/v1/async/jobs/",
            fuzz_user.inference.get_request_headers(st.provider_address),
            "gateway",
        ),
        (worker_process[1] + "/v1/async/jobs/", {}, "worker"),
    ]
    with httpx.Client(timeout=30) as client:
        for base, headers, server in targets:
            for job_id in BAD_JOB_IDS:
                r = client.get(base + job_id, headers=headers)
                tally.record(r.status_code)
                assert r.status_code == 404, (server, job_id, r.status_code, r.text[:300])
                if "%2F" in job_id:  # no route matches: the framework's 404
                    continue
                error = r.json().get("error")
                assert error, (server, job_id, r.text[:200])
                assert isinstance(error, str if server == "gateway" else dict)
