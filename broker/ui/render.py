"""Templates and static files of the pages (Jinja2 through FastAPI; everything local, no CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from broker.asgi.guard import GuardRefusal
from broker.ui.errors import UIError

__all__ = [
    "STATIC_DIR",
    "TEMPLATES_DIR",
    "UI_PREFIX",
    "error_json",
    "error_words",
    "guard_refusal_body",
    "mount_static",
    "page",
    "templates",
]

#: Path prefix of the pages and their JSON endpoints (their errors: ``{"error": "<words>"}``).
UI_PREFIX = "/ui/"

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

#: Content-Security-Policy of every page: our own scripts, styles and images only (the playground's
#: images are ``data:`` URLs), nothing from another origin.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def mount_static(app: FastAPI, prefix: str = "/ui/static") -> None:
    """Serve :data:`STATIC_DIR` at ``prefix`` (idempotent per app)."""
    if not any(getattr(r, "path", None) == prefix for r in app.routes):
        app.mount(prefix, StaticFiles(directory=str(STATIC_DIR)), name="ui-static")


def page(request: Request, name: str, **context: Any) -> HTMLResponse:
    """Render template ``name`` with ``context``; strict security headers (CSP, no framing, no
    sniffing, no referrer, no caching)."""
    response = templates.TemplateResponse(request, name, context)
    response.headers.update(
        {
            "Content-Security-Policy": CSP,
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        }
    )
    return response


def error_json(exc: UIError) -> JSONResponse:
    """``{"error": "<words>"}`` with the error's status."""
    return error_words(exc.status_code, str(exc))


def error_words(status_code: int, message: str, headers: dict[str, str] | None = None):
    """The dashboard's error answer: ``{"error": message}`` with ``status_code`` (and
    ``headers``), for an error raised outside the ui's own code on a :data:`UI_PREFIX` path (a bad
    query parameter, an unknown path)."""
    return JSONResponse(
        {"error": message},
        status_code=status_code,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def guard_refusal_body(refusal: GuardRefusal) -> dict:
    """A :class:`~broker.asgi.guard.LocalGuard` refusal in the dashboard's error shape:
    ``{"error": message, "code": code}``."""
    return {"error": refusal.message, "code": refusal.code}
