"""The dstack event log: parsing, runtime-event digests (V1/V2), RTMR replay, and the system facts
recorded before ``system-ready``.

Source: attestation.md §1.4 (format), §1.5 (replay: SHA-384 extend from 48 zero bytes; RTMR3 digests
are recomputed from name and payload, never trusted), §5.1 step 9 (facts are taken from the first
event of a name *before* ``system-ready``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from broker.attestation.errors import ReportFormatError
from broker.attestation.report_formats import is_valid_unicode, json_document

__all__ = [
    "RUNTIME_EVENT_TYPE",
    "Event",
    "ReplayResult",
    "app_events",
    "parse_event_log",
    "replay_event_log",
    "runtime_event_digest",
    "system_event",
]

RUNTIME_EVENT_TYPE = 0x08000001
"""``event_type`` of a dstack runtime event (134217729)."""


@dataclass(frozen=True)
class Event:
    """One event-log entry.

    ``imr`` 0–3; ``digest`` the declared SHA-384 (may be empty); ``payload`` raw bytes;
    ``version`` 1 or 2 (runtime events); ``preimage`` the V2 hashed bytes if given.
    """

    imr: int
    event_type: int
    digest: bytes
    event: str
    payload: bytes
    version: int = 1
    preimage: bytes | None = None

    @property
    def is_runtime(self) -> bool:
        return self.event_type == RUNTIME_EVENT_TYPE


@dataclass
class ReplayResult:
    """Replay outcome: ``rtmrs`` the four replayed registers (48 bytes each); ``errors`` one line
    per inconsistent event (declared digest or V2 preimage that does not match);
    ``boot_digests_missing`` True when a boot event (RTMR0–2) had no digest, so RTMR0–2 cannot be
    replayed."""

    rtmrs: list[bytes]
    errors: list[str] = field(default_factory=list)
    boot_digests_missing: bool = False


def _hex(value: Any, what: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise ReportFormatError(f"event log: {what} must be a hex string")
    text = value[2:] if value.startswith(("0x", "0X")) else value
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise ReportFormatError(f"event log: {what} is not hex") from exc


def parse_event_log(value: str | bytes | list[Any]) -> list[Event]:
    """Parse a dstack event log given as a JSON array or its JSON text (as in ``/v1/quote``).

    Returns:
        the events, in log order.
    Raises:
        ReportFormatError: not a JSON array of objects, a field has the wrong type, or an event
            name is not valid Unicode.
    """
    value = json_document(value, "event_log", list)
    events = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ReportFormatError(f"event_log[{i}] is not an object")
        imr, etype = item.get("imr"), item.get("event_type", 0)
        if not isinstance(imr, int) or isinstance(imr, bool) or not 0 <= imr <= 3:
            raise ReportFormatError(f"event_log[{i}].imr must be an integer 0..3")
        if not isinstance(etype, int) or isinstance(etype, bool):
            raise ReportFormatError(f"event_log[{i}].event_type must be an integer")
        name = item.get("event") or ""
        if not isinstance(name, str):
            raise ReportFormatError(f"event_log[{i}].event must be a string")
        if not is_valid_unicode(name):
            raise ReportFormatError(f"event_log[{i}].event is not valid Unicode (lone surrogate)")
        version = item.get("version", 1)
        if version not in (1, 2):
            raise ReportFormatError(f"event_log[{i}].version {version!r} is not 1 or 2")
        preimage = item.get("preimage")
        events.append(
            Event(
                imr=imr,
                event_type=etype,
                digest=_hex(item.get("digest"), f"event_log[{i}].digest"),
                event=name,
                payload=_hex(item.get("event_payload"), f"event_log[{i}].event_payload"),
                version=version,
                preimage=None if preimage is None else _hex(preimage, f"event_log[{i}].preimage"),
            )
        )
    return events


def _v2_preimage(event: Event) -> bytes:
    # JCS canonical form of an object with three fixed keys: keys sorted, no whitespace.
    doc = {"name": event.event, "payload": event.payload.hex(), "type": RUNTIME_EVENT_TYPE}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def runtime_event_digest(event: Event) -> bytes:
    """Recompute a runtime event's SHA-384 digest from its name and payload (§1.5).

    V1: ``SHA384(le32(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload)``; V2: ``SHA384(JCS({"name",
    "payload" (hex), "type"}))``.
    """
    if event.version == 2:
        return hashlib.sha384(_v2_preimage(event)).digest()
    data = RUNTIME_EVENT_TYPE.to_bytes(4, "little") + b":" + event.event.encode() + b":"
    return hashlib.sha384(data + event.payload).digest()


def replay_event_log(events: list[Event]) -> ReplayResult:
    """Replay RTMR0–3: ``mr = SHA384(mr ‖ digest)`` per event of that register, from 48 zero bytes.

    RTMR0–2 use the declared digests; runtime events (RTMR3) use the recomputed digest, and a
    non-empty declared digest or V2 preimage that disagrees is reported in ``errors``.
    """
    rtmrs = [bytes(48) for _ in range(4)]
    result = ReplayResult(rtmrs=rtmrs)
    for i, ev in enumerate(events):
        if ev.is_runtime:
            digest = runtime_event_digest(ev)
            if ev.digest and ev.digest != digest:
                result.errors.append(f"event {i} ({ev.event}): declared digest does not match")
            if ev.version == 2 and ev.preimage is not None and ev.preimage != _v2_preimage(ev):
                result.errors.append(f"event {i} ({ev.event}): V2 preimage does not match")
            if ev.imr != 3:
                result.errors.append(f"event {i} ({ev.event}): runtime event outside RTMR3")
        else:
            digest = ev.digest
            if len(digest) != 48:
                result.boot_digests_missing = True
                continue
        rtmrs[ev.imr] = hashlib.sha384(rtmrs[ev.imr] + digest).digest()
    return result


def _pre_ready(events: list[Event]) -> list[Event]:
    out = []
    for ev in events:
        if ev.is_runtime and ev.imr == 3:
            if ev.event == "system-ready":
                break
            out.append(ev)
    return out


def system_event(events: list[Event], name: str) -> Event | None:
    """The first RTMR3 runtime event called ``name`` before ``system-ready`` (dstack
    ``find_event``), or ``None``. Events after ``system-ready`` can be written by any container and
    are ignored."""
    for ev in _pre_ready(events):
        if ev.event == name:
            return ev
    return None


def app_events(events: list[Event]) -> list[Event]:
    """The RTMR3 runtime events after ``system-ready`` (application events, e.g.
    ``zg-image-update``)."""
    seen_ready = False
    out = []
    for ev in events:
        if ev.is_runtime and ev.imr == 3:
            if seen_ready:
                out.append(ev)
            elif ev.event == "system-ready":
                seen_ready = True
    return out
