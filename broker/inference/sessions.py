"""Request headers, the ephemeral-session cache and persistent API keys for the inference broker
(user-broker.md §5.4, §5.5, §6; §13 items 9, 10).

:class:`SessionManager` signs ``app-sk-…`` session tokens (:mod:`broker.inference.token`): the
ephemeral token (id 255, 24 h) is cached in :class:`~broker.inference.state.BrokerState` and created
single-flight per provider; persistent API keys (ids 0–254) are recorded in the fee store so
repeated keys get distinct ids; ``revokeToken`` / ``revokeAllTokens`` drop what they invalidate.
Addresses passed in are already checksummed by the facade
(:class:`~broker.inference.broker.InferenceBroker`).
"""

from __future__ import annotations

from collections.abc import Callable

from eth_account.signers.local import LocalAccount

from broker.chain.contracts import InferenceServingContract
from broker.inference.accounts import SubAccounts
from broker.inference.errors import (
    AccountNotFoundError,
    InvalidTokenIdError,
    SignerNotAcknowledgedError,
)
from broker.inference.fee_store import FeeStore
from broker.inference.models import ApiKeyInfo
from broker.inference.state import BrokerState, CachedSession
from broker.inference.token import (
    EPHEMERAL_TOKEN_ID,
    MAX_PERSISTENT_TOKEN_ID,
    authorization_header,
    is_token_revoked,
    lowest_free_token_id,
    new_session_token,
    now_ms,
    sign_session_token,
)
from broker.ledger.models import TxResult

__all__ = ["SESSION_REFRESH_MARGIN_MS", "SessionManager"]

SESSION_REFRESH_MARGIN_MS = 3_600_000


def _check_token_id_range(token_id: object) -> None:
    """Raise InvalidTokenIdError unless ``token_id`` is an int in 0–254 (bools refused)."""
    if (
        isinstance(token_id, bool)
        or not isinstance(token_id, int)
        or not 0 <= token_id <= MAX_PERSISTENT_TOKEN_ID
    ):
        raise InvalidTokenIdError(f"Invalid tokenId: {token_id}. Must be between 0 and 254")


class SessionManager:
    """Session tokens, request headers and API keys of one user (§5.4, §5.5, §6).

    Args:
        contract: the InferenceServing wrapper (``revokeToken`` / ``revokeAllTokens``).
        address: the user's checksummed address.
        signer: the account that signs session tokens (a secret holder: never logged).
        accounts: the broker's :class:`~broker.inference.accounts.SubAccounts` (generation,
            revoked bitmap, acknowledgement).
        fee_store: ``() -> FeeStore`` (the broker's store, opened on first use; issued token ids).
        state: the broker's shared :class:`~broker.inference.state.BrokerState` (``sessions``
            cache, provider locks, lock).
    """

    def __init__(
        self,
        contract: InferenceServingContract,
        address: str,
        signer: LocalAccount,
        accounts: SubAccounts,
        fee_store: Callable[[], FeeStore],
        state: BrokerState,
    ) -> None:
        self._contract = contract
        self._address = address
        self._signer = signer
        self._accounts = accounts
        self._fee_store = fee_store
        self._state = state

    # ------------------------------------------------------------------------- headers (§5.4, §6)

    def session(self, provider: str) -> CachedSession:
        """The cached ephemeral session while more than 1 h is left, else a newly signed one
        (generation from the account-info cache); single-flight per provider."""
        with self._state.provider_lock(provider):
            with self._state.lock:
                session = self._state.sessions.get(provider)
            if (
                session is not None
                and session.token.expires_at > now_ms() + SESSION_REFRESH_MARGIN_MS
            ):
                return session
            generation, _ = self._accounts.info_cached(provider)
            token = new_session_token(self._address, provider, generation=generation)
            session = CachedSession(token, sign_session_token(token, self._signer))
            with self._state.lock:
                self._state.sessions[provider] = session
            return session

    def headers(self, provider: str) -> dict[str, str]:
        """``{"Authorization": "Bearer app-sk-…"}``; requires the user's acknowledgement.

        Raises:
            SignerNotAcknowledgedError: not acknowledged, or no sub-account.
        """
        try:
            ok = self._accounts.acknowledged(provider)
        except AccountNotFoundError:
            ok = False
        if not ok:
            raise SignerNotAcknowledgedError(
                f"Provider signer is not acknowledged ({provider}); call "
                "acknowledge_provider_signer first"
            )
        return {"Authorization": authorization_header(self.session(provider).api_key)}

    def invalidate(self, provider: str) -> None:
        """Forget the cached ephemeral token and account info of ``provider`` (one critical
        section)."""
        with self._state.lock:
            self._state.sessions.pop(provider, None)
            self._accounts.forget_info(provider)

    # ------------------------------------------------------------------------- API keys (§5.5)

    def create_api_key(
        self, provider: str, token_id: int | None, duration: int | None
    ) -> ApiKeyInfo:
        """A persistent ``app-sk-…`` key (id 0–254, default the lowest free one; ``duration`` in
        milliseconds, ``None``/0 = never expires), recorded in the fee store.

        Raises:
            InvalidTokenIdError: id out of range or already revoked, or no id left.
        """
        if token_id is not None:
            _check_token_id_range(token_id)
        account = self._accounts.read(provider)
        generation = account.generation if account else 0
        bitmap = account.revoked_bitmap if account else 0
        with self._state.provider_lock(provider):
            if token_id is None:
                taken = self._fee_store().issued_token_ids(self._address, provider, generation)
                token_id = lowest_free_token_id(bitmap, taken)
            elif is_token_revoked(bitmap, token_id):
                raise InvalidTokenIdError(
                    f"TokenId {token_id} is already revoked. Use a different tokenId or call "
                    "revokeAllTokens() to reset."
                )
            token = new_session_token(
                self._address,
                provider,
                generation=generation,
                token_id=token_id,
                duration_ms=duration,
            )
            raw = sign_session_token(token, self._signer)
            self._fee_store().record_issued_token(
                self._address, provider, generation, token_id, token.timestamp, token.expires_at
            )
        return ApiKeyInfo(
            token_id=token_id,
            created_at=token.timestamp,
            expires_at=token.expires_at,
            raw_token=raw,
        )

    def revoke_token(self, provider: str, token_id: int) -> TxResult:
        """``revokeToken(provider, tokenId)``; drops the cached account info.

        Raises:
            InvalidTokenIdError: 255 or outside 0–254 (nothing sent).
        """
        if token_id == EPHEMERAL_TOKEN_ID:
            raise InvalidTokenIdError(
                "Cannot revoke ephemeral token individually. Use revokeAllTokens() instead."
            )
        _check_token_id_range(token_id)
        receipt = self._contract.revoke_token(provider, token_id)
        self._accounts.forget_info(provider)
        return TxResult.from_receipt(receipt)

    def revoke_all_tokens(self, provider: str) -> TxResult:
        """``revokeAllTokens(provider)``; drops the cached session and account info."""
        receipt = self._contract.revoke_all_tokens(provider)
        self.invalidate(provider)
        return TxResult.from_receipt(receipt)
