"""Settlement of recorded fees with ``settleFeesWithTEE`` (``provider-gateway.md`` B10,
``contracts.md`` A3.5; vector ``test-vectors.md`` C3).

Crash safety. A settlement item for a user is signed with a nonce above the account's on-chain
nonce, and stored (batch row ``prepared``, its request rows ``settling``) **before** any transaction
is sent. While a user has a prepared batch no other batch is signed for that user, so the on-chain
account nonce tells the truth about it: ``account.nonce >= batch.nonce`` ⇔ the item was accepted
(SUCCESS or PARTIAL; the amount comes from the ``TEESettlementResult`` log). Otherwise the *same*
signed item is sent again: if an earlier copy lands first the later one gets INVALID_NONCE, so a fee
is never charged twice, and the rows stay in the database until the chain says they were paid, so
none is lost. :meth:`Settler.reconcile` applies this after a restart.

Nonces are ``max(account.nonce + 1, unix_seconds × 10**7)`` (compatible with the Go broker's scheme,
D9, and strictly increasing).

Preview (B10.4). New items are first checked with ``previewSettlementResults`` (``eth_call`` from
the provider, chunks of 50); items the contract would refuse (PROVIDER_MISMATCH, NO_TEE_SIGNER,
INVALID_NONCE, INVALID_SIGNATURE) are not stored or sent, so a pass in which every item would fail
sends no transaction. Unlike the Go broker, NO_TEE_SIGNER does **not** forfeit the user's fees: the
owner's acknowledgement is reset by any critical-field change of the service and given again later,
so the rows stay ``unsettled`` and are settled once the signer is acknowledged again. PARTIAL cannot
be previewed here because only the prefix of rows the balance covers is signed; if it happens anyway
(the balance fell meanwhile) the uncovered rows go back to ``unsettled``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any

from eth_utils import keccak
from sqlalchemy import select, update
from web3.logs import DISCARD

from broker.provider.db import BatchStatus, Database, RequestRecord, RequestStatus, SettlementBatch

if TYPE_CHECKING:
    from broker.chain.contracts import InferenceServingContract
    from broker.provider.accounts import AccountCache

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "MAX_BATCH",
    "SettlementReport",
    "SettlementScheduler",
    "SettlementStatus",
    "Settler",
    "TEESettlement",
    "requests_hash",
    "settlement_typed_data",
]

logger = logging.getLogger(__name__)

DOMAIN_NAME = "0G Inference Serving"
DOMAIN_VERSION = "1"
#: ``TEESettlementBatchSize`` and the contract's limit.
MAX_BATCH = 50


class SettlementStatus:
    """``SettlementStatus`` enum of ``contracts.md`` A3.2."""

    SUCCESS, PARTIAL, PROVIDER_MISMATCH, NO_TEE_SIGNER, INVALID_NONCE, INVALID_SIGNATURE = range(6)


def requests_hash(rows: Iterable[tuple[str, str, str, str, str]]) -> bytes:
    """``keccak256`` of the concatenated ``request_hash ‖ user ‖ fee ‖ input_fee ‖ output_fee``
    strings of the rows, in order (B10.3). Fees are the decimal strings as stored."""
    return keccak("".join("".join(r) for r in rows).encode("utf-8"))


def settlement_typed_data(
    *,
    chain_id: int,
    verifying_contract: str,
    requests_hash: bytes,
    nonce: int,
    provider: str,
    user: str,
    total_fee: int,
) -> dict[str, Any]:
    """The EIP-712 ``TEESettlement`` message of ``contracts.md`` A3.5 (eth_account full message)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TEESettlement": [
                {"name": "requestsHash", "type": "bytes32"},
                {"name": "nonce", "type": "uint256"},
                {"name": "provider", "type": "address"},
                {"name": "user", "type": "address"},
                {"name": "totalFee", "type": "uint256"},
            ],
        },
        "primaryType": "TEESettlement",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": int(chain_id),
            "verifyingContract": verifying_contract,
        },
        "message": {
            "requestsHash": requests_hash,
            "nonce": int(nonce),
            "provider": provider,
            "user": user,
            "totalFee": int(total_fee),
        },
    }


@dataclass(frozen=True)
class TEESettlement:
    """``TEESettlementData`` (calldata order of ``contracts.md`` A3.2); fee in neuron."""

    user: str
    provider: str
    total_fee: int
    requests_hash: bytes
    nonce: int
    signature: bytes

    def as_tuple(self) -> tuple:
        """The ABI tuple ``(user, provider, totalFee, requestsHash, nonce, signature)``."""
        return (
            self.user,
            self.provider,
            self.total_fee,
            self.requests_hash,
            self.nonce,
            self.signature,
        )


@dataclass
class SettlementReport:
    """What one pass did: users settled (neuron paid per user), batches left outstanding, users
    whose items the contract refused (status code per user)."""

    settled: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    outstanding: int = 0


class Settler:
    """Builds, signs, sends and reconciles settlements for one provider.

    Args:
        db: the gateway database.
        contract: InferenceServing wrapper whose ``sender`` is the provider wallet.
        accounts: the account cache (refreshed for settled users).
        signer: the TEE signer (``sign_typed_data``).
        chain_id: chain id for the EIP-712 domain.
        on_sent: test hook called with the receipt right after a settlement transaction is mined and
            before the database records its result (fault injection for the crash tests).
    """

    def __init__(
        self,
        db: Database,
        contract: InferenceServingContract,
        accounts: AccountCache,
        signer,
        *,
        chain_id: int,
        on_sent: Callable[[Any], None] | None = None,
    ) -> None:
        self.db = db
        self.contract = contract
        self.accounts = accounts
        self.signer = signer
        self.provider = accounts.provider
        self.chain_id = chain_id
        self.on_sent = on_sent
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ signing

    def sign(self, user: str, rows: Sequence[RequestRecord], nonce: int) -> TEESettlement:
        """Sign the settlement of ``rows`` (all of ``user``) with ``nonce``."""
        rhash = requests_hash(
            (r.request_hash, r.user_address, r.fee, r.input_fee, r.output_fee) for r in rows
        )
        total = sum(int(r.fee) for r in rows)
        typed = settlement_typed_data(
            chain_id=self.chain_id,
            verifying_contract=self.contract.address,
            requests_hash=rhash,
            nonce=nonce,
            provider=self.provider,
            user=user,
            total_fee=total,
        )
        return TEESettlement(
            user, self.provider, total, rhash, nonce, self.signer.sign_typed_data(typed)
        )

    # ------------------------------------------------------------------ passes

    def settle_once(self) -> SettlementReport:
        """Reconcile outstanding batches, then settle every user's unsettled fees (B10).

        Returns:
            :class:`SettlementReport`.

        Raises:
            RPCError, ContractRevertError: the chain could not be read or the transaction failed;
                nothing is lost (the batches stay ``prepared`` and are reconciled next time).
        """
        with self._lock:
            report = SettlementReport()
            self._reconcile(report)
            prepared = self._prepare(report)
            for start in range(0, len(prepared), MAX_BATCH):
                self._submit(prepared[start : start + MAX_BATCH], report)
            with self.db.session() as s:
                report.outstanding = len(
                    s.scalars(
                        select(SettlementBatch.id).where(
                            SettlementBatch.status == BatchStatus.PREPARED
                        )
                    ).all()
                )
            return report

    def reconcile(self) -> SettlementReport:
        """Resolve batches left ``prepared`` by a crash (see the module docstring)."""
        with self._lock:
            report = SettlementReport()
            self._reconcile(report)
            return report

    def _reconcile(self, report: SettlementReport) -> None:
        with self.db.session() as s:
            batches = s.scalars(
                select(SettlementBatch)
                .where(SettlementBatch.status == BatchStatus.PREPARED)
                .order_by(SettlementBatch.id)
            ).all()
        resend: list[SettlementBatch] = []
        for batch in batches:
            if not self._resolve_from_chain(batch, report):
                resend.append(batch)
        for start in range(0, len(resend), MAX_BATCH):
            self._submit(resend[start : start + MAX_BATCH], report)

    def _preview(self, items: Sequence[TEESettlement]) -> dict[str, int]:
        """``previewSettlementResults`` for ``items`` (chunks of 50, ``from`` = provider): the
        failure status per lower-cased user (PARTIAL is not a failure). An RPC error previews
        nothing (the items are sent; the contract refuses bad ones per item)."""
        failed: dict[str, int] = {}
        for start in range(0, len(items), MAX_BATCH):
            chunk = [i.as_tuple() for i in items[start : start + MAX_BATCH]]
            try:
                users, reasons, _partial_users, _amounts = self.contract.preview_settlement_results(
                    self.provider, chunk
                )
            except Exception as exc:  # noqa: BLE001 - a preview is advisory
                logger.warning("previewSettlementResults failed: %s", type(exc).__name__)
                continue
            for user, reason in zip(users, reasons, strict=True):
                failed.setdefault(user.lower(), int(reason))
        return failed

    def _prepare(self, report: SettlementReport | None = None) -> list[SettlementBatch]:
        """Sign, preview and store one batch per user with unsettled fees (rows → ``settling``);
        users whose item the contract would refuse go to ``report.refused`` and keep their rows
        ``unsettled``."""
        block = int(self.contract.w3.eth.block_number)
        candidates = self._candidates()
        refused = self._preview([item for _, _, item in candidates]) if candidates else {}
        out: list[SettlementBatch] = []
        for user, hashes, item in candidates:
            status = refused.get(user.lower())
            if status is not None:
                if report is not None:
                    report.refused[user] = status
                logger.warning(
                    "settlement for %s not sent: the contract would refuse it (status %s)",
                    user,
                    status,
                )
                continue
            batch = self._store_batch(user, hashes, item, block)
            if batch is not None:
                out.append(batch)
        return out

    def _candidates(self) -> list[tuple[str, list[str], TEESettlement]]:
        """``(user, request hashes, signed item)`` for each user with unsettled fees and no
        batch in flight: the longest prefix of the user's rows (oldest first) that the
        sub-account balance covers (avoids PARTIAL, B10.4), signed with a fresh nonce."""
        with self.db.session() as s:
            rows = s.scalars(
                select(RequestRecord)
                .where(RequestRecord.status == RequestStatus.UNSETTLED)
                .order_by(RequestRecord.created_at, RequestRecord.request_hash)
            ).all()
            busy = set(
                s.scalars(
                    select(SettlementBatch.user_address).where(
                        SettlementBatch.status == BatchStatus.PREPARED
                    )
                ).all()
            )
        by_user: dict[str, list[RequestRecord]] = {}
        for r in rows:
            if r.user_address not in busy and int(r.fee) > 0:
                by_user.setdefault(r.user_address, []).append(r)
        candidates: list[tuple[str, list[str], TEESettlement]] = []
        for user, urows in by_user.items():
            acc = self.accounts.get(user, refresh=True)
            if acc is None:
                continue
            chosen, total = [], 0
            for r in urows:
                if total + int(r.fee) > acc.balance:
                    break
                chosen.append(r)
                total += int(r.fee)
            if not chosen:
                continue
            nonce = max(acc.nonce + 1, time.time_ns() // 100)
            candidates.append(
                (user, [r.request_hash for r in chosen], self.sign(user, chosen, nonce))
            )
        return candidates

    def _store_batch(
        self, user: str, hashes: list[str], item: TEESettlement, block: int
    ) -> SettlementBatch | None:
        """Store one signed batch (``prepared``) and move its rows to ``settling``, in one
        transaction; ``None`` when the rows or the user were taken meanwhile."""
        with self.db.session.begin() as s:
            # Lock the chosen rows and re-check them and the user inside the write transaction:
            # another gateway process on the same PostgreSQL database may have batched them
            # meanwhile (SQLite ignores FOR UPDATE; its writers are serialised anyway).
            still = s.scalars(
                select(RequestRecord.request_hash)
                .where(
                    RequestRecord.request_hash.in_(hashes),
                    RequestRecord.status == RequestStatus.UNSETTLED,
                )
                .with_for_update()
            ).all()
            taken = s.scalar(
                select(SettlementBatch.id)
                .where(
                    SettlementBatch.user_address == user,
                    SettlementBatch.status == BatchStatus.PREPARED,
                )
                .limit(1)
            )
            if len(still) != len(hashes) or taken is not None:
                return None
            batch = SettlementBatch(
                user_address=user,
                nonce=str(item.nonce),
                total_fee=str(item.total_fee),
                requests_hash="0x" + item.requests_hash.hex(),
                signature="0x" + item.signature.hex(),
                from_block=block,
                status=BatchStatus.PREPARED,
            )
            s.add(batch)
            s.flush()
            s.execute(
                update(RequestRecord)
                .where(
                    RequestRecord.request_hash.in_(hashes),
                    RequestRecord.status == RequestStatus.UNSETTLED,
                )
                .values(status=RequestStatus.SETTLING, batch_id=batch.id)
            )
        return batch

    @staticmethod
    def _item(batch: SettlementBatch, provider: str) -> tuple:
        return (
            batch.user_address,
            provider,
            int(batch.total_fee),
            bytes.fromhex(batch.requests_hash[2:]),
            int(batch.nonce),
            bytes.fromhex(batch.signature[2:]),
        )

    def _submit(self, batches: Sequence[SettlementBatch], report: SettlementReport) -> None:
        if not batches:
            return
        fn = self.contract.contract.functions.settleFeesWithTEE(
            [self._item(b, self.provider) for b in batches]
        )
        receipt = self.contract.sender.send(fn)
        if self.on_sent is not None:
            self.on_sent(receipt)
        results: dict[str, tuple[int, int]] = {}
        for ev in self.contract.contract.events.TEESettlementResult().process_receipt(
            receipt, errors=DISCARD
        ):
            results.setdefault(
                ev["args"]["user"].lower(),
                (int(ev["args"]["status"]), int(ev["args"]["unsettledAmount"])),
            )
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        for batch in batches:
            res = results.get(batch.user_address.lower())
            if res is not None and res[0] in (SettlementStatus.SUCCESS, SettlementStatus.PARTIAL):
                self._apply(batch, res[0], res[1], report, tx_hash=tx_hash)
            elif not self._resolve_from_chain(batch, report):
                self._reject(batch, res[0] if res else -1, report, tx_hash=tx_hash)

    def _resolve_from_chain(self, batch: SettlementBatch, report: SettlementReport) -> bool:
        """If the account nonce shows the batch was accepted, apply its logged result; True then."""
        acc = self.accounts.get(batch.user_address, refresh=True)
        if acc is None or acc.nonce < int(batch.nonce):
            return False
        status, unsettled, tx_hash = SettlementStatus.SUCCESS, 0, None
        logs = self.contract.contract.events.TEESettlementResult().get_logs(
            from_block=batch.from_block, argument_filters={"user": batch.user_address}
        )
        for ev in logs:
            if int(ev["args"]["status"]) in (SettlementStatus.SUCCESS, SettlementStatus.PARTIAL):
                status, unsettled = int(ev["args"]["status"]), int(ev["args"]["unsettledAmount"])
                tx_hash = "0x" + bytes(ev["transactionHash"]).hex()
                break
        self._apply(batch, status, unsettled, report, tx_hash=tx_hash)
        return True

    def _apply(
        self,
        batch: SettlementBatch,
        status: int,
        unsettled: int,
        report: SettlementReport,
        tx_hash: str | None = None,
    ) -> None:
        paid = int(batch.total_fee) - unsettled
        with self.db.session.begin() as s:
            if not self._lock_prepared(s, batch):
                return
            rows = s.scalars(
                select(RequestRecord)
                .where(RequestRecord.batch_id == batch.id)
                .order_by(RequestRecord.created_at, RequestRecord.request_hash)
                .with_for_update()
            ).all()
            covered = 0
            for r in rows:
                if covered + int(r.fee) <= paid:
                    covered += int(r.fee)
                    r.status = RequestStatus.SETTLED
                else:  # not covered by a PARTIAL settlement: charge again later
                    r.status, r.batch_id = RequestStatus.UNSETTLED, None
            s.execute(
                update(SettlementBatch)
                .where(SettlementBatch.id == batch.id)
                .values(
                    status=BatchStatus.CONFIRMED,
                    result_status=status,
                    unsettled_amount=str(unsettled),
                    tx_hash=tx_hash or batch.tx_hash,
                )
            )
        self.accounts.invalidate(batch.user_address)
        if self.db.outstanding is not None:  # settled rows no longer count (B4.5 gate)
            self.db.outstanding.forget(batch.user_address)
        report.settled[batch.user_address] = report.settled.get(batch.user_address, 0) + paid
        logger.info("settled %s neuron for %s (status %s)", paid, batch.user_address, status)

    @staticmethod
    def _lock_prepared(s: Any, batch: SettlementBatch) -> bool:
        """Lock the batch row (``FOR UPDATE``; a no-op on SQLite) and tell whether it is still
        ``prepared``, i.e. no other process on the same database recorded its result already."""
        current = s.scalar(
            select(SettlementBatch.status).where(SettlementBatch.id == batch.id).with_for_update()
        )
        return current == BatchStatus.PREPARED

    def _reject(
        self,
        batch: SettlementBatch,
        status: int,
        report: SettlementReport,
        tx_hash: str | None = None,
    ) -> None:
        with self.db.session.begin() as s:
            if not self._lock_prepared(s, batch):
                return
            s.execute(
                update(RequestRecord)
                .where(RequestRecord.batch_id == batch.id)
                .values(status=RequestStatus.UNSETTLED, batch_id=None)
            )
            s.execute(
                update(SettlementBatch)
                .where(SettlementBatch.id == batch.id)
                .values(
                    status=BatchStatus.REJECTED,
                    result_status=status,
                    tx_hash=tx_hash or batch.tx_hash,
                )
            )
        report.refused[batch.user_address] = status
        logger.warning(
            "settlement for %s refused by the contract (status %s)", batch.user_address, status
        )


class SettlementScheduler:
    """Runs :meth:`Settler.settle_once` every ``interval`` seconds (APScheduler, one at a time) and
    on demand (:meth:`trigger`, used when a user's balance runs low)."""

    def __init__(self, settler: Settler, interval: float = 600.0) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.settler = settler
        self.interval = interval
        self._scheduler = BackgroundScheduler(daemon=True)
        self._job = self._scheduler.add_job(
            self._run, "interval", seconds=interval, max_instances=1, coalesce=True, id="settlement"
        )

    def _run(self) -> None:
        try:
            self.settler.settle_once()
        except Exception:
            logger.exception("settlement pass failed")

    def add_periodic(self, job_id: str, fn: Callable[[], Any], interval: float) -> None:
        """Also run ``fn()`` every ``interval`` seconds on this schedule (one run at a time;
        a failure is logged, never raised), e.g. the response-signature pruning.

        Args:
            job_id: the job's name (in logs). fn: the task. interval: seconds between runs.
        """

        def run() -> None:
            try:
                fn()
            except Exception:
                logger.exception("%s failed", job_id)

        self._scheduler.add_job(
            run, "interval", seconds=interval, max_instances=1, coalesce=True, id=job_id
        )

    def start(self) -> None:
        """Start the schedule."""
        self._scheduler.start()

    def trigger(self) -> None:
        """Run a pass as soon as possible (coalesced with a running one)."""
        from datetime import datetime

        self._job.modify(next_run_time=datetime.now(UTC))

    def shutdown(self) -> None:
        """Stop the schedule and wait for a running pass."""
        self._scheduler.shutdown(wait=True)
