"""The fee rule both sides share (broker.wire.fees; provider-gateway.md B9, user-broker.md §7.2,
test-vectors.md §5): counts per service type, the decided edge cases, and the property that the
user side's estimate equals the gateway's fee for any answer."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.inference.models import Service
from broker.proxy.billing import AnswerBody, Billing
from broker.wire.errors import FeeInputError, UnknownServiceTypeError, UsageError
from broker.wire.fees import (
    SERVICE_TYPES,
    Fee,
    UsageCounts,
    calculate_fee,
    compute_fee,
    extract_chatbot_usage,
    extract_image_editing_usage,
    extract_speech_to_text_usage,
    extract_text_to_image_usage,
    extractor_for,
    fee_for_content,
    image_counts,
    js_round,
    parse_response_object,
    word_count,
)
from broker.wire.n import request_n
from broker.wire.sse import SSEDecoder, SSEStreamSummary, parse_sse_json, summarize_sse

IN, OUT = 3 * 10**9, 7 * 10**9  # neuron per unit


# -- the SDK's processResponse(content) estimate ------------------------------------------------


def test_chatbot_usage_json_body_and_strings():
    assert extract_chatbot_usage('{"prompt_tokens":10,"completion_tokens":20}') == UsageCounts(
        10, 20
    )
    body = b'{"id":"x","usage":{"prompt_tokens":"4","completion_tokens":5,"total_tokens":9}}'
    assert extract_chatbot_usage(body) == UsageCounts(4, 5)
    assert extract_chatbot_usage({"prompt_tokens": 2.0, "completion_tokens": None}) == UsageCounts(
        2, 0
    )
    assert extract_chatbot_usage("not json") == UsageCounts(0, 0)
    assert extract_chatbot_usage({"prompt_tokens": "abc", "completion_tokens": -3}) == UsageCounts()
    assert fee_for_content("chatbot", '{"prompt_tokens":10,"completion_tokens":20}', IN, OUT) == (
        10 * IN + 20 * OUT
    )


def test_non_integral_counts_are_floored_not_refused():
    """The SDK's BigInt() throws on 1.5 (and the answer stays unaccounted); both sides floor."""
    assert extract_chatbot_usage({"prompt_tokens": 1.5, "completion_tokens": "7.9"}) == (
        UsageCounts(1, 7)
    )
    usage = '{"type":"tokens","input_tokens":2.5,"output_tokens":"3.9"}'
    assert extract_speech_to_text_usage(usage) == UsageCounts(2, 3)  # parseInt("3.9") == 3
    gateway = compute_fee(
        "chatbot", b"{}", b'{"usage":{"prompt_tokens":1.5}}', input_price=IN, output_price=OUT
    )
    assert (gateway.input_count, gateway.fee) == (1, IN)


def test_absurd_counts_count_zero_and_stay_cheap():
    """A hostile usage cannot make a huge int (memory) or a fee beyond int64 counts."""
    for value in ("1e999999999", "9" * 5000, 2**64, float("inf"), float("nan"), -(2**70)):
        assert extract_chatbot_usage({"prompt_tokens": value}) == UsageCounts()
        expected = UsageCounts(1, 0) if value == "1e999999999" else UsageCounts()  # parseInt
        assert extract_speech_to_text_usage({"input_tokens": value}) == expected
    assert extract_speech_to_text_usage({"type": "duration", "seconds": "1e999999999"}) == (
        UsageCounts()
    )


def test_fee_is_exact_integer_for_huge_values():
    counts = UsageCounts(10**12, 10**12)
    assert calculate_fee(counts, 10**18, 3 * 10**18) == 4 * 10**30


def test_images_count_n_as_output_by_the_n_rule():
    assert extract_text_to_image_usage('{"prompt":"cat","n":3}') == UsageCounts(0, 3)
    assert extract_text_to_image_usage('{"prompt":"cat"}') == UsageCounts(0, 1)
    assert extract_image_editing_usage({"n": 4}) == UsageCounts(0, 4)
    assert fee_for_content("text-to-image", '{"n":2}', IN, OUT) == 2 * OUT  # outputPrice (D11)
    assert image_counts(5) == UsageCounts(0, 5)
    # the gateway refuses these requests before forwarding, so no fee is ever due for them
    for bad in ('{"n":"2"}', '{"n":2.0}', '{"n":0}', '{"n":99}', "garbage", "[1]"):
        with pytest.raises(UsageError, match="cannot bill the image request"):
            extract_text_to_image_usage(bad)


def test_js_round_matches_math_round():
    assert [js_round(x) for x in (207.5, 207.4, 0.4, 0.5, 2.5, -0.5)] == [208, 207, 0, 1, 3, 0]


def test_speech_to_text_duration_mode():
    assert extract_speech_to_text_usage('{"type":"duration","seconds":207.5}') == UsageCounts(
        208, 0
    )
    assert extract_speech_to_text_usage('{"seconds":207.4}') == UsageCounts(207, 0)
    assert extract_speech_to_text_usage('{"seconds":0.4}') == UsageCounts(1, 0)
    assert extract_speech_to_text_usage('{"type":"duration","seconds":0}') == UsageCounts(0, 0)
    assert extract_speech_to_text_usage('{"type":"duration","seconds":-2}') == UsageCounts(0, 0)
    assert extract_speech_to_text_usage('{"type":"duration","seconds":"12.5"}') == (
        UsageCounts(13, 0)
    )
    assert fee_for_content("speech-to-text", '{"seconds":10}', IN, OUT) == 10 * IN
    # full response body carrying usage
    assert extract_speech_to_text_usage({"text": "hi", "usage": {"seconds": 3}}) == UsageCounts(
        3, 0
    )


def test_speech_to_text_token_mode():
    usage = '{"type":"tokens","seconds":12,"input_tokens":"30abc","output_tokens":7}'
    assert extract_speech_to_text_usage(usage) == UsageCounts(30, 7)
    assert extract_speech_to_text_usage('{"input_tokens":5,"output_tokens":"x"}') == UsageCounts(
        5, 0
    )
    assert extract_speech_to_text_usage('{"input_tokens":-5,"output_tokens":"-1"}') == UsageCounts()
    for empty in ("", "{}", "not json", None):
        assert extract_speech_to_text_usage(empty) == UsageCounts()


def test_bad_fee_inputs_raise_one_typed_error():
    with pytest.raises(UnknownServiceTypeError, match="Unknown service type"):
        extractor_for("video")
    with pytest.raises(UnknownServiceTypeError):
        compute_fee("video", b"", b"{}", input_price=1, output_price=1)
    for price in (-1, True, 1.0, "5", None):
        with pytest.raises(UsageError, match="non-negative int"):
            compute_fee("chatbot", b"", b"{}", input_price=price, output_price=1)
    with pytest.raises(UsageError, match="fee content"):
        fee_for_content("chatbot", 42, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        compute_fee("text-to-image", b'{"n":"3"}', b"{}", input_price=0, output_price=1)
    assert issubclass(UnknownServiceTypeError, FeeInputError)
    assert issubclass(UsageError, FeeInputError)


# -- whole answers: what the gateway bills ------------------------------------------------------


def test_chatbot_without_usage_bills_the_words_go_counts():
    body = json.dumps(
        {"choices": [{"message": {"content": "one two\u3000three"}}, {"message": {"content": "x"}}]}
    ).encode()
    fee = compute_fee("chatbot", b"{}", body, input_price=IN, output_price=OUT)
    assert (fee.input_count, fee.output_count, fee.fee) == (0, 4, 4 * OUT)
    # Go's strings.Fields does not split on the information separators that Python's split() does
    separated = "a\x1cb c"
    assert word_count(separated) == 2 and len(separated.split()) == 3
    stream = (
        b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"content":"lo wor"}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"content":"ld"}}]}\n\ndata: [DONE]\n\n'
    )
    fee = compute_fee("chatbot", b"{}", stream, input_price=IN, output_price=OUT, streamed=True)
    assert fee.output_count == 2
    # a caller that needs the chat id too reads the stream once and hands the reading over
    summary = summarize_sse(stream)
    again = compute_fee(
        "chatbot",
        b"{}",
        b"",
        input_price=IN,
        output_price=OUT,
        streamed=True,
        stream_summary=summary,
    )
    assert again == fee


def test_malformed_choices_do_not_break_billing():
    """The old gateway parser raised on a non-object choice: the answer went unbilled."""
    for body in (
        b'{"choices":["x",null,7,{"message":"no"}]}',
        b'{"choices":{"0":{"message":{"content":"a b"}}}}',
    ):
        assert compute_fee("chatbot", b"{}", body, input_price=1, output_price=1).fee == 0
    stream = b'data: {"choices":["x",{"delta":"y"},{"delta":{"content":"a b"}}]}\n\n'
    assert compute_fee(
        "chatbot", b"{}", stream, input_price=1, output_price=1, streamed=True
    ).fee == (2)


def test_speech_without_usage_bills_twice_the_words_or_100():
    fee = compute_fee("speech-to-text", b"", b'{"text":"a b c"}', input_price=1, output_price=10)
    assert (fee.output_count, fee.fee) == (6, 60)
    assert compute_fee("speech-to-text", b"", b"{}", input_price=1, output_price=1).fee == 100
    plain = b"hello there world"  # response_format=text: the transcript itself
    assert compute_fee("speech-to-text", b"", plain, input_price=1, output_price=1).fee == 6
    for not_a_transcript in (b'["a b c"]', b'"a b"', b"12"):  # JSON, but no object: no text
        assert (
            compute_fee("speech-to-text", b"", not_a_transcript, input_price=1, output_price=1).fee
            == 100
        )
    stream = (
        b'data: {"type":"transcript.text.delta","delta":"hi the"}\n\n'
        b'data: {"type":"transcript.text.delta","delta":"re"}\n\n'
    )
    fee = compute_fee("speech-to-text", b"", stream, input_price=1, output_price=1, streamed=True)
    assert fee.output_count == 4
    stream += b'data: {"type":"transcript.text.done","usage":{"type":"duration","seconds":2}}\n\n'
    fee = compute_fee("speech-to-text", b"", stream, input_price=5, output_price=1, streamed=True)
    assert (fee.input_count, fee.output_count, fee.fee) == (2, 0, 10)


def test_images_from_the_checked_count_or_the_request():
    fee = compute_fee(
        "image-editing", b"ignored", b"", input_price=9, output_price=10, image_count=3
    )
    assert fee == Fee(0, 3, 0, 30)
    form = (
        b'--b\r\nContent-Disposition: form-data; name="n"\r\n\r\n2\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
    )
    fee = compute_fee(
        "image-editing", form[0], b"", input_price=0, output_price=10, content_type=form[1]
    )
    assert fee.fee == 20


@settings(max_examples=100, deadline=None)
@given(
    service_type=st.sampled_from(SERVICE_TYPES),
    body=st.binary(max_size=400) | st.text(max_size=200).map(str.encode),
    streamed=st.booleans(),
)
def test_a_backend_answer_never_makes_billing_fail(service_type, body, streamed):
    """Attack: whatever a broken or hostile backend sends, the gateway bills a non-negative fee
    (a raise here would release an answer without its fee)."""
    fee = compute_fee(
        service_type, b"{}", body, input_price=IN, output_price=OUT, streamed=streamed
    )
    assert fee.fee >= 0 and fee.input_count >= 0 and fee.output_count >= 0


_ANSWERS = st.one_of(
    st.binary(max_size=300),
    st.fixed_dictionaries(
        {
            "id": st.text(max_size=5),
            "text": st.text(max_size=20),
            "usage": st.fixed_dictionaries(
                {"prompt_tokens": st.integers(-5, 99), "completion_tokens": st.integers(-5, 99)}
            ),
            "choices": st.just([{"message": {"content": "two words"}}]),
        }
    ).map(lambda d: json.dumps(d).encode()),
)


@settings(max_examples=100, deadline=None)
@given(service_type=st.sampled_from(SERVICE_TYPES), body=_ANSWERS)
def test_an_answer_parsed_once_bills_the_same(service_type, body):
    """The gateway parses a whole answer once (:func:`parse_response_object`) for its fee and
    its completion id: the fee is the one of the body parsed by the rule itself."""
    parsed = parse_response_object(body)
    kw = {"input_price": IN, "output_price": OUT, "image_count": 1}
    assert compute_fee(service_type, b"{}", body, parsed_response=parsed, **kw) == compute_fee(
        service_type, b"{}", body, **kw
    )
    assert parsed is None or isinstance(parsed, dict)


def test_a_parsed_answer_is_not_parsed_again():
    parsed = {"usage": {"prompt_tokens": 2, "completion_tokens": 3}}
    fee = compute_fee(
        "chatbot", b"{}", b"not read", input_price=IN, output_price=OUT, parsed_response=parsed
    )
    assert (fee.input_count, fee.output_count) == (2, 3)
    assert parse_response_object(b'{"id": "a\xff"}') == {"id": "a\ufffd"}  # as Go decodes
    assert parse_response_object(b"[1]") is None and parse_response_object("[DONE]") is None


# -- the property: user side == gateway ----------------------------------------------------------

_COUNT = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=True, allow_infinity=True),
    st.from_regex(r"\A\s?[+-]?[0-9]{0,22}(\.[0-9]{0,3})?([eE][+-]?[0-9]{1,3})?[a-z]?\s?\Z"),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
)
_USAGE = st.dictionaries(
    st.sampled_from(
        [
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "input_tokens",
            "output_tokens",
            "seconds",
            "extra",
        ]
    ),
    _COUNT,
) | st.builds(
    lambda kind, seconds, rest: {"type": kind, "seconds": seconds, **rest},
    st.sampled_from(["duration", "tokens", "other"]),
    _COUNT,
    st.dictionaries(st.sampled_from(["input_tokens", "output_tokens"]), _COUNT),
)
_TEXT = st.lists(st.text(max_size=12), max_size=4)


def _body(service_type: str, usage: dict | None, texts: list[str], streamed: bool) -> bytes:
    if streamed:
        events = []
        for i, text in enumerate(texts):
            if service_type == "chatbot":
                events.append({"id": "c", "choices": [{"index": 0, "delta": {"content": text}}]})
            else:
                events.append({"type": "transcript.text.delta", "delta": text, "n": i})
        if usage is not None:
            events.append({"id": "c", "choices": [], "usage": usage})
        lines = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
        return b"".join(lines) + b"data: [DONE]\n\n"
    obj: dict = {"id": "c"}
    if service_type == "chatbot":
        obj["choices"] = [{"message": {"content": t}} for t in texts]
    else:
        obj["text"] = " ".join(texts)
    if usage is not None:
        obj["usage"] = usage
    return json.dumps(obj).encode()


def _serve_content(body: bytes, streamed: bool) -> AnswerBody:
    """What serve hands to its billing: a non-streamed answer's body; a stream decoded once, each
    event parsed once and observed (as ``proxy/streaming.py`` does)."""
    if not streamed:
        return AnswerBody(body)
    decoder, summary = SSEDecoder(), SSEStreamSummary()
    half = len(body) // 2
    for data in decoder.feed(body[:half]) + decoder.feed(body[half:]) + decoder.close():
        obj = parse_sse_json(data)
        if obj is not None:
            summary.observe(obj)
    return AnswerBody(stream=summary.close())


def _service(service_type: str, input_price: int, output_price: int) -> Service:
    return Service(
        provider="0x" + "ab" * 20,
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


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    service_type=st.sampled_from(["chatbot", "speech-to-text"]),
    usage=st.none() | _USAGE,
    texts=_TEXT,
    streamed=st.booleans(),
    prices=st.tuples(st.integers(0, 10**20), st.integers(0, 10**20)),
)
def test_user_estimate_equals_gateway_fee(service_type, usage, texts, streamed, prices):
    body = _body(service_type, usage, texts, streamed)
    gateway = compute_fee(
        service_type, b"{}", body, input_price=prices[0], output_price=prices[1], streamed=streamed
    )
    # the whole-answer rule is the same function on both sides
    assert (
        compute_fee(
            service_type,
            b"{}",
            body,
            input_price=prices[0],
            output_price=prices[1],
            streamed=streamed,
        )
        == gateway
    )
    # serve bills the answer by the same rule, with or without usage (B9's word-count fallback)
    service = _service(service_type, *prices)
    estimate = Billing(None, service.provider).fee_of(_serve_content(body, streamed), service)
    assert estimate == gateway.fee


@settings(max_examples=100, deadline=None)
@given(
    service_type=st.sampled_from(["text-to-image", "image-editing"]),
    n=st.none() | st.integers(1, 16),
    prices=st.tuples(st.integers(0, 10**20), st.integers(0, 10**20)),
)
def test_image_estimate_equals_gateway_fee(service_type, n, prices):
    request = json.dumps({"prompt": "p"} if n is None else {"prompt": "p", "n": n}).encode()
    checked = request_n(request, "application/json")  # what the gateway checks on arrival
    gateway = compute_fee(
        service_type,
        request,
        b"{}",
        input_price=prices[0],
        output_price=prices[1],
        image_count=checked,
    )
    assert gateway == compute_fee(
        service_type, request, b"{}", input_price=prices[0], output_price=prices[1]
    )
    assert fee_for_content(service_type, request, *prices) == gateway.fee == checked * prices[1]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    deltas=st.lists(st.tuples(st.integers(0, 2), st.text(max_size=8)), min_size=1, max_size=8),
    cut=st.integers(1, 40),
    prices=st.tuples(st.integers(0, 10**9), st.integers(1, 10**9)),
)
def test_serve_stream_fee_in_any_chunking_equals_gateway_fee(deltas, cut, prices):
    """Interleaved choices, no usage, the stream split anywhere as it reaches serve."""
    events = [{"id": "c", "choices": [{"index": i, "delta": {"content": t}}]} for i, t in deltas]
    body = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"
    decoder, summary = SSEDecoder(), SSEStreamSummary()
    chunks = [body[i : i + cut] for i in range(0, len(body), cut)]
    for data in [d for c in chunks for d in decoder.feed(c)] + decoder.close():
        if (obj := parse_sse_json(data)) is not None:
            summary.observe(obj)
    service = _service("chatbot", *prices)
    ours = Billing(None, service.provider).fee_of(AnswerBody(stream=summary.close()), service)
    gateway = compute_fee(
        "chatbot", b"{}", body, input_price=prices[0], output_price=prices[1], streamed=True
    )
    assert ours == gateway.fee


def test_serve_bills_an_answer_without_usage():
    """The attack: a backend that leaves ``usage`` out. serve recorded nothing while the gateway
    billed the word count, so serve's books fell below the provider's bill."""
    raw = b'{"id": "c", "choices": [{"index": 0, "message": {"content": "four words right here"}}]}'
    service = _service("chatbot", 3, 5)
    assert Billing(None, service.provider).fee_of(AnswerBody(raw), service) == 4 * 5
    srt = b"1\n00:00:00,000 --> 00:00:01,000\nplain srt transcript\n"  # response_format srt
    stt = _service("speech-to-text", 1000, 7)
    gateway = compute_fee("speech-to-text", b"", srt, input_price=1000, output_price=7)
    assert Billing(None, stt.provider).fee_of(AnswerBody(srt), stt) == gateway.fee > 0
