"""The web dashboard: a single page served from ``static/``, talking to the ``/v1`` API.

Hand-written HTML, CSS and ES modules, no build step and nothing from another origin, so the
Content-Security-Policy can be ``'self'`` only. ``/`` redirects to ``/ui/``; ``/ui/`` is the
page and ``/ui/<file>`` its assets. The page's own links carry ``?v=<digest>`` of their file:
those answers may be cached for a year, everything else is revalidated with its ETag.

The routes are left out of the OpenAPI schema: they are not part of the API.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import mimetypes
import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_DIR", "assets", "router"]

STATIC_DIR = Path(__file__).with_name("static")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
# `{{asset:app.js}}` in index.html becomes `app.js?v=<digest>`.
_ASSET_REF = re.compile(r"\{\{asset:([A-Za-z0-9_.-]+)\}\}")


@dataclasses.dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    digest: str
    """The first 12 hex digits of the body's sha256: its ETag and cache-busting version."""


def _asset(body: bytes, name: str) -> Asset:
    media_type = _TYPES.get(Path(name).suffix) or (
        mimetypes.guess_type(name)[0] or "application/octet-stream"
    )
    return Asset(body, media_type, hashlib.sha256(body).hexdigest()[:12])


@functools.cache
def assets() -> dict[str, Asset]:
    """Every file of ``static/`` by name, and ``index.html`` with versioned asset links.

    Read once: the files ship with the package and do not change while it runs.
    """
    found = {
        path.name: _asset(path.read_bytes(), path.name)
        for path in sorted(STATIC_DIR.iterdir())
        if path.is_file() and not path.name.startswith(".")
    }
    index = found["index.html"].body.decode()

    def versioned(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in found:
            raise ValueError(f"index.html links {name!r}, which is not in {STATIC_DIR}")
        return f"{name}?v={found[name].digest}"

    found["index.html"] = _asset(_ASSET_REF.sub(versioned, index).encode(), "index.html")
    return found


def _serve(asset: Asset, *, immutable: bool, if_none_match: str | None) -> Response:
    etag = f'"{asset.digest}"'
    headers = {
        **_SECURITY_HEADERS,
        "ETag": etag,
        "Cache-Control": _IMMUTABLE if immutable else _REVALIDATE,
    }
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.api_route("/ui", methods=["GET", "HEAD"])
def ui_without_slash() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.api_route("/ui/", methods=["GET", "HEAD"])
def page(if_none_match: Annotated[str | None, Header()] = None) -> Response:
    """The single page; the hash part of the URL picks what it shows."""
    return _serve(assets()["index.html"], immutable=False, if_none_match=if_none_match)


@router.api_route("/ui/{name}", methods=["GET", "HEAD"])
def asset(
    name: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")],
    v: Annotated[str | None, Query(max_length=64)] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A file of the page: cached for good when asked for by its current version."""
    found = assets().get(name)
    if found is None or name == "index.html":
        raise HTTPException(404, f"no dashboard file named {name!r}")
    return _serve(found, immutable=v == found.digest, if_none_match=if_none_match)
