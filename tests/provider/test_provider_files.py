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
