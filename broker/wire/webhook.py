"""Which ``webhook_url`` targets a server may call back (server-side request forgery rule).

A client-supplied callback URL must not make a server (the Z-Image worker's ``webhook_url``,
``serve``'s Pixazo-compatible ``X-Webhook-URL``) reach into the host's own network: loopback,
private (RFC 1918 / RFC 4193), link-local (including cloud metadata at ``169.254.169.254``),
multicast, reserved and unspecified addresses are refused, for IPv4 and IPv6 (IPv4-mapped,
6to4 and NAT64-embedded IPv4 addresses are judged by the IPv4 address they carry), unless the
operator allows private targets explicitly.

The rule is pure: :func:`check_webhook_url` judges the URL as written (scheme, host, literal
address or ``localhost`` name); :func:`check_webhook_address` judges one resolved address. A caller
that delivers the callback resolves the host itself, at delivery time (DNS may have changed since
submission), and hands the addresses to :func:`pinned_webhook_target`, which checks every one and
gives the request to send *to the checked address* (the name in ``Host`` and, for ``https``, in
SNI): the HTTP client must not resolve the name a second time, or a DNS answer that changes
between the check and the connection (DNS rebinding) would lead it to a refused address. The
caller must not follow redirects.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from broker._exceptions import InputError

__all__ = [
    "PinnedWebhookTarget",
    "WebhookURLError",
    "check_webhook_address",
    "check_webhook_url",
    "is_public_address",
    "pinned_webhook_target",
]

_MAX_URL_LENGTH = 2048
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookURLError(InputError):
    """A webhook URL is malformed or targets an address that is not allowed.

    The message names the reason (``"webhook_url: loopback address 127.0.0.1 is not allowed"``);
    it is safe to show to the client (it only repeats what the client sent).
    """


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64 well-known prefix (RFC 6052)
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.teredo is not None:
        return addr.teredo[1]
    return None


def _refusal(addr: IPAddress) -> str | None:
    """Why ``addr`` is not a public unicast address (``"loopback address 127.0.0.1"``), or
    ``None`` when it is public."""
    if isinstance(addr, ipaddress.IPv6Address):
        inner = _embedded_ipv4(addr)
        if inner is not None:
            reason = _refusal(inner)
            return None if reason is None else f"{reason} (embedded in {addr})"
    for attr, label in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(addr, attr):
            return f"{label} address {addr}"
    if not addr.is_global:  # shared address space 100.64/10, documentation ranges, ...
        return f"non-global address {addr}"
    return None


def is_public_address(address: str | IPAddress) -> bool:
    """Whether ``address`` (an IPv4/IPv6 address, text or object) is a public unicast address.

    Returns ``False`` for loopback, private, link-local, multicast, reserved, unspecified and other
    non-global ranges, also when an IPv6 address embeds such an IPv4 address. Raises
    :class:`WebhookURLError` when ``address`` is not an IP address.
    """
    return _refusal(_as_ip(address)) is None


def _as_ip(address: str | IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return address
    try:
        return ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        raise WebhookURLError(f"webhook_url: {address!r} is not an IP address") from None


def check_webhook_address(address: str | IPAddress, *, allow_private: bool = False) -> None:
    """Refuse a resolved callback address that is not public.

    Args:
        address: one address the webhook host resolved to (text such as ``"10.0.0.5"`` or
            ``"::1"``, a scope id suffix ``%eth0`` is ignored, or an ``ipaddress`` object).
        allow_private: the operator's setting that allows loopback/private/link-local targets
            (e.g. ``ZG_WORKER_WEBHOOK_ALLOW_PRIVATE``). Unspecified and multicast addresses are
            refused even then.

    Raises:
        WebhookURLError: the address is refused (the message names the range).
    """
    ip = _as_ip(address)
    reason = _refusal(ip)
    if reason is None:
        return
    if allow_private and not (ip.is_unspecified or ip.is_multicast):
        return
    raise WebhookURLError(f"webhook_url: {reason} is not allowed")


def _literal_host(host: str) -> IPAddress | None:
    """The address a host written as an IP literal stands for (also legacy IPv4 forms such as
    ``2130706433``, ``0x7f.1`` or ``017.0.0.1``, which resolvers accept), else ``None``."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_webhook_url(url: str, *, allow_private: bool = False) -> None:
    """Refuse a callback URL that is malformed or that names a non-public host.

    Accepted: ``http`` or ``https`` URLs of at most 2048 characters with a host, no user info and
    a valid port; the host is either a DNS name other than ``localhost``-like names and
    ``*.localhost`` (RFC 6761), or a public IP literal. Names are not resolved here: the caller
    that delivers the callback resolves them and checks each address with
    :func:`check_webhook_address` (and does not follow redirects).

    Args:
        url: the client-supplied URL (worker ``webhook_url``, Pixazo ``X-Webhook-URL``).
        allow_private: the operator allows loopback/private/link-local targets (tests, a
            callback receiver on the same host or LAN).

    Raises:
        WebhookURLError: (an :class:`~broker._exceptions.InputError`) with a one-line reason;
            servers answer 400 in their own error shape.
    """
    if not isinstance(url, str) or not url:
        raise WebhookURLError("webhook_url: must be a non-empty string")
    if len(url) > _MAX_URL_LENGTH:
        raise WebhookURLError(f"webhook_url: longer than {_MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise WebhookURLError("webhook_url: must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookURLError("webhook_url: not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise WebhookURLError("webhook_url: scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise WebhookURLError("webhook_url: user info is not allowed")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise WebhookURLError("webhook_url: has no host")
    if port == 0:
        raise WebhookURLError("webhook_url: port 0 is not allowed")
    literal = _literal_host(host)
    if literal is not None:
        check_webhook_address(literal, allow_private=allow_private)
        return
    try:
        host.encode("idna")
    except UnicodeError:
        raise WebhookURLError("webhook_url: host is not a valid name") from None
    lowered = host.lower()
    if not allow_private and (lowered in _LOCAL_NAMES or lowered.endswith(".localhost")):
        raise WebhookURLError(f"webhook_url: loopback host {host} is not allowed")


@dataclass(frozen=True, slots=True)
class PinnedWebhookTarget:
    """The callback request pinned to one checked address (:func:`pinned_webhook_target`).

    Attributes:
        url: the callback URL with its host replaced by the address (IPv6 in brackets).
        headers: ``{"Host": <the URL's host[:port] as written>}``.
        extensions: httpx request extensions: ``{"sni_hostname": <host>}`` for ``https`` (the
            certificate is checked against the name, not the address), else empty.
    """

    url: str
    headers: dict[str, str]
    extensions: dict[str, str]


def pinned_webhook_target(
    url: str, addresses: Sequence[str], *, allow_private: bool = False
) -> PinnedWebhookTarget:
    """Check ``url`` (:func:`check_webhook_url`) and every address its host resolved to
    (:func:`check_webhook_address`: all of them, since a resolver may rotate its answers), and
    give the request that reaches the first one without a second lookup (module docstring).

    Args:
        url: the client-supplied callback URL.
        addresses: the addresses its host resolved to just now, in the resolver's order (text;
            a scope id ``%eth0`` is dropped from the URL).
        allow_private: the operator allows loopback/private/link-local targets.

    Returns:
        A :class:`PinnedWebhookTarget`.

    Raises:
        WebhookURLError: the URL or one of the addresses is refused, or there is no address.
    """
    check_webhook_url(url, allow_private=allow_private)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not addresses:
        raise WebhookURLError(f"webhook_url: host {host} does not resolve")
    for address in addresses:
        check_webhook_address(address, allow_private=allow_private)
    address = addresses[0].split("%", 1)[0]
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    extensions = {"sni_hostname": host} if parts.scheme.lower() == "https" else {}
    return PinnedWebhookTarget(pinned, {"Host": parts.netloc}, extensions)
