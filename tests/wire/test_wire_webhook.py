"""The webhook SSRF rule (broker.wire.webhook): every non-public target is refused."""

from __future__ import annotations

import pytest

from broker._exceptions import InputError
from broker.wire.webhook import (
    WebhookURLError,
    check_webhook_address,
    check_webhook_url,
    is_public_address,
)

REFUSED = [
    "http://127.0.0.1:9/x",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://017700000001/",
    "http://localhost:8000/",
    "http://LOCALHOST./",
    "http://api.localhost/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[2002:7f00:1::]/",
    "http://[64:ff9b::a00:1]/",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1%25eth0]/",
    "http://[fc00::1]/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://100.64.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "ftp://example.com/",
    "file:///etc/passwd",
    "gopher://example.com/",
    "http:///nohost",
    "http://user:pw@example.com/",
    "http://example.com:0/",
    "http://example.com:99999/",
    "http://exa mple.com/",
    "http://example.com/\r\nX: y",
    "",
    "http://example.com/" + "a" * 3000,
]

ACCEPTED = [
    "http://example.com/hook",
    "https://hooks.example.org:8443/a?b=c",
    "https://8.8.8.8/x",
    "http://[2606:4700:4700::1111]/",
    "http://[64:ff9b::808:808]/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused_urls(url: str) -> None:
    with pytest.raises(WebhookURLError) as info:
        check_webhook_url(url)
    assert isinstance(info.value, InputError)
    assert str(info.value).startswith("webhook_url: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("url", ACCEPTED)
def test_public_urls_accepted(url: str) -> None:
    check_webhook_url(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/", "http://localhost/", "http://10.0.0.1/", "http://[fe80::1]/"]
)
def test_allow_private_lets_local_targets_through(url: str) -> None:
    check_webhook_url(url, allow_private=True)


@pytest.mark.parametrize("url", ["http://0.0.0.0/", "http://224.0.0.1/", "ftp://127.0.0.1/"])
def test_allow_private_still_refuses_unspecified_multicast_and_bad_schemes(url: str) -> None:
    with pytest.raises(WebhookURLError):
        check_webhook_url(url, allow_private=True)


def test_resolved_address_rule() -> None:
    assert is_public_address("8.8.8.8")
    assert not is_public_address("::ffff:192.168.0.1")
    with pytest.raises(WebhookURLError, match="loopback address 127.0.0.53"):
        check_webhook_address("127.0.0.53")
    check_webhook_address("127.0.0.53", allow_private=True)
    with pytest.raises(WebhookURLError, match="not an IP address"):
        check_webhook_address("example.com")


def test_pinned_target_goes_to_the_checked_address_under_the_name():
    """The request is sent to the first address, the name kept in ``Host`` (and SNI for https):
    the HTTP client has no name left to look up again (a DNS rebinding between the check and
    the connection cannot move it)."""
    from broker.wire.webhook import pinned_webhook_target

    plain = pinned_webhook_target("http://hooks.example.com:8080/cb?x=1", ["93.184.216.34"])
    assert plain.url == "http://93.184.216.34:8080/cb?x=1"
    assert plain.headers == {"Host": "hooks.example.com:8080"} and plain.extensions == {}
    tls = pinned_webhook_target(
        "https://hooks.example.com/cb", ["2606:2800:220:1:248:1893:25c8:1946%eth0", "1.1.1.1"]
    )
    assert tls.url == "https://[2606:2800:220:1:248:1893:25c8:1946]/cb"
    assert tls.headers == {"Host": "hooks.example.com"}
    assert tls.extensions == {"sni_hostname": "hooks.example.com"}


@pytest.mark.parametrize(
    "addresses", [[], ["127.0.0.1"], ["93.184.216.34", "10.0.0.5"], ["169.254.169.254"]]
)
def test_pinned_target_checks_every_address(addresses):
    """A name that resolves to nothing, or to any refused address among public ones (a resolver
    may rotate its answers), is refused as a whole."""
    from broker.wire.webhook import WebhookURLError, pinned_webhook_target

    with pytest.raises(WebhookURLError):
        pinned_webhook_target("http://hooks.example.com/cb", addresses)
    if addresses and addresses != ["93.184.216.34", "10.0.0.5"]:
        return
    if addresses:  # allowed by the operator: private targets pass, the first one is used
        got = pinned_webhook_target("http://hooks.example.com/cb", addresses, allow_private=True)
        assert got.url == "http://93.184.216.34/cb"
