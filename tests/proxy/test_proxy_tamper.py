"""End to end: a tampering relay on loopback between ``serve`` and a real gateway (devnet chain,
tiny Z-Image worker, fake chat/audio backend). The provider's on-chain URL points at the relay, as a
malicious proxy in front of the gateway would arrange. Every tamper mode is tried in ``warn``
(answer kept, ``X-0G-Verified: false`` with the failing part) and ``enforce`` (refused with 502
before any byte reaches the client, the provider's charge recorded as disputed); a clean relay
still verifies. ``test_zz_tamper_report`` prints the counts per mode (run with ``-s``)."""

from __future__ import annotations

import io
import itertools
import json
import time

import httpx
import pytest
from devnet_helpers import devnet_owner_contract, funded_user_broker, provider_stack
from eth_account import Account
from PIL import Image
from proxy_helpers import ThreadServer, fake_llm_app
from relay_helpers import HTML_POLL, RAW_HEADER, SVG_FILE, TamperRelay

from broker.proxy import ServeSettings, create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

API_KEY = "sk-tamper-test"
ZG = 10**18
TRIES = 2
HASH_REASONS = {"response_hash_mismatch", "request_hash_mismatch"}
#: mode → (request kind, reasons the verification may give)
EXPECTED = {
    "flip_image_b64": ("image", {"response_hash_mismatch"}),
    "flip_edit_b64": ("edit", {"response_hash_mismatch"}),
    "swap_res_key": ("chat", {"chat_id_mismatch"}),
    "replay_signature": ("chat", HASH_REASONS),
    "tamper_chat": ("chat", {"response_hash_mismatch"}),
    # the body changed and the ZG-Res-Signature header re-signed by the relay's key: the header is
    # ignored, the fetched signature decides
    "tamper_chat_resign": ("chat", {"response_hash_mismatch"}),
    "tamper_stream": ("stream", {"response_hash_mismatch"}),
    "tamper_audio": ("audio", {"response_hash_mismatch"}),
    "tamper_request": ("chat", {"request_hash_mismatch"}),
    "tamper_async": ("async", {"response_hash_mismatch"}),  # last: its jobs bill later
}
#: the gateway's own rate limit on the signature endpoint: retried, then verified; and a
#: ZG-Res-Signature header stripped, swapped or forged on a genuine answer: ignored, the signature
#: fetched instead, verified
ACCEPTED_MODES = (
    "signature_429",
    "strip_res_signature",
    "swap_res_signature",
    "forge_res_signature",
)
STATS: dict[tuple[str, str], dict[str, int]] = {}
_counter = itertools.count()


def _point_service_at(devnet, st, url: str) -> None:
    """Re-register the provider's service with ``url`` (the relay) and re-acknowledge its signer."""
    from broker.chain.connection import connect
    from broker.chain.contracts import InferenceServingContract
    from broker.chain.sender import TransactionSender
    from broker.provider.register import acknowledge_tee_signer_by_owner, register_service

    w3 = connect(devnet.rpc_url)
    wallet = Account.from_key(st.settings.private_key.get_secret_value())
    contract = InferenceServingContract(w3, devnet.inference_address, TransactionSender(w3, wallet))
    register_service(
        contract, st.settings.model_copy(update={"serving_url": url}), st.info.tee_signer_address
    )
    if not contract.get_service(wallet.address).tee_signer_acknowledged:
        acknowledge_tee_signer_by_owner(devnet_owner_contract(devnet), wallet.address)
    assert contract.get_service(wallet.address).url == url


@pytest.fixture(scope="module")
def relayed(devnet, tmp_path_factory):
    """``(stack, relay, user broker, {"warn": url, "enforce": url})``."""
    with (
        ThreadServer(fake_llm_app()) as backend,
        provider_stack(
            devnet,
            tmp_path_factory.mktemp("tamper"),
            model="tiny",
            chat_backend_url=backend,
            raise_limits=True,
        ) as st,
    ):
        relay = TamperRelay(st.gateway_url)
        with ThreadServer(relay.app) as relay_url:
            _point_service_at(devnet, st, relay_url)
            user = funded_user_broker(devnet, ledger=10, amount_neuron=100 * ZG)
            warn = ServeSettings(
                provider=st.provider_address,
                api_key=API_KEY,
                funding_interval=600,
                extra_routes=True,
            )
            enforce = ServeSettings(
                provider=st.provider_address,
                api_key=API_KEY,
                verify="enforce",
                auto_funding=False,
                extra_routes=True,
            )
            try:
                with (
                    ThreadServer(create_app(user, warn)) as warn_url,
                    ThreadServer(create_app(user, enforce, run_startup=False)) as enforce_url,
                ):
                    yield st, relay, user, {"warn": warn_url, "enforce": enforce_url}
            finally:
                user.inference.close()


class Outcome:
    """One request's answer as the client saw it."""

    def __init__(self, status: int, headers: httpx.Headers, text: str) -> None:
        self.status, self.headers, self.text = status, headers, text
        self.verified = headers.get("X-0G-Verified")
        self.full_reason = headers.get("X-0G-Verification-Reason") or ""
        if "text/event-stream" in headers.get("content-type", ""):  # warn: trailing comments
            for line in text.splitlines():
                if line.startswith(": X-0G-Verified: "):
                    self.verified = line.split(": ", 2)[2]
                if line.startswith(": X-0G-Verification-Reason: "):
                    self.full_reason = line.split(": ", 2)[2]
        self.reason = self.full_reason.split(";")[0] or None

    @property
    def error(self) -> dict:
        try:
            return json.loads(self.text).get("error") or {}
        except ValueError:
            return {}


def _send(url: str, kind: str) -> Outcome:
    n = next(_counter)
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=300
    ) as c:
        if kind == "image":
            r = c.post(
                "/v1/images/generations",
                json={"prompt": f"a fox {n}", "size": "64x64", "response_format": "b64_json"},
            )
        elif kind == "chat":
            r = c.post(
                "/v1/chat/completions",
                json={
                    "model": "tiny",
                    "messages": [{"role": "user", "content": f"hi {n}"}],
                    "temperature": 0.5,
                    "seed": 7,
                },
            )
        elif kind == "stream":
            r = c.post(
                "/v1/chat/completions",
                json={
                    "model": "tiny",
                    "stream": True,
                    "messages": [{"role": "user", "content": f"count {n}"}],
                },
            )
        elif kind == "edit":
            buf = io.BytesIO()
            Image.new("RGB", (32, 32), (n % 256, 0, 0)).save(buf, format="PNG")
            r = c.post(
                "/v1/images/edits",
                files={"image": ("in.png", buf.getvalue(), "image/png")},
                data={"prompt": f"blue {n}", "size": "64x64", "response_format": "b64_json"},
            )
        elif kind == "audio":
            r = c.post(
                "/v1/audio/transcriptions",
                data={"model": "whisper-x"},
                files={"file": ("a.wav", b"RIFF....WAVE%d" % n, "audio/wav")},
            )
        else:
            r = c.post(
                "/v1/async/images/generations",
                json={"prompt": f"a fox {n}", "size": "64x64", "response_format": "b64_json"},
            )
    return Outcome(r.status_code, r.headers, r.text)


_PAYLOAD_MARKS = ("b64_json", "hello th", "transcr", "jobId", "data: {")


def _fees(st, user):
    store = user.inference.fee_store
    return (
        store.get_totals(user.address, st.provider_address).total_fee,
        store.disputed_totals(user.address, st.provider_address).total_fee,
        st.gateway.ledger.unsettled_fee(user.address),
    )


@pytest.mark.parametrize("verify", ["warn", "enforce"])
@pytest.mark.parametrize("mode", [*ACCEPTED_MODES, *EXPECTED])
def test_tamper_mode(relayed, verify, mode):
    st, relay, user, urls = relayed
    kind, reasons = EXPECTED.get(mode, ("chat", {"verified"}))
    relay.mode = None
    fetches = relay.fetches
    clean = _send(urls[verify], kind)  # the same route through a clean relay verifies
    assert clean.status < 300, clean.text
    if kind == "chat":  # verified from the ZG-Res-Signature header: no signature fetch
        assert relay.fetches == fetches
    assert (clean.verified, clean.full_reason) == ("true", "verified; binding=full"), clean.text[
        :300
    ]
    stats = STATS.setdefault(
        (mode, verify), {"tried": 0, "refused": 0, "wrongly_accepted": 0, "5xx": 0}
    )
    relay.mode, relay.tampered = mode, 0
    try:
        for _ in range(TRIES):
            before = _fees(st, user)
            started, fetches = time.monotonic(), relay.fetches
            got = _send(urls[verify], kind)
            stats["tried"] += 1
            refusal = got.status == 502 and got.error.get("type") == "verification_error"
            if got.status >= 500 and not refusal:
                stats["5xx"] += 1
            if mode in ACCEPTED_MODES:
                assert got.status < 300 and got.verified == "true", got.text[:300]
                assert relay.fetches > fetches  # the signature endpoint decided
                if mode == "signature_429":
                    assert time.monotonic() - started >= 1.0  # waited for Retry-After
                continue
            if verify == "warn":
                if got.verified == "false":
                    stats["refused"] += 1
                elif got.verified == "true":
                    stats["wrongly_accepted"] += 1
                assert got.status < 300, got.text[:300]
                assert (got.verified, got.reason in reasons) == ("false", True), (
                    got.verified,
                    got.reason,
                )
            else:
                if refusal:
                    stats["refused"] += 1
                elif got.status < 300:
                    stats["wrongly_accepted"] += 1
                assert refusal, (got.status, got.text[:300])
                assert got.error["code"] in reasons, got.error
                assert not any(mark in got.text for mark in _PAYLOAD_MARKS)  # nothing leaked
                if kind != "async":  # an async job is billed by the gateway when it completes
                    accepted, disputed, gateway = _fees(st, user)
                    assert accepted == before[0]  # not booked as accepted
                    assert disputed - before[1] == gateway - before[2] > 0  # books match
        assert relay.tampered >= TRIES
    finally:
        relay.mode = None


def test_disputed_fee_in_account_and_metrics(relayed):
    st, relay, user, urls = relayed
    relay.mode = "tamper_chat"
    try:
        got = _send(urls["enforce"], "chat")
    finally:
        relay.mode = None
    assert got.status == 502 and got.error["code"] == "response_hash_mismatch"
    auth = {"Authorization": f"Bearer {API_KEY}"}
    acc = httpx.get(urls["enforce"] + "/v1/account", headers=auth, timeout=60).json()
    disputed = user.inference.fee_store.disputed_totals(user.address, st.provider_address)
    assert int(acc["fees"]["disputed_fee"]) == disputed.total_fee > 0
    metrics = httpx.get(urls["enforce"] + "/metrics", headers=auth, timeout=60).text
    assert "zg_serve_disputed_fees_neuron_total" in metrics
    assert 'reason="response_hash_mismatch",result="false"' in metrics


def test_verify_route_binds_bytes(relayed):
    """``POST /v1/verify`` with the bytes: a genuine response verifies ``full``; other bytes give
    ``response_hash_mismatch``; without bytes the answer says ``signature_only``; and the
    completion ``id`` (issue #12 fallback) finds the signature on our gateway."""
    urls = relayed[3]
    auth = {"Authorization": f"Bearer {API_KEY}"}
    body = {"model": "tiny", "messages": [{"role": "user", "content": "verify me"}]}
    with httpx.Client(base_url=urls["warn"], headers=auth, timeout=120) as c:
        r = c.post("/v1/chat/completions", json=body)
        assert r.headers["X-0G-Verified"] == "true"
        key, completion_id = r.headers["ZG-Res-Key"], r.json()["id"]
        from broker.wire.forwarded_request import canonical_json

        sent = canonical_json(body)
        full = c.post(
            "/v1/verify", json={"id": key, "response": r.text, "request": sent.decode()}
        ).json()
        assert (full["isValid"], full["binding"]) == (True, "full"), full
        resp_only = c.post("/v1/verify", json={"id": key, "response": r.text}).json()
        assert (resp_only["isValid"], resp_only["binding"]) == (True, "response_only")
        other = c.post("/v1/verify", json={"id": key, "response": r.text + " "}).json()
        assert (other["isValid"], other["reason"]) == (False, "response_hash_mismatch")
        wrong_req = c.post(
            "/v1/verify", json={"id": key, "response": r.text, "request": "{}"}
        ).json()
        assert (wrong_req["isValid"], wrong_req["reason"]) == (False, "request_hash_mismatch")
        sig_only = c.post("/v1/verify", json={"id": key}).json()
        assert (sig_only["isValid"], sig_only["binding"]) == (True, "signature_only")
        by_id = c.post("/v1/verify", json={"id": completion_id, "response": r.text}).json()
        assert by_id["isValid"] is True, by_id
        bad = c.post("/v1/verify", json={"id": key, "response": "x", "response_b64": "eA=="})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_binding"
        lone = c.post("/v1/verify", json={"id": key, "request": "{}"})
        assert lone.status_code == 400 and lone.json()["error"]["code"] == "invalid_binding"


def test_process_response_by_completion_id_against_our_gateway(relayed):
    """Issue #12: ``process_response(provider, data.id)`` (the SDK's documented fallback) verifies
    against our gateway, for a chat answer and for a stream (the first chunk's ``id``); with the
    bytes the check is bound to them."""
    st, _relay, user, _urls = relayed
    url = st.gateway_url + "/v1/proxy/chat/completions"
    inference = user.inference
    for stream in (False, True):
        body = {
            "model": "tiny",
            "stream": stream,
            "messages": [{"role": "user", "content": f"sdk {stream}"}],
        }
        headers = {
            **inference.get_request_headers(st.provider_address),
            "Content-Type": "application/json",
        }
        r = httpx.post(url, content=json.dumps(body), headers=headers, timeout=120)
        assert r.status_code == 200, r.text
        if stream:
            from broker.wire.sse import chat_id_from_sse

            completion_id = chat_id_from_sse(r.content)
        else:
            completion_id = r.json()["id"]
        assert completion_id and completion_id != r.headers["ZG-Res-Key"]
        assert inference.process_response(st.provider_address, completion_id) is True
        result = inference.process_response_detailed(
            st.provider_address, completion_id, response_body=r.content
        )
        assert (result.verified, result.binding) == (True, "response_only")
        result = inference.process_response_detailed(
            st.provider_address, completion_id, response_body=r.content + b"x"
        )
        assert result.reason.value == "response_hash_mismatch"


def test_provider_cannot_set_serves_own_headers(relayed):
    """The attack: a provider (or a proxy in front of it) changes a chat answer and sends
    ``X-0G-Verified: true``, ``X-0G-Fee: 0`` and a reason of its own, hoping the client, or the
    dashboard's request log (which reads those headers), shows them instead of serve's. serve's
    headers are its own: each appears once, with serve's value."""
    _st, relay, _user, urls = relayed
    auth = {"Authorization": f"Bearer {API_KEY}"}
    relay.mode = "forge_0g_headers"
    try:
        got = {kind: _send(urls["warn"], kind) for kind in ("chat", "stream", "image")}
    finally:
        relay.mode = None
    for kind, outcome in got.items():
        assert outcome.status == 200, (kind, outcome.text[:300])
        for name in ("x-0g-verified", "x-0g-verification-reason", "x-0g-fee"):
            values = outcome.headers.get_list(name)
            assert len(values) <= 1, (kind, name, values)
    chat, stream, image = got["chat"], got["stream"], got["image"]
    assert chat.headers["x-0g-verified"] == "false" and chat.reason == "response_hash_mismatch"
    assert int(chat.headers["x-0g-fee"]) > 0 and int(image.headers["x-0g-fee"]) > 0
    assert stream.headers["x-0g-verified"] == "deferred"  # the outcome follows the events
    assert "x-0g-fee" not in stream.headers  # a stream's fee is known at its end only
    log = httpx.get(urls["warn"] + "/ui/api/requests", headers=auth, timeout=60).json()
    newest = log["requests"][:3]  # image, stream, chat
    assert [r["verified"] for r in newest] == ["true", "deferred", "false"], newest
    assert int(newest[0]["fee"]) == int(image.headers["x-0g-fee"])
    assert int(newest[2]["fee"]) == int(chat.headers["x-0g-fee"])


def test_provider_cannot_forge_serves_outcome_comments(relayed):
    """The attack on a stream: a relay in front of the provider changes an event and puts
    ``serve``'s own outcome comments (``: X-0G-Verified: true``) first in the stream, for a
    client that reads the first such comment. serve's comments are its own: the client gets one
    ``X-0G-Verified`` comment (serve's, ``false``) and one reason; the events pass unchanged."""
    _st, relay, _user, urls = relayed
    relay.mode = "forge_0g_comment"
    try:
        got = _send(urls["warn"], "stream")
    finally:
        relay.mode = None
    assert got.status == 200 and relay.tampered, got.text[:300]
    own = [
        line.lower()
        for line in got.text.splitlines()
        if line.startswith(":") and "x-0g-" in line.lower()
    ]
    assert len(own) == 2, own
    assert own[0] == ": x-0g-verified: false", own
    assert own[1].startswith(": x-0g-verification-reason: response_hash_mismatch"), own
    assert "tw0" in got.text  # the provider's events themselves are relayed as they came


def test_provider_file_cannot_run_a_script_on_serves_origin(relayed):
    """The attack: ``url`` answers are verified, but the image behind the provider's link is
    fetched afterwards and stored by serve, which then serves it from its own origin. A provider
    (or a relay) answering that fetch with an ``image/svg+xml`` that holds a script would have it
    run as serve's own page when the user opens the link, free to spend through serve as a
    same-origin page. serve keeps only raster images (PNG, JPEG, WebP), and serves what it stores
    with ``nosniff`` and a sandboxing CSP."""
    _st, relay, _user, urls = relayed
    auth = {"Authorization": f"Bearer {API_KEY}"}
    body = {"prompt": "a linked fox", "size": "64x64", "response_format": "url"}
    with httpx.Client(base_url=urls["warn"], headers=auth, timeout=300) as c:
        relay.mode = "svg_file"
        try:
            r = c.post("/v1/images/generations", json=body)
        finally:
            relay.mode = None
        assert r.status_code == 200 and relay.tampered, r.text[:300]
        url = r.json()["data"][0]["url"]
        assert not url.startswith(urls["warn"]), url  # not stored: the provider's link is kept
        relay.mode = "own_files"  # the same links, the gateway's own PNG behind them
        try:
            clean = c.post("/v1/images/generations", json=body)
        finally:
            relay.mode = None
        linked = clean.json()["data"][0]["url"]
        assert linked.startswith(urls["warn"] + "/v1/files/"), linked
        image = c.get(linked)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content != SVG_FILE
    assert image.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in image.headers["content-security-policy"]


def test_provider_job_poll_is_never_a_page_on_serves_origin(relayed):
    """The attack: a job poll is a ``GET`` the user may open in a browser (serve without an API
    key, the default); a provider answering it ``200 text/html`` with a script would have that
    script run as one of serve's own pages. serve answers a poll as JSON, never sniffed."""
    _st, relay, _user, urls = relayed
    auth = {"Authorization": f"Bearer {API_KEY}"}
    relay.mode = "html_poll"
    try:
        r = httpx.get(urls["warn"] + "/v1/async/jobs/imgjob_0123456789abcdef", headers=auth)
    finally:
        relay.mode = None
    assert relay.tampered and r.content == HTML_POLL  # the provider's bytes, as they came
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert r.headers["x-content-type-options"] == "nosniff"


def test_provider_header_bytes_do_not_break_a_paid_answer(relayed):
    """The attack: the provider's answer carries a header value that is not Latin-1 text (a lone
    ``0xB2`` byte, a UTF-8 ``€``). serve bills the request before it answers, so failing on that
    header would leave the user paying for an answer that never comes (a 500, or a reset
    connection on the chat route). The value is passed on byte for byte, and what serve accounts
    is what the gateway bills."""
    st, relay, user, urls = relayed
    relay.mode = "raw_header_bytes"
    try:
        for kind in ("chat", "stream", "image"):
            before = _fees(st, user)
            got = _send(urls["warn"], kind)
            assert got.status == 200, (kind, got.status, got.text[:300])
            passed = [v for k, v in got.headers.raw if k.lower() == RAW_HEADER[0].encode()]
            assert passed == [RAW_HEADER[1]], (kind, passed)
            assert got.verified == "true", (kind, got.text[-300:])
            after = _fees(st, user)
            assert after[0] - before[0] == after[2] - before[2] > 0, (kind, before, after)
    finally:
        relay.mode = None


def test_zz_tamper_report(relayed):
    """Print the counts per tamper mode; nothing may be wrongly accepted or answer 5xx."""
    lines = [f"{'mode':18} {'verify':8} {'tried':>5} {'refused':>7} {'wrong':>5} {'5xx':>4}"]
    for (mode, verify), s in sorted(STATS.items()):
        lines.append(
            f"{mode:18} {verify:8} {s['tried']:5d} {s['refused']:7d} "
            f"{s['wrongly_accepted']:5d} {s['5xx']:4d}"
        )
    print("\n" + "\n".join(lines))
    assert all(s["wrongly_accepted"] == 0 and s["5xx"] == 0 for s in STATS.values())
