"""Reading an answer whose size and pace another party controls: at most ``max_bytes``, and
whole within a deadline.

httpx bounds each read of a body (its ``read`` timeout), not the body as a whole, so a peer that
drips one byte at a time would hold a reader indefinitely, and one that sends an endless body
would be buffered whole. :func:`read_bounded` stops at either limit. Used where the user side
reads a provider's documents: the attestation report (:mod:`broker.attestation.verifier`) and
``/v1/models`` (:mod:`broker.inference.services`); each caller turns :class:`BoundedReadError`
into its own error.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from broker._exceptions import BrokerError

__all__ = ["BoundedReadError", "read_bounded"]


class BoundedReadError(BrokerError):
    """The body passed ``max_bytes`` or the deadline; the message says which (``"larger than N
    bytes"`` / ``"not complete within S s"``)."""


def read_bounded(chunks: Iterable[bytes], max_bytes: int, deadline: float, timeout: float) -> bytes:
    """Join ``chunks`` (an ``httpx`` response's ``iter_bytes()``) while they stay within bounds.

    Args:
        chunks: the body's pieces as they arrive. max_bytes: the most bytes accepted.
        deadline: ``time.monotonic()`` seconds by which the body must be complete.
        timeout: the seconds that deadline stands for (for the message).

    Returns:
        The whole body.

    Raises:
        BoundedReadError: more than ``max_bytes``, or not complete by ``deadline``.
    """
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise BoundedReadError(f"larger than {max_bytes} bytes")
        if time.monotonic() > deadline:
            raise BoundedReadError(f"not complete within {timeout:g} s")
    return bytes(body)
