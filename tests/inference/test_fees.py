"""Fee extractors and formula (user-broker.md §7.2, test-vectors.md §5)."""

from __future__ import annotations

import pytest

from broker.inference.errors import UnknownServiceTypeError, UsageError
from broker.inference.fees import (
    UsageCounts,
    UsageStreamCollector,
    calculate_fee,
    extract_chatbot_usage,
    extract_image_editing_usage,
    extract_speech_to_text_usage,
    extract_text_to_image_usage,
    extractor_for,
    fee_for_content,
    js_round,
)

IN, OUT = 3 * 10**9, 7 * 10**9  # neuron per unit


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
    with pytest.raises(UsageError):
        extract_chatbot_usage({"prompt_tokens": 1.5})
    assert fee_for_content("chatbot", '{"prompt_tokens":10,"completion_tokens":20}', IN, OUT) == (
        10 * IN + 20 * OUT
    )


def test_fee_is_exact_integer_for_huge_values():
    counts = UsageCounts(10**12, 10**12)
    assert calculate_fee(counts, 10**18, 3 * 10**18) == 4 * 10**30


def test_images_count_n_as_output_default_one():
    assert extract_text_to_image_usage('{"prompt":"cat","n":3}') == UsageCounts(0, 3)
    assert extract_text_to_image_usage('{"prompt":"cat","n":"2"}') == UsageCounts(0, 2)
    assert extract_text_to_image_usage('{"prompt":"cat"}') == UsageCounts(0, 1)
    assert extract_text_to_image_usage("garbage") == UsageCounts(0, 1)
    assert extract_text_to_image_usage('{"n":"many"}') == UsageCounts(0, 1)
    assert extract_image_editing_usage({"n": 4}) == UsageCounts(0, 4)
    assert fee_for_content("text-to-image", '{"n":2}', IN, OUT) == 2 * OUT


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
    with pytest.raises(UsageError):
        extract_speech_to_text_usage('{"type":"tokens","input_tokens":2.5}')


def test_unknown_service_type():
    with pytest.raises(UnknownServiceTypeError, match="Unknown service type"):
        extractor_for("video")


def test_usage_from_sse_stream_last_chunk():
    stream = (
        b'data: {"id":"c","choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
        b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":22}}\n\n'
        b"data: [DONE]\n\n"
    )
    chunks = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    usage = UsageStreamCollector().feed_all(chunks)
    assert usage == {"prompt_tokens": 11, "completion_tokens": 22}
    assert fee_for_content("chatbot", usage, IN, OUT) == 11 * IN + 22 * OUT
    assert UsageStreamCollector().feed_all([b"data: [DONE]\n\n"]) is None
