"""The user-side attestation policy: accepted TCB statuses and optional allowlists of measurements,
compose hashes and image digests (attestation.md §5.1 steps 5 and 10).

Loadable from a JSON file (default ``$ZG_HOME/attestation/policy.json`` when it exists) or any
mapping. Defaults fail closed: the TCB status and the signer are required.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from broker.attestation.errors import AttestationPolicyError
from broker.attestation.tcb import REVOKED, TCB_STATUSES
from broker.config.settings import broker_home

__all__ = ["AttestationPolicy", "default_policy_path", "load_policy"]

_HEX48 = re.compile(r"^[0-9a-f]{96}$")
_HEX32 = re.compile(r"^[0-9a-f]{64}$")


def _norm_hex(values: list[str], pattern: re.Pattern[str], what: str) -> list[str]:
    out = []
    for v in values:
        text = v.lower().removeprefix("0x")
        if not pattern.match(text):
            raise ValueError(f"{what} entry {v!r} has the wrong length or is not hex")
        out.append(text)
    return out


class AttestationPolicy(BaseModel):
    """What a verification must establish to be ``verified``.

    Attributes:
        require_tcb: the TCB status check (dcap-qvl with Intel collateral) must pass; when False a
            skipped TCB check does not block the verdict (tests, air-gapped use).
        require_signer: the quote's report_data must name the expected TEE signer.
        accepted_tcb_statuses: TCB statuses accepted (default ``UpToDate``, ``SWHardeningNeeded``);
            each must be one of Intel's (:data:`broker.attestation.tcb.TCB_STATUSES`), and
            ``Revoked`` is never accepted. Any other status evaluated fails the TCB check, and a
            failed check fails the verdict even when ``require_tcb`` is False.
        rejected_advisory_ids: Intel advisory IDs (``INTEL-SA-…``) that fail the TCB check.
        allowed_mrtd, allowed_rtmr0, allowed_rtmr1, allowed_rtmr2: hex (48 bytes) allowlists; empty
            = not checked.
        allowed_compose_hashes: hex SHA-256 allowlist of app compose hashes; empty = not checked.
        allowed_image_digests: ``sha256:<hex>`` allowlist; every image in the compose must be pinned
            by one of them, every service must run an image (no ``build:``) and the app compose
            must have no ``pre_launch_script``; empty = not checked.
        max_quote_age_s: maximum age in seconds of the quote: it needs a report timestamp signed
            by the attested signer (``ZG-Quote-Signature``), or a quote made for our request nonce
            (then it passes); a bare JSON timestamp leaves the age unknown; ``None`` = not checked.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    require_tcb: bool = True
    require_signer: bool = True
    accepted_tcb_statuses: frozenset[str] = Field(
        default=frozenset({"UpToDate", "SWHardeningNeeded"})
    )
    rejected_advisory_ids: frozenset[str] = frozenset()
    allowed_mrtd: tuple[str, ...] = ()
    allowed_rtmr0: tuple[str, ...] = ()
    allowed_rtmr1: tuple[str, ...] = ()
    allowed_rtmr2: tuple[str, ...] = ()
    allowed_compose_hashes: tuple[str, ...] = ()
    allowed_image_digests: tuple[str, ...] = ()
    max_quote_age_s: int | None = Field(default=None, ge=0)

    @field_validator("accepted_tcb_statuses")
    @classmethod
    def _no_revoked(cls, v: frozenset[str]) -> frozenset[str]:
        if REVOKED in v:
            raise ValueError("Revoked can never be an accepted TCB status")
        unknown = sorted(v - TCB_STATUSES)
        if unknown:
            known = ", ".join(sorted(TCB_STATUSES - {REVOKED}))
            raise ValueError(f"unknown TCB status(es) {unknown}; known: {known}")
        return v

    @field_validator("allowed_mrtd", "allowed_rtmr0", "allowed_rtmr1", "allowed_rtmr2")
    @classmethod
    def _hex48(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_norm_hex(list(v), _HEX48, "measurement"))

    @field_validator("allowed_compose_hashes")
    @classmethod
    def _hex32(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_norm_hex(list(v), _HEX32, "compose hash"))

    @field_validator("allowed_image_digests")
    @classmethod
    def _digests(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for d in v:
            text = d.lower()
            text = text if text.startswith("sha256:") else "sha256:" + text
            _norm_hex([text.removeprefix("sha256:")], _HEX32, "image digest")
            out.append(text)
        return tuple(out)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> AttestationPolicy:
        """Build from a mapping (e.g. a config file section).

        Raises:
            AttestationPolicyError: unknown key or bad value (the message names the field).
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise AttestationPolicyError(f"invalid attestation policy: {exc}") from exc


def default_policy_path() -> Path:
    """``$ZG_HOME/attestation/policy.json``."""
    return broker_home() / "attestation" / "policy.json"


def load_policy(path: str | Path | None = None) -> AttestationPolicy:
    """Load the policy from ``path``, else from :func:`default_policy_path` if it exists, else the
    defaults.

    Raises:
        AttestationPolicyError: the file is unreadable, not JSON, or invalid.
    """
    file = Path(path) if path is not None else default_policy_path()
    if path is None and not file.exists():
        return AttestationPolicy()
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise AttestationPolicyError(f"cannot read attestation policy {file}: {exc}") from exc
    if not isinstance(data, dict):
        raise AttestationPolicyError(f"attestation policy {file} is not a JSON object")
    return AttestationPolicy.from_mapping(data)
