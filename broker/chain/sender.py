"""The transaction sender: one per account, used by every write of the broker.

It fixes the reference SDK's transaction path (``user-broker.md`` §2.2–§2.3, §13 items 1 and 6):

* **Nonce lane.** Nonces come from a local counter, initialised from the ``pending`` transaction
  count and resynchronised after any failure, and are handed out under a lock, so concurrent callers
  in one process never collide.
* **Estimate first.** Gas is estimated before anything is signed; an estimate that reverts is
  decoded into the typed :class:`~broker.chain.errors.ContractRevertError` and nothing is sent.
* **Gas price policy.** An explicit price (neuron per gas) or the node's ``eth_gasPrice``. When the
  node answers "underpriced" / "fee too low" / "replacement transaction underpriced", or no receipt
  arrives within ``receipt_timeout`` seconds, the price is multiplied by ``gas_bump`` and the
  transaction is replaced with the **same nonce**, up to ``max_gas_price`` (default 10× the first
  price) and ``max_bumps`` replacements; then :class:`~broker.chain.errors.GasPriceCapError` or
  :class:`~broker.chain.errors.TransactionTimeoutError`.
* **Mined reverts.** A status-0 receipt is replayed with ``eth_call`` on the state just before its
  block and decoded into the typed error.
* **Other writers on the same key** (two processes, two brokers). When the *first* broadcast of a
  nonce is refused with ``nonce too low``, ``already known`` / ``already imported`` (another writer
  signed the very same bytes) or ``replacement transaction underpriced`` (another writer's
  transaction holds that nonce in the pool), the nonce is re-read from the node (``pending``) and
  the transaction re-signed and resent, at most :data:`NONCE_RETRIES` times (after a short random
  pause, so the writers fall out of step). This never sends one
  operation twice: the node refused our bytes, so nothing of ours is in flight with that nonce —
  provided nothing else re-sends them, which is why web3's transport retry is switched off for
  ``eth_sendRawTransaction`` on the sender's provider (a retried send that had reached the node
  would come back ``already known`` and look like another writer's). Another writer's transaction
  is never replaced: only our own broadcast nonce is bumped. A transport failure of
  ``eth_sendRawTransaction`` itself is not retried: the error says the transaction may still be
  mined and gives its hash. Before its first broadcast a nonce is checked against the node's
  ``pending`` count (another writer's pending transactions take nonces our lane does not know).
  When another writer's transaction took our nonce anyway (it replaced ours in the pool at a
  higher price) and none of our transactions for that nonce exists any more, nothing of ours can
  be mined: the transaction is re-signed with a fresh nonce. Each sender adds its own random *lane
  salt* (1–65536 gas) to the gas limit, so two writers practically never sign byte-identical
  transactions: identical bytes would be one transaction on chain that both writers report as theirs
  (one operation silently lost); the salt costs nothing (a legacy transaction pays for the gas used,
  not the limit). Two writers still cost retries and can race a bump; for heavy use keep one writer
  per key (README, "One writer per key").

Transactions are legacy (type 0, ``gasPrice``); nothing off-chain depends on the type (§2.2).
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import requests
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)
from web3.types import TxReceipt

from broker._exceptions import InputError, RPCError, TransactionError
from broker.chain.errors import (
    ContractRevertError,
    GasPriceCapError,
    TransactionRevertedError,
    TransactionTimeoutError,
    decode_revert,
)

__all__ = ["NONCE_RETRIES", "TransactionSender", "call_view", "no_send_retry", "rpc_guard"]

logger = logging.getLogger(__name__)

_REVERT_EXC = (ContractCustomError, ContractLogicError, ContractPanicError)
_UNDERPRICED_MARKERS = ("underpriced", "fee too low", "max fee per gas less than block base fee")
_NONCE_TOO_LOW_MARKERS = (
    "nonce too low",
    "already known",
    "already imported",
    "nonce has already been used",
    "known transaction",
)
_REPLACEMENT_MARKERS = ("replacement transaction underpriced", "replacement fee too low")

#: How many times a new transaction is re-signed with a fresh nonce after another writer on the
#: same key took its nonce (with a random pause of up to 20 ms × 2^attempt before each).
NONCE_RETRIES = 5
_SEND_METHOD = "eth_sendRawTransaction"


def no_send_retry(w3: Web3) -> Web3:
    """Switch off web3's transport retry for ``eth_sendRawTransaction`` on ``w3``'s HTTP provider
    (other methods keep it). A send retried after a timeout may reach the node twice; the second
    answer (``already known``) would hide that the first was accepted.

    Returns:
        ``w3`` (changed in place; providers without a retry configuration are left alone).
    """
    provider = w3.provider
    cfg = getattr(provider, "exception_retry_configuration", None)
    allow = getattr(cfg, "method_allowlist", None)
    if cfg is not None and allow is not None and _SEND_METHOD in allow:
        provider.exception_retry_configuration = cfg.model_copy(
            update={"method_allowlist": [m for m in allow if m != _SEND_METHOD]}
        )
    return w3


def _rpc_message(exc: BaseException) -> str:
    if isinstance(exc, Web3RPCError) and isinstance(exc.rpc_response, dict):
        err = exc.rpc_response.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], dict) and "message" in args[0]:
        return str(args[0]["message"])
    return str(exc)


@contextmanager
def rpc_guard(what: str) -> Iterator[None]:
    """Turn transport failures into :class:`~broker._exceptions.RPCError` and contract reverts into
    typed :class:`~broker.chain.errors.ContractRevertError` inside the ``with`` block.

    Args:
        what: a short description used in the error message (``"eth_call getLedger"``).
    """
    try:
        yield
    except _REVERT_EXC as exc:
        raise decode_revert(exc) from None
    except (requests.exceptions.RequestException, OSError) as exc:
        raise RPCError(f"{what}: RPC node unreachable ({type(exc).__name__})") from exc
    except Web3RPCError as exc:
        raise RPCError(f"{what}: {_rpc_message(exc)}") from exc


def call_view(
    fn: ContractFunction, *, from_: str | None = None, block_identifier: Any = "latest"
) -> Any:
    """Call a view function with ``eth_call``.

    Args:
        fn: a bound web3 contract function (``contract.functions.getLedger(user)``).
        from_: the ``from`` address of the call (some views use ``msg.sender``).
        block_identifier: block number, hash or tag.

    Returns:
        The decoded return value (web3's decoding).

    Raises:
        ContractRevertError: the call reverted (custom error decoded into its typed subclass).
        RPCError: the node could not be reached.
    """
    params: dict[str, Any] = {"from": from_} if from_ else {}
    with rpc_guard(f"eth_call {fn.fn_name}"):
        return fn.call(params, block_identifier=block_identifier)


class _SendUnanswered(RPCError):
    """``eth_sendRawTransaction`` got no answer: the transaction may or may not be in."""


def _matches(message: str, markers: tuple[str, ...]) -> bool:
    low = message.lower()
    return any(m in low for m in markers)


class TransactionSender:
    """Signs and lands transactions for one account.

    Args:
        w3: a connected :class:`~web3.Web3`.
        account: the signer (``eth_account`` LocalAccount or :class:`broker.chain.keys.Wallet`).
        gas_price: fixed initial gas price in neuron per gas; ``None`` reads ``eth_gasPrice`` per
            transaction.
        max_gas_price: cap in neuron per gas for bumps; ``None`` means 10× the first price.
        gas_bump: multiplier applied on each replacement (> 1; default 1.125, i.e. +12.5 %).
        receipt_timeout: seconds to wait for a receipt before replacing the transaction.
        max_bumps: how many replacements at most.
        poll_interval: seconds between receipt polls.
        gas_limit_margin: multiplier applied to the gas estimate (default 1.2).

    Raises:
        InputError: ``gas_bump <= 1`` or a negative price/limit.
    """

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        *,
        gas_price: int | None = None,
        max_gas_price: int | None = None,
        gas_bump: Decimal = Decimal("1.125"),
        receipt_timeout: float = 120.0,
        max_bumps: int = 5,
        poll_interval: float = 0.05,
        gas_limit_margin: Decimal = Decimal("1.2"),
    ) -> None:
        gas_bump = Decimal(str(gas_bump))
        if gas_bump <= 1:
            raise InputError(f"gas_bump must be greater than 1, got {gas_bump}")
        if gas_price is not None and gas_price < 0:
            raise InputError("gas_price must not be negative")
        if max_gas_price is not None and max_gas_price < 0:
            raise InputError("max_gas_price must not be negative")
        if receipt_timeout <= 0:
            raise InputError("receipt_timeout must be positive")
        if max_bumps < 0:
            raise InputError("max_bumps must not be negative")
        self.w3 = no_send_retry(w3)
        self._account = account
        self.gas_price = gas_price
        self.max_gas_price = max_gas_price
        self.gas_bump = gas_bump
        self.receipt_timeout = float(receipt_timeout)
        self.max_bumps = int(max_bumps)
        self.poll_interval = poll_interval
        self.gas_limit_margin = Decimal(str(gas_limit_margin))
        self._lock = threading.Lock()
        self._salt = secrets.randbelow(1 << 16) + 1  # gas; see "Other writers" above
        self._nonce: int | None = None
        self._chain_id: int | None = None

    def __repr__(self) -> str:
        return f"TransactionSender(address={self.address})"

    @property
    def address(self) -> str:
        """The checksummed address of the signer."""
        return self._account.address

    @property
    def chain_id(self) -> int:
        """The chain id (read once from the node)."""
        if self._chain_id is None:
            with rpc_guard("eth_chainId"):
                self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    # ----------------------------------------------------------------------------- public API

    def call(self, fn: ContractFunction, *, from_: str | None = None) -> Any:
        """Call a view function (``eth_call``) from ``from_`` (default: this account).

        Returns:
            The decoded return value.

        Raises:
            ContractRevertError: the call reverted (typed subclass).
            RPCError: transport failure.
        """
        return call_view(fn, from_=from_ or self.address)

    def send(self, fn: ContractFunction, *, value: int = 0) -> TxReceipt:
        """Estimate, sign, send and wait for a contract write.

        Args:
            fn: a bound web3 contract function (``contract.functions.depositFund()``).
            value: native value in neuron.

        Returns:
            The mined receipt (status 1).

        Raises:
            ContractRevertError: the estimate or the mined transaction reverted (typed subclass).
            GasPriceCapError: still underpriced at ``max_gas_price`` / after ``max_bumps``.
            TransactionTimeoutError: no receipt after the last replacement.
            TransactionError: the node refused the transaction (for example insufficient funds),
                did not answer ``eth_sendRawTransaction`` (the message gives the hash: it may
                still be mined), or another writer on this key took the nonce more than
                :data:`NONCE_RETRIES` times.
            RPCError: transport failure.
        """
        if value < 0:
            raise InputError("value must not be negative")
        data = fn._encode_transaction_data()
        return self.send_raw({"to": fn.address, "data": data, "value": int(value)})

    def send_raw(self, tx: dict[str, Any]) -> TxReceipt:
        """Sign, send and wait for a raw transaction.

        Args:
            tx: ``to`` (address), ``data`` (hex), optional ``value`` (neuron), optional ``gas``
                (skips estimation when given; the lane salt is added), optional ``gasPrice``
                (initial price, neuron per gas). ``nonce``, ``chainId`` and ``from`` are filled in
                here.

        Returns:
            The mined receipt (status 1).

        Raises:
            As :meth:`send`.
        """
        base: dict[str, Any] = {
            "to": Web3.to_checksum_address(tx["to"]) if tx.get("to") else None,
            "data": tx.get("data", "0x"),
            "value": int(tx.get("value", 0)),
        }
        if base["to"] is None:
            base.pop("to")
        if tx.get("gas") is not None:
            base["gas"] = int(tx["gas"]) + self._salt
        else:
            with rpc_guard("eth_estimateGas"):
                estimate = self.w3.eth.estimate_gas({"from": self.address, **base})
            base["gas"] = math.ceil(Decimal(estimate) * self.gas_limit_margin) + self._salt
        price = int(tx["gasPrice"]) if tx.get("gasPrice") is not None else self._initial_price()
        return self._land(base, price)

    # ----------------------------------------------------------------------------- internals

    def _initial_price(self) -> int:
        if self.gas_price is not None:
            return int(self.gas_price)
        with rpc_guard("eth_gasPrice"):
            return int(self.w3.eth.gas_price)

    def _bumped(self, price: int, cap: int, nonce: int) -> int:
        if price >= cap:
            raise GasPriceCapError(
                f"gas price {price} neuron/gas already at the cap {cap} (nonce {nonce})",
                nonce=nonce,
                gas_price=price,
            )
        new = math.ceil(Decimal(price) * self.gas_bump)
        return min(max(new, price + 1), cap)

    def _pending_nonce(self) -> int:
        with rpc_guard("eth_getTransactionCount"):
            return int(self.w3.eth.get_transaction_count(self.address, "pending"))

    def _sign_and_send(self, base: dict[str, Any], nonce: int, price: int) -> str:
        tx = {**base, "nonce": nonce, "gasPrice": price, "chainId": self.chain_id}
        signed = self._account.sign_transaction(tx)
        try:
            with rpc_guard("eth_sendRawTransaction"):
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except RPCError as exc:
            if isinstance(exc.__cause__, (requests.exceptions.RequestException, OSError)):
                raise _SendUnanswered(
                    f"the node did not answer eth_sendRawTransaction "
                    f"({type(exc.__cause__).__name__}); transaction 0x{bytes(signed.hash).hex()} "
                    f"(nonce {nonce}) may still be mined: check it before sending again"
                ) from None
            raise
        hex_hash = "0x" + bytes(tx_hash).hex()
        logger.debug("sent tx %s nonce=%d gas_price=%d", hex_hash, nonce, price)
        return hex_hash

    def _broadcast(
        self,
        base: dict[str, Any],
        nonce: int,
        price: int,
        cap: int,
        bumps: list[int],
        *,
        ours: bool = True,
    ) -> tuple[str, int]:
        """Broadcast, bumping on underpriced errors. Returns (hash, price used).

        ``ours``: a transaction of ours already holds ``nonce`` (a replacement); when ``False``
        a "replacement transaction underpriced" means another writer's does, and is raised."""
        while True:
            try:
                return self._sign_and_send(base, nonce, price), price
            except _SendUnanswered:
                raise
            except RPCError as exc:
                message = str(exc)
                if not _matches(message, _UNDERPRICED_MARKERS):
                    raise
                if not ours and _matches(message, _REPLACEMENT_MARKERS):
                    raise  # another writer's transaction holds this nonce: never replace it
                if len(bumps) >= self.max_bumps:
                    raise GasPriceCapError(
                        f"transaction still underpriced at {price} neuron/gas after "
                        f"{len(bumps)} bumps (nonce {nonce})",
                        nonce=nonce,
                        gas_price=price,
                    ) from None
                price = self._bumped(price, cap, nonce)
                bumps.append(price)

    def _land(self, base: dict[str, Any], price: int) -> TxReceipt:
        cap = int(self.max_gas_price) if self.max_gas_price is not None else price * 10
        if price > cap:
            raise GasPriceCapError(
                f"gas price {price} neuron/gas exceeds max_gas_price {cap}",
                nonce=-1,
                gas_price=price,
            )
        for _ in range(NONCE_RETRIES + 1):
            bumps: list[int] = []
            nonce, tx_hash, used = self._first_broadcast(base, price, cap, bumps)
            receipt = self._await_receipt(base, nonce, [tx_hash], used, cap, bumps)
            if receipt is not None:
                break
            # Another writer's transaction consumed our nonce and none of ours exists any more
            # (replaced in the pool, then dropped): nothing of ours can be mined; send anew.
            logger.info(
                "nonce %d was consumed by another writer; resending with a fresh nonce", nonce
            )
        else:
            raise TransactionError(
                f"another writer on this key consumed the nonce {NONCE_RETRIES + 1} times; "
                "nothing was mined for this transaction (keep one writer per key)"
            )
        if receipt["status"] != 1:
            raise self._decode_failed(base, receipt)
        return receipt

    def _first_broadcast(
        self, base: dict[str, Any], price: int, cap: int, bumps: list[int]
    ) -> tuple[int, str, int]:
        """Take a nonce and broadcast; returns ``(nonce, hash, price used)``."""
        with self._lock:
            for attempt in range(NONCE_RETRIES + 1):
                # The node's pending count catches another writer's transactions that our local
                # lane does not know about (their nonces are taken even while still pending).
                pending = self._pending_nonce()
                nonce = pending if self._nonce is None else max(self._nonce, pending)
                self._nonce = nonce
                try:
                    tx_hash, price = self._broadcast(base, nonce, price, cap, bumps, ours=False)
                except _SendUnanswered as exc:
                    self._nonce = None
                    raise TransactionError(str(exc)) from None
                except RPCError as exc:
                    self._nonce = None  # resync on the next transaction
                    message = str(exc)
                    taken = _matches(message, _NONCE_TOO_LOW_MARKERS + _REPLACEMENT_MARKERS)
                    if taken and attempt < NONCE_RETRIES:
                        # Another writer on this key took the nonce; the node refused our bytes,
                        # so nothing of ours is in flight: re-sign with a fresh nonce.
                        logger.info(
                            "nonce %d taken by another writer (%s); resending with a fresh nonce",
                            nonce,
                            message,
                        )
                        time.sleep(secrets.randbelow(20 << attempt) / 1000)
                        continue
                    raise self._refused(exc) from None
                except BaseException:
                    self._nonce = None
                    raise
                self._nonce = nonce + 1
                return nonce, tx_hash, price
        raise AssertionError("unreachable")  # pragma: no cover

    def _await_receipt(
        self,
        base: dict[str, Any],
        nonce: int,
        hashes: list[str],
        price: int,
        cap: int,
        bumps: list[int],
    ) -> TxReceipt | None:
        """Wait for a receipt of any of ``hashes``, bumping on timeouts. ``None``: the nonce was
        consumed by another writer and none of our transactions exists (:meth:`_nonce_lost`)."""
        while True:
            receipt = self._wait_any(hashes, self.receipt_timeout)
            if receipt is not None:
                return receipt
            if self._nonce_lost(nonce, hashes):
                return None
            if len(bumps) >= self.max_bumps:
                self._nonce = None
                raise TransactionTimeoutError(
                    f"no receipt for nonce {nonce} after {len(hashes)} transaction(s) and "
                    f"{self.receipt_timeout:g}s each (last {hashes[-1]}); it may still be mined",
                    nonce=nonce,
                    tx_hashes=hashes,
                )
            try:
                price = self._bumped(price, cap, nonce)
            except GasPriceCapError:
                self._nonce = None
                raise
            bumps.append(price)
            try:
                new_hash, price = self._broadcast(base, nonce, price, cap, bumps)
            except _SendUnanswered:
                continue  # the replacement may or may not be in: keep waiting for any hash
            except RPCError as exc:
                if _matches(str(exc), _NONCE_TOO_LOW_MARKERS):
                    continue  # mined meanwhile (ours: the receipt comes; else _nonce_lost)
                self._nonce = None
                raise self._refused(exc) from None
            logger.debug("replaced nonce %d with %s at gas price %d", nonce, new_hash, price)
            hashes.append(new_hash)

    def _nonce_lost(self, nonce: int, hashes: list[str]) -> bool:
        """``True`` when ``nonce`` is used on chain and the node knows none of ``hashes`` (not
        mined, not pending): then none of them can ever be mined, and resending is safe."""
        try:
            with rpc_guard("eth_getTransactionCount"):
                mined = int(self.w3.eth.get_transaction_count(self.address, "latest"))
            if mined <= nonce:
                return False
            for h in hashes:
                try:
                    with rpc_guard("eth_getTransactionByHash"):
                        if self.w3.eth.get_transaction(h) is not None:
                            return False
                except TransactionNotFound:
                    continue
                except RPCError as exc:
                    if "not found" not in str(exc).lower():
                        return False
        except RPCError:
            return False  # cannot tell: keep treating it as possibly ours
        with self._lock:
            self._nonce = None
        return True

    @staticmethod
    def _refused(exc: RPCError) -> TransactionError:
        message = str(exc)
        if "insufficient funds" in message.lower():
            return TransactionError(
                f"Insufficient funds for transaction. Please check your wallet balance. ({message})"
            )
        return TransactionError(f"transaction refused by the node: {message}")

    def _wait_any(self, hashes: list[str], timeout: float) -> TxReceipt | None:
        deadline = time.monotonic() + timeout
        while True:
            for h in reversed(hashes):
                try:
                    receipt = self.w3.eth.get_transaction_receipt(h)
                except (TransactionNotFound, TimeExhausted):
                    continue
                except Web3RPCError as exc:
                    # Some nodes (anvil among them) answer a still-pending hash with an RPC error
                    # "transaction ... not found" instead of null: that is "not mined yet".
                    if "not found" in _rpc_message(exc).lower():
                        continue
                    raise RPCError(f"eth_getTransactionReceipt: {_rpc_message(exc)}") from exc
                except (requests.exceptions.RequestException, OSError) as exc:
                    # The transaction is already broadcast: a transport hiccup must not make us
                    # forget it. Keep polling until the deadline, then bump-and-replace as usual.
                    logger.debug("receipt poll for %s failed (%s); retrying", h, type(exc).__name__)
                    continue
                if receipt is not None:
                    return receipt
            if time.monotonic() >= deadline:
                return None
            time.sleep(self.poll_interval)

    def _decode_failed(self, base: dict[str, Any], receipt: TxReceipt) -> ContractRevertError:
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        block = int(receipt["blockNumber"])
        call = {"from": self.address, **base}
        try:
            self.w3.eth.call(call, max(block - 1, 0))
        except _REVERT_EXC as exc:
            return decode_revert(exc, tx_hash=tx_hash)
        except Web3RPCError as exc:
            return decode_revert(exc, tx_hash=tx_hash)
        except Exception as exc:  # noqa: BLE001 - replay is best effort
            logger.debug("replay of %s gave no revert data: %s", tx_hash, type(exc).__name__)
        return TransactionRevertedError(
            f"transaction {tx_hash} reverted (status 0) in block {block}; "
            "the replay gave no reason",
            tx_hash=tx_hash,
        )
