"""The one SSE parser (broker.wire.sse): events, usage, chat id and generated text, read in one
pass whatever the chunking; serve's relay and the gateway's bill follow the same rules."""

from __future__ import annotations

import json
import random

import pytest

from broker.wire.sse import (
    SSEChatIdExtractor,
    SSEDecoder,
    SSEStreamSummary,
    SSESummary,
    UsageStreamCollector,
    chat_id_from_sse,
    event_text,
    event_text_parts,
    parse_sse_json,
    summarize_sse,
)

STREAM = (
    b": keep-alive\n\n"
    b'data: {"id":"c-1","choices":[{"index":0,"delta":{"content":"hi "}}],"usage":null}\n\n'
    b'data: {"id":"c-2","choices":[{"index":0,"delta":{"content":"there"}}]}\r\n\r\n'
    b'data: {"id":"c-1","choices":[],\n'
    b'data: "usage":{"prompt_tokens":11,"completion_tokens":22}}\n\n'
    b"data: [DONE]\n\n"
)


def _chunks(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(1, 60))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_summary_reads_usage_chat_id_and_text_in_one_pass():
    summary = summarize_sse(STREAM)
    assert summary == SSESummary(
        usage={"prompt_tokens": 11, "completion_tokens": 22}, chat_id="c-1", text="hi there"
    )
    assert chat_id_from_sse(STREAM) == "c-1"
    assert UsageStreamCollector().feed_all([STREAM]) == summary.usage


@pytest.mark.parametrize("seed", range(20))
def test_any_chunking_gives_the_same_reading(seed):
    chunks = _chunks(STREAM, seed)
    reader = SSEStreamSummary()
    for chunk in chunks:
        reader.feed(chunk)
    assert reader.close() == summarize_sse(STREAM)
    assert summarize_sse(chunks) == summarize_sse(STREAM)
    ids = SSEChatIdExtractor()
    for chunk in chunks:
        ids.feed(chunk)
    assert ids.close() == "c-1"


def test_observe_takes_events_parsed_once_by_the_caller():
    """serve decodes and parses each event once and hands the object to every reader."""
    decoder, usage, ids = SSEDecoder(), UsageStreamCollector(), SSEChatIdExtractor()
    for data in decoder.feed(STREAM) + decoder.close():
        obj = parse_sse_json(data)
        if obj is not None:
            usage.observe(obj)
            ids.observe(obj)
    assert usage.usage == {"prompt_tokens": 11, "completion_tokens": 22}
    assert ids.chat_id == "c-1"


def test_a_long_line_in_many_chunks_and_many_lines_in_one_chunk():
    """A large event split into many small chunks, and a whole stream of many events in one chunk
    (how the gateway bills a finished stream), decode to the same events."""
    text = "x" * 200_000
    event = b'data: {"choices":[{"delta":{"content":"' + text.encode() + b'"}}]}\n\n'
    decoder = SSEDecoder()
    events: list[str] = []
    for i in range(0, len(event), 1000):
        events += decoder.feed(event[i : i + 1000])
    assert [json.loads(e)["choices"][0]["delta"]["content"] for e in events] == [text]
    many = b"".join(b'data: {"choices":[{"delta":{"content":"w "}}]}\n\n' for _ in range(20_000))
    assert summarize_sse(many).text == "w " * 20_000


def test_carriage_return_split_from_its_line_feed():
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"id":"a"}\r') == []
    assert decoder.feed(b"\n") == []  # the LF belongs to the CR: no extra blank line
    assert decoder.feed(b"\r\n") == ['{"id":"a"}']
    assert decoder.close() == []


def test_event_text_skips_entries_of_the_wrong_type():
    assert event_text({"choices": ["x", None, {"delta": "y"}, {"delta": {"content": 5}}]}) == ""
    assert event_text({"choices": {"delta": {"content": "no"}}}) == ""
    assert event_text({"choices": [{"delta": {"content": "a"}}, {"delta": {"content": "b"}}]}) == (
        "ab"
    )
    assert event_text({"type": "transcript.text.delta", "delta": "words"}) == "words"


def test_interleaved_choices_keep_their_own_text():
    """n > 1 streams interleave the deltas of several choices: each choice's words stay whole."""
    stream = b"".join(
        b'data: {"choices":[{"index":%d,"delta":{"content":"%s"}}]}\n\n' % (i, t.encode())
        for i, t in ((0, "Hel"), (1, "Wor"), (0, "lo"), (1, "ld"))
    )
    assert summarize_sse(stream).text == "Hello\nWorld"
    assert event_text_parts({"choices": [{"delta": {"content": "a"}}, {"index": True}]}) == [
        (0, "a")
    ]


def test_hostile_events_are_skipped_not_raised():
    nested = b"data: " + b"[" * 100_000 + b"\n\n"
    junk = b"data: \xff\xfe not json\n\ndata: 12\n\ndata: null\n\n"
    assert summarize_sse(nested + junk + STREAM).usage == {
        "prompt_tokens": 11,
        "completion_tokens": 22,
    }
    assert summarize_sse(b"") == SSESummary(None, None, "")
