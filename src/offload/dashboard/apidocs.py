"""``/docs``: the API reference in Swagger UI, served from vendored files.

FastAPI's own page loads Swagger UI from a CDN and is blank without internet; this
one loads ``swagger-ui-bundle.js`` and ``swagger-ui.css`` (swagger-ui-dist, Apache-2.0,
see ``static/swagger-ui.NOTICE``) from ``/static``.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import HTMLResponse

from offload import __version__

router = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>offload {version} · API reference</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/static/swagger-ui-bundle.js"></script>
<script src="/static/swagger-init.js"></script>
</body>
</html>
"""
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' "
                               "'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@router.get("/docs")
async def docs() -> HTMLResponse:
    """Swagger UI for ``/openapi.json``, with no request leaving this engine."""
    return HTMLResponse(_PAGE.format(version=__version__), headers=_HEADERS)
