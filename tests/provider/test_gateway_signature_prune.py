"""The gateway deletes expired response signatures on a schedule (every ``signature_ttl``
seconds), so its database does not keep every signature forever; live ones stay."""

from __future__ import annotations

import time

import pytest
from devnet_helpers import devnet_gateway_settings
from sqlalchemy import create_engine, text

from broker.provider.errors import SignatureNotFoundError
from broker.provider.serve import build_gateway
from broker.provider.tee import LocalTeeSigner

ZG = 10**18


def _rows(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {r[0] for r in conn.execute(text("SELECT chat_id FROM chat_signatures"))}
    finally:
        engine.dispose()


def test_expired_signatures_are_pruned_on_schedule(devnet, tmp_path):
    from broker.devnet import fund_new_account

    provider = fund_new_account(devnet, amount_neuron=10 * ZG)
    db_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    settings = devnet_gateway_settings(
        devnet,
        provider,
        tmp_path,
        model="prune-model",
        db_url=db_url,
        signature_ttl=0.5,
        settlement_interval=3600,
    )
    gw = build_gateway(settings, signer=LocalTeeSigner(bytes.fromhex("33" * 32)))
    try:
        gw.signatures.sign_and_store("chat-old", b'{"q":1}', b'{"a":1}')
        assert gw.signatures.get("chat-old").signature
        with gw.db.engine.begin() as conn:  # a live one (expires in an hour)
            conn.execute(
                text(
                    "INSERT INTO chat_signatures (chat_id, text, signature, expires_at) "
                    "VALUES ('chat-live', 't', 's', :e)"
                ),
                {"e": time.time() + 3600},
            )
        assert _rows(db_url) == {"chat-old", "chat-live"}
        gw.scheduler.start()
        deadline = time.monotonic() + 15
        while "chat-old" in _rows(db_url) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _rows(db_url) == {"chat-live"}
        with pytest.raises(SignatureNotFoundError):
            gw.signatures.get("chat-old")
    finally:
        gw.scheduler.shutdown()
        gw.db.dispose()
