"""The fee of one request per service type: ONE rule for the gateway's bill and the user's estimate.

``fee = input_count × inputPrice + output_count × outputPrice``, ints in neuron, prices from the
on-chain Service struct (provider-gateway.md B9; user-broker.md §7.2 ``calculateFee``). The gateway
bills with :func:`compute_fee` (:mod:`broker.provider`); the user side estimates with the same
function on a whole response, or with :func:`fee_for_content` on the SDK's ``processResponse``
content (a ``usage`` object, or the image request). Both read counts by the rules below.

=============== ======================================= ====================== ==================
service type    counts come from                        input_count            output_count
=============== ======================================= ====================== ==================
chatbot         ``usage`` of the JSON body, or of the   ``prompt_tokens``      ``completion_tokens``
                last SSE event that has one
                no usage (B9 fallback)                  0                      words of the text
speech-to-text  ``usage``, duration mode                billable seconds       0
                ``usage``, token mode                   ``input_tokens``       ``output_tokens``
                no usage (B9 fallback)                  0                      2 × words, or 100
text-to-image,  the request's ``n`` (:mod:`broker.wire  0                      ``n``
image-editing   .n`` rule, default 1)
=============== ======================================= ====================== ==================

Edge cases, decided once for both sides (the reference's provider behaviour where it has one):

* **No usage** (chatbot, speech-to-text): the provider bills a word count (B9), so that is the rule;
  the SDK's estimate records nothing (it only runs ``calculateFee`` on content it has). Words are
  Go's ``strings.Fields`` (runs of non-Unicode-space, :func:`word_count`); chat text is the
  ``message.content`` of each choice (streams: ``delta.content`` per choice ``index``), choices
  joined as separate texts; a transcription's text is ``text`` of the JSON body, a non-JSON body
  (``response_format`` text/srt/vtt) itself, or a stream's ``delta`` texts. ``2 × 0`` words bills
  100 (B9: "or 100").
* **Speech-to-text duration** (open question D12): the deployed rule of SDK 0.9.0 / provider
  PR #523, ``max(round_half_up(seconds), 1) × inputPrice``, not the older
  ``ceil(seconds) × outputPrice``. Duration mode: ``type == "duration"``, or ``type != "tokens"``
  and ``seconds`` a JSON number ``> 0``; a numeric string ``seconds`` counts when ``type ==
  "duration"``.
* **Images**: ``n × outputPrice`` (B9, D11), not the SDK's ``n × inputPrice`` (a reference bug, the
  CLI itself calls ``outputPrice`` the per-image price). ``n`` follows :mod:`broker.wire.n`
  (the gateway and ``serve`` refuse other values before forwarding); a breaking ``n`` raises.
* **Counts** are read like JS ``Number()`` (chat) or ``parseInt`` (speech tokens): numbers and
  numeric strings; missing, ``null``, booleans, other types, NaN, ±infinity, negative values and
  values above int64 (the Go provider's field type) count 0. A non-integral count is floored: the
  SDK's ``BigInt()`` throws on it (a reference bug that leaves a billed answer unaccounted), the
  gateway has always truncated, and a fee rule that can fail on a backend's answer would leave
  a served answer unbilled.
* **Unknown service type**: raises, on both sides (SDK ``Unknown service type``; the gateway
  refuses such a setting at start).

Inputs that cannot give a fee raise :class:`~broker.wire.errors.FeeInputError` (an
:class:`~broker.wire.errors.UnknownServiceTypeError` or :class:`~broker.wire.errors.UsageError`):
an unknown service type, a price that is not a non-negative int, content of a wrong Python type, an
image request whose ``n`` breaks the rule. A backend's answer never raises. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from broker.wire.errors import UnknownServiceTypeError, UsageError
from broker.wire.json_body import InvalidJSONBodyError
from broker.wire.n import InvalidNError, parse_n, request_n
from broker.wire.sse import SSESummary, parse_sse_json, summarize_sse

__all__ = [
    "IMAGE_SERVICE_TYPES",
    "MAX_COUNT",
    "SERVICE_TYPES",
    "Fee",
    "UsageCounts",
    "calculate_fee",
    "chatbot_counts",
    "check_service_type",
    "compute_fee",
    "extract_chatbot_usage",
    "extract_image_editing_usage",
    "extract_speech_to_text_usage",
    "extract_text_to_image_usage",
    "extractor_for",
    "fee_for_content",
    "image_counts",
    "js_round",
    "number_count",
    "parse_int_count",
    "parse_response_object",
    "response_counts",
    "speech_to_text_counts",
    "word_count",
]

#: The on-chain ``serviceType`` values that have a fee rule.
SERVICE_TYPES = ("chatbot", "text-to-image", "image-editing", "speech-to-text")
#: Service types billed per image (``n × outputPrice``).
IMAGE_SERVICE_TYPES = ("text-to-image", "image-editing")
#: The largest count read from a usage object (Go ``int64``); larger values count 0.
MAX_COUNT = 2**63 - 1

_NUMERIC = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_PARSE_INT = re.compile(r"\s*([+-]?\d+)")
# Go's unicode.IsSpace (strings.Fields): Latin-1 spaces and the White_Space property
_WORD = re.compile(r"[^\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
_SPEECH_FALLBACK_WORDS = 100

Content = bytes | bytearray | str | Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class UsageCounts:
    """Billable counts of one response (tokens, images or seconds).

    Attributes:
        input_count: units billed at ``inputPrice``. output_count: units billed at ``outputPrice``.
    """

    input_count: int = 0
    output_count: int = 0


@dataclass(frozen=True, slots=True)
class Fee:
    """Counts and fees of one request (what the gateway records per request, B9); fees in neuron.

    Attributes:
        input_count, output_count: the billed counts.
        input_fee: ``input_count × inputPrice``. output_fee: ``output_count × outputPrice``.
    """

    input_count: int
    output_count: int
    input_fee: int
    output_fee: int

    @property
    def fee(self) -> int:
        """``input_fee + output_fee`` (neuron)."""
        return self.input_fee + self.output_fee

    @classmethod
    def of(cls, counts: UsageCounts, input_price: int, output_price: int) -> Fee:
        """The fee of ``counts`` at these prices (neuron per unit).

        Raises:
            UsageError: a price is not a non-negative int.
        """
        input_price = _price(input_price, "input_price")
        output_price = _price(output_price, "output_price")
        return cls(
            counts.input_count,
            counts.output_count,
            counts.input_count * input_price,
            counts.output_count * output_price,
        )


def _price(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{name} must be a non-negative int in neuron, got {type(value).__name__}")
    return value


def check_service_type(service_type: Any) -> str:
    """``service_type`` when it is one of :data:`SERVICE_TYPES`.

    Raises:
        UnknownServiceTypeError: any other value (SDK: ``Unknown service type``).
    """
    if service_type not in SERVICE_TYPES:
        raise UnknownServiceTypeError(f"Unknown service type: {service_type!r}")
    return service_type


def calculate_fee(counts: UsageCounts, input_price: int, output_price: int) -> int:
    """``input_count × input_price + output_count × output_price`` in neuron (SDK ``calculateFee``).

    Args:
        counts: the billable counts.
        input_price: neuron per input unit (on-chain ``Service.inputPrice``).
        output_price: neuron per output unit (on-chain ``Service.outputPrice``).

    Raises:
        UsageError: a price is not a non-negative int.
    """
    return Fee.of(counts, input_price, output_price).fee


def js_round(value: float | Decimal) -> int:
    """JavaScript ``Math.round`` of a finite number: halves round up (``floor(x + 0.5)``);
    207.5 → 208, -0.5 → 0."""
    return math.floor(Decimal(str(value)) + Decimal("0.5"))


def _bounded(value: int) -> int:
    return value if 0 <= value <= MAX_COUNT else 0


def _decimal(text: str) -> Decimal | None:
    """A JS-style numeric string (decimal, optional exponent) within int64, else ``None``."""
    text = text.strip()
    if not _NUMERIC.fullmatch(text):
        return None
    dec = Decimal(text)
    if dec.adjusted() > 18:  # beyond int64 (and never a huge int conversion)
        return None
    return dec


def number_count(value: Any) -> int:
    """A count read like JS ``Number(x)``: an int, a finite float (floored) or a numeric string
    (floored); anything else, negative or above :data:`MAX_COUNT` → 0."""
    if value is None or isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return _bounded(value)
    if isinstance(value, float):
        return _bounded(math.floor(value)) if math.isfinite(value) and value < 2**64 else 0
    if isinstance(value, str):
        dec = _decimal(value)
        return 0 if dec is None else _bounded(math.floor(dec))
    return 0


def parse_int_count(value: Any) -> int:
    """A count read like JS ``parseInt``: strings by their leading integer (``"12abc"`` → 12),
    numbers floored; anything else, ≤ 0 or above :data:`MAX_COUNT` → 0."""
    if isinstance(value, str):
        match = _PARSE_INT.match(value)
        if match is None or len(match.group(1)) > 20:
            return 0
        return _bounded(int(match.group(1)))
    return number_count(value)


def word_count(text: str) -> int:
    """Whitespace-separated words, as Go's ``strings.Fields`` counts them (B9 fallback)."""
    return len(_WORD.findall(text)) if text else 0


def chatbot_counts(usage: Mapping[str, Any] | None, text: str = "") -> UsageCounts:
    """Chatbot counts: ``prompt_tokens`` → input, ``completion_tokens`` → output; without usage
    (``None``) the words of the generated ``text`` → output (B9 fallback)."""
    if usage is None:
        return UsageCounts(0, word_count(text))
    return UsageCounts(
        number_count(usage.get("prompt_tokens")), number_count(usage.get("completion_tokens"))
    )


def image_counts(n: int) -> UsageCounts:
    """Image counts: ``n`` images (already checked by :mod:`broker.wire.n`) → output, billed
    ``n × outputPrice`` (B9, D11); input 0 (so ``inputPrice`` never matters)."""
    return UsageCounts(0, n)


def _seconds(value: Any) -> Decimal | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _decimal(value)
    return None


def speech_to_text_counts(usage: Mapping[str, Any] | None, text: str = "") -> UsageCounts:
    """Speech-to-text counts (SDK 0.9.0 / provider PR #523; see the module notes).

    Duration mode (``type == "duration"``, or ``type != "tokens"`` and ``seconds`` a JSON number
    > 0): input = billable seconds = 0 if ``seconds <= 0`` (or unreadable) else
    ``max(js_round(seconds), 1)``; output 0 (``inputPrice`` is then a per-second price). Token
    mode: ``input_tokens`` / ``output_tokens`` by :func:`parse_int_count`. Without usage
    (``None``): output = ``2 × words`` of ``text``, or 100 when that is 0 (B9 fallback).
    """
    if usage is None:
        return UsageCounts(0, 2 * word_count(text) or _SPEECH_FALLBACK_WORDS)
    usage_type = usage.get("type")
    seconds = usage.get("seconds")
    is_number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    if usage_type == "duration" or (usage_type != "tokens" and is_number and seconds > 0):
        value = _seconds(seconds)
        if value is None or value <= 0:
            return UsageCounts()
        return UsageCounts(_bounded(max(js_round(value), 1)), 0)
    return UsageCounts(
        parse_int_count(usage.get("input_tokens")), parse_int_count(usage.get("output_tokens"))
    )


# -- whole responses (the gateway's billing; the user side on a whole answer) ----------------------


def parse_response_object(body: bytes | bytearray | str) -> dict[str, Any] | None:
    """The JSON object of a whole (non-streamed) answer as the fee rules read it (invalid UTF-8
    replaced, as Go's decoder does), else ``None``. A caller that also needs another field of the
    answer (the gateway: its completion ``id``) parses it once with this and passes the object to
    :func:`response_counts` / :func:`compute_fee` as ``parsed_response``.

    Args:
        body: the answer, decoded from any content coding.

    Returns:
        The object, or ``None`` when the body is not a JSON object.
    """
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", "replace")
    return parse_sse_json(body)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _usage(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    usage = obj.get("usage") if obj is not None else None
    return usage if isinstance(usage, dict) else None


def _message_text(obj: Mapping[str, Any] | None) -> str:
    choices = obj.get("choices") if obj is not None else None
    if not isinstance(choices, list):
        return ""
    texts = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
    return "\n".join(texts)


def response_counts(
    service_type: str,
    response_body: bytes | str,
    *,
    streamed: bool = False,
    image_count: int = 1,
    stream_summary: SSESummary | None = None,
    parsed_response: Mapping[str, Any] | None = None,
) -> UsageCounts:
    """The billable counts of one successful answer (B9).

    Args:
        service_type: one of :data:`SERVICE_TYPES`.
        response_body: the backend's body, decoded from any ``Content-Encoding`` (an SSE stream
            when ``streamed``).
        streamed: the body is ``text/event-stream``.
        image_count: ``n`` of an image request (already checked by :mod:`broker.wire.n`).
        stream_summary: the stream already read by :func:`broker.wire.sse.summarize_sse` (a
            caller that also needs its chat id reads it once); ``response_body`` is then not read.
        parsed_response: a non-streamed answer already parsed by :func:`parse_response_object`
            (the same rule; ``None``: parse ``response_body`` here).

    Returns:
        :class:`UsageCounts`.

    Raises:
        UnknownServiceTypeError: ``service_type`` has no rule.
        UsageError: ``response_body`` is neither bytes nor str.
    """
    check_service_type(service_type)
    if service_type in IMAGE_SERVICE_TYPES:
        return image_counts(image_count)
    if not isinstance(response_body, bytes | bytearray | str):
        raise UsageError(f"response body must be bytes or str, got {type(response_body).__name__}")
    if streamed:
        summary = summarize_sse(response_body) if stream_summary is None else stream_summary
        usage, text = summary.usage, summary.text
    else:
        obj = parsed_response
        if obj is None:
            obj = parse_response_object(response_body)
        usage = _usage(obj)
        if usage is not None:  # the text is only read without usage (the word-count fallback)
            text = ""
        elif service_type == "chatbot":
            text = _message_text(obj)
        elif obj is not None:
            text = obj.get("text") if isinstance(obj.get("text"), str) else ""
        else:
            body = response_body
            if isinstance(body, bytes | bytearray):
                body = bytes(body).decode("utf-8", "replace")
            text = "" if _is_json(body) else body  # a transcript in text / srt / vtt
    if service_type == "chatbot":
        return chatbot_counts(usage, text)
    return speech_to_text_counts(usage, text)


def _request_n(request_body: bytes, content_type: str | None) -> int:
    try:
        return request_n(request_body, content_type or "application/json")
    except (InvalidNError, InvalidJSONBodyError) as exc:
        raise UsageError(f"cannot bill the image request: {exc}") from None


def compute_fee(
    service_type: str,
    request_body: bytes,
    response_body: bytes | str,
    *,
    input_price: int,
    output_price: int,
    streamed: bool = False,
    image_count: int | None = None,
    content_type: str | None = None,
    stream_summary: SSESummary | None = None,
    parsed_response: Mapping[str, Any] | None = None,
) -> Fee:
    """Bill one successful request (provider-gateway.md B9): the gateway's fee, and the user's.

    Args:
        service_type: ``chatbot``, ``text-to-image``, ``image-editing`` or ``speech-to-text``.
        request_body: the body as forwarded (for images: JSON or a multipart form with ``n``).
        response_body: the backend body, decoded from any content coding (an SSE stream when
            ``streamed``).
        input_price, output_price: on-chain prices in neuron per unit.
        streamed: the answer is ``text/event-stream``.
        image_count: images of an image request, as checked when it arrived (default: ``n`` of
            ``request_body`` by :func:`broker.wire.n.request_n`).
        content_type: the request's ``Content-Type`` (for ``n`` of a multipart image edit).
        stream_summary: see :func:`response_counts` (parse a stream once for fee and chat id).
        parsed_response: see :func:`response_counts` (parse an answer once for fee and chat id).

    Returns:
        :class:`Fee`.

    Raises:
        UnknownServiceTypeError: no rule for ``service_type``.
        UsageError: a price is not a non-negative int, or the request's ``n`` breaks the rule.
    """
    check_service_type(service_type)
    if service_type in IMAGE_SERVICE_TYPES and image_count is None:
        image_count = _request_n(request_body, content_type)
    counts = response_counts(
        service_type,
        response_body,
        streamed=streamed,
        image_count=image_count or 0,
        stream_summary=stream_summary,
        parsed_response=parsed_response,
    )
    return Fee.of(counts, input_price, output_price)


# -- the SDK's processResponse(content) estimate ---------------------------------------------------


def _load(content: Content) -> dict[str, Any] | None:
    if content is None:
        return None
    if isinstance(content, Mapping):
        return dict(content)
    if not isinstance(content, bytes | bytearray | str):
        raise UsageError(
            f"fee content must be bytes, str, a mapping or None, got {type(content).__name__}"
        )
    return parse_response_object(content)


def _usage_of(obj: dict[str, Any] | None) -> dict[str, Any]:
    """A usage object, or a whole response body that carries one under ``usage``."""
    if obj is None:
        return {}
    inner = obj.get("usage")
    return inner if isinstance(inner, dict) else obj


def extract_chatbot_usage(content: Content) -> UsageCounts:
    """Chatbot counts of SDK content: the OpenAI ``usage`` JSON, or a body with ``usage``
    (:func:`chatbot_counts`). Empty or invalid content gives 0/0.

    Raises:
        UsageError: ``content`` of a wrong Python type.
    """
    return chatbot_counts(_usage_of(_load(content)))


def extract_speech_to_text_usage(content: Content) -> UsageCounts:
    """Speech-to-text counts of SDK content, the ``usage`` JSON (:func:`speech_to_text_counts`).
    Empty or invalid content, or ``{}``, gives 0/0.

    Raises:
        UsageError: ``content`` of a wrong Python type.
    """
    return speech_to_text_counts(_usage_of(_load(content)))


def extract_text_to_image_usage(content: Content) -> UsageCounts:
    """Image counts of SDK content, the **request** JSON: ``n`` (default 1) as the output count.

    Raises:
        UsageError: ``n`` breaks :mod:`broker.wire.n` (the gateway refuses such a request), the
            content is not a JSON object, or of a wrong Python type.
    """
    obj = _load(content)
    if obj is None:
        raise UsageError("cannot bill the image request: not a JSON object")
    try:
        return image_counts(parse_n(obj.get("n")))
    except InvalidNError as exc:
        raise UsageError(f"cannot bill the image request: {exc}") from None


def extract_image_editing_usage(content: Content) -> UsageCounts:
    """Image-editing counts: the same rule as :func:`extract_text_to_image_usage`."""
    return extract_text_to_image_usage(content)


_EXTRACTORS: dict[str, Callable[[Content], UsageCounts]] = {
    "chatbot": extract_chatbot_usage,
    "text-to-image": extract_text_to_image_usage,
    "image-editing": extract_image_editing_usage,
    "speech-to-text": extract_speech_to_text_usage,
}


def extractor_for(service_type: str) -> Callable[[Content], UsageCounts]:
    """The SDK-content extractor for an on-chain ``serviceType``.

    Raises:
        UnknownServiceTypeError: not one of :data:`SERVICE_TYPES`.
    """
    return _EXTRACTORS[check_service_type(service_type)]


def fee_for_content(
    service_type: str, content: Content, input_price: int, output_price: int
) -> int:
    """Fee in neuron of SDK ``processResponse`` content (user-broker.md 7.1–7.2): a ``usage``
    object (chatbot, speech-to-text) or the image request; :func:`extractor_for` +
    :func:`calculate_fee`. Equal to :func:`compute_fee` of the answer that carried this usage.

    Raises:
        UnknownServiceTypeError, UsageError: see those functions.
    """
    return calculate_fee(extractor_for(service_type)(content), input_price, output_price)
