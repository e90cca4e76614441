"""A Pixazo-compatible Z-Image endpoint on ``serve`` (seed ``004``, ``image-apis.md``): a client
written for Pixazo's Z-Image Turbo / Base API only has to change its host.

Routes (``protocol.py`` has the shapes, ``serving.py`` the logic, ``router.py`` the FastAPI routes):

* ``POST /z-image-turbo-834/v1/z-image-turbo-request`` and
  ``POST /z-image-base/v1/z-image-base-request`` → 202
  ``{"request_id", "status": "QUEUED", "polling_url"}``; the job runs on the provider's async
  image API and is billed per image (``num_images × outputPrice``) when it completes;
* ``GET /v2/requests/status/{request_id}`` → ``QUEUED | PROCESSING | COMPLETED | FAILED | ERROR``
  with ``output.media_url`` (images served by ``serve`` at ``/v2/media/{id}``, behind the same API
  key, for ``ServeSettings.media_ttl`` seconds), ``model_id``, ``error``, timestamps;
* ``X-Webhook-URL``: the final status is POSTed there once (SSRF rule of
  :mod:`broker.wire.webhook`, no redirects, 5 s timeout);
* ``Ocp-Apim-Subscription-Key`` (or ``Authorization: Bearer``) is ``serve``'s API key; errors are
  ``{"error": "<reason phrase>", "message": "..."}``.
"""

from __future__ import annotations

__all__ = ["PIXAZO_PREFIXES", "is_pixazo_path"]

#: Path prefixes whose errors are answered in Pixazo's shape.
PIXAZO_PREFIXES = ("/z-image-turbo-834/", "/z-image-base/", "/v2/requests/", "/v2/media/")


def is_pixazo_path(path: str) -> bool:
    """Whether ``path`` belongs to the Pixazo-compatible endpoint."""
    return path.startswith(PIXAZO_PREFIXES)
