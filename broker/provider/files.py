"""Image ``url`` answers that clients can reach: the gateway's ``/v1/proxy/files/<id>`` route.

A backend (the Z-Image worker) answers ``response_format: "url"`` with links to itself
(``http://127.0.0.1:<worker port>/v1/images/files/<file>``), which no client outside the provider
can reach. The gateway rewrites each such ``data[].url`` to ``{serving_url}/v1/proxy/files/<id>``
(``id``: 128 random bits, opaque) and remembers ``id → (backend URL, user, expiry)``. ``GET
/v1/proxy/files/<id>`` fetches the file from the backend for the *same* user only (the request's
``Authorization`` is checked as for any proxied request, B3); another user, an unknown id or an
expired one all get 404 (``{"error": "file not found"}``, the gateway's error shape).

The response signature (B7) covers the body the client receives: the rewrite happens before the
gateway signs, so serve's verification of the bytes it receives still holds.

Only links whose origin (scheme, host, port) is the backend's are rewritten; a worker configured
with a public base URL answers links that are already reachable and stay as they are. The table
lives in memory (the worker keeps its files in memory too, ``file_ttl_seconds``, default 1 h; the
gateway's ``file_url_ttl`` defaults to the same).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from broker.wire.content_coding import decoded_body
from broker.wire.json_body import loads_json_or_none

__all__ = ["FILES_PATH", "FileLink", "FileLinks"]

FILES_PATH = "/v1/proxy/files/"
"""Path prefix of the gateway's file route."""


@dataclass(frozen=True)
class FileLink:
    """One rewritten link: the backend URL it stands for, its user (lower-case address) and its
    expiry (``time.monotonic()`` seconds)."""

    backend_url: str
    user: str
    expires_at: float


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.scheme, parsed.host.lower(), port


def _image_items(doc: Any) -> Iterator[dict[str, Any]]:
    """The ``data[]`` items of an images answer, or of a job body's ``data`` / ``result``."""
    if not isinstance(doc, dict):
        return
    for holder in (doc, doc.get("data"), doc.get("result")):
        if isinstance(holder, dict) and isinstance(holder.get("data"), list):
            yield from (item for item in holder["data"] if isinstance(item, dict))


class FileLinks:
    """The table of rewritten links (thread-safe, in memory, bounded).

    Args:
        public_base: the gateway's public base URL (``serving_url``), without a trailing ``/``.
        ttl: seconds a link stays valid (``file_url_ttl``).
        max_links: most links kept; the oldest are dropped first beyond it.
        clock: monotonic seconds (tests may pass their own).

    Links are kept in insertion order with one TTL, so their expiries never decrease: expired
    links are at the front, and pruning stops at the first live one (O(expired), not O(table)).
    """

    def __init__(
        self,
        public_base: str,
        ttl: float,
        *,
        max_links: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.public_base = public_base.rstrip("/")
        self.ttl = ttl
        self.max_links = max_links
        self._clock = clock
        self._links: OrderedDict[str, FileLink] = OrderedDict()  # O(1) pops at the front
        self._lock = threading.Lock()

    def add(self, backend_url: str, user: str) -> str:
        """Remember ``backend_url`` for ``user``; returns the new opaque id."""
        link_id = secrets.token_urlsafe(16)
        now = self._clock()
        with self._lock:
            self._prune(now)
            while len(self._links) >= self.max_links:
                self._links.popitem(last=False)
            self._links[link_id] = FileLink(backend_url, user.lower(), now + self.ttl)
        return link_id

    def get(self, link_id: str, user: str) -> FileLink | None:
        """The link ``link_id`` when it exists, has not expired and belongs to ``user``."""
        now = self._clock()
        with self._lock:
            self._prune(now)
            link = self._links.get(link_id)
        # expiry checked again: a clock that went back could leave one behind a live link
        if link is None or link.user != user.lower() or link.expires_at <= now:
            return None
        return link

    def __len__(self) -> int:
        with self._lock:
            self._prune(self._clock())
            return len(self._links)

    def _prune(self, now: float) -> None:
        """Drop the expired links at the front (``expires_at <= now``), up to the first live one."""
        links = self._links
        while links:
            first = next(iter(links))
            if links[first].expires_at > now:
                return
            del links[first]

    def rewrite(
        self, body: bytes, user: str, backend_base: str, content_encoding: str | None = None
    ) -> bytes | None:
        """Rewrite the backend links of an images answer (or a job body) for ``user``.

        Args:
            body: the backend's JSON body as received.
            content_encoding: its ``Content-Encoding``; the new body is always plain (the caller
                drops the header when a body is returned).
            user: the authenticated user the links are for.
            backend_base: the backend's base URL; only links with its origin are rewritten.
        Returns:
            the new body (compact JSON) when at least one link was rewritten, else ``None`` (the
            caller keeps the backend's bytes unchanged).
        """
        origin = _origin(backend_base)
        if content_encoding:
            body = decoded_body(body, content_encoding)
        if origin is None or b'"url"' not in body:
            return None
        doc = loads_json_or_none(body)
        if doc is None:
            return None
        changed = False
        for item in _image_items(doc):
            url = item.get("url")
            if isinstance(url, str) and _origin(url) == origin:
                item["url"] = f"{self.public_base}{FILES_PATH}{self.add(url, user)}"
                changed = True
        if not changed:
            return None
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
