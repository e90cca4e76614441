"""Fixtures of the web-page tests: one devnet provider stack (tiny Z-Image worker + gateway, admin
key set) and one ``serve`` with the dashboard for a funded user, shared by the ui test modules; and
a headless Chromium (Debian's ``chromium`` driven by Playwright), skipped with the reason when
either is missing."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
from devnet_helpers import devnet_user_broker, key_hex, provider_stack
from server_helpers import UvicornThread, free_port

API_KEY = "sk-ui-test-key"
ADMIN_KEY = "admin-ui-test-key"


@pytest.fixture(scope="session")
def ui_stack(devnet, tmp_path_factory):
    """``SimpleNamespace(stack, broker, user_key, serve_url, app, api_key, admin_key, devnet)``: a
    provider stack (raised limits, ops admin key), a user with a 10 0G ledger, and ``serve`` (API
    key) for it."""
    from broker.devnet import fund_new_account
    from broker.proxy import ServeSettings, create_app

    with provider_stack(
        devnet, tmp_path_factory.mktemp("ui-stack"), model="tiny", raise_limits=True
    ) as st:
        st.gateway.extra["admin_key"] = ADMIN_KEY
        account = fund_new_account(devnet, amount_neuron=100 * 10**18)
        broker = devnet_user_broker(devnet, account)
        broker.ledger.add_ledger(10)
        settings = ServeSettings(
            provider=st.provider_address, api_key=API_KEY, funding_interval=600
        )
        app = create_app(broker, settings)
        with UvicornThread(app, free_port(), start_polls=3000) as server:
            yield SimpleNamespace(
                stack=st,
                broker=broker,
                user_key=key_hex(account),
                serve_url=server.url,
                app=app,
                api_key=API_KEY,
                admin_key=ADMIN_KEY,
                devnet=devnet,
            )
        broker.inference.close()


@pytest.fixture(scope="module")
def chromium():
    """A Playwright ``Browser`` on Debian's headless Chromium (never a downloaded browser).

    Module-scoped: Playwright's sync API keeps an event loop running in the main thread while it
    is open, which would break later tests that call ``asyncio.run``."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install '0g-broker[dev]')")
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        except Exception as exc:  # noqa: BLE001 - any launch failure is a reason to skip
            pytest.skip(f"chromium could not be started by playwright: {exc}")
        yield browser
        browser.close()
