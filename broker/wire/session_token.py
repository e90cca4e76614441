"""``app-sk-`` session tokens: the wire format (serialise, sign, parse) and the provider checks.

The one module that knows the byte layout of user-broker.md §6 and the checks of
provider-gateway.md B3; the user side (:mod:`broker.inference.sessions`, which issues, caches and
stores tokens via :mod:`broker.inference.token_issuing`) and the gateway
(:mod:`broker.provider.auth`) both import it. Pure: no HTTP, no chain, no files; the caller supplies
the account's generation and revocation bitmap.

API key vs session token: both are the same signed JSON; ``tokenId`` 255 is an *ephemeral*
session token (must expire, at most 24 h), ``tokenId`` 0–254 a *persistent* API key
(``expiresAt`` 0 = never; revocable one by one through the on-chain ``revokedBitmap``).

Wire format (§6.1–6.2)::

    raw  = {"address":…,"provider":…,"timestamp":<ms>,"expiresAt":<ms|0>,"nonce":…,
            "generation":<int>,"tokenId":<0..255>}      (compact JSON, this key order)
    sig  = personal_sign(keccak256(utf8(raw)))           (EIP-191 over the 32 raw bytes, v 27/28)
    key  = "app-sk-" + base64_std(utf8(raw) + "|" + sig) (API key; header = "Bearer " + key)
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from broker.wire.errors import (
    MalformedTokenError,
    TokenExpiredError,
    TokenGenerationMismatchError,
    TokenProviderMismatchError,
    TokenRevokedError,
    TokenSignatureError,
)
from broker.wire.eth_signature import is_low_s

__all__ = [
    "API_KEY_PREFIX",
    "BEARER_PREFIX",
    "EPHEMERAL_TOKEN_ID",
    "MAX_CLOCK_SKEW_S",
    "MAX_EPHEMERAL_DURATION_MS",
    "MAX_PERSISTENT_TOKEN_ID",
    "MSG_BAD_HEADER",
    "MSG_BAD_PAYLOAD",
    "MSG_EPHEMERAL_NO_EXPIRY",
    "MSG_EPHEMERAL_TOO_LONG",
    "MSG_EXPIRED",
    "MSG_FUTURE_GENERATION",
    "MSG_GENERATION_EXPIRED",
    "MSG_REVOKED",
    "MSG_SIGNATURE_MISMATCH",
    "MSG_WRONG_PROVIDER",
    "ParsedAuthorization",
    "SessionToken",
    "authorization_header",
    "is_token_revoked",
    "parse_authorization",
    "recover_token_signer",
    "sign_session_token",
    "verify_session_token",
]

API_KEY_PREFIX = "app-sk-"
BEARER_PREFIX = "Bearer app-sk-"
EPHEMERAL_TOKEN_ID = 255
MAX_PERSISTENT_TOKEN_ID = 254
MAX_EPHEMERAL_DURATION_MS = 86_400_000
#: Seconds a client's clock may run ahead of the gateway's: an ephemeral token must expire within
#: 24 h plus this of the gateway's now (our addition to B3 check 6).
MAX_CLOCK_SKEW_S = 3_600
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_UINT64_MAX = 2**64 - 1
_INT64_MAX = 2**63 - 1

# B3 texts (the gateway answers 400 ``validate session: <text>``)
MSG_BAD_HEADER = (
    "missing or invalid Authorization header, must be Bearer app-sk-<base64(rawMessage:signature)>"
)
MSG_BAD_PAYLOAD = "invalid Authorization payload, expect base64(rawMessage:signature)"
MSG_WRONG_PROVIDER = "session token is for different provider"
MSG_EPHEMERAL_NO_EXPIRY = "ephemeral token must have an expiration time"
MSG_EPHEMERAL_TOO_LONG = "ephemeral token duration cannot exceed 24 hours"
MSG_EXPIRED = "session token expired"
MSG_GENERATION_EXPIRED = "session token has been revoked (generation expired)"
MSG_FUTURE_GENERATION = "invalid session token (future generation)"
MSG_REVOKED = "session token has been revoked"
MSG_SIGNATURE_MISMATCH = "signature verification failed: address mismatch"


@dataclass(frozen=True, slots=True)
class SessionToken:
    """The session token of user-broker.md §6.1 (field names in snake_case).

    Attributes:
        address: the user's address (EIP-55 checksummed as the SDK sends it).
        provider: the provider's address, as given (the provider compares case-insensitively).
        timestamp: creation time, Unix milliseconds.
        expires_at: expiry, Unix milliseconds; 0 = never (persistent tokens only).
        nonce: opaque ASCII string.
        generation: the (user, provider) account generation the token belongs to.
        token_id: 255 for ephemeral tokens, 0–254 for persistent API keys.
    """

    address: str
    provider: str
    timestamp: int
    expires_at: int
    nonce: str
    generation: int
    token_id: int

    @property
    def is_ephemeral(self) -> bool:
        """True for token id 255 (SDK request tokens), False for persistent API keys (0–254)."""
        return self.token_id == EPHEMERAL_TOKEN_ID

    def to_dict(self) -> dict[str, Any]:
        """The token as the wire JSON object, keys in the order of §6.1."""
        return {
            "address": self.address,
            "provider": self.provider,
            "timestamp": int(self.timestamp),
            "expiresAt": int(self.expires_at),
            "nonce": self.nonce,
            "generation": int(self.generation),
            "tokenId": int(self.token_id),
        }

    def to_json(self) -> str:
        """The ``rawMessage``: compact ``JSON.stringify`` output, byte-identical to the SDK."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def message_hash(self) -> bytes:
        """``keccak256(utf8(rawMessage))``, 32 bytes (the value that is personal-signed)."""
        return keccak(self.to_json().encode("utf-8"))

    def is_expired(self, now_s: int | None = None) -> bool:
        """B3 check 7: ``expires_at > 0`` and ``now_s > expires_at // 1000``.

        Args:
            now_s: current Unix time in seconds (default: now).
        """
        if self.expires_at <= 0:
            return False
        now_s = int(time.time()) if now_s is None else now_s
        return now_s > self.expires_at // 1000


class ParsedAuthorization(NamedTuple):
    """What :func:`parse_authorization` returns.

    Attributes:
        token: the decoded :class:`SessionToken`.
        signature: the signature text as received (``0x`` + hex).
        raw_message: the token JSON bytes exactly as received (hash these, never a
            re-serialisation).
    """

    token: SessionToken
    signature: str
    raw_message: bytes


def _sign_hash(message_hash: bytes, account: LocalAccount) -> str:
    signed = account.sign_message(encode_defunct(primitive=message_hash))
    return "0x" + bytes(signed.signature).hex()


def sign_session_token(token: SessionToken, account: LocalAccount) -> str:
    """Sign a token and return the API-key string ``"app-sk-" + base64(raw + "|" + sig)``.

    The signature is EIP-191 personal_sign over the 32 keccak bytes of the raw JSON, ``0x`` + 130
    lowercase hex characters with v ∈ {27, 28} (user-broker.md 6.2). Signing is deterministic
    (RFC 6979), so the result reproduces test-vectors.md §1, §2 and C1 byte for byte.

    Args:
        token: the token to sign (``token.address`` should be ``account.address``).
        account: the user's eth_account ``LocalAccount``.

    Returns:
        The API key (no ``Bearer `` prefix; see :func:`authorization_header`). It is a bearer
        credential: never log it.

    Raises:
        MalformedTokenError: a token no provider could read back, so nothing is signed:
            ``address`` / ``provider`` / ``nonce`` not strings, a ``|`` in any of them (the
            provider splits the payload at the first ``|``, B3 check 3), or text that is not
            valid Unicode (a lone surrogate has no UTF-8 form).
    """
    for name in ("address", "provider", "nonce"):
        if not isinstance(getattr(token, name), str):
            raise MalformedTokenError(f"session token field {name} must be a string")
    raw = token.to_json()
    if "|" in raw:
        raise MalformedTokenError(
            "a session token field contains '|', which separates the token from its signature"
        )
    try:
        raw_bytes = raw.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedTokenError("a session token field is not valid Unicode") from None
    signature = _sign_hash(keccak(raw_bytes), account)
    payload = raw_bytes + b"|" + signature.encode("ascii")
    return API_KEY_PREFIX + base64.b64encode(payload).decode("ascii")


def authorization_header(api_key: str) -> str:
    """``"Bearer " + api_key`` — the ``Authorization`` header value for an ``app-sk-`` key."""
    return "Bearer " + api_key


def _json_int(obj: dict[str, Any], key: str, *, lo: int, hi: int) -> int:
    value = obj.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedTokenError(
            f"invalid session token format in Authorization: field {key} is not an integer"
        )
    if not lo <= value <= hi:
        raise MalformedTokenError(
            f"invalid session token format in Authorization: field {key} out of range"
        )
    return value


def _json_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedTokenError(
            f"invalid session token format in Authorization: field {key} is not a string"
        )
    return value


def parse_authorization(header_or_key: str, *, require_bearer: bool = False) -> ParsedAuthorization:
    """Decode an ``Authorization`` header (``Bearer app-sk-…``) or a bare API key (``app-sk-…``).

    Follows provider-gateway.md B3 checks 1–4: prefix, standard padded base64, split on the
    **first** ``|``, JSON object with the §6.1 fields (unknown fields ignored, missing ones 0/"" as
    in Go; ``tokenId`` must fit uint8, ``generation`` uint64, timestamps int64).

    Args:
        header_or_key: the header value or the API key.
        require_bearer: accept only ``Bearer app-sk-…`` (what a provider receives).

    Returns:
        :class:`ParsedAuthorization` ``(token, signature, raw_message)``.

    Raises:
        MalformedTokenError: any of checks 1–4 fails (message = the B3 text).
    """
    if not isinstance(header_or_key, str):
        raise MalformedTokenError(MSG_BAD_HEADER)
    if header_or_key.startswith(BEARER_PREFIX):
        encoded = header_or_key[len(BEARER_PREFIX) :]
    elif not require_bearer and header_or_key.startswith(API_KEY_PREFIX):
        encoded = header_or_key[len(API_KEY_PREFIX) :]
    else:
        raise MalformedTokenError(MSG_BAD_HEADER)
    try:
        payload = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedTokenError(f"invalid base64 in Authorization header: {exc}") from None
    raw, sep, signature_bytes = payload.partition(b"|")
    if not sep:
        raise MalformedTokenError(MSG_BAD_PAYLOAD)
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedTokenError(f"invalid session token format in Authorization: {exc}") from None
    except RecursionError:  # a payload of deeply nested arrays
        raise MalformedTokenError(MSG_BAD_PAYLOAD) from None
    if not isinstance(obj, dict):
        raise MalformedTokenError(
            "invalid session token format in Authorization: not a JSON object"
        )
    token = SessionToken(
        address=_json_str(obj, "address"),
        provider=_json_str(obj, "provider"),
        timestamp=_json_int(obj, "timestamp", lo=-(2**63), hi=_INT64_MAX),
        expires_at=_json_int(obj, "expiresAt", lo=-(2**63), hi=_INT64_MAX),
        nonce=_json_str(obj, "nonce"),
        generation=_json_int(obj, "generation", lo=0, hi=_UINT64_MAX),
        token_id=_json_int(obj, "tokenId", lo=0, hi=255),
    )
    try:
        signature = signature_bytes.decode("ascii")
    except UnicodeDecodeError:
        signature = signature_bytes.decode("latin-1")
    return ParsedAuthorization(token, signature, raw)


def recover_token_signer(raw_message: bytes, signature: str) -> str:
    """Recover the address that signed ``raw_message`` (B3 check 10).

    Args:
        raw_message: the token JSON bytes exactly as received.
        signature: ``0x`` + 130 hex characters, v ∈ {27, 28}.

    Returns:
        The checksummed signer address.

    Raises:
        TokenSignatureError: not ``0x`` hex (``invalid signature format: …``), not 65 bytes
            (``invalid signature length``), v not 27/28, or a malleated high ``s`` (our addition:
            :func:`broker.wire.eth_signature.is_low_s`).
    """
    if not signature.startswith(("0x", "0X")):
        raise TokenSignatureError("invalid signature format: hex string without 0x prefix")
    if not _HEX.fullmatch(signature[2:]):  # bytes.fromhex would skip spaces (Go's decoder does not)
        raise TokenSignatureError("invalid signature format: invalid hex string")
    sig = bytes.fromhex(signature[2:])
    if len(sig) != 65:
        raise TokenSignatureError("invalid signature length")
    if sig[64] not in (27, 28):
        raise TokenSignatureError("signature verification failed: invalid recovery id")
    if not is_low_s(sig):
        raise TokenSignatureError("signature verification failed: non-canonical signature")
    try:
        return Account.recover_message(encode_defunct(primitive=keccak(raw_message)), signature=sig)
    except Exception:  # noqa: BLE001 - any failure of recovery is a bad signature
        raise TokenSignatureError("signature verification failed: invalid signature") from None


def is_token_revoked(revoked_bitmap: int, token_id: int) -> bool:
    """True when bit ``1 << token_id`` is set in ``revoked_bitmap`` (ids 0–254; 255 never)."""
    if token_id == EPHEMERAL_TOKEN_ID:
        return False
    return bool((int(revoked_bitmap) >> token_id) & 1)


def verify_session_token(
    authorization: str,
    *,
    provider_address: str,
    account_generation: int | None = None,
    revoked_bitmap: int = 0,
    now_s: int | None = None,
    require_bearer: bool = True,
) -> ParsedAuthorization:
    """Validate an ``Authorization`` header as a provider does (provider-gateway.md B3, in order).

    1–4 decode (:func:`parse_authorization`); 5 ``token.provider`` equals ``provider_address``
    case-insensitively; 6 ephemeral tokens (id 255) have ``expiresAt != 0`` and last ≤ 24 h, and
    (our addition, as both bounds are the signer's choice) ``expiresAt > 0`` and at most
    24 h + :data:`MAX_CLOCK_SKEW_S` after ``now_s``, so no ephemeral token (which cannot be revoked
    by id) outlives a day by a future ``timestamp`` or a negative ``expiresAt``;
    7 not expired; 8 generation equals ``account_generation`` and, for ids 0–254, the revocation bit
    is clear (skipped when ``account_generation`` is ``None``: the account does not exist);
    10 the signature over the received bytes recovers to ``token.address``. (Check 9, the
    provider's verified-token cache, is the caller's business.)

    Args:
        authorization: the header value (``Bearer app-sk-…``; a bare key when ``require_bearer``
            is False).
        provider_address: this provider's address.
        account_generation: the on-chain ``Account.generation`` of (token.address, provider), or
            ``None`` if the account does not exist.
        revoked_bitmap: the on-chain ``Account.revokedBitmap`` (int).
        now_s: current Unix time in seconds (default: now).
        require_bearer: see :func:`parse_authorization`.

    Returns:
        The :class:`ParsedAuthorization`; the authenticated user is ``.token.address``.

    Raises:
        MalformedTokenError, TokenProviderMismatchError, TokenExpiredError,
        TokenGenerationMismatchError, TokenRevokedError, TokenSignatureError: the first failing
        check, with the B3 message.
    """
    parsed = parse_authorization(authorization, require_bearer=require_bearer)
    token = parsed.token
    now_s = int(time.time()) if now_s is None else now_s
    if token.provider.lower() != provider_address.lower():
        raise TokenProviderMismatchError(MSG_WRONG_PROVIDER)
    if token.token_id == EPHEMERAL_TOKEN_ID:
        if token.expires_at <= 0:
            raise MalformedTokenError(MSG_EPHEMERAL_NO_EXPIRY)
        if (
            token.expires_at - token.timestamp > MAX_EPHEMERAL_DURATION_MS
            or token.expires_at // 1000
            > now_s + MAX_EPHEMERAL_DURATION_MS // 1000 + MAX_CLOCK_SKEW_S
        ):
            raise MalformedTokenError(MSG_EPHEMERAL_TOO_LONG)
    if token.is_expired(now_s):
        raise TokenExpiredError(MSG_EXPIRED)
    if account_generation is not None:
        if token.generation < account_generation:
            raise TokenGenerationMismatchError(
                MSG_GENERATION_EXPIRED,
                token_generation=token.generation,
                account_generation=account_generation,
            )
        if token.generation > account_generation:
            raise TokenGenerationMismatchError(
                MSG_FUTURE_GENERATION,
                token_generation=token.generation,
                account_generation=account_generation,
            )
        if is_token_revoked(revoked_bitmap, token.token_id):
            raise TokenRevokedError(MSG_REVOKED)
    signer = recover_token_signer(parsed.raw_message, parsed.signature)
    if signer.lower() != token.address.lower():
        raise TokenSignatureError(MSG_SIGNATURE_MISMATCH)
    return parsed
