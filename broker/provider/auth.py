"""Authentication (``provider-gateway.md`` B3) and account checks (B4) for gateway requests.

Token parsing and the B3 checks are :mod:`broker.wire.session_token`'s (shared with the user side);
this module only supplies the on-chain generation / revocation bitmap and maps the typed token
errors to the gateway's 400 ``validate session: <msg>`` answers, then runs the B4 balance gate.

B3 check 9 (the verified-token cache, 5 min) is kept here: a header that passed every check is
remembered with the account state (generation, revocation bitmap) it was checked against; the same
header bytes with the same account state skip the signature recovery (check 10) — expiry (check 7)
is still checked on every request, and any change of the on-chain account state re-runs all checks.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from web3 import Web3

from broker.provider.accounts import AccountCache
from broker.provider.errors import RequestValidationError, SessionValidationError
from broker.units import format_0g
from broker.wire.errors import TokenError
from broker.wire.session_token import parse_authorization, verify_session_token

__all__ = ["VERIFIED_CACHE_TTL", "Authenticator"]

#: Seconds a verified header is remembered (B3 check 9: 5 min).
VERIFIED_CACHE_TTL = 300.0
_VERIFIED_CACHE_MAX = 50_000


class _Verified(NamedTuple):
    user: str
    expires_at_ms: int
    generation: int | None
    bitmap: int
    stamp: float


class Authenticator:
    """Validates ``Authorization: Bearer app-sk-…`` headers and account state for one provider.

    Args:
        accounts: the chain account cache.
        min_locked_balance: reserve in neuron required above unsettled fees (B4.5; 1 0G).
    """

    def __init__(self, accounts: AccountCache, *, min_locked_balance: int = 10**18) -> None:
        self.accounts = accounts
        self.provider = accounts.provider
        self.min_locked_balance = min_locked_balance
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._verified_lock = threading.Lock()

    def _cached(self, authorization: str, *, io: bool = True) -> str | None:
        """The user of a header verified before against the current account state (check 9);
        without ``io`` also ``None`` when that state is not in the account cache."""
        with self._verified_lock:
            hit = self._verified.get(authorization)
        if hit is None or time.monotonic() - hit.stamp >= VERIFIED_CACHE_TTL:
            return None
        if hit.expires_at_ms > 0 and int(time.time()) > hit.expires_at_ms // 1000:
            return None  # check 7 fails: verify in full
        if io:
            acc = self.accounts.get(hit.user)
        else:
            fresh, acc = self.accounts.peek(hit.user)
            if not fresh:
                return None
        state = (acc.generation, acc.revoked_bitmap) if acc is not None else (None, 0)
        if state != (hit.generation, hit.bitmap):
            return None  # account changed: checks 8 and 10 again
        return hit.user

    def authenticate_cached(self, authorization: str | None) -> str | None:
        """:meth:`authenticate` of a header verified before (B3 check 9) against the account
        state still in the cache, with check 7 (expiry) run again; no I/O, no signature
        recovery (safe on the event loop). ``None``: call :meth:`authenticate` (off the loop),
        which answers or raises."""
        if not authorization:
            return None
        return self._cached(authorization, io=False)

    def authenticate(self, authorization: str | None) -> str:
        """Run B3 checks 1–10 and return the authenticated user address, EIP-55 checksummed
        (check 10 compares the token's address with its signer case-insensitively: the user's
        fee rows, limits and links are keyed by one spelling of the address, whichever the
        token used).

        Raises:
            SessionValidationError: the first failing check (400, ``validate session: <msg>``).
            RPCError: the chain could not be read.
        """
        if authorization and (user := self._cached(authorization)) is not None:
            return user
        try:
            parsed = parse_authorization(authorization or "", require_bearer=True)
            generation, bitmap = None, 0
            address = parsed.token.address
            # an address that is not one fails check 10 below; the chain is never asked about it
            if parsed.token.provider.lower() == self.provider.lower() and Web3.is_address(address):
                acc = self.accounts.get(address)
                if acc is not None:
                    generation, bitmap = acc.generation, acc.revoked_bitmap
            verify_session_token(
                authorization or "",
                provider_address=self.provider,
                account_generation=generation,
                revoked_bitmap=bitmap,
            )
        except TokenError as exc:
            raise SessionValidationError(exc.message) from None
        user = Web3.to_checksum_address(parsed.token.address)  # check 10 passed: a valid address
        entry = _Verified(user, parsed.token.expires_at, generation, bitmap, time.monotonic())
        with self._verified_lock:
            self._verified[authorization] = entry
            self._verified.move_to_end(authorization)
            if len(self._verified) > _VERIFIED_CACHE_MAX:
                self._verified.popitem(last=False)
        return user

    def check_account_cached(
        self, user: str, *, unsettled_fee: int, input_fee: int = 0
    ) -> int | None:
        """:meth:`check_account` from the cached chain state only (no I/O: safe on the event
        loop): the locked balance in neuron when the cached account and service pass the B4 gate,
        ``None`` otherwise (then call :meth:`check_account` off the loop, which re-reads the chain
        where it would and raises the refusal)."""
        fresh, acc = self.accounts.peek(user)
        if not fresh or acc is None or not acc.acknowledged:
            return None
        svc = self.accounts.peek_service()
        if svc is None or not svc.tee_signer_acknowledged:
            return None
        if acc.locked_balance < input_fee + unsettled_fee + self.min_locked_balance:
            return None
        return acc.locked_balance

    def check_account(self, user: str, *, unsettled_fee: int, input_fee: int = 0) -> int:
        """The B4 gate for a billable request.

        Args:
            user: the authenticated user.
            unsettled_fee: the user's fees not yet settled (neuron).
            input_fee: estimated fee of this request known up front (neuron; 0 for most types).

        Returns:
            The user's locked balance in neuron (``balance − pendingRefund``).

        Raises:
            RequestValidationError: no account, not acknowledged, TEE signer not acknowledged, or
                insufficient balance (after one forced re-read from chain).
        """
        acc = self.accounts.get(user)
        if acc is None:
            acc = self.accounts.get(user, refresh=True)
        if acc is None:
            raise RequestValidationError(f"get account from contract, account not exist: {user}")
        if not acc.acknowledged:
            raise RequestValidationError(
                "user not acknowledge the provider, please use acknowledgeProviderSigner function "
                "in sdk first, it will take effect in 2 minutes"
            )
        svc = self.accounts.service()
        if svc is None or not svc.tee_signer_acknowledged:
            svc = self.accounts.service(refresh=True)
            if svc is None or not svc.tee_signer_acknowledged:
                raise RequestValidationError("service not acknowledge the tee signer")
        required = input_fee + unsettled_fee + self.min_locked_balance
        if acc.locked_balance < required:
            acc = self.accounts.get(user, refresh=True) or acc
        if acc.locked_balance < required:
            deficit = required - acc.locked_balance
            raise RequestValidationError(
                f"insufficient balance: your locked balance is {format_0g(acc.locked_balance)} 0G, "
                f"but the required minimum is {format_0g(required)} 0G (breakdown: minimum reserve "
                f"{format_0g(self.min_locked_balance)} 0G + unsettled fees "
                f"{format_0g(unsettled_fee)} 0G + current request fee {format_0g(input_fee)} 0G). "
                "Please add more funds with: 0g-compute-cli transfer-fund --provider "
                f"{self.provider} --amount {format_0g(deficit)}"
            )
        return acc.locked_balance
