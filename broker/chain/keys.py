"""Private keys: validation, the encrypted keystore, and resolving the signer.

Resolution order (:func:`load_wallet`): an explicit ``private_key`` argument, then
``ZG_PRIVATE_KEY`` (``Settings.private_key``), then the eth-account v3 keystore at
``Settings.keystore_path()`` whose password comes from ``ZG_KEYSTORE_PASSWORD`` or, only when stdin
is a terminal, a hidden prompt. The reference CLI keeps the key in plain text with default
permissions (``user-broker.md`` §11.1, §13 item 18); we never write it unencrypted, and the keystore
file is written atomically with mode 0600. No message, log line or repr contains the key.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys import keys as eth_keys

from broker._exceptions import KeyStoreError
from broker.config.settings import Settings

__all__ = [
    "Wallet",
    "create_keystore",
    "key_source",
    "load_keystore",
    "load_wallet",
    "validate_private_key",
    "wallet_from_key",
]

_KEY_RE = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


class Wallet(LocalAccount):
    """An ``eth_account`` LocalAccount whose ``repr``/``str`` show only the address.

    Use it anywhere a LocalAccount is accepted (signing, :class:`~broker.chain.sender.
    TransactionSender`). ``wallet.key`` still returns the raw key bytes (eth-account API).
    """

    def __repr__(self) -> str:
        return f"Wallet(address={self.address})"

    __str__ = __repr__


def validate_private_key(private_key: str) -> str:
    """Check a hex private key and return it normalised (``0x`` + 64 lowercase hex).

    Args:
        private_key: 64 hex digits, with or without ``0x``; surrounding blanks are ignored.

    Returns:
        The normalised key.

    Raises:
        KeyStoreError: not 64 hex digits, or not a valid secp256k1 key (zero or ≥ the curve
            order). The message never contains the key.
    """
    if not isinstance(private_key, str):
        raise KeyStoreError("private key must be a hex string (0x + 64 hex digits)")
    text = private_key.strip()
    if not _KEY_RE.match(text):
        raise KeyStoreError(
            f"invalid private key: expected 0x followed by 64 hex digits "
            f"(got {len(text)} characters)"
        )
    if text[:2].lower() == "0x":
        text = text[2:]
    try:
        eth_keys.PrivateKey(bytes.fromhex(text))
    except Exception:  # noqa: BLE001 - eth_keys raises ValidationError; never echo the key
        raise KeyStoreError("invalid private key: not a valid secp256k1 key") from None
    return "0x" + text.lower()


def wallet_from_key(private_key: str) -> Wallet:
    """Build a :class:`Wallet` from a hex key (validated as :func:`validate_private_key`).

    Raises:
        KeyStoreError: the key is malformed.
    """
    key = validate_private_key(private_key)
    return Wallet(eth_keys.PrivateKey(bytes.fromhex(key[2:])), Account())


def _atomic_write_0600(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_keystore(
    private_key: str,
    password: str,
    path: Path | str | None = None,
    *,
    iterations: int | None = None,
) -> Path:
    """Encrypt ``private_key`` into an eth-account keystore v3 file (scrypt), mode 0600.

    Args:
        private_key: hex key (``0x`` + 64 hex).
        password: the encryption password (may not be empty).
        path: target file; default ``Settings().keystore_path()``. An existing file is replaced
            atomically.
        iterations: KDF work factor (scrypt ``n``); ``None`` uses eth-account's default. Lower it
            only in tests.

    Returns:
        The path written.

    Raises:
        KeyStoreError: malformed key or empty password.
    """
    key = validate_private_key(private_key)
    if not password:
        raise KeyStoreError("keystore password must not be empty")
    target = Path(path) if path is not None else Settings().keystore_path()
    data = Account.encrypt(key, password, kdf="scrypt", iterations=iterations)
    _atomic_write_0600(target.expanduser(), json.dumps(data))
    return target.expanduser()


def load_keystore(path: Path | str, password: str) -> Wallet:
    """Decrypt a keystore v3 file.

    Returns:
        The :class:`Wallet`.

    Raises:
        KeyStoreError: the file is missing or unreadable, not a keystore, or the password is
            wrong.
    """
    path = Path(path).expanduser()
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        raise KeyStoreError(f"keystore {path} does not exist; run `0g-broker login`") from None
    except (OSError, ValueError) as exc:
        raise KeyStoreError(f"keystore {path} is unreadable ({type(exc).__name__})") from None
    try:
        raw = Account.decrypt(data, password)
    except ValueError:
        raise KeyStoreError(f"wrong password for keystore {path}") from None
    except Exception as exc:  # noqa: BLE001
        raise KeyStoreError(f"keystore {path} is malformed ({type(exc).__name__})") from None
    return Wallet(eth_keys.PrivateKey(bytes(raw)), Account())


def key_source(private_key: str | None = None, *, settings: Settings | None = None) -> str | None:
    """Where :func:`load_wallet` would take the key from: ``"argument"``, ``"environment"``
    (``ZG_PRIVATE_KEY`` or the config), ``"keystore"``, or ``None`` when nothing is configured."""
    if private_key:
        return "argument"
    settings = settings or Settings()
    if settings.private_key is not None and settings.private_key.get_secret_value():
        return "environment"
    if settings.keystore_path().exists():
        return "keystore"
    return None


def load_wallet(
    private_key: str | None = None,
    *,
    settings: Settings | None = None,
    interactive: bool | None = None,
) -> Wallet:
    """Resolve the signer: ``private_key`` > ``ZG_PRIVATE_KEY`` > the encrypted keystore.

    Args:
        private_key: explicit hex key.
        settings: settings to read ``private_key``, ``keystore`` and ``keystore_password`` from
            (default: a fresh :class:`~broker.config.settings.Settings`).
        interactive: allow a hidden password prompt; ``None`` means "when stdin is a TTY".

    Returns:
        The :class:`Wallet`.

    Raises:
        KeyStoreError: no key is configured, the key is malformed, the keystore cannot be read,
            its password is wrong, or a password is needed but no prompt is possible.
    """
    if private_key:
        return wallet_from_key(private_key)
    settings = settings or Settings()
    if settings.private_key is not None and settings.private_key.get_secret_value():
        return wallet_from_key(settings.private_key.get_secret_value())
    path = settings.keystore_path()
    if not path.exists():
        raise KeyStoreError(
            "no private key configured: run `0g-broker login`, set ZG_PRIVATE_KEY, "
            "or pass private_key"
        )
    if settings.keystore_password is not None:
        password = settings.keystore_password.get_secret_value()
    else:
        if interactive is None:
            interactive = sys.stdin is not None and sys.stdin.isatty()
        if not interactive:
            raise KeyStoreError(
                f"keystore {path} needs a password: set ZG_KEYSTORE_PASSWORD "
                "(no terminal to prompt on)"
            )
        password = getpass.getpass(f"Password for keystore {path}: ")
    return load_keystore(path, password)
