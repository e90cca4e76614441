"""Timestamps as the Router and Pixazo write them: ISO 8601 in UTC with milliseconds and ``Z``
(``2026-04-24T09:44:57.804Z``)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso_utc"]


def iso_utc(seconds: float) -> str:
    """``seconds`` (Unix time) as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    stamp = datetime.fromtimestamp(seconds, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
