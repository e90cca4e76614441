"""Property-based fuzzing (schemathesis + hypothesis) of ``serve``, the provider gateway and the
worker from their published ``/openapi.json``, on the real servers over loopback.

Requests follow the documented shapes (positive) or break them (negative: wrong types, missing
fields, out-of-range values). Rule: no answer is a server error (>= 500) -- every upstream here is
healthy, so even 502/503/504 would be our fault -- every server is alive afterwards, and ``serve``
accounts exactly the fees it announced in ``X-0G-Fee`` (a refused request bills nothing).
``ZG_FUZZ_EXAMPLES`` (default 3) is the number of generated requests per operation; raise it
locally for a longer run.
"""

from __future__ import annotations

import os

import httpx
import pytest
from fuzz_helpers import API_KEY

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings, strategies
from schemathesis import GenerationMode

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EXAMPLES = int(os.environ.get("ZG_FUZZ_EXAMPLES", "3"))
#: Operations left out: they only reload the model (slow) and are not reachable by users.
SKIPPED = {"/v1/internal/unload"}


def _fuzz(base_url: str, headers: dict, tally, *, fees: list[int] | None = None) -> int:
    """Fuzz every operation of ``base_url``'s OpenAPI document; returns the requests sent."""
    raw = httpx.get(base_url + "/openapi.json", headers=headers, timeout=30)
    assert raw.status_code == 200, raw.text[:300]
    schema = schemathesis.openapi.from_dict(raw.json())
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in SKIPPED:
            continue

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(
            case=strategies.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
            )
        )
        def run(case) -> None:
            nonlocal sent
            response = case.call(base_url=base_url, headers=headers, timeout=120)
            sent += 1
            tally.record(response.status_code, expect_refusal=False)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
            )
            if fees is not None:  # headers: lower-case keys, lists of values
                fees.extend(int(v) for v in response.headers.get("x-0g-fee", []))

        run()
    return sent


def test_fuzz_serve(fuzz_serve, fuzz_stack, fuzz_user, tally):
    st, _ = fuzz_stack
    assert httpx.get(fuzz_serve + "/openapi.json").status_code == 401  # behind the API key
    local = fuzz_user.inference.fee_store.get_totals(fuzz_user.address, st.provider_address)
    fees: list[int] = []
    sent = _fuzz(fuzz_serve, {"Authorization": f"Bearer {API_KEY}"}, tally, fees=fees)
    assert sent >= 3 * EXAMPLES
    after = fuzz_user.inference.fee_store.get_totals(fuzz_user.address, st.provider_address)
    assert after.total_fee - local.total_fee == sum(fees)
    assert httpx.get(fuzz_serve + "/health", timeout=10).status_code == 200


def test_fuzz_gateway(fuzz_stack, fuzz_user, fuzz_serve, tally):
    st, _ = fuzz_stack
    headers = fuzz_user.inference.get_request_headers(st.provider_address)
    sent = _fuzz(st.gateway_url, headers, tally)
    assert sent >= 3 * EXAMPLES
    assert httpx.get(st.gateway_url + "/health", timeout=10).status_code == 200


def test_fuzz_worker(fuzz_stack, tally):
    """The stack's worker (its model is loaded once for the whole folder; the worker running as
    its own process takes the hostile bodies in test_hostile_bodies)."""
    st, _ = fuzz_stack
    sent = _fuzz(st.worker_url, {}, tally)
    assert sent >= 3 * EXAMPLES
    assert httpx.get(st.worker_url + "/health", timeout=10).status_code == 200
