"""``GET /ready``: readiness of ``serve`` (``/health`` stays liveness: the process answers).

Four checks run concurrently, each with a short timeout (:data:`CHECK_TIMEOUT_S`):

``chain``
    the RPC node answers ``eth_blockNumber`` (a failure is told by the chain layer's
    :func:`~broker.chain.sender.rpc_guard`, whose messages never show the RPC URL: its path or
    query often carries an API key, and ``/ready`` needs no API key).
``provider``
    the provider's gateway answers ``GET {service.url}/health`` (any status below 500 counts: the
    gateway is reachable).
``sub_account``
    the sub-account with the provider exists, its signer is acknowledged and it has a locked balance
    (``balance - pendingRefund > 0`` neuron, contracts.md ``getAccount``).
``auto_funding``
    when enabled: its scheduler runs and its last check did not fail; when disabled: ``ok`` with
    ``disabled`` (nothing to be down).

The answer is 200 ``{"status": "ready", "checks": {...}}`` when every check is ok, else 503
``{"status": "not_ready", ...}``; each check is ``{"ok": bool, "detail": str}``. Nothing is billed,
no amounts or secrets are shown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from broker.chain.sender import rpc_guard
from broker.inference.errors import AccountNotFoundError

if TYPE_CHECKING:
    from broker.proxy.context import ProxyContext

__all__ = ["CHECK_TIMEOUT_S", "CheckResult", "ReadyResponse", "readiness"]

logger = logging.getLogger(__name__)

#: Seconds each check may take before it counts as down.
CHECK_TIMEOUT_S = 3.0


class CheckResult(BaseModel):
    """One readiness check: ``ok`` and a one-line ``detail``."""

    ok: bool
    detail: str


class ReadyResponse(BaseModel):
    """``GET /ready``: ``status`` ``ready`` / ``not_ready`` and the checks by name."""

    status: str
    checks: dict[str, CheckResult]


async def _blocking(fn: Callable[[], Any], timeout: float) -> Any:
    return await asyncio.wait_for(run_in_threadpool(fn), timeout)


def _failure(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | httpx.TimeoutException):
        return f"no answer within {timeout:g} s"
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _block_number(ctx: ProxyContext) -> int:
    with rpc_guard("eth_blockNumber"):
        return ctx.inference.w3.eth.block_number


async def _chain(ctx: ProxyContext, timeout: float) -> CheckResult:
    block = await _blocking(lambda: _block_number(ctx), timeout)
    return CheckResult(ok=True, detail=f"block {block}")


async def _provider(ctx: ProxyContext, timeout: float) -> CheckResult:
    url = ctx.service.url.rstrip("/") + "/health"
    response = await ctx.upstream.client.get(url, timeout=timeout)
    if response.status_code >= 500:
        return CheckResult(ok=False, detail=f"{url} answered HTTP {response.status_code}")
    return CheckResult(ok=True, detail=f"{url} answered HTTP {response.status_code}")


async def _sub_account(ctx: ProxyContext, timeout: float) -> CheckResult:
    try:
        acc = await _blocking(lambda: ctx.inference.get_account(ctx.provider), timeout)
    except AccountNotFoundError:
        return CheckResult(ok=False, detail=f"no sub-account with provider {ctx.provider}")
    if not acc.acknowledged:
        return CheckResult(ok=False, detail="the provider's signer is not acknowledged")
    if acc.balance - acc.pending_refund <= 0:
        return CheckResult(ok=False, detail="the sub-account has no locked balance")
    return CheckResult(ok=True, detail="funded and acknowledged")


async def _auto_funding(ctx: ProxyContext, timeout: float) -> CheckResult:
    if not ctx.settings.auto_funding or not hasattr(ctx.inference, "auto_funding_status"):
        return CheckResult(ok=True, detail="disabled")
    status = await _blocking(lambda: ctx.inference.auto_funding_status(ctx.provider), timeout)
    if not status.running:
        return CheckResult(ok=False, detail="enabled but not running")
    if status.last_error:
        return CheckResult(ok=False, detail=f"last check failed: {status.last_error[:200]}")
    return CheckResult(ok=True, detail=f"running, {status.checks} checks")


async def readiness(ctx: ProxyContext, timeout: float = CHECK_TIMEOUT_S) -> ReadyResponse:
    """Run the four checks concurrently (each bounded by ``timeout`` seconds).

    Returns:
        :class:`ReadyResponse`; a check that raised or timed out is ``ok=False`` with the reason.
    """
    checks = {
        "chain": _chain,
        "provider": _provider,
        "sub_account": _sub_account,
        "auto_funding": _auto_funding,
    }

    async def run(name: str, check: Callable[..., Any]) -> tuple[str, CheckResult]:
        try:
            return name, await asyncio.wait_for(check(ctx, timeout), timeout + 0.5)
        except Exception as exc:  # noqa: BLE001 - any failure is "down", with its reason
            logger.info("readiness check %s failed: %s", name, exc)
            return name, CheckResult(ok=False, detail=_failure(exc, timeout))

    results = dict(await asyncio.gather(*(run(n, c) for n, c in checks.items())))
    ready = all(r.ok for r in results.values())
    return ReadyResponse(status="ready" if ready else "not_ready", checks=results)
