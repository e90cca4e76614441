"""Templates and static files of the pages (Jinja2 through FastAPI; everything local, no CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from broker.ui.errors import UIError

__all__ = ["STATIC_DIR", "TEMPLATES_DIR", "error_json", "mount_static", "page", "templates"]

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
    return JSONResponse(
        {"error": str(exc)}, status_code=exc.status_code, headers={"Cache-Control": "no-store"}
    )
