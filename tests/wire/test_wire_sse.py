"""The one SSE parser (broker.wire.sse): events, usage, chat id and generated text, read in one
pass whatever the chunking; serve's relay and the gateway's bill follow the same rules; each event's
raw bytes, for a relay that passes the stream on unchanged."""

from __future__ import annotations

import json
import random

import pytest

from broker.wire.sse import (
    SSEChatIdExtractor,
    SSEDecoder,
    SSEEvent,
    SSEStreamSummary,
    SSESummary,
    UsageStreamCollector,
    chat_id_from_sse,
    event_text,
    event_text_parts,
    is_done,
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


RAW_STREAM = (
    b': opened\r\n\r\nretry: 10\r\rid: 1\nevent: delta\ndata:{"id":"c-1",\r\n'
    b'data: "choices":[{"index":0,"delta":{"content":"\xc3\xa9"}}]}\r\n\r\n'
    b'\n\ndata: {"id":"c-1","usage":{"prompt_tokens":1}}\r\r\ndata: [DONE]\n\n'
    b'data: {"after":1}'
)
RAW_DATA = [
    '{"id":"c-1",\n"choices":[{"index":0,"delta":{"content":"é"}}]}',
    '{"id":"c-1","usage":{"prompt_tokens":1}}',
    "[DONE]",
    '{"after":1}',
]


@pytest.mark.parametrize("seed", range(40))
def test_raw_events_put_together_are_the_stream_in_any_chunking(seed):
    """What a relay passes on (serve): each event's bytes as received; joined, the whole stream,
    every line end kept; the data as :meth:`SSEDecoder.feed` gives it."""
    chunks = _chunks(RAW_STREAM, seed)
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed_events(chunk)]
    events += decoder.close_events()
    assert b"".join(event.raw for event in events) == RAW_STREAM
    assert [event.data for event in events if event.data is not None] == RAW_DATA
    plain = SSEDecoder()
    assert [d for chunk in chunks for d in plain.feed(chunk)] + plain.close() == RAW_DATA
    # every event but the unterminated last one ends with a blank line, or is the lone "\n" of a
    # "\r\n" whose "\r" ended the event before it
    for event in events[:-1]:
        last_line_end = 2 if event.raw.endswith(b"\r\n") else 1
        before = event.raw[:-last_line_end]
        assert event.raw == b"\n" or (event.raw[-1:] in b"\r\n" and before[-1:] in (b"\r", b"\n"))
    assert events[-1] == SSEEvent(b'data: {"after":1}', '{"after":1}')


def test_an_event_ended_by_a_cr_is_out_at_once_and_its_lf_comes_alone():
    decoder = SSEDecoder()
    assert decoder.feed_events(b"data: a\r\n\r") == [SSEEvent(b"data: a\r\n\r", "a")]
    assert decoder.line_end == b"\r"
    assert decoder.feed_events(b"\n") == [SSEEvent(b"\n", None)]  # no extra blank line
    assert decoder.line_end == b"\r\n"
    assert decoder.feed_events(b"data: b\r") == []  # a line, not yet an event
    assert decoder.feed_events(b"\n") == []
    assert decoder.feed_events(b"\r") == [SSEEvent(b"data: b\r\n\r", "b")]
    assert decoder.close_events() == []


def test_data_less_events_and_the_unterminated_tail_keep_their_bytes():
    decoder = SSEDecoder()
    assert decoder.feed_events(b": ping\n\nevent: x\n\n\n") == [
        SSEEvent(b": ping\n\n", None),
        SSEEvent(b"event: x\n\n", None),
        SSEEvent(b"\n", None),
    ]
    assert decoder.feed_events(b"data\ndata:  two spaces\n") == []
    assert decoder.close_events() == [SSEEvent(b"data\ndata:  two spaces\n", "\n two spaces")]
    assert decoder.close_events() == []


def test_done_is_recognised_with_blanks_only():
    assert is_done("[DONE]") and is_done(" [DONE] ") and is_done("[DONE]\n")
    assert not is_done("[DONE] x") and not is_done('"[DONE]"') and not is_done("")
