"""Client-side fee estimates per service type (user-broker.md §7.2; provider-gateway.md B9).

``fee = input_count × input_price + output_count × output_price``, integers in neuron, prices from the
on-chain Service struct. Extractors read counts from:

=============== ============================================== ======================= ==============
service type    content                                        input_count             output_count
=============== ============================================== ======================= ==============
chatbot         ``usage`` JSON (or a whole completion body)    ``prompt_tokens``       ``completion_tokens``
speech-to-text  ``usage`` JSON, duration or token mode [0.9]   seconds / input_tokens  0 / output_tokens
text-to-image   the **request** JSON (``n``, default 1)        0                       ``n``
image-editing   JSON with ``n`` (default 1)                    0                       ``n``
=============== ============================================== ======================= ==============

Differences from SDK 0.9.0 (local estimate only, nothing on the wire):

* images count as **output** (``n × outputPrice``), as the provider bills (B9) and the CLI labels it;
  the SDK's ``n × inputPrice`` is the mismatch listed in §13 item 3;
* negative counts count as 0; a non-integral count raises :class:`UsageError` (the SDK's ``BigInt``
  throws a ``RangeError``).

Streams: :class:`UsageStreamCollector` keeps the last ``usage`` object seen in SSE chunks (the final
chunk carries it when ``stream_options.include_usage`` is set).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from broker.inference.errors import UnknownServiceTypeError, UsageError
from broker.inference.sse import SSEDecoder, parse_sse_json

__all__ = [
    "SERVICE_TYPES",
    "UsageCounts",
    "UsageStreamCollector",
    "calculate_fee",
    "extract_chatbot_usage",
    "extract_image_editing_usage",
    "extract_speech_to_text_usage",
    "extract_text_to_image_usage",
    "extractor_for",
    "fee_for_content",
    "js_round",
]

SERVICE_TYPES = ("chatbot", "text-to-image", "image-editing", "speech-to-text")

_PARSE_INT = re.compile(r"^\s*([+-]?\d+)")


@dataclass(frozen=True, slots=True)
class UsageCounts:
    """Billable counts of one response (tokens, images or seconds)."""

    input_count: int = 0
    output_count: int = 0


def calculate_fee(counts: UsageCounts, input_price: int, output_price: int) -> int:
    """``input_count × input_price + output_count × output_price`` in neuron (SDK ``calculateFee``).

    Args:
        counts: the billable counts.
        input_price: neuron per input unit (on-chain ``Service.inputPrice``).
        output_price: neuron per output unit (on-chain ``Service.outputPrice``).
    """
    return counts.input_count * int(input_price) + counts.output_count * int(output_price)


def js_round(value: float | Decimal) -> int:
    """JavaScript ``Math.round``: halves round up (``floor(x + 0.5)``); 207.5 → 208, -0.5 → 0."""
    return math.floor(Decimal(str(value)) + Decimal("0.5"))


def _load(content: bytes | str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if content is None:
        return None
    if isinstance(content, Mapping):
        return dict(content)
    if isinstance(content, bytes | bytearray):
        try:
            content = content.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not content.strip():
        return None
    try:
        obj = json.loads(content)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _usage_of(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """A usage object, or a whole response body that carries one under ``usage``."""
    if obj is None:
        return None
    inner = obj.get("usage")
    if isinstance(inner, dict):
        return inner
    return obj


def _integral(value: Decimal, field: str) -> int:
    if value != value.to_integral_value():
        raise UsageError(f"usage field {field} = {value} is not an integer; cannot bill it")
    return max(int(value), 0)


def _number_count(value: Any, field: str) -> int:
    """JS ``Number(x)`` semantics for numbers and numeric strings; anything else counts 0."""
    if value is None or isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0
        return _integral(Decimal(str(value)), field)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0
        try:
            dec = Decimal(text)
        except InvalidOperation:
            return 0
        if not dec.is_finite():
            return 0
        return _integral(dec, field)
    return 0


def _parse_int_count(value: Any, field: str) -> int:
    """Speech-to-text token counts: strings via JS ``parseInt``; ≤ 0, NaN or missing → 0."""
    if value is None or isinstance(value, bool):
        return 0
    if isinstance(value, str):
        match = _PARSE_INT.match(value)
        return max(int(match.group(1)), 0) if match else 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float):
        if not math.isfinite(value) or value <= 0:
            return 0
        return _integral(Decimal(str(value)), field)
    return 0


def extract_chatbot_usage(content: bytes | str | Mapping[str, Any] | None) -> UsageCounts:
    """Chatbot counts: ``prompt_tokens`` → input, ``completion_tokens`` → output.

    Args:
        content: the OpenAI ``usage`` JSON, or a whole completion body with ``usage``.

    Raises:
        UsageError: a count is a non-integral number.
    """
    usage = _usage_of(_load(content))
    if usage is None:
        return UsageCounts()
    return UsageCounts(
        input_count=_number_count(usage.get("prompt_tokens"), "prompt_tokens"),
        output_count=_number_count(usage.get("completion_tokens"), "completion_tokens"),
    )


def extract_speech_to_text_usage(content: bytes | str | Mapping[str, Any] | None) -> UsageCounts:
    """Speech-to-text counts, SDK 0.9.0 rules (user-broker.md 7.2).

    Duration mode (``type == "duration"``, or ``type != "tokens"`` and ``seconds`` a number > 0):
    input = billable seconds = 0 if ``seconds <= 0`` else ``max(js_round(seconds), 1)``; output 0
    (``inputPrice`` is then a per-second price). Token mode: input = ``input_tokens``, output =
    ``output_tokens`` (strings read like JS ``parseInt``; ≤ 0, NaN, missing → 0). Empty or invalid
    content, or ``{}``, gives 0/0.

    Raises:
        UsageError: a token count is a non-integral number.
    """
    usage = _usage_of(_load(content))
    if not usage:
        return UsageCounts()
    usage_type = usage.get("type")
    seconds = usage.get("seconds")
    seconds_is_number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    if usage_type == "duration" or (usage_type != "tokens" and seconds_is_number and seconds > 0):
        value: float | None = None
        if seconds_is_number:
            value = float(seconds)
        elif isinstance(seconds, str):
            try:
                value = float(seconds)
            except ValueError:
                value = None
        if value is None or not math.isfinite(value) or value <= 0:
            return UsageCounts()
        return UsageCounts(input_count=max(js_round(value), 1), output_count=0)
    return UsageCounts(
        input_count=_parse_int_count(usage.get("input_tokens"), "input_tokens"),
        output_count=_parse_int_count(usage.get("output_tokens"), "output_tokens"),
    )


def _image_count(content: bytes | str | Mapping[str, Any] | None) -> int:
    """``n`` as a non-negative integer (number or numeric string); anything else → 1."""
    obj = _load(content)
    n = None if obj is None else obj.get("n")
    if n is None or isinstance(n, bool):
        return 1
    if isinstance(n, int):
        return n if n >= 0 else 1
    try:
        dec = Decimal(n.strip()) if isinstance(n, str) else Decimal(str(n))
    except (InvalidOperation, TypeError, ValueError):
        return 1
    if not dec.is_finite() or dec < 0 or dec != dec.to_integral_value():
        return 1
    return int(dec)


def extract_text_to_image_usage(content: bytes | str | Mapping[str, Any] | None) -> UsageCounts:
    """Text-to-image counts: ``n`` images from the **request** JSON (number or numeric string;
    default 1, also on invalid JSON) as the output count."""
    return UsageCounts(input_count=0, output_count=_image_count(content))


def extract_image_editing_usage(content: bytes | str | Mapping[str, Any] | None) -> UsageCounts:
    """Image-editing counts: same rule as :func:`extract_text_to_image_usage`."""
    return UsageCounts(input_count=0, output_count=_image_count(content))


_EXTRACTORS: dict[str, Callable[[Any], UsageCounts]] = {
    "chatbot": extract_chatbot_usage,
    "text-to-image": extract_text_to_image_usage,
    "image-editing": extract_image_editing_usage,
    "speech-to-text": extract_speech_to_text_usage,
}


def extractor_for(service_type: str) -> Callable[[Any], UsageCounts]:
    """The extractor for an on-chain ``serviceType``.

    Raises:
        UnknownServiceTypeError: not one of :data:`SERVICE_TYPES` (SDK: ``Unknown service type``).
    """
    try:
        return _EXTRACTORS[service_type]
    except KeyError:
        raise UnknownServiceTypeError(f"Unknown service type: {service_type!r}") from None


def fee_for_content(
    service_type: str,
    content: bytes | str | Mapping[str, Any] | None,
    input_price: int,
    output_price: int,
) -> int:
    """Fee in neuron of one response: :func:`extractor_for` + :func:`calculate_fee`.

    Raises:
        UnknownServiceTypeError, UsageError: see those functions.
    """
    return calculate_fee(extractor_for(service_type)(content), input_price, output_price)


class UsageStreamCollector:
    """Collect the ``usage`` object of an SSE stream (the last chunk that carries one wins).

    Feed raw chunks as they arrive (split anywhere); afterwards ``usage`` is the dict or ``None``.
    """

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self.usage: dict[str, Any] | None = None

    def feed(self, chunk: bytes | str) -> None:
        """Consume one chunk of the stream."""
        self._handle(self._decoder.feed(chunk))

    def close(self) -> dict[str, Any] | None:
        """End of stream; returns :attr:`usage`."""
        self._handle(self._decoder.close())
        return self.usage

    def feed_all(self, chunks: Iterable[bytes | str]) -> dict[str, Any] | None:
        """Feed every chunk, close, and return :attr:`usage`."""
        for chunk in chunks:
            self.feed(chunk)
        return self.close()

    def observe(self, obj: dict[str, Any]) -> None:
        """Consume one event already decoded as a JSON object (for a caller that parses each
        event once for several purposes)."""
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]

    def _handle(self, events: list[str]) -> None:
        for data in events:
            obj = parse_sse_json(data)
            if obj is not None:
                self.observe(obj)
