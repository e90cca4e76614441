"""The gateway's file-link table (:mod:`broker.provider.files`): which links are rewritten, opaque
ids, per-user lookup, expiry, compressed bodies. The end-to-end path (worker → gateway → serve) is
in ``tests/proxy/test_proxy_image_urls.py``."""

from __future__ import annotations

import gzip
import json

from broker.provider.files import FILES_PATH, FileLinks

BACKEND = "http://127.0.0.1:8123/v1"
PUBLIC = "https://gw.example"
ALICE, BOB = "0x" + "a1" * 20, "0x" + "b2" * 20


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _answer(*urls: str, **extra) -> bytes:
    return json.dumps({"created": 1, "data": [{"url": u} for u in urls], **extra}).encode()


def test_backend_links_are_rewritten_to_opaque_gateway_links():
    links = FileLinks(PUBLIC + "/", 3600)
    worker_file = "http://127.0.0.1:8123/v1/images/files/abc.png"
    out = links.rewrite(_answer(worker_file, "https://cdn.example/x.png", seed=7), ALICE, BACKEND)
    doc = json.loads(out)
    first, second = doc["data"][0]["url"], doc["data"][1]["url"]
    assert first.startswith(PUBLIC + FILES_PATH) and "127.0.0.1" not in out.decode()
    assert second == "https://cdn.example/x.png"  # not the backend's: left as it is
    assert doc["seed"] == 7 and doc["created"] == 1
    link_id = first.rsplit("/", 1)[1]
    assert len(link_id) >= 22 and "abc" not in link_id  # 128 random bits, not the file name
    assert links.get(link_id, ALICE.upper().replace("0X", "0x")).backend_url == worker_file
    assert links.get(link_id, BOB) is None  # another user: unknown
    assert links.get("nope", ALICE) is None


def test_same_host_other_port_and_non_url_answers_are_untouched():
    links = FileLinks(PUBLIC, 3600)
    assert (
        links.rewrite(_answer("http://127.0.0.1:9999/v1/images/files/a.png"), ALICE, BACKEND)
        is None
    )
    assert (
        links.rewrite(json.dumps({"data": [{"b64_json": "AAAA"}]}).encode(), ALICE, BACKEND) is None
    )
    assert links.rewrite(b"not json", ALICE, BACKEND) is None
    assert len(links) == 0


def test_job_results_and_gzip_bodies_are_rewritten():
    links = FileLinks(PUBLIC, 3600)
    job = {
        "id": "imgjob_1",
        "status": "completed",
        "data": {"data": [{"url": "http://127.0.0.1:8123/v1/images/files/j.png"}]},
    }
    out = links.rewrite(gzip.compress(json.dumps(job).encode()), ALICE, BACKEND, "gzip")
    assert json.loads(out)["data"]["data"][0]["url"].startswith(PUBLIC + FILES_PATH)


def test_links_expire_and_the_table_is_bounded():
    clock = Clock()
    links = FileLinks(PUBLIC, 60, max_links=2, clock=clock)
    ids = [links.add(f"{BACKEND}/images/files/{i}.png", ALICE) for i in range(3)]
    assert links.get(ids[0], ALICE) is None  # the oldest was dropped beyond max_links
    assert links.get(ids[2], ALICE) is not None
    clock.now += 60
    assert links.get(ids[2], ALICE) is None and len(links) == 0


def test_expiry_edges_with_a_clock_that_stands_still_or_goes_back():
    """Expiry is ``expires_at <= now`` (a link lives ``ttl`` seconds, not one more); pruning
    stops at the first live link and drops every expired one before it."""
    clock = Clock()
    links = FileLinks(PUBLIC, 60, clock=clock)
    first = links.add(f"{BACKEND}/images/files/a.png", ALICE)
    second = links.add(f"{BACKEND}/images/files/b.png", ALICE)  # same instant, same expiry
    assert links.get(first, ALICE) is not None and len(links) == 2  # the clock stands still
    clock.now += 30
    third = links.add(f"{BACKEND}/images/files/c.png", ALICE)
    clock.now += 29.999
    assert [links.get(i, ALICE) is not None for i in (first, second, third)] == [True] * 3
    clock.now += 0.001  # exactly 60 s after the first two
    assert links.get(first, ALICE) is None and links.get(second, ALICE) is None
    assert links.get(third, ALICE) is not None and len(links) == 1
    clock.now += 30
    assert len(links) == 0
    late = links.add(f"{BACKEND}/images/files/d.png", ALICE)
    clock.now -= 100  # a clock that goes back: the new link expires before the one it follows
    early = links.add(f"{BACKEND}/images/files/e.png", ALICE)
    clock.now += 61
    assert links.get(early, ALICE) is None  # expired, though behind a live link
    assert links.get(late, ALICE) is not None
    links_zero = FileLinks(PUBLIC, 0, clock=clock)
    assert links_zero.get(links_zero.add(f"{BACKEND}/x.png", ALICE), ALICE) is None
