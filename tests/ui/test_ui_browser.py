"""The three pages in a real browser (Debian's headless Chromium driven by Playwright) against a
real devnet stack: the dashboard's numbers equal ``get-account --json``, the playground produces an
image and shows its fee and verification, a deposit goes through the confirmation dialog, the ops
page shows a settlement after one happens. Each page is screenshotted and checked to be non-blank
(``ZG_UPDATE_SCREENSHOTS=1`` also writes them to ``docs/screenshots/`` for the README)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from devnet_helpers import key_hex, settle_once_recording
from PIL import Image
from server_helpers import UvicornThread, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT = {"width": 1024, "height": 700}
ZG = 10**18


def _page(chromium, errors: list[str]):
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(120_000)
    # a 401 before the key is entered is expected; anything else (script error, CSP block, 404) not
    page.on(
        "console",
        lambda m: (
            errors.append(m.text) if m.type == "error" and "status of 401" not in m.text else None
        ),
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    return context, page


def _shoot(page, name: str, tmp_path: Path) -> None:
    """Screenshot the viewport, check it is not blank, keep it small, and write it to the docs
    folder when asked."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (VIEWPORT["width"], VIEWPORT["height"])
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 20, f"{name}: the screenshot is blank"
        if os.environ.get("ZG_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            rgb.quantize(colors=128).save(SCREENSHOTS / f"{name}.png", optimize=True)


def _unlock(page, key: str) -> None:
    page.wait_for_selector("#key-form:not(.hidden)")
    page.fill("#key-input", key)
    page.click("#key-form button[type=submit]")


def _cli_account(ui_stack, key: str, home: Path) -> dict:
    net = ui_stack.devnet
    env = {
        "ZG_HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": ":".join(sys.path),
        "ZG_PRIVATE_KEY": key,
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker.cli.main",
            "--network",
            "devnet",
            "--rpc",
            net.rpc_url,
            "--ledger-ca",
            net.ledger_address,
            "--inference-ca",
            net.inference_address,
            "get-account",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _account_on_page(page) -> dict:
    def amt(sel):
        span = page.locator(f"{sel} .amt")
        return span.get_attribute("data-neuron"), span.inner_text()

    rows = page.locator("#subaccounts tbody tr[data-provider]")
    return {
        "total": amt("#acct-total"),
        "available": amt("#acct-available"),
        "locked": amt("#acct-locked"),
        "inference": {
            rows.nth(i).get_attribute("data-provider"): rows.nth(i).get_attribute("data-balance")
            for i in range(rows.count())
        },
    }


def test_serve_dashboard_account_and_playground(chromium, ui_stack, tmp_path):
    errors: list[str] = []
    context, page = _page(chromium, errors)
    try:
        page.goto(ui_stack.serve_url + "/ui/")
        _unlock(page, ui_stack.api_key)
        page.wait_for_selector("#acct-total .amt")
        page.wait_for_selector("#prov-table tbody tr[data-provider]")
        # the numbers equal `0g-broker get-account --json`
        cli = _cli_account(ui_stack, ui_stack.user_key, tmp_path / "home")
        shown = _account_on_page(page)
        for name in ("total", "available", "locked"):
            assert shown[name] == (cli[name], f"{cli[name + '_0g']} 0G"), name
        assert shown["inference"] == {s["provider"]: s["balance"] for s in cli["inference"]}
        assert page.locator("#acct-total .amt").get_attribute("title") == f"{cli['total']} neuron"

        # the playground: prompt → image through serve, its fee and verification beside it
        page.fill("#pg-prompt", "a red fox in the snow")
        page.fill("#pg-size", "64x64")
        page.click("#pg-go")
        page.wait_for_selector("#pg-images img", timeout=300_000)
        assert page.locator("#pg-fee .amt").inner_text() == "0.001 0G"
        assert page.locator("#pg-fee .amt").get_attribute("data-neuron") == str(10**15)
        assert page.inner_text("#pg-verified") == "true"
        assert page.inner_text("#pg-chat") not in ("", "–")
        size = page.evaluate(
            "() => { const i = document.querySelector('#pg-images img');"
            " return [i.naturalWidth, i.naturalHeight]; }"
        )
        assert size == [64, 64]
        page.wait_for_selector("#req-table tbody tr[data-verified=true]")
        page.select_option("#req-filter", "false")
        page.wait_for_selector("#req-table tbody tr.empty")
        page.select_option("#req-filter", "")
        page.wait_for_selector("#req-table tbody tr[data-verified=true]")
        page.evaluate("() => document.querySelector('#requests').scrollIntoView()")
        _shoot(page, "dashboard-requests", tmp_path)
        page.evaluate("() => window.scrollTo(0, 0)")
        _shoot(page, "dashboard", tmp_path)
        assert not errors, errors  # no script error, no blocked resource (CSP)
    finally:
        context.close()


def test_standalone_deposit_through_the_confirmation(chromium, ui_stack, tmp_path):
    from devnet_helpers import devnet_user_broker

    from broker.devnet import fund_new_account
    from broker.ui.standalone import create_ui_app

    account = fund_new_account(ui_stack.devnet, amount_neuron=20 * ZG)
    broker = devnet_user_broker(ui_stack.devnet, account)
    broker.ledger.add_ledger(3)
    broker.ledger.transfer_fund(ui_stack.stack.provider_address, "inference", 1)
    errors: list[str] = []
    context, page = _page(chromium, errors)
    try:
        with UvicornThread(create_ui_app(broker), free_port()) as server:
            page.goto(server.url + "/ui/")
            page.wait_for_selector("#acct-total .amt")
            assert page.locator("#acct-total .amt").inner_text() == "3 0G"
            assert page.is_hidden("#playground") and page.is_visible("#actions")
            assert page.is_hidden("#requests")  # recorded by serve, not here
            before = broker.ledger.get_ledger().total_balance
            # cancel: nothing moves
            page.fill("#act-amount", "0.5")
            page.click("#act-go")
            page.wait_for_selector("#act-dialog[open]")
            assert page.inner_text("#act-amount-0g") == "0.5"
            assert page.inner_text("#act-amount-neuron") == str(ZG // 2)
            page.click("#act-cancel")
            page.wait_for_function(
                "() => document.querySelector('#act-result').textContent.includes('cancelled')"
            )
            assert broker.ledger.get_ledger().total_balance == before
            # confirm: exactly the amount shown moves
            page.click("#act-go")
            page.wait_for_selector("#act-dialog[open]")
            page.evaluate("() => window.scrollTo(0, 0)")
            _shoot(page, "standalone", tmp_path)  # the confirmation, amount in 0G
            page.click("#act-confirm")
            page.wait_for_function(
                "() => document.querySelector('#act-result').textContent.startsWith('done')",
                timeout=120_000,
            )
            assert broker.ledger.get_ledger().total_balance == before + ZG // 2
            page.wait_for_function(
                "() => document.querySelector('#acct-total .amt').textContent === '3.5 0G'"
            )
            cli = _cli_account(ui_stack, key_hex(account), tmp_path / "home")
            shown = _account_on_page(page)
            assert shown["total"] == (cli["total"], f"{cli['total_0g']} 0G")
            assert shown["inference"] == {s["provider"]: s["balance"] for s in cli["inference"]}
            assert not errors, errors
    finally:
        context.close()
        broker.inference.close()


def test_ops_page_shows_a_settlement(chromium, ui_stack, tmp_path):
    import openai

    client = openai.OpenAI(
        base_url=ui_stack.serve_url + "/v1", api_key=ui_stack.api_key, max_retries=0, timeout=300
    )
    client.images.generate(prompt="ops page fox", n=1, size="64x64", response_format="b64_json")
    errors: list[str] = []
    context, page = _page(chromium, errors)
    try:
        page.goto(ui_stack.stack.gateway_url + "/ui/")
        _unlock(page, ui_stack.admin_key)
        user = ui_stack.broker.address
        page.wait_for_selector(f"#ops-unsettled tbody tr[data-user='{user}']")
        assert page.is_visible("#ops-worker-kv")
        assert "idle" in page.inner_text("#ops-worker-kv") or "generating" in page.inner_text(
            "#ops-worker-kv"
        )
        _report, receipts = settle_once_recording(ui_stack.stack.gateway)
        assert receipts
        tx = "0x" + bytes(receipts[-1]["transactionHash"]).hex()
        page.reload()
        row = page.locator("#ops-settlements tbody tr[data-status=confirmed]").first
        row.wait_for()
        assert "SUCCESS" in row.inner_text()
        assert row.locator(".addr").last.get_attribute("data-full") == tx
        page.evaluate("() => document.querySelector('#ops-unsettled-card').scrollIntoView()")
        _shoot(page, "ops", tmp_path)
        assert not errors, errors
    finally:
        context.close()
