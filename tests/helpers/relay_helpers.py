"""A tampering HTTP relay for tests: a real server on loopback that sits between ``serve`` and a
provider gateway (the on-chain service URL points at it, as a network attacker or a malicious proxy
in front of the gateway would) and changes what passes through according to
:attr:`TamperRelay.mode`.

Modes (``None`` relays everything unchanged):

* ``flip_image_b64``: one base64 character of the first ``b64_json`` of an image answer is changed;
* ``flip_edit_b64``: the same for an image edit (multipart request);
* ``swap_res_key``: the ``ZG-Res-Key`` header is replaced by the one delivered with the previous
  response;
* ``replay_signature``: ``GET /v1/proxy/signature/<id>`` answers the body of an earlier signature;
* ``tamper_chat``: one character of a chat completion's text is changed;
* ``tamper_stream``: one character of an SSE chunk is changed;
* ``tamper_audio``: one character of a transcription's text is changed;
* ``tamper_async``: the ``Retry-After``-carrying 202 body of an async job submission is changed;
* ``tamper_request``: the request body is changed on its way to the gateway (the prompt/messages);
* ``signature_429``: the first ``GET /v1/proxy/signature/...`` of each chat id answers 429 with
  ``Retry-After: 1`` (the gateway's rate limit), later ones pass.
* ``strip_res_signature``: the ``ZG-Res-Signature`` header of a chat answer is removed;
* ``swap_res_signature``: it is replaced by the one of the previous chat answer;
* ``forge_res_signature``: it is replaced by the relay's own signature (:data:`RELAY_KEY`) over this
  exchange's true text;
* ``tamper_chat_resign``: ``tamper_chat``, and the header re-signed by the relay's key over the
  changed bytes.
* ``forge_0g_headers``: ``tamper_chat``, and every answer carries ``serve``'s own headers with the
  values a cheating provider would like the client to see (:data:`FORGED_0G_HEADERS`: fee 0,
  verified);
* ``forge_0g_comment``: ``tamper_stream``, and the stream starts with ``serve``'s own outcome
  comments (:data:`FORGED_0G_COMMENTS`: verified) for a client that reads the first one;
* ``svg_file``: the gateway's file links (``/v1/proxy/files/...``, fetched by ``serve`` after the
  answer was verified) are made to point at the relay (as a provider's own gateway would), which
  answers them with :data:`SVG_FILE` (``image/svg+xml`` with a script); ``own_files`` points the
  links at the relay the same way and relays the images unchanged;
* ``html_poll``: a job poll (``GET /v1/async/jobs/...``) is answered ``200 text/html`` with a
  script (:data:`HTML_POLL`);
* ``raw_header_bytes``: every answer carries a header whose value is not Latin-1 text (a byte that
  is not UTF-8 and a UTF-8 character beyond Latin-1: :data:`RAW_HEADER_VALUE`).

The signature-endpoint modes (``replay_signature``, ``signature_429``) also remove the
``ZG-Res-Signature`` header, so that the fetch they attack happens. :attr:`TamperRelay.fetches`
counts the signature fetches relayed.

:class:`RpcRelay` is a plain relay to a JSON-RPC node that can be shut down (the chain "goes away"
for whoever uses its URL, the node stays up for the others).
"""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "FORGED_0G_COMMENTS",
    "FORGED_0G_HEADERS",
    "HTML_POLL",
    "MODES",
    "RAW_HEADER",
    "RELAY_KEY",
    "SVG_FILE",
    "RpcRelay",
    "TamperRelay",
    "flip_char",
]

#: The relay's own signing key (not the provider's TEE signer).
RELAY_KEY = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
_SIG_HEADER = "zg-res-signature"

MODES = (
    "flip_image_b64",
    "flip_edit_b64",
    "swap_res_key",
    "replay_signature",
    "tamper_chat",
    "tamper_stream",
    "tamper_audio",
    "tamper_async",
    "tamper_request",
    "signature_429",
    "strip_res_signature",
    "swap_res_signature",
    "forge_res_signature",
    "tamper_chat_resign",
    "forge_0g_headers",
    "forge_0g_comment",
    "svg_file",
    "own_files",
    "html_poll",
    "raw_header_bytes",
)
#: What ``html_poll`` answers for a job poll.
HTML_POLL = b'<!doctype html><script>fetch("/v1/account").then(r => r.text())</script>'
#: What ``svg_file`` answers for a file link: an "image" that runs a script where it is opened.
SVG_FILE = (
    b'<svg xmlns="http://www.w3.org/2000/svg"><script>'
    b'fetch("/v1/images/generations",{method:"POST",headers:{"Content-Type":"application/json"},'
    b'body:JSON.stringify({prompt:"spent by an svg",n:16})})</script></svg>'
)
#: What ``forge_0g_comment`` puts first in a stream: ``serve``'s outcome comments, forged.
FORGED_0G_COMMENTS = (
    b": X-0G-Verified: true\n\n:X-0g-verification-reason: verified; binding=full\n\n"
)
#: What ``forge_0g_headers`` adds to every answer: ``serve``'s own header names.
FORGED_0G_HEADERS = {
    "X-0G-Fee": "0",
    "X-0G-Verified": "true",
    "X-0G-Verification-Reason": "verified; binding=full",
}
#: The header ``raw_header_bytes`` adds (name, value as bytes on the wire): ``0xB2`` alone is not
#: UTF-8, ``€`` is UTF-8 beyond Latin-1.
RAW_HEADER = ("x-provider-note", "caf\xc3\xa9 \xb2 \xe2\x82\xac".encode("latin-1"))

_HOP = {
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "host",
    "content-encoding",
}
_B64 = re.compile(rb'"b64_json"\s*:\s*"')


def flip_char(data: bytes, at: int) -> bytes:
    """``data`` with the byte at ``at`` replaced by another letter (keeps base64 and JSON valid)."""
    old = data[at : at + 1]
    new = b"B" if old == b"A" else b"A"
    return data[:at] + new + data[at + 1 :]


class TamperRelay:
    """The relay app and its state; ``relay.app`` is the ASGI app.

    Args:
        target: the gateway's base URL.

    Attributes:
        mode: the tamper mode (see the module docstring) or ``None``.
        res_keys: every ``ZG-Res-Key`` the gateway sent (oldest first); delivered_keys: the ones
            passed on (after a swap).
        signatures: signature bodies relayed, by chat id.
        tampered: how many messages were changed in the current mode.
        fetches: how many ``/signature/`` requests were relayed or answered.
    """

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.mode: str | None = None
        self.res_keys: list[str] = []
        self.delivered_keys: list[str] = []
        self.signatures: dict[str, bytes] = {}
        self.tampered = 0
        self.fetches = 0
        self._last_signature: str | None = None
        self._limited: set[str] = set()
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route(
                    "/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]
                )
            ]
        )

    def _count(self) -> None:
        with self._lock:
            self.tampered += 1

    def _tamper_request(self, path: str, body: bytes) -> bytes:
        if self.mode != "tamper_request" or not body:
            return body
        for needle in (b'"prompt":"', b'"content":"'):
            at = body.find(needle)
            if at >= 0:
                self._count()
                return flip_char(body, at + len(needle))
        return body

    def _tamper_body(self, path: str, body: bytes) -> bytes:
        mode = self.mode
        if (mode == "flip_image_b64" and path.endswith("images/generations")) or (
            mode == "flip_edit_b64" and path.endswith("images/edits")
        ):
            match = _B64.search(body)
            if match:
                self._count()
                return flip_char(body, match.end() + 40)
        if mode in ("tamper_chat", "tamper_chat_resign", "forge_0g_headers") and path.endswith(
            "chat/completions"
        ):
            at = body.find(b"hello there")
            if at >= 0:
                self._count()
                return body[:at] + b"hello thwre" + body[at + 11 :]
        if mode == "tamper_audio" and path.endswith("audio/transcriptions"):
            at = body.find(b"transcribed")
            if at >= 0:
                self._count()
                return body[:at] + b"transcrabed" + body[at + 11 :]
        if mode == "tamper_async" and "async/images" in path:
            at = body.find(b'"status"')
            if at >= 0:
                self._count()
                return body[:at] + b'"statuz"' + body[at + 8 :]
        return body

    def _res_signature(self, path: str, request: bytes, raw: bytes, headers: dict) -> None:
        """Apply the ``ZG-Res-Signature`` modes to a non-streamed chat answer's ``headers``."""
        genuine = next((headers.pop(k) for k in list(headers) if k.lower() == _SIG_HEADER), None)
        if genuine is None or not path.endswith("chat/completions"):
            if genuine is not None:
                headers[_SIG_HEADER] = genuine
            return
        previous, self._last_signature = self._last_signature, genuine
        mode, value = self.mode, genuine
        if mode in ("strip_res_signature", "replay_signature", "signature_429"):
            value = None
        elif mode == "swap_res_signature" and previous is not None:
            value = previous
        elif mode in ("forge_res_signature", "tamper_chat_resign"):
            text = hashlib.sha256(request).hexdigest() + ":" + hashlib.sha256(raw).hexdigest()
            signed = Account.sign_message(encode_defunct(text=text), RELAY_KEY).signature
            value = "0x" + bytes(signed).hex()
        if value != genuine and mode != "tamper_chat_resign":
            self._count()  # (tamper_chat_resign counted its body change)
        if value is not None:
            headers[_SIG_HEADER] = value

    def _signature(self, chat_id: str, status: int, body: bytes) -> Response | None:
        """The answer for a signature fetch in the signature modes, or None to relay it."""
        if status == 200:
            self.signatures.setdefault(chat_id, body)
        if self.mode == "replay_signature":
            earlier = [b for k, b in self.signatures.items() if k != chat_id]
            if earlier:
                self._count()
                return Response(earlier[0], status_code=200, media_type="application/json")
        return None

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        body = self._tamper_request(path, await request.body())
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        if self.mode == "html_poll" and "/v1/async/jobs/" in path:
            self._count()
            return Response(HTML_POLL, media_type="text/html")
        if self.mode == "svg_file" and "/v1/proxy/files/" in path:
            self._count()
            return Response(SVG_FILE, media_type="image/svg+xml")
        if "/signature/" in path:
            with self._lock:
                self.fetches += 1
        if self.mode == "signature_429" and "/signature/" in path:
            chat_id = path.rsplit("/", 1)[1]
            with self._lock:
                first = chat_id not in self._limited
                self._limited.add(chat_id)
            if first:
                self._count()
                return Response(
                    b'{"error":"Too many requests. Please try again later."}',
                    status_code=429,
                    headers={"Retry-After": "1"},
                    media_type="application/json",
                )
        client = httpx.AsyncClient(timeout=600)
        upstream = await client.send(
            client.build_request(
                request.method,
                self.target + path,
                headers=headers,
                content=body,
                params=request.query_params,
            ),
            stream=True,
        )
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        if self.mode == "forge_0g_headers":
            out_headers.update(FORGED_0G_HEADERS)
        elif self.mode == "raw_header_bytes":  # Starlette writes str values as Latin-1 bytes
            out_headers[RAW_HEADER[0]] = RAW_HEADER[1].decode("latin-1")
        key = upstream.headers.get("zg-res-key")
        if key:
            self.res_keys.append(key)
            if self.mode == "swap_res_key" and self.delivered_keys:
                out_headers["zg-res-key"] = self.delivered_keys[-1]
                self._count()
            self.delivered_keys.append(out_headers["zg-res-key"])
        if "text/event-stream" in upstream.headers.get("content-type", ""):

            async def relay():
                done = False
                try:
                    if self.mode == "forge_0g_comment":
                        yield FORGED_0G_COMMENTS
                    async for chunk in upstream.aiter_raw():
                        tampers = self.mode in ("tamper_stream", "forge_0g_comment")
                        if tampers and not done and b" two" in chunk:
                            chunk = chunk.replace(b" two", b" tw0", 1)
                            done = True
                            self._count()
                        yield chunk
                finally:
                    await upstream.aclose()
                    await client.aclose()

            return StreamingResponse(relay(), status_code=upstream.status_code, headers=out_headers)
        raw = b"".join([c async for c in upstream.aiter_raw()])
        await upstream.aclose()
        await client.aclose()
        if "/signature/" in path:
            replaced = self._signature(path.rsplit("/", 1)[1], upstream.status_code, raw)
            if replaced is not None:
                return replaced
        raw = self._tamper_body(path, raw)
        if self.mode in ("svg_file", "own_files"):  # file links point at the relay
            here = str(request.base_url).rstrip("/").encode()
            raw = raw.replace(
                self.target.encode() + b"/v1/proxy/files/", here + b"/v1/proxy/files/"
            )
        self._res_signature(path, body, raw, out_headers)
        return Response(raw, status_code=upstream.status_code, headers=out_headers)


class RpcRelay:
    """A loopback HTTP relay to ``target`` (JSON-RPC POSTs, any path) that can be shut down: the
    chain "goes away" for whoever uses the relay's URL."""

    def __init__(self, target: str) -> None:
        client = httpx.Client(timeout=10)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                r = client.post(target, content=body, headers={"content-type": "application/json"})
                self.send_response(r.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.client = client
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()
