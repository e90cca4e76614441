"""Chain-level errors and typed decoding of contract reverts.

A revert from LedgerManager or InferenceServing arrives as raw ABI-encoded data (web3.py raises
``ContractCustomError`` carrying only that data; ``reference/toolchain.md``). :func:`decode_revert`
maps it to a :class:`ContractRevertError` subclass generated from the contract ABIs, one per custom
error (``InsufficientBalance`` → :class:`InsufficientBalanceError`), with the decoded arguments in
``.error_args``. A name that would shadow a category of :mod:`broker._exceptions` gets the suffix
``RevertError`` instead (``InvalidAddress`` → ``InvalidAddressRevertError``). ``Error(string)``
reverts (OpenZeppelin's ``Ownable``/``ReentrancyGuard``) decode to
:class:`RevertStringError` and ``Panic(uint256)`` to :class:`PanicError`.

Messages are one line: ``InsufficientBalance(user=0x…): Insufficient balance in the account.``, the
friendly text being the SDK's table (``user-broker.md`` §2.4) where it has one. Selectors:
``contracts.md`` A2.8 and A3.6.

Besides the generated classes (also reachable via :func:`error_class`), this module defines the
sender's errors (:class:`TransactionTimeoutError`, :class:`GasPriceCapError`,
:class:`TransactionRevertedError`), :class:`ChainIdMismatchError` and :class:`SignerRequiredError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from broker import _exceptions
from broker._exceptions import ConfigError, KeyStoreError, TransactionError

__all__ = [
    "FRIENDLY_MESSAGES",
    "ChainIdMismatchError",
    "ContractRevertError",
    "GasPriceCapError",
    "PanicError",
    "RevertStringError",
    "SignerRequiredError",
    "TransactionRevertedError",
    "TransactionTimeoutError",
    "UnknownRevertError",
    "decode_revert",
    "error_class",
    "revert_error_names",
]

#: The SDK's friendly texts for custom errors (``user-broker.md`` §2.4), keyed by error name.
FRIENDLY_MESSAGES: dict[str, str] = {
    "LedgerNotExists": "Account does not exist. Please create an account first using "
    '"add-account".',
    "LedgerExists": 'Account already exists. Use "deposit" to add funds or "get-account" to view '
    "details.",
    "InsufficientBalance": "Insufficient balance in the account.",
    "ServiceNotExist": "Service provider does not exist. Please check the provider address.",
    "AccountNotExists": "Sub-account not found. Initialize it by transferring funds via "
    '"transfer-fund"',
    "AccountExists": "Sub-account already exists for this provider.",
    "RefundLocked": "Refund is still locked. Please wait for the lock time to expire.",
    "InvalidVerifierInput": "Invalid verifier input.",
    "Unauthorized": "Unauthorized: the caller is not allowed to perform this operation.",
    "InvalidInput": "Invalid input.",
    "RefundInvalid": "Invalid refund.",
    "RefundProcessed": "Refund has already been processed.",
    "TooManyRefunds": "Too many pending refunds for this sub-account (maximum 5).",
    "AdditionalInfoTooLong": "Additional info is too long.",
    "InvalidTEESignature": "Invalid TEE signature.",
    "TooManyProviders": "Too many providers in one request.",
    "InvalidServiceType": "Invalid service type.",
    "ServiceNotRegistered": "Service is not registered in the LedgerManager.",
    "ServiceNameExists": "A service with this name already exists.",
    "InvalidServiceAddress": "Invalid service address.",
}

_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)

_PANIC_CODES = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "invalid storage byte array",
    0x31: "pop on empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function",
}


class ContractRevertError(TransactionError):
    """A contract call or transaction reverted.

    Attributes:
        error_name: the custom error's name (``"InsufficientBalance"``), ``"Error"`` for a string
            revert, ``"Panic"`` for a panic, or ``None`` when the data could not be decoded.
        error_args: decoded arguments, ``{name: value}`` in ABI order (addresses checksummed,
            integers as int); unnamed ABI inputs are called ``arg0``, ``arg1``...
        selector: the 4-byte selector as ``0x``-prefixed hex, or ``None`` when there was no data.
        data: the raw revert data (``0x`` hex), or ``None``.
        tx_hash: hash of the mined transaction that reverted, when known.
    """

    #: Set on generated subclasses; ``None`` on the base class.
    abi_name: str | None = None

    def __init__(
        self,
        message: str,
        *,
        error_name: str | None = None,
        error_args: Mapping[str, Any] | None = None,
        selector: str | None = None,
        data: str | None = None,
        tx_hash: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error_name = error_name
        self.error_args: dict[str, Any] = dict(error_args or {})
        self.selector = selector
        self.data = data
        self.tx_hash = tx_hash


class RevertStringError(ContractRevertError):
    """``Error(string)`` revert (``require(..., "text")``, OpenZeppelin ``Ownable``): the text is in
    ``error_args["message"]``."""


class PanicError(ContractRevertError):
    """``Panic(uint256)`` revert (assert, overflow, division by zero...): ``error_args["code"]``."""


class UnknownRevertError(ContractRevertError):
    """A revert whose data matched no known error (or had no data at all)."""


class TransactionTimeoutError(TransactionError):
    """No receipt arrived within ``receipt_timeout`` after the last replacement (bumps exhausted).

    Attributes:
        nonce: the nonce used by every replacement.
        tx_hashes: all hashes broadcast for that nonce (oldest first); one of them may still be
            mined later.
    """

    def __init__(self, message: str, *, nonce: int, tx_hashes: list[str]) -> None:
        super().__init__(message)
        self.nonce = nonce
        self.tx_hashes = list(tx_hashes)


class GasPriceCapError(TransactionError):
    """The node kept refusing the transaction as underpriced (or it kept timing out) and the gas
    price cannot be raised further (``max_gas_price`` reached or ``max_bumps`` used up)."""

    def __init__(self, message: str, *, nonce: int, gas_price: int) -> None:
        super().__init__(message)
        self.nonce = nonce
        self.gas_price = gas_price


class TransactionRevertedError(ContractRevertError):
    """A mined transaction has status 0 and replaying it did not reproduce a decodable reason."""


class ChainIdMismatchError(ConfigError):
    """The RPC endpoint serves a different chain than the selected network preset."""


class SignerRequiredError(KeyStoreError):
    """A write was attempted on a read-only contract wrapper or broker (no signer)."""


# --------------------------------------------------------------------------------------------
# Generated classes, one per custom error of both ABIs.

_RESERVED_NAMES = frozenset(_exceptions.__all__)
_CLASSES: dict[str, type[ContractRevertError]] = {}
# selector bytes -> (error name, [input types], [input names])
_SELECTORS: dict[bytes, tuple[str, list[str], list[str]]] = {}


def _abi_type(inp: Mapping[str, Any]) -> str:
    typ = inp["type"]
    if typ.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in inp.get("components", []))
        return f"({inner}){typ[5:]}"
    return typ


def _register_abi(abi: list[Mapping[str, Any]]) -> None:
    for item in abi:
        if item.get("type") != "error":
            continue
        name = item["name"]
        types = [_abi_type(i) for i in item.get("inputs", [])]
        names = [i.get("name") or f"arg{n}" for n, i in enumerate(item.get("inputs", []))]
        selector = function_signature_to_4byte_selector(f"{name}({','.join(types)})")
        _SELECTORS[selector] = (name, types, names)
        if name not in _CLASSES:
            cls_name = f"{name}Error"
            if cls_name in _RESERVED_NAMES or cls_name in globals():
                # e.g. InferenceServing's InvalidAddress would shadow the category
                # broker._exceptions.InvalidAddressError in broker.errors
                cls_name = f"{name}RevertError"
            cls = type(
                cls_name,
                (ContractRevertError,),
                {
                    "__doc__": f"The contract reverted with custom error ``{name}``"
                    f" (generated from the ABI; arguments in ``error_args``).",
                    "__module__": __name__,
                    "abi_name": name,
                },
            )
            _CLASSES[name] = cls
            globals()[cls_name] = cls
            __all__.append(cls_name)


def _load_abis() -> None:
    from broker.chain.artifacts import load_abi

    for contract in ("LedgerManager", "InferenceServing"):
        abi = load_abi(contract)
        if isinstance(abi, Mapping):  # tolerate a full artifact
            abi = abi["abi"]
        _register_abi(abi)


_load_abis()


def revert_error_names() -> list[str]:
    """Names of every custom error known from the ABIs, sorted."""
    return sorted(_CLASSES)


def error_class(name: str) -> type[ContractRevertError]:
    """The generated class for the custom error ``name`` (``"InsufficientBalance"`` →
    ``InsufficientBalanceError``). ``"Error"`` and ``"Panic"`` give :class:`RevertStringError` and
    :class:`PanicError`.

    Raises:
        KeyError: no custom error of that name in either ABI.
    """
    if name == "Error":
        return RevertStringError
    if name == "Panic":
        return PanicError
    return _CLASSES[name]


# --------------------------------------------------------------------------------------------
# Decoding.


def _format_value(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


def _normalise(value: Any, typ: str) -> Any:
    if typ == "address":
        return to_checksum_address(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _extract_data(source: Any) -> tuple[str | None, str | None]:
    """Return (revert data hex or None, fallback message) from an exception or raw data."""
    if source is None:
        return None, None
    if isinstance(source, (bytes, bytearray)):
        return "0x" + bytes(source).hex(), None
    if isinstance(source, str):
        text = source.strip()
        if text.startswith(("0x", "0X")):
            return text, None
        try:
            bytes.fromhex(text)
            return "0x" + text, None
        except ValueError:
            return None, text
    if isinstance(source, Mapping):
        data = source.get("data")
        if isinstance(data, Mapping):
            data = data.get("data") or data.get("result")
        data_hex = data if isinstance(data, str) and data.startswith("0x") else None
        return data_hex, source.get("message")
    if isinstance(source, BaseException):
        data = getattr(source, "data", None)
        if isinstance(data, Mapping):
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x"):
            return data, None
        for arg in getattr(source, "args", ()):
            if isinstance(arg, Mapping):
                found, msg = _extract_data(arg)
                if found:
                    return found, msg
            if isinstance(arg, str) and arg.startswith("0x") and len(arg) >= 10:
                return arg, None
        message = getattr(source, "message", None) or (source.args[0] if source.args else None)
        return None, str(message) if message is not None else None
    return None, str(source)


def decode_revert(source: Any, *, tx_hash: str | None = None) -> ContractRevertError:
    """Decode a revert into the typed :class:`ContractRevertError` subclass.

    Args:
        source: a web3 exception (``ContractCustomError``, ``ContractLogicError``,
            ``ContractPanicError``, a JSON-RPC error dict or ``Web3RPCError``), the raw revert data
            as ``bytes`` or ``0x`` hex, or an RPC error object ``{"message", "data"}``.
        tx_hash: hash of the mined transaction, recorded on the error when known.

    Returns:
        The error instance (not raised): a generated class for a known custom error,
        :class:`RevertStringError`, :class:`PanicError`, or :class:`UnknownRevertError`.
    """
    if isinstance(source, ContractRevertError):
        return source
    data_hex, fallback = _extract_data(source)
    raw = b""
    if data_hex:
        try:
            raw = bytes.fromhex(data_hex[2:])
        except ValueError:
            raw = b""
    selector = raw[:4]
    sel_hex = "0x" + selector.hex() if len(selector) == 4 else None
    body = raw[4:]
    if selector == _ERROR_SELECTOR:
        try:
            (text,) = abi_decode(["string"], body)
        except Exception:  # noqa: BLE001 - malformed payload
            text = "<undecodable reason>"
        return RevertStringError(
            f"execution reverted: {text}",
            error_name="Error",
            error_args={"message": text},
            selector=sel_hex,
            data=data_hex,
            tx_hash=tx_hash,
        )
    if selector == _PANIC_SELECTOR:
        try:
            (code,) = abi_decode(["uint256"], body)
        except Exception:  # noqa: BLE001
            code = -1
        meaning = _PANIC_CODES.get(code, "unknown panic code")
        return PanicError(
            f"Panic(code=0x{code:02x}): {meaning}",
            error_name="Panic",
            error_args={"code": code},
            selector=sel_hex,
            data=data_hex,
            tx_hash=tx_hash,
        )
    known = _SELECTORS.get(selector) if len(selector) == 4 else None
    if known is not None:
        name, types, names = known
        try:
            values = abi_decode(types, body)
        except Exception:  # noqa: BLE001
            values = None
        if values is not None:
            args = {n: _normalise(v, t) for n, v, t in zip(names, values, types, strict=True)}
            arg_text = ", ".join(f"{k}={_format_value(v)}" for k, v in args.items())
            message = f"{name}({arg_text})"
            friendly = FRIENDLY_MESSAGES.get(name)
            if friendly:
                message += f": {friendly}"
            return _CLASSES[name](
                message,
                error_name=name,
                error_args=args,
                selector=sel_hex,
                data=data_hex,
                tx_hash=tx_hash,
            )
    if sel_hex:
        message = f"execution reverted with unknown error data (selector {sel_hex})"
    else:
        message = "execution reverted without a reason"
        if fallback and fallback not in ("execution reverted", "0x"):
            message = f"execution reverted: {fallback}"
    return UnknownRevertError(message, selector=sel_hex, data=data_hex, tx_hash=tx_hash)
