"""Reading an answer whose size and pace another party controls: at most ``max_bytes``, and
(optionally) whole within a deadline.

httpx bounds each read of a body (its ``read`` timeout), not the body as a whole, so a peer that
drips one byte at a time would hold a reader indefinitely, and one that sends an endless body
would be buffered whole. :class:`BoundedBody` stops at either limit, chunk by chunk (sync or async
iteration alike); :func:`read_bounded` reads a sync iterator through it. Used where the user side
reads a provider's documents: the attestation report (:mod:`broker.attestation.verifier`),
``/v1/models`` (:mod:`broker.inference.services`) and the response signature
(:mod:`broker.inference.response_signature`, and ``serve``'s aiohttp fetch of it in
:mod:`broker.proxy.upstream`); each caller turns :class:`BoundedReadError` into its own error.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from broker._exceptions import BrokerError

__all__ = ["BoundedBody", "BoundedReadError", "read_bounded"]


class BoundedReadError(BrokerError):
    """The body passed ``max_bytes`` or the deadline; the message says which (``"larger than N
    bytes"`` / ``"not complete within S s"``) and so does :attr:`too_large`."""

    def __init__(self, message: str, *, too_large: bool) -> None:
        super().__init__(message)
        #: ``True``: over the size limit; ``False``: past the deadline
        self.too_large = too_large


class BoundedBody:
    """A body gathered chunk by chunk within ``max_bytes`` and, with ``timeout``, within
    ``timeout`` seconds of its creation (make it before the request is sent).

    Args:
        max_bytes: the most bytes accepted.
        timeout: seconds from now by which the body must be complete; ``None``: no deadline (the
            caller's client bounds the exchange).
    """

    __slots__ = ("_data", "deadline", "max_bytes", "timeout")

    def __init__(self, max_bytes: int, timeout: float | None = None) -> None:
        self._data = bytearray()
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def add(self, chunk: bytes) -> None:
        """Append ``chunk``.

        Raises:
            BoundedReadError: the body is now larger than ``max_bytes``, or the deadline passed.
        """
        self._data += chunk
        if len(self._data) > self.max_bytes:
            raise BoundedReadError(f"larger than {self.max_bytes} bytes", too_large=True)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise BoundedReadError(f"not complete within {self.timeout:g} s", too_large=False)

    def value(self) -> bytes:
        """The bytes gathered so far."""
        return bytes(self._data)


def read_bounded(chunks: Iterable[bytes], body: BoundedBody) -> bytes:
    """Read ``chunks`` (an ``httpx`` response's ``iter_bytes()``) through ``body``.

    Returns:
        The whole body.

    Raises:
        BoundedReadError: as :meth:`BoundedBody.add`.
    """
    for chunk in chunks:
        body.add(chunk)
    return body.value()
