"""Chat-ID rules (broker.wire.chat_id, broker.wire.sse; user-broker.md §8.1) and the user side's
order of preference (broker.inference.chat_id): header, JSON body, SSE stream split anywhere."""

from __future__ import annotations

import random

import httpx
import pytest

from broker.inference.chat_id import extract_chat_id
from broker.wire.chat_id import chat_id_from_body, chat_id_from_headers
from broker.wire.sse import SSEChatIdExtractor, SSEDecoder, chat_id_from_sse

SSE = (
    ": keep-alive comment\r\n\r\n"
    'data: {"object":"chat.completion.chunk","choices":[]}\r\n\r\n'
    'data: {"id":"chatcmpl-ünïcødé-1","choices":[{"delta":{"content":"h"}}]}\r\n\r\n'
    'data: {"id":"chatcmpl-second","choices":[]}\n\n'
    "data: [DONE]\n\n"
)


def test_header_wins_and_is_case_insensitive():
    headers = httpx.Headers({"zg-res-key": "key-1", "content-type": "application/json"})
    assert chat_id_from_headers(headers) == "key-1"
    assert chat_id_from_headers({"ZG-RES-KEY": " key-2 "}) == "key-2"
    assert chat_id_from_headers([(b"ZG-Res-Key", b"key-3")]) == "key-3"
    assert chat_id_from_headers({"ZG-Res-Key": ""}) is None
    assert extract_chat_id({"ZG-Res-Key": "hdr"}, {"id": "body"}) == "hdr"


def test_body_id():
    assert chat_id_from_body(b'{"id":"chatcmpl-9","choices":[]}') == "chatcmpl-9"
    assert chat_id_from_body({"id": "x"}) == "x"
    for bad in (b"not json", b"[1,2]", b'{"id":5}', b'{"id":""}', b"{}", b"[" * 100_000):
        assert chat_id_from_body(bad) is None
    assert extract_chat_id({}, b'{"id":"from-body"}') == "from-body"
    assert extract_chat_id(None, None) is None


def test_sse_first_chunk_with_id():
    assert chat_id_from_sse(SSE) == "chatcmpl-ünïcødé-1"
    assert extract_chat_id({}, SSE.encode(), stream=True) == "chatcmpl-ünïcødé-1"
    assert chat_id_from_sse("data: [DONE]\n\n") is None


@pytest.mark.parametrize("seed", range(25))
def test_sse_split_at_arbitrary_byte_boundaries(seed):
    data = SSE.encode("utf-8")
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(1, 40))))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    extractor = SSEChatIdExtractor()
    for chunk in chunks:
        extractor.feed(chunk)
    assert extractor.close() == "chatcmpl-ünïcødé-1"


def test_sse_one_byte_at_a_time_and_cr_only_line_endings():
    stream = b'data: {"id":"a",\rdata: "x":1}\r\rdata: {"id":"b"}\r\r'
    decoder = SSEDecoder()
    events: list[str] = []
    for i in range(len(stream)):
        events += decoder.feed(stream[i : i + 1])
    events += decoder.close()
    assert events == ['{"id":"a",\n"x":1}', '{"id":"b"}']
    assert chat_id_from_sse([stream[i : i + 1] for i in range(len(stream))]) == "a"


def test_sse_unterminated_last_event_is_flushed_on_close():
    extractor = SSEChatIdExtractor()
    assert extractor.feed(b'data: {"id":"tail"}') is None
    assert extractor.close() == "tail"
