"""The actions that move money in the standalone ``0g-broker ui`` — deposit, transfer to a provider
sub-account, refund — each in two steps, and the CSRF checks every state-changing request passes.

Step 1, ``POST /ui/api/actions`` ``{"action", "amount" (0G, decimal string), "provider"?}``: parse
and check (nothing moves) and return a pending action with the exact amount in 0G and neuron; the
page shows it in a confirmation dialog. Step 2, ``POST /ui/api/actions/{id}/confirm``: run it,
once (the pending action is consumed before the transaction is sent, so a double click cannot pay
twice; it expires after :data:`ACTION_TTL` seconds).

CSRF (:class:`CsrfGuard`): the request must be ``Content-Type: application/json``, its ``Host`` one
of the loopback names (or the configured host), its ``Origin`` exactly ``http://<Host>``, and it
must carry ``X-CSRF-Token`` equal to the token bound to the browser session cookie
(``HttpOnly; SameSite=Strict``) set by the page. Another origin can neither send such a request
without a CORS preflight (which is not answered) nor read the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from broker._exceptions import BrokerError, InputError
from broker.chain.addresses import checksum_address
from broker.chain.sender import rpc_guard
from broker.ledger.errors import NoLedgerError
from broker.ui.errors import ActionNotFoundError, CsrfError, UIChainError, UIError, UIInputError
from broker.units import Neuron, format_0g, parse_0g

__all__ = ["ACTIONS", "ACTION_TTL", "SESSION_COOKIE", "ActionBook", "CsrfGuard", "PendingAction"]

#: The actions offered, with what each one does in words.
ACTIONS = {
    "deposit": "Deposit {amount} 0G from your wallet into your ledger",
    "transfer": "Transfer {amount} 0G from your ledger to the inference sub-account of {provider}",
    "refund": "Refund {amount} 0G from your ledger's available balance to your wallet",
}
#: Seconds a prepared action stays confirmable.
ACTION_TTL = 120.0
#: The browser-session cookie the CSRF token is bound to.
SESSION_COOKIE = "zg_ui_session"
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


class CsrfGuard:
    """Same-origin and CSRF-token checks of the standalone ui.

    Args:
        host: the address the server binds (also accepted as a ``Host`` name besides loopback).
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._secret = secrets.token_bytes(32)
        self._hosts = _LOOPBACK | {host}

    def new_session(self) -> str:
        """A new random session id (the cookie value)."""
        return secrets.token_urlsafe(24)

    def token_for(self, session: str | None) -> str | None:
        """The CSRF token bound to ``session`` (HMAC-SHA256 under a per-process secret)."""
        if not session:
            return None
        return hmac.new(self._secret, session.encode(), hashlib.sha256).hexdigest()

    def host_ok(self, request: Request) -> bool:
        """``Host`` names this server (loopback or the configured host; any port)."""
        host = request.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in self._hosts

    def check(self, request: Request) -> None:
        """Refuse a state-changing request that is not provably from our page.

        Raises:
            CsrfError: 403 with the reason in words.
        """
        if not self.host_ok(request):
            raise CsrfError("refused: unexpected Host header")
        origin = request.headers.get("origin")
        if origin != f"http://{request.headers.get('host', '')}":
            raise CsrfError(
                "refused: this action is only accepted from the dashboard's own page "
                "(Origin missing or from another site)"
            )
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise CsrfError("refused: the body must be JSON (Content-Type: application/json)")
        expected = self.token_for(request.cookies.get(SESSION_COOKIE))
        given = request.headers.get("x-csrf-token", "")
        if expected is None or not hmac.compare_digest(given.encode(), expected.encode()):
            raise CsrfError("refused: missing or wrong CSRF token; reload the page")


@dataclass(frozen=True)
class PendingAction:
    """A checked action waiting for confirmation. ``amount`` in neuron; ``expires_at`` Unix s."""

    id: str
    action: str
    amount: int
    provider: str | None
    summary: str
    expires_at: float

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (amount as neuron string and exact ``amount_0g``)."""
        return {
            "id": self.id,
            "action": self.action,
            "amount": str(self.amount),
            "amount_0g": format_0g(self.amount),
            "provider": self.provider,
            "summary": self.summary,
            "expires_at": self.expires_at,
        }


class ActionBook:
    """Prepares, checks and runs the money-moving actions for one broker.

    Args:
        broker: a :class:`broker.broker.Broker` (``.ledger``, ``.w3``, ``.address``).
        ttl: seconds a prepared action stays confirmable.
    """

    def __init__(self, broker: Any, ttl: float = ACTION_TTL) -> None:
        self.broker = broker
        self.ttl = ttl
        self._pending: dict[str, PendingAction] = {}
        self._lock = threading.Lock()

    def prepare(self, body: Any) -> PendingAction:
        """Parse and check an action (blocking: chain reads); nothing is sent.

        Args:
            body: ``{"action": "deposit"|"transfer"|"refund", "amount": "<0G>",
                "provider": "0x…" (transfer only)}``; the amount must be a decimal string or an
                int (a JSON float is refused: it cannot carry most decimals exactly).

        Returns:
            The :class:`PendingAction`.

        Raises:
            UIInputError: unknown action, bad amount or address, not enough funds, no ledger.
            UIChainError: the balance could not be read (node unreachable; the URL never shown).
        """
        if not isinstance(body, dict):
            raise UIInputError("the body must be a JSON object")
        action = body.get("action")
        if action not in ACTIONS:
            raise UIInputError(f"action must be one of {', '.join(ACTIONS)}")
        try:
            amount = parse_0g(body.get("amount"))
        except InputError as exc:
            raise UIInputError(f"amount: {exc}") from None
        except (TypeError, ValueError):
            raise UIInputError("amount: give the amount in 0G as a decimal string") from None
        provider = None
        if action == "transfer":
            try:
                provider = checksum_address(str(body.get("provider") or ""), field="provider")
            except InputError as exc:
                raise UIInputError(str(exc)) from None
        try:
            self._check_funds(action, amount)
        except UIError:
            raise
        except BrokerError as exc:
            raise UIChainError(f"cannot check your balance: {exc}") from None
        summary = ACTIONS[action].format(amount=format_0g(amount), provider=provider)
        pending = PendingAction(
            id=secrets.token_urlsafe(16),
            action=action,
            amount=amount,
            provider=provider,
            summary=summary,
            expires_at=time.time() + self.ttl,
        )
        with self._lock:
            self._expire()
            self._pending[pending.id] = pending
        return pending

    def _check_funds(self, action: str, amount: int) -> None:
        """Check before spending: the wallet (deposit) or the ledger's available balance."""
        if action == "deposit":
            with rpc_guard("eth_getBalance"):
                balance = int(self.broker.w3.eth.get_balance(self.broker.address))
            if balance < amount:
                raise UIInputError(
                    f"your wallet holds {format_0g(balance)} 0G, less than "
                    f"{format_0g(amount)} 0G (plus gas)"
                )
            return
        try:
            ledger = self.broker.ledger.get_ledger()
        except NoLedgerError:
            raise UIInputError(
                "you have no ledger yet: create one with `0g-broker add-account --amount N`"
            ) from None
        if ledger.available_balance < amount:
            raise UIInputError(
                f"your ledger has {format_0g(ledger.available_balance)} 0G "
                f"available, less than {format_0g(amount)} 0G"
            )

    def _expire(self) -> None:
        now = time.time()
        for key in [k for k, p in self._pending.items() if p.expires_at < now]:
            del self._pending[key]

    def confirm(self, action_id: str) -> dict[str, Any]:
        """Run a prepared action once (blocking: sends a transaction and waits for it).

        Returns:
            ``{"ok": True, "action", "amount", "amount_0g", "provider", "tx_hash",
            "block_number"}``.

        Raises:
            ActionNotFoundError: unknown, already used or expired id.
            UIChainError: the chain refused it or the transaction failed (the reason in words).
        """
        with self._lock:
            self._expire()
            pending = self._pending.pop(action_id, None)
        if pending is None:
            raise ActionNotFoundError(
                "no such pending action (already done, or expired after "
                f"{int(self.ttl)} s): prepare it again"
            )
        ledger = self.broker.ledger
        try:
            if pending.action == "deposit":
                result = ledger.deposit_fund(Neuron(pending.amount))
            elif pending.action == "transfer":
                result = ledger.transfer_fund(pending.provider, "inference", Neuron(pending.amount))
            else:
                result = ledger.refund(Neuron(pending.amount))
        except InputError as exc:
            raise UIInputError(str(exc)) from None
        except BrokerError as exc:
            raise UIChainError(f"{pending.action} failed: {exc}") from None
        return {
            "ok": True,
            **{
                k: v
                for k, v in pending.as_json().items()
                if k in ("action", "amount", "amount_0g", "provider")
            },
            "tx_hash": result.tx_hash,
            "block_number": result.block_number,
        }
