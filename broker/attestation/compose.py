"""The dstack app compose: its hash and the container images it names.

Source: attestation.md §1.6: ``compose_hash = SHA-256(raw bytes of app-compose.json)``, hashed as
served (``tcb_info.app_compose`` is the file verbatim; never re-serialise it); the compose file
itself is YAML in the ``docker_compose_file`` key (PyYAML).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import yaml

__all__ = ["ImageRef", "compose_hash", "compose_images", "compose_unpinned_code"]


@dataclass(frozen=True)
class ImageRef:
    """A container image named by a compose service.

    ``reference`` is the text as written (``repo[:tag][@sha256:<hex>]``); ``digest`` the
    ``sha256:<hex>`` part, or ``None`` when the image is not pinned by digest.
    """

    service: str
    reference: str
    digest: str | None


def compose_hash(app_compose: str | bytes) -> str:
    """Lower-case hex SHA-256 of the app compose text (UTF-8 bytes as served)."""
    data = app_compose.encode("utf-8") if isinstance(app_compose, str) else bytes(app_compose)
    return hashlib.sha256(data).hexdigest()


def _parse(app_compose: str) -> tuple[dict | None, object]:
    """``(app-compose.json object or None, its docker_compose_file YAML or None)``."""
    try:
        doc = json.loads(app_compose)
        compose = (
            yaml.safe_load(doc.get("docker_compose_file") or "") if isinstance(doc, dict) else None
        )
    except (ValueError, yaml.YAMLError, RecursionError):  # RecursionError: nested too deeply
        return None, None
    return (doc if isinstance(doc, dict) else None), compose


def compose_unpinned_code(app_compose: str) -> list[str]:
    """What in ``app_compose`` runs code that no image digest names, one line each: a service
    without an ``image`` (e.g. one with ``build:``, built from any source at boot) and a non-empty
    dstack ``pre_launch_script`` (a shell script run before the containers). An image allowlist
    says nothing about these, so it cannot pass while they exist.

    Args:
        app_compose: the raw app-compose.json text.
    Returns:
        the problems (empty when every service runs an image); ``["the app compose cannot be
        read"]`` when it is not JSON with a YAML ``services`` mapping.
    """
    doc, compose = _parse(app_compose)
    services = compose.get("services") if isinstance(compose, dict) else None
    if doc is None or not isinstance(services, dict):
        return ["the app compose cannot be read"]
    problems = [
        f"service {name} has no image (built at boot?)"
        for name, svc in services.items()
        if not (isinstance(svc, dict) and isinstance(svc.get("image"), str) and svc["image"])
    ]
    script = doc.get("pre_launch_script")
    if script:
        problems.append("the app compose has a pre_launch_script")
    return problems


def compose_images(app_compose: str) -> list[ImageRef]:
    """The images of the services in ``app_compose``'s ``docker_compose_file``, in file order.

    Args:
        app_compose: the raw app-compose.json text.
    Returns:
        one :class:`ImageRef` per service with an ``image`` key; ``[]`` when the compose is not
        JSON, has no ``docker_compose_file``, or that is not a YAML mapping with ``services``
        (or either is nested too deeply to parse) (a
        compose that cannot be read names no trusted image; callers treat an empty list as
        "unknown").
    """
    _, compose = _parse(app_compose)
    services = compose.get("services") if isinstance(compose, dict) else None
    if not isinstance(services, dict):
        return []
    out = []
    for name, svc in services.items():
        image = svc.get("image") if isinstance(svc, dict) else None
        if isinstance(image, str) and image:
            digest = image.split("@", 1)[1] if "@" in image else None
            out.append(ImageRef(service=str(name), reference=image, digest=digest))
    return out
