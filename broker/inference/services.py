"""Service discovery for the inference broker (user-broker.md §5.1, §5.7; §13 items 13, 19).

:class:`ServiceDirectory` reads ``getService`` / ``getAllServices`` (all pages), keeps the service
cache of :class:`~broker.inference.state.BrokerState` (10 minutes per provider), and fetches a
provider's ``/v1/models`` list. Addresses passed in are already checksummed by the facade
(:class:`~broker.inference.broker.InferenceBroker`).
"""

from __future__ import annotations

import json

import httpx

from broker._bounded_read import BoundedBody, BoundedReadError, read_bounded
from broker.chain.addresses import checksum_address
from broker.chain.contracts import InferenceServingContract
from broker.chain.errors import error_class
from broker.inference.errors import ProviderModelsError, UnknownProviderError
from broker.inference.models import ProviderModelInfo, ProviderModels, Service, ServiceMetadata
from broker.inference.state import BrokerState

__all__ = [
    "MODELS_MAX_BYTES",
    "MODELS_TIMEOUT_S",
    "PAGE_LIMIT",
    "SERVICE_CACHE_TTL_S",
    "ServiceDirectory",
]

SERVICE_CACHE_TTL_S = 600.0
PAGE_LIMIT = 50
MODELS_TIMEOUT_S = 10.0
MODELS_MAX_BYTES = 5_000_000


class ServiceDirectory:
    """Discovery and the service cache (§5.1).

    Args:
        contract: the InferenceServing wrapper.
        state: the broker's shared :class:`~broker.inference.state.BrokerState` (``services``
            cache, lock, clock).
        http: the ``httpx.Client`` used for ``/v1/models``.
    """

    def __init__(
        self, contract: InferenceServingContract, state: BrokerState, http: httpx.Client
    ) -> None:
        self._contract = contract
        self._state = state
        self._http = http

    def fetch(self, provider: str) -> Service:
        """``getService(provider)`` read from the chain and cached.

        Raises:
            UnknownProviderError: none registered. RPCError.
        """
        try:
            service = Service.from_chain(self._contract.get_service(provider))
        except error_class("ServiceNotExist"):
            raise UnknownProviderError(f"no service registered for provider {provider}") from None
        with self._state.lock:
            self._state.services[provider] = (service, self._state.clock() + SERVICE_CACHE_TTL_S)
        return service

    def cached(self, provider: str) -> tuple[Service, bool]:
        """(service, came_from_cache): the cached service while fresh, else :meth:`fetch`."""
        with self._state.lock:
            entry = self._state.services.get(provider)
        if entry is not None and entry[1] > self._state.clock():
            return entry[0], True
        return self.fetch(provider), False

    def get(self, provider: str, *, refresh: bool = False) -> Service:
        """The service of ``provider`` (``refresh`` bypasses the cache)."""
        if refresh:
            return self.fetch(provider)
        return self.cached(provider)[0]

    def forget(self, provider: str) -> None:
        """Drop the cached service of ``provider`` (after an owner-level acknowledgement change)."""
        with self._state.lock:
            self._state.services.pop(provider, None)

    def list_all(self, include_unacknowledged: bool, page_limit: int = PAGE_LIMIT) -> list[Service]:
        """Every service (all pages of ``getAllServices(offset, page_limit)``), cached; unless
        ``include_unacknowledged``, only those whose TEE signer the owner acknowledged."""
        services: list[Service] = []
        offset = 0
        while True:
            page, total = self._contract.get_all_services(offset, page_limit)
            services.extend(Service.from_chain(s) for s in page)
            offset += len(page)
            if not page or offset >= total:
                break
        expiry = self._state.clock() + SERVICE_CACHE_TTL_S
        with self._state.lock:
            for s in services:
                self._state.services[checksum_address(s.provider)] = (s, expiry)
        if include_unacknowledged:
            return services
        return [s for s in services if s.tee_signer_acknowledged]

    def metadata(self, provider: str, model: str | None = None) -> ServiceMetadata:
        """``{endpoint: url + "/v1/proxy", model: model or service.model}`` [0.9]."""
        service = self.get(provider)
        return ServiceMetadata(endpoint=service.url + "/v1/proxy", model=model or service.model)

    def _read_models(self, url: str) -> bytes:
        """The body of ``GET url``: at most :data:`MODELS_MAX_BYTES` bytes (never buffered past
        that), all within :data:`MODELS_TIMEOUT_S` seconds (httpx bounds each read only).

        Raises:
            ProviderModelsError: transport failure, an invalid URL, a non-2xx answer, a larger
                or slower body.
        """
        bounded = BoundedBody(MODELS_MAX_BYTES, MODELS_TIMEOUT_S)
        try:
            with self._http.stream("GET", url, timeout=MODELS_TIMEOUT_S) as response:
                if not response.is_success:
                    raise ProviderModelsError(f"GET {url} returned HTTP {response.status_code}")
                try:
                    return read_bounded(response.iter_bytes(), bounded)
                except BoundedReadError as exc:
                    raise ProviderModelsError(f"GET {url}: the answer is {exc}") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ProviderModelsError(f"GET {url} failed: {type(exc).__name__}") from None

    def provider_models(self, provider: str) -> ProviderModels:
        """``GET {url}/v1/models`` [0.9] (no authentication, 10 s, ≤ 5 MB) with a strict shape
        check.

        Raises:
            ProviderModelsError: HTTP failure or an invalid URL, an oversized, slow or non-JSON
                body, or another shape.
        """
        service = self.get(provider)
        url = service.url.rstrip("/") + "/v1/models"
        content = self._read_models(url)
        try:
            body = json.loads(content)
        except (ValueError, RecursionError):
            raise ProviderModelsError(f"GET {url}: response is not JSON") from None
        if (
            not isinstance(body, dict)
            or body.get("object") != "list"
            or not isinstance(body.get("data"), list)
        ):
            raise ProviderModelsError(f'GET {url}: expected {{"object": "list", "data": [...]}}')
        try:
            models = [ProviderModelInfo.model_validate(m) for m in body["data"]]
        except ValueError as exc:
            raise ProviderModelsError(f"GET {url}: invalid model entry ({exc})") from None
        return ProviderModels(
            provider=service.provider, url=service.url, multi_model=service.multi_model,
            price_denomination=service.price_denomination, default_model=service.model,
            models=models,
        )  # fmt: skip
