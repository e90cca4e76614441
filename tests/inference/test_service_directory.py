"""A hostile provider's ``GET /v1/models`` (ServiceDirectory.provider_models) against a real
loopback server: the answer is read at most MODELS_MAX_BYTES, a malformed on-chain URL or a
body nested too deeply is a ProviderModelsError, never another exception."""

from __future__ import annotations

import math

import httpx
import pytest

from broker.inference.errors import ProviderModelsError
from broker.inference.models import Service
from broker.inference.services import MODELS_MAX_BYTES, ServiceDirectory
from broker.inference.state import BrokerState

PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def _directory(url: str) -> ServiceDirectory:
    service = Service(
        provider=PROVIDER, service_type="chatbot", url=url, input_price=1, output_price=1,
        updated_at=0, model="m", verifiability="TeeML", additional_info="{}",
        tee_signer_address="0x" + "11" * 20, tee_signer_acknowledged=True,
    )  # fmt: skip
    state = BrokerState(services={PROVIDER: (service, math.inf)})
    return ServiceDirectory(None, state, httpx.Client())  # type: ignore[arg-type]


def test_models_list_is_read(fake_provider):
    fake_provider.responses["/v1/models"] = (200, {"object": "list", "data": [{"id": "a"}]})
    assert [m.id for m in _directory(fake_provider.url).provider_models(PROVIDER).models] == ["a"]


def test_oversized_models_answer_is_refused(fake_provider):
    pad = b"x" * MODELS_MAX_BYTES
    fake_provider.responses["/v1/models"] = (200, b'{"object":"list","data":[],"p":"' + pad + b'"}')
    with pytest.raises(ProviderModelsError, match=f"larger than {MODELS_MAX_BYTES} bytes"):
        _directory(fake_provider.url).provider_models(PROVIDER)


def test_deeply_nested_models_answer_is_not_json(fake_provider):
    fake_provider.responses["/v1/models"] = (200, b"[" * 100_000)
    with pytest.raises(ProviderModelsError, match="not JSON"):
        _directory(fake_provider.url).provider_models(PROVIDER)


@pytest.mark.parametrize("url", ["http://[::1", "http://a\x00b"])
def test_malformed_service_url_is_a_typed_error(url):
    with pytest.raises(ProviderModelsError, match="InvalidURL"):
        _directory(url).provider_models(PROVIDER)
