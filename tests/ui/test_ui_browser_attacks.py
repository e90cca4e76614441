"""Attacks on ``serve`` from a real browser (Debian's headless Chromium driven by Playwright)
against a real devnet stack.

* A hostile web page, open in the user's browser on another origin, tries every way a page has to
  spend through ``serve`` without a CORS preflight (``text/plain`` and form bodies, multipart
  ``FormData``, ``sendBeacon``, a form posted into an iframe, a sandboxed iframe whose ``Origin`` is
  ``null``, a ``POST`` redirected to ``serve`` with a 307) and to read its answers (``fetch`` in
  CORS mode, ``<img>``). The browser, not the test, writes the headers (``Origin``,
  ``Sec-Fetch-Site``): this checks that what ``LocalGuard`` relies on is what a browser sends.
  Nothing is paid; every attempt that reached ``serve`` was refused.
* Injection into the dashboard: a provider registers a service whose model name and URL are HTML
  and a ``javascript:`` URL, and requests put HTML into the model, route and error reason of the
  request log. The dashboard shows them as text: no element is made from them, no script runs.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from devnet_helpers import register_chatbot_service
from server_helpers import UvicornThread, free_port
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import Route

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

HTML = "<img src=x id=injected onerror=\"document.title='pwned'\"><b>bold</b>"

#: The hostile page's script: each attack, awaited, with what the page could see of the answer.
ATTACKS_JS = r"""
async (serve) => {
  const out = {};
  const job = JSON.stringify({prompt: "a fox", n: 4, size: "64x64"});
  const chat = JSON.stringify({model: "tiny", messages: [{role: "user", content: "hi"}]});
  const tryIt = async (name, fn) => {
    try { out[name] = await fn(); } catch (e) { out[name] = "blocked: " + e.name; }
  };
  await tryIt("text/plain image POST", async () => (await fetch(serve + "/v1/images/generations",
    {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: job})).type);
  await tryIt("urlencoded chat POST", async () => (await fetch(serve + "/v1/chat/completions",
    {method: "POST", mode: "no-cors", body: new URLSearchParams({x: chat})})).type);
  await tryIt("multipart edit POST", async () => {
    const form = new FormData();
    form.append("prompt", "fox");
    const png = new Blob([new Uint8Array([137, 80, 78, 71])], {type: "image/png"});
    form.append("image", png, "a.png");
    const init = {method: "POST", mode: "no-cors", body: form};
    return (await fetch(serve + "/v1/images/edits", init)).type;
  });
  await tryIt("sendBeacon image POST", async () =>
    navigator.sendBeacon(serve + "/v1/images/generations", new Blob([job], {type: "text/plain"})));
  await tryIt("POST redirected (307) to serve", async () => (await fetch(
    "/redirect?to=" + encodeURIComponent(serve + "/v1/images/generations"),
    {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: job})).type);
  await tryIt("JSON POST (preflighted)", async () => (await fetch(serve + "/v1/images/generations",
    {method: "POST", headers: {"Content-Type": "application/json"}, body: job})).status);
  await tryIt("read the account", async () => (await fetch(serve + "/v1/account")).status);
  await tryIt("read the request log", async () => (await fetch(serve + "/ui/api/requests")).status);
  await tryIt("img GET of the account", () => new Promise((ok) => {
    const img = new Image();
    img.onload = () => ok("loaded"); img.onerror = () => ok("error");
    img.src = serve + "/v1/account";
  }));
  const frameDone = (frame) => new Promise((ok) => {
    frame.onload = () => ok("submitted");
    setTimeout(() => ok("timeout"), 5000);
  });
  await tryIt("form POST into an iframe", async () => {
    const frame = document.createElement("iframe");
    frame.name = "sink"; document.body.append(frame);
    const form = document.createElement("form");
    form.method = "POST"; form.action = serve + "/v1/images/generations"; form.target = "sink";
    form.enctype = "text/plain";
    const field = document.createElement("input");
    field.name = '{"prompt":"a fox","n":4,"x":"'; field.value = '"}';
    form.append(field); document.body.append(form);
    const done = frameDone(frame); form.submit(); return await done;
  });
  await tryIt("multipart form from a sandboxed iframe", async () => {
    const frame = document.createElement("iframe");
    frame.sandbox = "allow-forms allow-scripts";
    frame.srcdoc = `<form method=POST enctype=multipart/form-data
      action="${serve}/v1/audio/transcriptions"><input name=model value=whisper></form>
      <script>document.forms[0].submit()<\/script>`;
    const done = frameDone(frame); document.body.append(frame);
    await done; return await frameDone(frame);
  });
  return out;
}
"""


def _hostile_page() -> Starlette:
    async def index(_request):
        return HTMLResponse("<!doctype html><title>cat pictures</title><p>cute cats</p>")

    async def redirect(request):  # a 307 keeps the method and the body
        return RedirectResponse(request.query_params["to"], status_code=307)

    return Starlette(
        routes=[Route("/", index), Route("/redirect", redirect, methods=["GET", "POST"])]
    )


def _fees(ui_stack) -> tuple[int, int]:
    st, broker = ui_stack.stack, ui_stack.broker
    local = broker.inference.fee_store.get_totals(broker.address, st.provider_address).total_fee
    return local, st.gateway.ledger.unsettled_fee(broker.address)


def _refusals(serve_url: str) -> int:
    """How many answers ``serve`` gave with 403 or 415 (its request metrics)."""
    text = httpx.get(serve_url + "/metrics", timeout=60).text
    found = re.findall(r'zg_serve_requests_total\{route="[^"]*",status="(403|415)"\} (\S+)', text)
    return int(sum(float(n) for _, n in found))


def test_hostile_page_cannot_spend_or_read(chromium, ui_stack):
    from broker.proxy import ServeSettings, create_app

    # serve as `0g-broker serve` runs it by default: no API key, so only the guard stands between
    # a web page and the user's funds
    settings = ServeSettings(provider=ui_stack.stack.provider_address, auto_funding=False)
    app = create_app(ui_stack.broker, settings, run_startup=False)
    before = _fees(ui_stack)
    with (
        UvicornThread(app, free_port(), start_polls=3000, lifespan="on") as serve,
        UvicornThread(_hostile_page(), free_port()) as evil,
    ):
        refused_before = _refusals(serve.url)
        context = chromium.new_context()
        page = context.new_page()
        try:
            # another site: `localhost` is not `127.0.0.1` (cross-site for the browser)
            page.goto(evil.url.replace("127.0.0.1", "localhost") + "/")
            seen = page.evaluate(ATTACKS_JS, serve.url)
            page.wait_for_timeout(500)  # the beacon is sent after the page's script goes on
        finally:
            context.close()
        refused = _refusals(serve.url) - refused_before
    print(f"\nhostile page: {json.dumps(seen, indent=1)}\nrefused by serve: {refused}")
    assert _fees(ui_stack) == before  # nothing paid, locally or at the gateway
    # nothing could be read: CORS-mode fetches fail, no-cors answers are opaque
    for name in ("JSON POST (preflighted)", "read the account", "read the request log"):
        assert seen[name].startswith("blocked"), (name, seen[name])
    for name in (
        "text/plain image POST",
        "urlencoded chat POST",
        "multipart edit POST",
        "POST redirected (307) to serve",
    ):
        assert seen[name] in ("opaque", "blocked: TypeError"), (name, seen[name])
    assert seen["img GET of the account"] == "error"
    # every request the browser let through reached serve and was refused there: the no-cors
    # POSTs (one redirected), the beacon, the account GET, the image GET, the preflight, the forms
    assert refused >= 9, refused


def test_dashboard_shows_injected_html_as_text(chromium, ui_stack, devnet):
    from test_ui_browser import _page, _unlock

    # a provider whose on-chain model name is HTML and whose URL is a javascript: URL
    register_chatbot_service(
        devnet, "javascript:alert(1)//", model=HTML, input_price=1, output_price=1
    )
    auth = {"Authorization": f"Bearer {ui_stack.api_key}"}
    with httpx.Client(base_url=ui_stack.serve_url, headers=auth, timeout=60) as c:
        # the request log records the body's model, the path and the error message
        c.post("/v1/images/generations", json={"prompt": "x", "model": HTML})
        c.post("/v1/chat/" + "<svg onload=alert(1)>", json={})
    errors: list[str] = []
    context, page = _page(chromium, errors)
    try:
        page.goto(ui_stack.serve_url + "/ui/")
        _unlock(page, ui_stack.api_key)
        page.wait_for_selector("#req-table tbody tr[data-verified]")
        page.wait_for_function(
            "(m) => [...document.querySelectorAll('#prov-table td')]"
            ".some(td => td.textContent === m)",
            arg=HTML,
        )
        requests_text = page.inner_text("#req-table")
        assert HTML in requests_text and "<svg onload=alert(1)>" in requests_text
        injected = page.evaluate(
            "() => document.querySelectorAll('#injected, main b, main svg, main img').length"
        )
        assert injected == 0
        assert page.title() != "pwned"
        assert not errors, errors  # nothing blocked by the CSP either: nothing tried to run
    finally:
        context.close()
