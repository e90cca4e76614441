"""Client for the provider's ``GET {url}/v1/user/{address}/unsettledfee`` (provider-gateway.md B2;
user-broker.md §7.3 step 2)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from pydantic import ValidationError

from broker.funding.errors import UnsettledFeeError
from broker.funding.protocol import UnsettledFeeResponse

__all__ = ["DEFAULT_UNSETTLED_TIMEOUT_S", "fetch_unsettled_fee", "unsettled_fee_url"]

#: seconds per request.
DEFAULT_UNSETTLED_TIMEOUT_S = 10.0


def unsettled_fee_url(service_url: str, user_address: str) -> str:
    """``{service_url}/v1/user/{user_address}/unsettledfee`` (a trailing ``/`` of the URL is
    stripped)."""
    return f"{service_url.rstrip('/')}/v1/user/{user_address}/unsettledfee"


def fetch_unsettled_fee(
    client: httpx.Client,
    service_url: str,
    user_address: str,
    headers: Mapping[str, str],
    *,
    timeout: float = DEFAULT_UNSETTLED_TIMEOUT_S,
) -> int:
    """Ask the provider how much of this user's usage is billed but not yet settled.

    Args:
        client: the ``httpx.Client`` to use.
        service_url: the service's ``url`` from the contract.
        user_address: the user's checksummed address.
        headers: the session ``Authorization`` header (a secret: never logged or put in errors).
        timeout: seconds.

    Returns:
        the unsettled fee in neuron (int).

    Raises:
        UnsettledFeeError: network failure, non-2xx (``status_code`` set; 403 when the token is for
            another address), non-JSON or a malformed body.
    """
    url = unsettled_fee_url(service_url, user_address)
    try:
        response = client.get(url, headers=dict(headers), timeout=timeout)
    except httpx.HTTPError as exc:
        raise UnsettledFeeError(f"GET {url} failed: {type(exc).__name__}") from None
    if not response.is_success:
        raise UnsettledFeeError(
            f"GET {url} returned HTTP {response.status_code}", status_code=response.status_code
        )
    try:
        body = UnsettledFeeResponse.model_validate_json(response.content)
    except ValidationError as exc:
        first = exc.errors()[0]["msg"] if exc.errors() else "invalid body"
        raise UnsettledFeeError(
            f"GET {url}: unexpected response ({first})", status_code=response.status_code
        ) from None
    return body.unsettled_fee
