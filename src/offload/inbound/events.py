"""What an accepted delivery becomes: the event's name (from a template) and its data."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import orjson

TEMPLATE_VAR = re.compile(r"\{\{\s*([A-Za-z0-9_][A-Za-z0-9_.\-]*)\s*\}\}")
MAX_NAME = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
DEFAULT_TEMPLATES = {
    "stripe": "stripe/{{ type }}",
    "github": "github/{{ headers.x-github-event }}",
}
"""Event name templates used when a webhook gives none."""


def default_template(kind: str) -> str:
    """The event name template of a webhook of ``kind`` that names none."""
    return DEFAULT_TEMPLATES.get(kind, "webhook/{{ webhook.name }}")


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The event data: the JSON object sent (GitHub's form ``payload`` too), else wrapped.

    A JSON value that is not an object becomes ``{"body": value}``; anything that is
    not JSON becomes ``{"raw": "<text>"}``.
    """
    kind = (content_type or "").partition(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        if "payload" in form:
            body = form["payload"][0].encode()
        else:
            return {"form": {k: v[0] if len(v) == 1 else v for k, v in form.items()}}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"raw": body.decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"body": value}


def _lookup(path: str, data: Mapping[str, Any], headers: Mapping[str, str],
            webhook: Mapping[str, Any]) -> Any:
    head, _, rest = path.partition(".")
    if head == "headers" and rest:
        return headers.get(rest.lower())
    if head == "webhook" and rest:
        return webhook.get(rest)
    value: Any = data
    parts = rest.split(".") if head == "data" and rest else path.split(".")
    for part in parts:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def event_name(template: str, data: Mapping[str, Any], headers: Mapping[str, str],
               webhook: Mapping[str, Any]) -> str:
    """The event name: each ``{{ path }}`` replaced.

    ``path`` is a dotted path into the body (``type``, ``data.object.id``; a leading
    ``data.`` may be given), ``headers.<name>`` or ``webhook.name``/``webhook.id``. A
    missing or non-scalar value becomes ``unknown``. GitHub's ``action`` refines
    ``headers.x-github-event`` only when the template says so (``{{ action }}``).
    """
    def replace(match: re.Match[str]) -> str:
        value = _lookup(match.group(1), data, headers, webhook)
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            return "unknown"
        return str(value)

    name = _CONTROL.sub("?", TEMPLATE_VAR.sub(replace, template)).strip()
    return (name or "webhook/unknown")[:MAX_NAME]


def template_problem(template: str) -> str | None:
    """Why ``template`` cannot be used, or None."""
    if not template.strip():
        return "must not be empty"
    if len(template) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    leftover = TEMPLATE_VAR.sub("", template)
    if "{{" in leftover or "}}" in leftover:
        return "has a malformed {{ … }} placeholder (use {{ path.to.field }})"
    return None


__all__ = ["DEFAULT_TEMPLATES", "default_template", "event_name", "parse_body",
           "template_problem"]
