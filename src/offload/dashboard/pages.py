"""The dashboard pages that live outside :mod:`offload.dashboard.routes`, as one router.

Included by the app before ``routes.router`` so their fixed paths (``/events/send``)
win over its patterns (``/events/{id}``).
"""

from __future__ import annotations

from fastapi import APIRouter

from offload.dashboard import apidocs, engines, events, functions, webhooks

router = APIRouter(include_in_schema=False)
for _module in (apidocs, engines, events, functions, webhooks):
    router.include_router(_module.router)
