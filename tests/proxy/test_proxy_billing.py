"""serve bills a chat or audio answer by the gateway's own rule (``broker.wire.fees``): the fee it
records for an answer equals the fee the gateway bills for the same bytes, also when the backend
reports no ``usage`` (the B9 word-count fallback) and for streams read event by event as serve
relays them. A backend that leaves out ``usage`` no longer makes serve's books lower than the
provider's bill."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.inference.models import Service
from broker.proxy.billing import AnswerBody, Billing
from broker.wire.fees import compute_fee
from broker.wire.sse import SSEDecoder, SSEStreamSummary, parse_sse_json

PROVIDER = "0x" + "ab" * 20
words = st.lists(st.sampled_from(["hello", "there", "0G", "ünï", "a\u00a0b", ""]), max_size=6)
counts = st.one_of(st.none(), st.integers(-5, 10**6), st.sampled_from(["12", "x", 1.5, True]))


def _service(service_type: str, input_price: int, output_price: int) -> Service:
    return Service(
        provider=PROVIDER,
        service_type=service_type,
        url="http://127.0.0.1:1",
        input_price=input_price,
        output_price=output_price,
        updated_at=0,
        model="m",
        verifiability="TeeML",
        additional_info="{}",
        tee_signer_address="0x" + "00" * 20,
        tee_signer_acknowledged=True,
    )


def _usage(prompt, completion) -> dict | None:
    usage = {}
    if prompt is not None:
        usage["prompt_tokens"] = prompt
    if completion is not None:
        usage["completion_tokens"] = completion
    return usage or None


@settings(max_examples=150, suppress_health_check=list(HealthCheck), deadline=None)
@given(
    texts=st.lists(words.map(" ".join), min_size=1, max_size=3),
    prompt=counts,
    completion=counts,
    prices=st.tuples(st.integers(0, 10**12), st.integers(0, 10**12)),
)
def test_non_streamed_chat_fee_equals_the_gateway_fee(texts, prompt, completion, prices):
    body = {
        "id": "chatcmpl-1",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}}
            for i, t in enumerate(texts)
        ],
    }
    usage = _usage(prompt, completion)
    if usage is not None:
        body["usage"] = usage
    raw = json.dumps(body).encode()
    service = _service("chatbot", *prices)
    ours = Billing(None, PROVIDER).fee_of(AnswerBody(raw), service)
    gateway = compute_fee("chatbot", b"{}", raw, input_price=prices[0], output_price=prices[1]).fee
    assert ours == gateway


@settings(max_examples=100, suppress_health_check=list(HealthCheck), deadline=None)
@given(
    deltas=st.lists(st.tuples(st.integers(0, 2), words.map(" ".join)), min_size=1, max_size=8),
    completion=counts,
    cut=st.integers(1, 40),
    prices=st.tuples(st.integers(0, 10**9), st.integers(1, 10**9)),
)
def test_streamed_chat_fee_equals_the_gateway_fee(deltas, completion, cut, prices):
    events = [
        {"id": "chatcmpl-s", "choices": [{"index": i, "delta": {"content": t}}]} for i, t in deltas
    ]
    usage = _usage(None, completion)
    if usage is not None:
        events.append({"id": "chatcmpl-s", "choices": [], "usage": usage})
    raw = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"
    # serve reads the stream in the chunks it arrives in, each event parsed once, as it relays it
    decoder, summary = SSEDecoder(), SSEStreamSummary()
    for i in range(0, len(raw), cut):
        for data in decoder.feed(raw[i : i + cut]):
            if (obj := parse_sse_json(data)) is not None:
                summary.observe(obj)
    for data in decoder.close():
        if (obj := parse_sse_json(data)) is not None:
            summary.observe(obj)
    service = _service("chatbot", *prices)
    ours = Billing(None, PROVIDER).fee_of(AnswerBody(stream=summary.close()), service)
    gateway = compute_fee(
        "chatbot", b"{}", raw, input_price=prices[0], output_price=prices[1], streamed=True
    ).fee
    assert ours == gateway


@pytest.mark.parametrize(
    "body",
    [
        b'{"text": "three little words"}',  # no usage: 2 x words
        b'{"text": "", "usage": null}',  # no words: 100
        b'{"text": "x", "usage": {"type": "duration", "seconds": 3.4}}',
        b'{"text": "x", "usage": {"type": "tokens", "input_tokens": 7, "output_tokens": "9"}}',
        b"1\n00:00:00,000 --> 00:00:01,000\nplain srt transcript\n",  # response_format srt
    ],
)
def test_transcription_fee_equals_the_gateway_fee(body):
    service = _service("speech-to-text", 1000, 7)
    ours = Billing(None, PROVIDER).fee_of(AnswerBody(body), service)
    gateway = compute_fee("speech-to-text", b"", body, input_price=1000, output_price=7).fee
    assert ours == gateway and ours > 0


def test_answer_without_usage_is_billed_not_dropped():
    """The attack: a backend that leaves ``usage`` out. serve used to record nothing while the
    gateway billed the word count."""
    raw = b'{"id": "c", "choices": [{"index": 0, "message": {"content": "four words right here"}}]}'
    fee = Billing(None, PROVIDER).fee_of(AnswerBody(raw), _service("chatbot", 3, 5))
    assert fee == 4 * 5
